"""Tests for audiobook/audio.py, built from synthetic tones of known length."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from mutagen.mp4 import MP4

from audiobook.audio import (
    SAMPLE_RATE,
    TRIM_MARGIN_MS,
    Pauses,
    assemble_book,
    assemble_chapter,
    chapter_filename,
    trim_silence,
    write_wav,
)
from audiobook.books import Book, Chapter
from audiobook.files import ffmpeg_exe, safe_filename
from audiobook.loudness import LoudnessMeter
from audiobook.errors import AudiobookError
from audiobook.settings import Settings
from audiobook.text import Chunk

SR = SAMPLE_RATE
MARGIN = TRIM_MARGIN_MS / 1000
PAD = 0.3  # silence around every synthetic chunk, longer than the trim margin


def tone(seconds: float, amp: float = 0.2, freq: float = 220.0, pad: float = PAD) -> np.ndarray:
    """A warbling tone (speech-like loudness) with ``pad`` seconds of silence on each side."""
    t = np.arange(int(round(seconds * SR))) / SR
    body = amp * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    z = np.zeros(int(round(pad * SR)))
    return np.concatenate([z, body, z]).astype(np.float32)


def make_chapter(tmp: Path, ci: int, lengths: list[float], amp: float = 0.2, para_after: set[int] = frozenset()):
    """Chunks (a title first) and their wav files for chapter index ``ci``."""
    chunks, paths = [], []
    for i, seconds in enumerate(lengths):
        chunk = Chunk(ci, i, f"Chunk {i} of chapter {ci + 1}.", is_title=i == 0,
                      paragraph_end=i in para_after, chapter_end=i == len(lengths) - 1)
        path = tmp / "chunks" / f"{ci}-{i}.wav"
        write_wav(path, tone(seconds, amp=amp, freq=200 + 40 * i))
        chunks.append(chunk)
        paths.append(path)
    return chunks, paths


def png_bytes() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def decode(path: Path) -> np.ndarray:
    """Any audio file as mono float32 at SR, through ffmpeg."""
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(SR), "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype="<f4")


def onsets(wav: np.ndarray, threshold: float = 0.01) -> list[float]:
    """Start times (s) of sounds that follow at least 100 ms of silence."""
    loud = np.abs(wav) > threshold
    idx = np.flatnonzero(loud)
    if len(idx) == 0:
        return []
    starts = [idx[0]] + [b for a, b in zip(idx, idx[1:]) if b - a > SR // 10]
    return [s / SR for s in starts]


def read_srt(path: Path) -> list[tuple[float, float, str]]:
    def secs(t: str) -> float:
        h, m, rest = t.split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    cues = []
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        lines = block.splitlines()
        start, end = lines[1].split(" --> ")
        cues.append((secs(start), secs(end), " ".join(lines[2:])))
    return cues


@pytest.fixture
def settings() -> Settings:
    return Settings()


# ---- trimming and joining --------------------------------------------------------------


def test_trim_keeps_a_small_margin():
    wav, head, tail = trim_silence(tone(1.0, pad=0.5))
    assert head == tail == round(MARGIN * SR)
    assert abs(len(wav) / SR - (1.0 + 2 * MARGIN)) < 0.002


def test_trim_of_silence_and_of_speech_without_silence():
    wav, head, tail = trim_silence(np.zeros(SR, dtype=np.float32))
    assert len(wav) == head + tail and len(wav) <= 2 * round(MARGIN * SR)
    wav, head, tail = trim_silence(tone(1.0, pad=0.0))
    assert head <= 2 and abs(len(wav) / SR - 1.0) < 0.002  # sin(0) is silent


def test_chapter_duration_is_chunks_plus_pauses_and_cues_match(tmp_path, settings):
    lengths = [1.0, 2.0, 1.5, 0.8]
    chunks, paths = make_chapter(tmp_path, 0, lengths, para_after={1})
    ca = assemble_chapter(1, "The Start", chunks, paths, tmp_path / "out", settings)
    pauses = Pauses.from_settings(settings)
    pause_s = sum(pauses.after(c) for c in chunks) / 1000
    assert pause_s == (1000 + 600 + 250) / 1000
    expected = MARGIN + sum(lengths) + pause_s + MARGIN
    assert abs(ca.duration - expected) < 0.005
    assert sf.info(str(ca.path)).frames == ca.samples  # the file is exactly what the cues describe

    cues = read_srt(ca.srt_path)
    assert [c[2] for c in cues] == [c.text for c in chunks]
    times = [t for c in cues for t in c[:2]]
    assert times == sorted(times)
    # each cue spans its chunk: the tone starts one margin after the cue and lasts its length
    heard = onsets(decode(ca.path))
    assert len(heard) == len(lengths)
    for (start, end, _), onset, seconds in zip(cues, heard, lengths):
        assert abs(onset - (start + MARGIN)) < 0.01
        assert abs((end - start) - (seconds + 2 * MARGIN)) < 0.01
    # the silence between speech is what the settings say
    for (_, end, _), (start, _, _), chunk in zip(cues, cues[1:], chunks):
        assert abs((start + MARGIN) - (end - MARGIN) - pauses.after(chunk) / 1000) < 0.01


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_chapter_formats_and_safe_names(tmp_path, fmt):
    settings = Settings(chapter_format=fmt)
    chunks, paths = make_chapter(tmp_path, 0, [0.5, 1.0])
    book = Book("B", [Chapter(f"c{i}", "x") for i in range(120)])
    ca = assemble_chapter(7, "Part 1/2: Dawn 🌅", chunks, paths, tmp_path / "out", settings, book=book)
    assert ca.path.name == f"007 - Part 1_2_ Dawn 🌅.{fmt}"
    assert ca.srt_path.name == "007 - Part 1_2_ Dawn 🌅.srt"
    assert abs(len(decode(ca.path)) / SR - ca.duration) < 0.05


def test_safe_filename_edge_cases():
    assert safe_filename("a/b:c") == "a_b_c"
    assert safe_filename("  ..  ") == "untitled"
    assert safe_filename("CON") == "_CON" and safe_filename("CON .txt") == "_CON .txt"
    assert chapter_filename(3, "  ", "wav") == "03 - Chapter 3.wav"
    long = safe_filename("😀" * 100)
    assert len(long.encode("utf-8")) <= 150 and set(long) == {"😀"}


# ---- loudness ---------------------------------------------------------------------------


def test_meter_agrees_with_pyloudnorm():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(SR * 20) * np.repeat(rng.uniform(0.0, 0.3, 40), SR // 2)).astype(np.float32)
    meter = LoudnessMeter(SR)
    for i in range(0, len(x), 7777):  # odd block sizes: the state must carry across blocks
        meter.add(x[i : i + 7777])
    assert abs(meter.integrated() - pyloudnorm.Meter(SR).integrated_loudness(x)) < 0.2


def test_each_chapter_within_1_lu_of_target_under_the_peak_ceiling(tmp_path, settings):
    reference = pyloudnorm.Meter(SR)
    results = []
    for ci, amp in enumerate([0.01, 0.5, 0.02]):
        chunks, paths = make_chapter(tmp_path, ci, [2.0, 3.0, 2.5], amp=amp)
        if ci == 2:  # sharp spikes that only a limiter can keep under the ceiling at the target
            wav, _ = sf.read(str(paths[1]), dtype="float32")
            wav[SR :: SR // 4] = 0.99
            sf.write(str(paths[1]), wav, SR)
        ca = assemble_chapter(ci + 1, f"Ch {ci + 1}", chunks, paths, tmp_path / "out", settings)
        wav, _ = sf.read(str(ca.path), dtype="float64")
        results.append(reference.integrated_loudness(wav))
        assert len(wav) == ca.samples  # the limiter adds no delay
        assert np.max(np.abs(wav)) <= 10 ** (settings.true_peak_db / 20) + 1e-3
        assert ca.limited == (ci == 2)
    for lufs in results:
        assert abs(lufs - settings.loudness_lufs) < 1.0
    assert max(results) - min(results) < 1.0


# ---- bad input ----------------------------------------------------------------------------


def test_missing_chunks_and_empty_chapters(tmp_path, settings):
    chunks, paths = make_chapter(tmp_path, 0, [0.5, 1.0, 1.0])
    paths[1] = None
    with pytest.raises(AudiobookError, match="1 chunk without audio"):
        assemble_chapter(1, "One", chunks, paths, tmp_path / "out", settings)
    ca = assemble_chapter(1, "One", chunks, paths, tmp_path / "out", settings, allow_missing=True)
    assert not ca.complete and ca.missing_chunks == (1,)
    assert len(read_srt(ca.srt_path)) == 2
    with pytest.raises(AudiobookError, match="no audio"):
        assemble_chapter(2, "Empty", [], [], tmp_path / "out", settings)
    with pytest.raises(AudiobookError, match="missing"):
        assemble_chapter(3, "Gone", chunks[:1], [tmp_path / "nope.wav"], tmp_path / "out", settings)


def test_incomplete_chapters_are_left_out_unless_asked(tmp_path, settings):
    book = Book("Gaps", [Chapter("One", "a"), Chapter("Two", "b"), Chapter("Three", "c"), Chapter("Four", "d")])
    audios = []
    for ci in range(3):
        chunks, paths = make_chapter(tmp_path, ci, [0.5, 1.0])
        if ci == 1:
            paths[1] = None
        audios.append(assemble_chapter(ci + 1, book.chapters[ci].title, chunks, paths, tmp_path / "out", settings,
                                       allow_missing=True))
    out = tmp_path / "out"
    # chapter 3 was not assembled by the caller, who says why
    result = assemble_book(book, audios[:2], out, settings, missing={3: "Chunk 2 failed after 3 attempts."})
    assert [m.number for m in result.marks] == [1]
    assert [(m.number, m.title) for m in result.missing] == [(2, "Two"), (3, "Three"), (4, "Four")]
    assert "1 chunk" in result.missing[0].reason
    assert result.missing[1].reason == "Chunk 2 failed after 3 attempts."
    assert result.missing[2].reason  # never rendered: still says so
    assert len(MP4(result.m4b).chapters) == 1

    result = assemble_book(book, audios, out, settings, include_incomplete=True)
    assert [m.number for m in result.marks] == [1, 2, 3]
    assert [m.number for m in result.missing] == [4]
    with pytest.raises(AudiobookError, match="No chapter"):
        assemble_book(book, [], out, settings)


def test_bad_cover_is_a_warning_not_a_crash(tmp_path, settings):
    chunks, paths = make_chapter(tmp_path, 0, [0.5, 1.0])
    book = Book("Coverless", [Chapter("One", "a")], author="A", cover=b"<html>not an image</html>", cover_mime="image/jpeg")
    ca = assemble_chapter(1, "One", chunks, paths, tmp_path / "out", settings)
    result = assemble_book(book, [ca], tmp_path / "out", settings)
    assert result.warnings and "cover" in result.warnings[0]
    assert "covr" not in MP4(result.m4b).tags


def test_gif_cover_is_converted(tmp_path, settings):
    from PIL import Image

    gif = io.BytesIO()
    Image.new("RGB", (16, 16), (255, 0, 0)).save(gif, format="GIF")
    chunks, paths = make_chapter(tmp_path, 0, [0.5])
    book = Book("Gif", [Chapter("One", "a")], cover=gif.getvalue())
    ca = assemble_chapter(1, "One", chunks, paths, tmp_path / "out", settings)
    result = assemble_book(book, [ca], tmp_path / "out", settings)
    assert not result.warnings
    assert bytes(MP4(result.m4b).tags["covr"][0]).startswith(b"\xff\xd8")


# ---- the book -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_m4b_chapters_tags_cover_and_book_srt(tmp_path, fmt):
    settings = Settings(chapter_format=fmt, make_book_mp3=True)
    cover = png_bytes()
    book = Book("Title: With/Slash 📖", [Chapter("Opening", "a"), Chapter("Middle: Part/2", "b"), Chapter("End 🎉", "c")],
                author="Jane Doe", language="en", cover=cover, cover_mime="image/png")
    book.year, book.genre = "1999", "Fiction"  # read when the book knows them
    out = tmp_path / "output" / "book"
    out.mkdir(parents=True)
    (out / "my notes.txt").write_text("mine")
    (out / "old take.wav").write_bytes(b"mine too")
    audios = []
    for ci, lengths in enumerate([[1.0, 2.0, 1.0], [0.7, 3.0], [1.2, 1.0, 1.0, 2.0]]):
        chunks, paths = make_chapter(tmp_path, ci, lengths, para_after={1})
        audios.append(assemble_chapter(ci + 1, book.chapters[ci].title, chunks, paths, out, settings, book=book))
    result = assemble_book(book, audios, out, settings)

    # total = chapters + chapter pauses (the pause is measured between speech, margins included)
    gap = settings.pause_chapter_ms / 1000 - 2 * MARGIN
    assert abs(result.duration - (sum(a.duration for a in audios) + 2 * gap)) < 0.002
    m4b = MP4(result.m4b)
    assert abs(len(decode(result.m4b)) / SR - result.duration) < 0.05

    # chapter marks: right number, right times, and sound starts right after each
    marks = [(c.start, c.title) for c in m4b.chapters]
    assert [t for _, t in marks] == [c.title for c in book.chapters]
    expected = [0.0, audios[0].duration + gap, audios[0].duration + audios[1].duration + 2 * gap]
    for (start, _), want, mark in zip(marks, expected, result.marks):
        assert abs(start - want) < 0.05 and abs(mark.start - want) < 0.002
    heard = decode(result.m4b)
    for start, _ in marks:
        first = onsets(heard[int(start * SR) :])[0]
        assert abs(first - MARGIN) < 0.05

    tags = m4b.tags
    assert tags["©nam"] == [book.title] and tags["©alb"] == [book.title]
    assert tags["©ART"] == ["Jane Doe"] and tags["©day"] == ["1999"] and tags["©gen"] == ["Fiction"]
    assert bytes(tags["covr"][0]) == cover
    assert result.mp3 is not None and result.mp3.stat().st_size > 0
    assert result.m4b.name == "Title_ With_Slash 📖.m4b"

    cues = read_srt(result.srt)
    assert len(cues) == sum(len(a.cues) for a in audios)
    times = [t for c in cues for t in c[:2]]
    assert times == sorted(times)
    offset = {a.number: m.start for a, m in zip(audios, result.marks)}
    book_cues = iter(cues)
    for a in audios:
        for cue in a.cues:
            start, end, _ = next(book_cues)
            assert abs(start - (offset[a.number] + cue.start)) < 0.002
            assert abs(end - (offset[a.number] + cue.end)) < 0.002

    # nothing the user made is touched, nothing of ours is left behind
    assert (out / "my notes.txt").read_text() == "mine" and (out / "old take.wav").read_bytes() == b"mine too"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


# ---- disk full and long books (in a child process, to limit and measure it) ----------------


def run_child(code: str, timeout: float = 900) -> str:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=root, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("step", ["chapter", "book"])
def test_disk_full_mid_write_removes_the_partial_file(tmp_path, step):
    chunks, paths = make_chapter(tmp_path, 0, [5.0, 5.0, 5.0])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    ca = None
    if step == "book":
        ca = assemble_chapter(1, "One", chunks, paths, out, Settings())
    before = sorted(p.name for p in out.iterdir())
    stdout = run_child(f"""
        import pickle, resource, signal
        from pathlib import Path
        from audiobook.audio import assemble_book, assemble_chapter
        from audiobook.books import Book, Chapter
        from audiobook.errors import AudiobookError
        from audiobook.settings import Settings
        from audiobook.text import Chunk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-big write fails with an error, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
        chunks, paths, ca = pickle.loads({__import__("pickle").dumps((chunks, paths, ca))!r})
        try:
            if ca is None:
                assemble_chapter(1, "One", chunks, paths, Path({str(out)!r}), Settings())
            else:
                assemble_book(Book("B", [Chapter("One", "a")]), [ca], Path({str(out)!r}), Settings())
        except AudiobookError as e:
            print("ERROR:", e)
    """)
    assert "ERROR: The disk filled up while writing" in stdout and "partial file was removed" in stdout
    after = sorted(p.name for p in out.iterdir())
    new = set(after) - set(before)
    assert not [n for n in after if n.startswith(".")]
    assert new <= {"B.srt"}  # the subtitles are small enough to fit; no audio file is half-written
    assert (out / "keep.txt").read_text() == "user file"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from /proc (Linux)")
def test_two_hour_book_assembles_in_flat_memory(tmp_path):
    """Two hours of audio (4 chapters of 6 five-minute chunks); peak memory must stay under 500 MB."""
    stdout = run_child(f"""
        import os, threading, time
        import numpy as np
        from pathlib import Path
        from audiobook.audio import SAMPLE_RATE, assemble_book, assemble_chapter, write_wav
        from audiobook.books import Book, Chapter
        from audiobook.settings import Settings
        from audiobook.text import Chunk
        tmp = Path({str(tmp_path)!r})
        import soundfile as sf
        chunk_wav = tmp / "chunk.wav"
        with sf.SoundFile(str(chunk_wav), "w", SAMPLE_RATE, 1, "PCM_16") as fh:  # five minutes, a second at a time
            t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
            for _ in range(300):
                fh.write((0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))

        def hwm_mb(pid):  # the process's own peak resident memory (reset at exec, unlike ru_maxrss)
            try:
                for line in open(f"/proc/{{pid}}/status"):
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
            except OSError:
                pass
            return 0.0

        ffmpeg_peak, running = [0.0], [True]
        def watch_children():  # ffmpeg runs as our child; sample its peak while it lives
            while running[0]:
                for tid in os.listdir(f"/proc/{{os.getpid()}}/task"):
                    try:
                        kids = open(f"/proc/{{os.getpid()}}/task/{{tid}}/children").read().split()
                    except OSError:
                        continue
                    for kid in kids:
                        ffmpeg_peak[0] = max(ffmpeg_peak[0], hwm_mb(kid))
                time.sleep(0.1)
        watcher = threading.Thread(target=watch_children, daemon=True)
        watcher.start()
        base = hwm_mb(os.getpid())
        settings = Settings(chapter_format="wav")
        book = Book("Long", [Chapter(f"Chapter {{i}}", "x") for i in range(1, 5)], author="A")
        start = time.time()
        audios = []
        for ci in range(4):
            chunks = [Chunk(ci, i, f"chunk {{i}}", paragraph_end=True, chapter_end=i == 5) for i in range(6)]
            audios.append(assemble_chapter(ci + 1, book.chapters[ci].title, chunks, [chunk_wav] * 6, tmp / "out", settings, book=book))
        chapters_s = time.time() - start
        result = assemble_book(book, audios, tmp / "out", settings)
        total_s = time.time() - start
        running[0] = False
        watcher.join()
        me, kids = hwm_mb(os.getpid()), ffmpeg_peak[0]
        print(f"duration={{result.duration:.1f}} chapters_s={{chapters_s:.1f}} total_s={{total_s:.1f}} "
              f"baseline_mb={{base:.0f}} peak_mb={{me:.0f}} ffmpeg_peak_mb={{kids:.0f}}")
    """)
    print(stdout)
    values = dict(kv.split("=") for kv in stdout.split())
    assert float(values["duration"]) > 2 * 3600
    assert float(values["peak_mb"]) < 500
    assert 0 < float(values["ffmpeg_peak_mb"]) < 500  # above 0: the watcher did see ffmpeg encode the book
