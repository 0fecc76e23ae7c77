"""The backend's command line and its one door: selftest, render a txt end to end, settings."""

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

import backend
from audiobook.audio import Pauses, read_wav, trim_silence
from audiobook.errors import AudiobookError
from audiobook.manifest import load_manifest
from audiobook.tts import PRESET, Narrator

ROOT = Path(backend.__file__).resolve().parent

TWO_CHAPTERS = """Chapter 1

The first chapter has two short sentences. Here is the second one.

A new paragraph starts here.

Chapter 2

The second chapter is short.
"""


def _run(*args, cwd=ROOT, timeout=600):
    return subprocess.run([sys.executable, "backend.py", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tiny_backend(tmp_path, tiny_models_dir):
    b = backend.Backend(root=tmp_path, models_dir=str(tiny_models_dir))
    b.save_settings(device="cpu", max_new_tokens=200, batch_size=5, do_sample=False)
    return b


def test_selftest_exits_zero():
    done = _run("selftest")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Selftest passed." in done.stdout
    assert "Chapters: 2" in done.stdout and "batches:" in done.stdout


def test_render_two_chapter_txt(tiny_backend, tmp_path):
    book = tmp_path / "two.txt"
    book.write_text(TWO_CHAPTERS)
    speaker = tiny_backend.tts.speakers()[0]
    logged = []
    result = tiny_backend.render(book, Narrator(kind=PRESET, speaker=speaker), on_progress=lambda p: logged.append(p.message))
    assert len(result.chapter_files) == 2
    assert any(m.startswith("Batch (") and "s/chunk)" in m for m in logged)
    for path in result.chapter_files:
        info = sf.info(str(path))
        assert info.samplerate == 24000 and info.frames > 0
    # Every chapter lasts exactly its chunks (each trimmed to its margins of silence) plus the
    # pauses between them, chunk by chunk from the manifest.
    manifest = load_manifest(result.out_dir)
    assert manifest is not None and manifest.count("done") == result.chunks
    pauses = Pauses.from_settings(tiny_backend.settings)
    assert len(manifest.chapters) == len(result.chapter_files)
    for plan, path in zip(manifest.chapters, result.chapter_files):
        expected = pause_s = chunks_s = 0
        tail = None
        for ref in plan.chunks:
            state = manifest.chunks[ref.id]
            wav, _ = read_wav(result.out_dir / state.file)
            chunks_s += state.duration_s
            speech, head, trailing = trim_silence(wav)
            if tail is not None:  # the silence between two takes is the pause, or the margins if longer
                expected += max(0, round(pause * 24000) - tail - head)
                pause_s += pause
            expected += len(speech)
            tail, pause = trailing, pauses.after(ref) / 1000
        frames = sf.info(str(path)).frames
        assert frames == expected, (path.name, frames, expected)
        assert pause_s * 24000 <= frames <= (chunks_s + pause_s) * 24000


def test_cli_render_with_speaker(tmp_path, tiny_models_dir):
    book = tmp_path / "two.txt"
    book.write_text(TWO_CHAPTERS)
    done = _run("render", str(book), "--speaker", "ryan", "--batch-size", "3", "--output", str(tmp_path / "out"),
                "--models-dir", str(tiny_models_dir), cwd=ROOT)
    # Exit 1 means the render finished but listed suspect takes (random tiny weights can make them).
    assert done.returncode == 0 or (done.returncode == 1 and "Suspect" in done.stdout), done.stderr[-2000:]
    wavs = sorted((tmp_path / "out").glob("*.wav"))
    assert [w.name[:2] for w in wavs] == ["01", "02"]


def test_cli_errors_are_sentences(tmp_path):
    done = _run("render", str(tmp_path / "missing.txt"), "--speaker", "ryan", "--models-dir", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("Error: There is no file at")
    assert "Traceback" not in done.stderr and "chunk/s" not in done.stderr


def test_settings_saved_by_backend_survive_a_restart(tmp_path):
    b = backend.Backend(root=tmp_path)
    b.save_settings(batch_size=9)
    assert backend.Backend(root=tmp_path).settings.batch_size == 9
    with pytest.raises(AudiobookError, match="'batch_size'"):
        b.save_settings(batch_size=65)
    assert backend.Backend(root=tmp_path).settings.batch_size == 9
    assert b.reset_settings().batch_size == 5


def test_models_dir_flag_does_not_touch_saved_settings(tmp_path):
    b = backend.Backend(root=tmp_path, models_dir="/elsewhere")
    assert b.settings.models_dir == "/elsewhere"
    b.save_settings(batch_size=7)
    assert '"models_dir": ""' in (tmp_path / "user_settings.json").read_text()
