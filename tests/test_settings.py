"""Settings: defaults, validation with clear errors, atomic save, never silently overwritten."""

import json

import pytest

from audiobook.errors import AudiobookError
from audiobook.settings import Settings, load_settings, save_settings


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
        ("batch_size", 0, "between 1 and 20"),
        ("batch_size", 21, "between 1 and 20"),
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


def test_save_is_atomic_and_refuses_invalid(tmp_path):
    path = tmp_path / "user_settings.json"
    save_settings(Settings(), path)
    before = path.read_text()
    bad = Settings()
    bad.batch_size = 50
    with pytest.raises(AudiobookError):
        save_settings(bad, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["user_settings.json"]  # no temp files left
