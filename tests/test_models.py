"""Checkpoint status and the real download path: huggingface_hub over HTTP against a local hub."""

import time

import pytest

from audiobook import models
from audiobook.errors import AudiobookError
from tests.hub_server import LocalHub

NAME = "Qwen3-TTS-12Hz-0.6B-CustomVoice"
REPO = f"Qwen/{NAME}"
WEIGHTS = "model.safetensors"


@pytest.fixture()
def hub(tiny_models_dir, monkeypatch):
    """A local hub serving the tiny 0.6B CustomVoice checkpoint; HF_ENDPOINT points at it."""
    from huggingface_hub import constants

    # Real weights are gigabytes, written in 10 MB pieces; these are a few MB, so write smaller pieces.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    server = LocalHub()
    server.add_folder(REPO, tiny_models_dir / NAME)
    server.start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.stop()


def _size(models_dir):
    return (models_dir / NAME / WEIGHTS).stat().st_size


def _cdn(models_dir):
    import hashlib

    return "/cdn/" + hashlib.sha256((models_dir / NAME / WEIGHTS).read_bytes()).hexdigest()


def _offset(range_header):
    assert range_header.startswith("bytes=") and range_header.endswith("-"), range_header
    return int(range_header[6:-1])


def _same_files(a, b):
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file() and ".cache" not in p.parts)
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_status_of_a_models_folder(tiny_models_dir, tmp_path):
    listed = {c.name: c for c in models.list_checkpoints(tiny_models_dir)}
    assert set(listed) == {name for name, _ in models.TTS_CHECKPOINTS}
    assert all(c.present and c.bytes > 100_000 for c in listed.values())
    assert listed[NAME].path == str(tiny_models_dir / NAME)
    empty = models.checkpoint(NAME, tmp_path)
    assert not empty.present and not empty.partial and empty.bytes == 0
    with pytest.raises(models.MissingCheckpoint, match=f"models --download {NAME}"):
        models.require(NAME, tmp_path)
    with pytest.raises(AudiobookError, match="no checkpoint called"):
        models.checkpoint("Qwen3-TTS-12Hz-9B-Base", tmp_path)


def test_download_resumes_a_broken_connection_and_reaches_100_percent(hub, tiny_models_dir, tmp_path):
    hub.break_file(REPO, WEIGHTS, times=1, at=0.4)
    seen = []
    got = models.download(NAME, tmp_path / "models", on_progress=seen.append)
    assert got.present and got.path == str(tmp_path / "models" / NAME)
    _same_files(tiny_models_dir / NAME, tmp_path / "models" / NAME)
    # The first request for the weights broke after 40 %; the next asked for the rest only.
    ranges = hub.ranges(_cdn(tiny_models_dir))
    assert len(ranges) == 2 and ranges[0] == "", ranges
    assert 0 < _offset(ranges[1]) <= int(_size(tiny_models_dir) * 0.4)
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions), "progress went backwards"
    assert any(0 < f < 1 for f in fractions)
    assert seen[-1].finished and seen[-1].fraction == 1.0 and seen[-1].done_bytes == seen[-1].total_bytes
    assert seen[-1].total_bytes == sum(p.stat().st_size for p in (tiny_models_dir / NAME).rglob("*") if p.is_file())
    assert "100 %" in seen[-1].describe()


def test_a_failed_download_resumes_at_the_next_attempt(hub, tiny_models_dir, tmp_path):
    hub.break_file(REPO, WEIGHTS, times=models.FILE_ATTEMPTS, at=0.3)
    with pytest.raises(AudiobookError, match="download it again to resume"):
        models.download(NAME, tmp_path)
    partial = models.checkpoint(NAME, tmp_path)
    assert not partial.present and partial.partial and partial.bytes > 0
    before = len(hub.ranges(_cdn(tiny_models_dir)))
    models.download(NAME, tmp_path)  # the server is healthy again
    again = hub.ranges(_cdn(tiny_models_dir))[before:]
    assert len(again) == 1 and 0 < _offset(again[0]) <= int(_size(tiny_models_dir) * 0.3), again
    assert models.checkpoint(NAME, tmp_path).present
    _same_files(tiny_models_dir / NAME, tmp_path / NAME)


