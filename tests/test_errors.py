"""No traceback ever reaches a user: every failure below ends in one sentence (with real faults where possible)."""

import errno
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import backend
from audiobook import manifest as mf
from audiobook.books import Book, Chapter
from audiobook.errors import AudiobookError
from audiobook.tts import PRESET, TTS, Narrator

ROOT = Path(backend.__file__).resolve().parent
RYAN = Narrator(kind=PRESET, speaker="ryan")
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def make_book(n_chapters=2, sentences=4, title="Faults"):
    chapters = [Chapter(f"Part {c + 1}", " ".join(f"The {WORDS[c]} part has its {WORDS[i]} line of narration."
                                                  for i in range(sentences))) for c in range(n_chapters)]
    return Book(title, chapters, language="en")


def backend_for(root, models_dir, **kw):
    b = backend.Backend(root=root, settings_path=root / "user_settings.json", models_dir=str(models_dir))
    b.apply_settings(b.settings.updated(**{**dict(device="cpu", max_new_tokens=64, batch_size=2, chunk_chars=60,
                                                  make_m4b=False, duration_outlier_factor=20.0, runaway_margin_s=0.0,
                                                  max_retries=0, engine="qwen_tts"), **kw}))
    return b


def cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "backend.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def last_line(done) -> str:
    return done.stderr.strip().splitlines()[-1]


def assert_one_sentence(done, start: str, code: int = 2):
    assert done.returncode == code, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]
    assert last_line(done).startswith(f"Error: {start}"), done.stderr[-2000:]


def unwritable_folder(tmp_path) -> Path:
    """A folder this process cannot create files in: /sys refuses even root, a read-only folder anyone else."""
    if os.geteuid() == 0:
        return Path("/sys/audiobook-cannot-write-here")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    return folder / "out"


# ---- the command line ------------------------------------------------------------------------


