"""Settings: defaults, validation with clear errors, atomic save, never silently overwritten."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from audiobook.errors import AudiobookError
from audiobook.settings import Settings, load_settings, save_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_match_the_design():
    s = Settings()
    assert (s.batch_size, s.attention_mode, s.max_new_tokens) == (5, "sdpa", 4096)
    assert s.model_size == "1.7B" and 400 <= s.chunk_chars <= 600


def test_round_trip(tmp_path):
    path = tmp_path / "user_settings.json"
    s = Settings().updated(batch_size=12, attention_mode="eager", max_new_tokens=2048, models_dir="/m", temperature=0.7)
    save_settings(s, path)
    assert load_settings(path) == s
    assert json.loads(path.read_text())["batch_size"] == 12


def test_missing_file_means_defaults(tmp_path):
    assert load_settings(tmp_path / "nope.json") == Settings()


def test_missing_keys_take_defaults(tmp_path):
    path = tmp_path / "user_settings.json"
    path.write_text('{"batch_size": 3}')
    s = load_settings(path)
    assert s.batch_size == 3 and s.max_new_tokens == 4096


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("batch_size", 0, "between 1 and 64"),
        ("batch_size", 65, "between 1 and 64"),
        ("batch_size", "5", "whole number"),
        ("batch_size", 2.5, "whole number"),
        ("attention_mode", "flash", "one of sdpa, eager, flash_attention_2"),
        ("max_new_tokens", 10, "between"),
        ("model_size", "7B", "one of 1.7B, 0.6B"),
        ("temperature", "hot", "must be a number"),
        ("make_m4b", "yes", "true or false"),
    ],
)
def test_bad_values_name_the_key(key, value, words):
    with pytest.raises(AudiobookError) as err:
        Settings().updated(**{key: value})
    assert f"'{key}'" in str(err.value) and words in str(err.value)


def test_unknown_key_is_named():
    with pytest.raises(AudiobookError, match="Unknown setting 'batchsize'"):
        Settings.from_dict({"batchsize": 5})


def test_broken_json_is_reported_and_left_alone(tmp_path):
    path = tmp_path / "user_settings.json"
    path.write_text('{"batch_size": 5,,}')
    with pytest.raises(AudiobookError, match="not valid JSON"):
        load_settings(path)
    assert path.read_text() == '{"batch_size": 5,,}'


def test_bad_value_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "user_settings.json"
    path.write_text('{"batch_size": 99}')
    with pytest.raises(AudiobookError, match=r"user_settings.json: Setting 'batch_size'"):
        load_settings(path)


def test_save_refuses_invalid_and_writes_nothing(tmp_path):
    path = tmp_path / "user_settings.json"
    save_settings(Settings(), path)
    before = path.read_text()
    bad = Settings()
    bad.batch_size = 65  # past the engine's 64 slots
    with pytest.raises(AudiobookError):
        save_settings(bad, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["user_settings.json"]  # no temp files left


# A child process whose file-size limit is smaller than the settings file: the write of the
# temporary file fails half-way (EFBIG), as it would on a full disk.
_FAILING_WRITE = """
import json, resource, signal, sys
from pathlib import Path
from audiobook.settings import Settings, save_settings
path = Path(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
try:
    save_settings(Settings().updated(batch_size=17), path)
except Exception as e:
    print("failed:", type(e).__name__, e)
else:
    print("saved")
"""


def test_a_write_that_fails_half_way_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "user_settings.json"
    save_settings(Settings().updated(batch_size=3), path)
    before = path.read_bytes()
    assert len(before) > 64  # larger than the child's limit: its write must stop part-way
    done = subprocess.run([sys.executable, "-c", _FAILING_WRITE, str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("failed:"), done.stdout + done.stderr
    assert path.read_bytes() == before
    assert load_settings(path).batch_size == 3
    assert [p.name for p in tmp_path.iterdir()] == ["user_settings.json"]  # the half-written temp file is gone