def test_download_into_the_hugging_face_cache(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    assert not models.checkpoint(NAME).present
    got = models.download(NAME)
    assert got.present and str(tmp_path / "hf") in got.path
    assert models.checkpoint(NAME).present


def test_offline_is_one_sentence(tmp_path, monkeypatch):
    """No hub: one sentence and nothing half-written (how long it takes to give up: bench/timings.py)."""
    import socket

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(AudiobookError, match="Could not reach the model hub"):
        models.download(NAME, tmp_path)
    assert not (tmp_path / NAME).exists() or not models.checkpoint(NAME, tmp_path).present


def test_unknown_repository(hub, tmp_path):
    hub.repos.pop(REPO)
    with pytest.raises(AudiobookError, match="no checkpoint Qwen/"):
        models.download(NAME, tmp_path)


def test_background_download_for_the_page(hub, tiny_models_dir, tmp_path):
    import backend

    b = backend.Backend(root=tmp_path, models_dir=str(tmp_path / "models"))
    assert not {c.name: c for c in b.checkpoints()}[NAME].present
    hub.break_file(REPO, WEIGHTS, times=1, at=0.5)
    state = b.start_download(NAME)
    assert state.running and state.name == NAME
    with pytest.raises(AudiobookError, match="is downloading"):
        b.start_download(NAME)
    deadline = time.monotonic() + 120
    while b.download_state().running and time.monotonic() < deadline:
        time.sleep(0.1)
    state = b.download_state()
    assert state.done and not state.error, state.error
    assert state.progress.fraction == 1.0 and state.describe().startswith(f"Downloaded {NAME}: 100 %")
    assert {c.name: c for c in b.checkpoints()}[NAME].present
    # The downloaded checkpoint is what the app loads.
    b.apply_settings(b.settings.updated(model_size="0.6B", device="cpu"))
    assert b.tts.model("preset") is not None
    assert b.tts.loaded.source == str(tmp_path / "models" / NAME)


def test_whisper_is_listed_when_takes_are_checked(tiny_models_dir, tmp_path):
    import backend

    (tmp_path / "user_settings.json").write_text('{"verify": "on", "device": "cpu"}')
    b = backend.Backend(root=tmp_path, models_dir=str(tiny_models_dir))
    listed = {c.name: c for c in b.checkpoints()}
    # The tiny models folder holds a tiny Whisper under the CPU model's name.
    assert listed["whisper-small"].repo_id == "openai/whisper-small" and listed["whisper-small"].present
    assert listed["whisper-small"].path == str(tiny_models_dir / "whisper-small")
    assert "check every take" in listed["whisper-small"].purpose
    b.apply_settings(b.settings.updated(verify="off"))
    assert "whisper-small" not in {c.name for c in b.checkpoints()}


def test_only_loadable_weights_are_fetched(hub, tmp_path):
    """A hub folder with the same weights in other formats: only safetensors and the configs come down."""
    hub.repos["openai/whisper-small"] = {"config.json": b"{}", "model.safetensors": b"x" * 1000,
                                         "pytorch_model.bin": b"y" * 1000, "tf_model.h5": b"z" * 1000,
                                         "tokenizer.json": b"{}"}
    got = models.download("whisper-small", tmp_path)
    assert got.present
    assert sorted(p.name for p in (tmp_path / "whisper-small").iterdir() if p.is_file()) == [
        "config.json", "model.safetensors", "tokenizer.json"]


def test_models_command_lists_and_downloads(hub, tmp_path, capsys):
    import backend

    models_dir = tmp_path / "models"
    assert backend.main(["models", "--models-dir", str(models_dir)]) == 0
    listed = capsys.readouterr().out
    assert f"{NAME}\tnot downloaded" in listed and "Qwen3-TTS-12Hz-1.7B-VoiceDesign" in listed
    assert backend.main(["models", "--models-dir", str(models_dir), "--download", NAME]) == 0
    assert f"Downloaded {NAME} to {models_dir / NAME}" in capsys.readouterr().out
    assert backend.main(["models", "--models-dir", str(models_dir)]) == 0
    assert f"{NAME}\ton disk" in capsys.readouterr().out
    assert backend.main(["models", "--download", "Qwen3-TTS-12Hz-9B-Base"]) == 2
    assert "no checkpoint called" in capsys.readouterr().err