@pytest.fixture
def txt_book(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("Chapter 1\n\nHello there. This is a test.\n")
    return path


def test_cli_missing_reference_clip(txt_book, tmp_path):
    done = cli("render", str(txt_book), "--ref-audio", str(tmp_path / "missing.wav"), "--ref-text", "hi",
               "--models-dir", str(tmp_path))
    assert_one_sentence(done, "The clip missing.wav could not be found.")


def test_cli_output_folder_that_cannot_be_made(txt_book, tiny_models_dir):
    done = cli("render", str(txt_book), "--speaker", "ryan", "--output", "/proc/nope", "--models-dir", str(tiny_models_dir))
    assert_one_sentence(done, "Could not write the audiobook into /proc/nope: a folder on the way does not exist")


@pytest.mark.parametrize("args, sentence", [
    (["--batch-size", "0"], "--batch-size must be between 1 and 64, not 0."),
    (["--batch-size", "65"], "--batch-size must be between 1 and 64, not 65."),
    (["--batch-size", "two"], "--batch-size takes a whole number, not 'two'."),
    (["--redo-chapter", "0"], "--redo-chapter counts from 1, not 0."),
])
def test_cli_out_of_range_values_are_refused(txt_book, args, sentence):
    done = cli("render", str(txt_book), "--speaker", "ryan", *args)
    assert_one_sentence(done, sentence)


def test_cli_book_chunk_chars_out_of_range(txt_book):
    assert_one_sentence(cli("book", str(txt_book), "--chunk-chars", "0"), "--chunk-chars must be between 50 and 2000, not 0.")


def test_cli_without_a_narrator_asks_for_one(txt_book, tiny_models_dir, tmp_path):
    done = cli("render", str(txt_book), "--models-dir", str(tiny_models_dir), "--output", str(tmp_path / "out"))
    assert_one_sentence(done, "Choose who narrates: --voice NAME")
    assert "ryan" in last_line(done) and not (tmp_path / "out").exists()


def test_cli_export_to_a_folder_that_cannot_be_written(tmp_path, tiny_models_dir):
    from audiobook.voices import Voice, VoiceLibrary

    VoiceLibrary(tmp_path / "voices").save(Voice(name="Ann", kind="preset", speaker="ryan"))
    b = backend.Backend(root=tmp_path)
    target = unwritable_folder(tmp_path)
    with pytest.raises(AudiobookError, match=r"^Could not export the voice 'Ann' to .*(permission denied|does not exist)"):
        b.export_voice("Ann", target / "ann.zip")


def test_settings_that_cannot_be_saved(tmp_path):
    b = backend.Backend(root=tmp_path, settings_path=unwritable_folder(tmp_path) / "user_settings.json")
    with pytest.raises(AudiobookError, match=r"^Could not save the settings to .*; choose a folder|^Could not save the settings to .*does not exist"):
        b.save_settings(batch_size=4)


def test_cli_unexpected_error_prints_one_sentence_and_a_log(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AUDIOBOOK_LOG_DIR", str(tmp_path / "logs"))

    def broken(self):  # a bug nobody foresaw
        raise KeyError("voice.json")

    monkeypatch.setattr(backend.Backend, "list_voices", broken)
    assert backend.main(["voices"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("Error: An unexpected error (KeyError) stopped this; the details are in ")
    log = Path(err.split("the details are in ")[1].split(";")[0])
    assert log.parent == tmp_path / "logs" and "Traceback" in log.read_text() and "voice.json" in log.read_text()
    assert backend.main(["-v", "voices"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


# ---- loading a model -------------------------------------------------------------------------


def test_truncated_checkpoint_is_a_sentence(tmp_path, tiny_models_dir):
    name = "Qwen3-TTS-12Hz-1.7B-CustomVoice"
    shutil.copytree(tiny_models_dir / name, tmp_path / "models" / name)
    weights = tmp_path / "models" / name / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    be = backend_for(tmp_path, tmp_path / "models")
    with pytest.raises(AudiobookError, match=r"^The model folder .* could not be loaded \(.*\); it is incomplete or damaged, so download it "
                                             r"again in the Models panel or with `backend.py models --download "
                                             r"Qwen3-TTS-12Hz-1.7B-CustomVoice`\.$"):
        be.tts.model(PRESET)
    assert be.tts.loaded is None


def test_out_of_memory_while_loading_is_a_sentence(tmp_path, tiny_models_dir, monkeypatch):
    import qwen_tts
    import torch

    def too_big(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.20 GiB")

    monkeypatch.setattr(qwen_tts.Qwen3TTSModel, "from_pretrained", too_big)
    be = backend_for(tmp_path, tiny_models_dir)
    with pytest.raises(AudiobookError, match="^There is not enough memory to load the model Qwen3-TTS-12Hz-1.7B-CustomVoice"):
        be.tts.model(PRESET)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


class SilentHub:
    """A hub address that accepts connections and never answers: a network that hangs. Counts the callers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # held open, never answered

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_offline_without_weights_says_so_without_waiting_on_the_network(tmp_path, txt_book):
    # No local weights, and a hub that hangs: the sentence must come without asking the hub at all
    # (the hub client alone would wait and retry for about 50 s).
    hub = SilentHub()
    try:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
        done = cli("render", str(txt_book), "--speaker", "ryan", "--models-dir", str(tmp_path / "none"),
                   "--output", str(tmp_path / "out"), env=env)
        assert_one_sentence(done, "The model Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice is needed")
        assert "backend.py models --download Qwen3-TTS-12Hz-1.7B-CustomVoice" in last_line(done)
        assert hub.accepted == []  # nobody waited on the network
    finally:
        hub.close()


def test_offline_download_is_a_sentence(tmp_path):
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    done = cli("models", "--download", "Qwen3-TTS-12Hz-1.7B-CustomVoice", "--models-dir", str(tmp_path / "none"), env=env)
    assert_one_sentence(done, "Could not reach the model hub to download Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice")


# ---- faults during a render ------------------------------------------------------------------


def test_disk_full_at_the_nth_write_stops_with_a_sentence_and_resumes(tmp_path, tiny_models_dir, monkeypatch):
    be = backend_for(tmp_path, tiny_models_dir, engine="auto")  # any engine: the fault is in the writing
    real_fsync, calls = os.fsync, []

    def fsync(fd):  # the third chunk written finds the disk full
        if "/chunks/" in os.readlink(f"/proc/self/fd/{fd}"):
            calls.append(fd)
            if len(calls) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "out"
    with pytest.raises(AudiobookError, match=r"^The disk filled up while writing \S+; the partial file was removed, "
                                             r"so free some space and try again\.$"):
        be.render(make_book(), RYAN, out_dir=out)
    monkeypatch.setattr(os, "fsync", real_fsync)
    before = mf.load_manifest(out)  # the record on disk is whole (atomic writes)
    assert before is not None and 0 < before.count(*mf.KEPT) < len(before.chunks)
    result = be.render(make_book(), RYAN, out_dir=out)
    assert result.complete and result.reused >= before.count(*mf.KEPT)


def test_unwritable_output_folder_is_a_sentence(tmp_path, tiny_models_dir):
    be = backend_for(tmp_path, tiny_models_dir)
    with pytest.raises(AudiobookError, match=r"^Could not write the audiobook into .*: (permission denied|a folder on the way)"):
        be.render(make_book(), RYAN, out_dir=unwritable_folder(tmp_path))


def test_damaged_render_record_is_a_sentence(tmp_path, tiny_models_dir):
    be = backend_for(tmp_path, tiny_models_dir)
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text('{"format": "audiobook-manifest", "version": 1, "chunks": {')  # cut off
    with pytest.raises(AudiobookError, match="^The render record .* is damaged .*render again with 'rebuild'"):
        be.render(make_book(), RYAN, out_dir=out)


def failing_model(be, fail_calls):
    """Make the loaded qwen_tts model itself raise on the given calls (1-based), like a CUDA assert would."""
    model = be.tts.model(PRESET)
    real, count = model.generate_custom_voice, [0]

    def generate(*a, **k):
        count[0] += 1
        if count[0] in fail_calls:
            raise RuntimeError("CUDA error: device-side assert triggered")
        return real(*a, **k)

    model.generate_custom_voice = generate
    return count


def test_model_error_marks_the_batch_failed_and_the_render_goes_on(tmp_path, tiny_models_dir):
    be = backend_for(tmp_path, tiny_models_dir)
    failing_model(be, {2})
    out = tmp_path / "out"
    result = be.render(make_book(), RYAN, out_dir=out)
    m = mf.load_manifest(out)
    failed = [s for s in m.chunks.values() if s.status == mf.FAILED]
    assert len(failed) == 2 and m.count(*mf.KEPT) == len(m.chunks) - 2  # one batch of two failed, the rest rendered
    assert all(s.error == "model error: RuntimeError: CUDA error: device-side assert triggered" for s in failed)
    assert len(result.failed) == 2 and not result.complete
    assert any("The model failed on a whole batch" in line for line in result.log)


def test_model_failing_batch_after_batch_stops_with_a_sentence(tmp_path, tiny_models_dir):
    be = backend_for(tmp_path, tiny_models_dir)
    count = failing_model(be, set(range(1, 100)))
    out = tmp_path / "out"
    with pytest.raises(AudiobookError, match=r"^The model failed on 3 batches in a row \(model error: RuntimeError: "
                                             r"CUDA error: device-side assert triggered\), so the render stopped"):
        be.render(make_book(), RYAN, out_dir=out)
    assert count[0] == 3
    assert mf.load_manifest(out).count(mf.FAILED) == 6  # the record says what failed and why


def test_background_render_error_reaches_the_page_as_the_sentence(tmp_path, tiny_models_dir):
    be = backend_for(tmp_path, tiny_models_dir)
    failing_model(be, set(range(1, 100)))
    be.start_render(make_book(), RYAN, out_dir=tmp_path / "out")
    state = be.wait_render(300)
    assert not state.running and state.error.startswith("The model failed on 3 batches in a row")


def test_background_render_unexpected_error_is_one_sentence_with_a_log(tmp_path, tiny_models_dir, monkeypatch):
    from audiobook import audio

    monkeypatch.setenv("AUDIOBOOK_LOG_DIR", str(tmp_path / "logs"))

    def broken(*a, **k):  # a bug nobody foresaw, in the middle of a render
        raise KeyError("cues")

    monkeypatch.setattr(audio, "assemble_chapter", broken)
    be = backend_for(tmp_path, tiny_models_dir)
    be.start_render(make_book(n_chapters=1, sentences=1), RYAN, out_dir=tmp_path / "out")
    state = be.wait_render(300)
    assert state.error.startswith("An unexpected error (KeyError) stopped this; the details are in ")
    log = Path(state.error.split("the details are in ")[1].split(";")[0])
    assert log.parent == tmp_path / "logs" and "KeyError: 'cues'" in log.read_text()
    assert not be.tts.lock.held_by_other()  # the lock went back with the failed render


# ---- books -----------------------------------------------------------------------------------


def test_epub_with_an_empty_chapter_file_reads_the_rest(tmp_path):
    import zipfile

    from audiobook.books import load_book
    from tests.test_books import make_epub

    made = make_epub(tmp_path / "made.epub", [("One", "<p>Hello there, this is text.</p>"), ("Two", "<p>More text.</p>")])
    broken = tmp_path / "empty-part.epub"
    with zipfile.ZipFile(made) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():  # the second chapter's file is there but empty
            dst.writestr(info, b"" if info.filename.endswith("ch1.xhtml") else src.read(info.filename))
    book = load_book(broken)
    assert [c.title for c in book.chapters] == ["One"] and "Hello there" in book.chapters[0].text


def test_pdf_encrypted_with_aes_is_a_sentence(tmp_path):
    import importlib.util

    from pypdf import PdfWriter
    from pypdf.generic import DictionaryObject, NameObject, NumberObject

    from audiobook.books import load_book
    from tests.test_books import fake_chapter_lines, make_pdf

    plain = make_pdf(tmp_path / "plain.pdf", [("Chapter One", fake_chapter_lines(5, "alpha"))])
    w = PdfWriter(clone_from=str(plain))
    w.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")  # opens without a password...
    enc = w._encrypt_entry  # ...but its streams say AES (revision 4), as many "protected" PDFs do
    enc[NameObject("/V")], enc[NameObject("/R")] = NumberObject(4), NumberObject(4)
    enc[NameObject("/CF")] = DictionaryObject({NameObject("/StdCF"): DictionaryObject(
        {NameObject("/CFM"): NameObject("/AESV2"), NameObject("/Length"): NumberObject(16)})})
    enc[NameObject("/StmF")] = enc[NameObject("/StrF")] = NameObject("/StdCF")
    w.write(tmp_path / "aes.pdf")
    if importlib.util.find_spec("cryptography") is None:
        with pytest.raises(AudiobookError, match=r"^aes\.pdf is encrypted in a way that needs another package "
                                                 r"\(cryptography.*\); install it .* or save an unprotected copy"):
            load_book(tmp_path / "aes.pdf")
    else:  # with the package, AES is read; these streams were written with RC4, so they read as damage
        with pytest.raises(AudiobookError, match=r"^aes\.pdf (is damaged|has no text)"):
            load_book(tmp_path / "aes.pdf")
