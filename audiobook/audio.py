"""Joining chunk audio into chapters and books: pauses, loudness normalisation, export (wav, flac, mp3, m4b, srt).

Everything long is streamed: a chapter is joined into a raw temporary file block by block
while its loudness is measured, then ffmpeg applies the gain and encodes it; the book is
piped chapter by chapter into one ffmpeg that writes the m4b (and the optional mp3).
Memory therefore stays flat however long the book is.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import soundfile as sf

from .errors import AudiobookError
from .files import SAMPLE_RATE, atomic_output, atomic_outputs, disk_error, ffmpeg_command, ffmpeg_failure, ffmpeg_write, safe_filename
from .loudness import LoudnessMeter
from .subtitles import Cue, srt_time, write_srt, write_vtt  # noqa: F401  (Cue and srt_time are used through this module)


TRIM_MARGIN_MS = 40  # silence kept before and after the speech of each chunk
TRIM_FLOOR_DB = -60.0  # below this a 10 ms frame is always silence
TRIM_RANGE_DB = 40.0  # ...and so is anything this far below the chunk's loudest frame
FADE_MS = 5  # fade at every join, long enough to hide a click, too short to hear
LIMITER_HEADROOM_DB = 1.0  # the sample-peak limiter sits this far under the true-peak ceiling
AAC_BITRATE = "64k"  # mono speech: transparent enough, about 29 MB per hour
MP3_BITRATE = "64k"
BLOCK_SAMPLES = 1 << 18  # about 11 s at 24 kHz: the unit of streaming work
CHAPTER_FORMATS = {  # format -> (file extension, ffmpeg codec arguments, ffmpeg muxer)
    "wav": ("wav", ["-c:a", "pcm_s16le"], "wav"),
    "flac": ("flac", ["-c:a", "flac"], "flac"),
    "mp3": ("mp3", ["-c:a", "libmp3lame", "-b:a", MP3_BITRATE], "mp3"),
}
_RAW_INPUT = ["-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1"]  # how our temporary audio is stored


# ---- pauses and in-memory joining ----------------------------------------------------


@dataclass(frozen=True)
class Pauses:
    """Silence added after a chunk, in milliseconds, by what follows it."""

    chunk_ms: int = 250
    paragraph_ms: int = 600
    title_ms: int = 1000
    chapter_ms: int = 2000
    speaker_ms: int = 400  # where another speaker of a cast takes over

    @classmethod
    def from_settings(cls, s) -> "Pauses":
        return cls(s.pause_chunk_ms, s.pause_paragraph_ms, s.pause_title_ms, s.pause_chapter_ms, s.pause_speaker_ms)

    def after(self, chunk) -> int:
        """Pause after ``chunk`` inside its chapter (the chapter gap is added between files)."""
        if chunk.chapter_end:
            return 0
        if chunk.is_title:
            return self.title_ms
        pause = self.paragraph_ms if chunk.paragraph_end else self.chunk_ms
        return max(pause, self.speaker_ms) if getattr(chunk, "turn_end", False) else pause


# ---- small files ------------------------------------------------------------------------


def write_wav(path: str | Path, wav: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write a mono 16-bit wav atomically; a failed write leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(path) as tmp:
            sf.write(str(tmp), np.asarray(wav, dtype=np.float32), sr, subtype="PCM_16", format="WAV")
    except (RuntimeError, sf.LibsndfileError) as e:
        raise AudiobookError(f"Could not write {path.name}: {e}.") from None
    return path


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A sound file as mono float32 samples and its sample rate."""
    wav, sr = sf.read(str(path), dtype="float32", always_2d=False)
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    return wav, sr





# ---- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChapterAudio:
    """A chapter written to disk by :func:`assemble_chapter`.

    ``samples`` is its exact length at ``SAMPLE_RATE``; ``lead_s``/``tail_s`` are the silent
    margins at its ends (the book gap is shortened by them); ``missing_chunks`` lists the
    chunk indexes that had no audio (empty for a complete chapter).
    """

    number: int
    title: str
    path: Path
    srt_path: Path
    samples: int
    cues: tuple[Cue, ...]
    lead_s: float
    tail_s: float
    loudness_lufs: float  # as measured before normalisation
    gain_db: float
    limited: bool = False
    missing_chunks: tuple[int, ...] = ()

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def complete(self) -> bool:
        return not self.missing_chunks


@dataclass(frozen=True)
class MissingChapter:
    """A chapter left out of the book, and why, in a sentence for the user."""

    number: int
    title: str
    reason: str


@dataclass(frozen=True)
class ChapterMark:
    """Where a chapter starts and ends inside the book, in seconds."""

    number: int
    title: str
    start: float
    end: float


@dataclass(frozen=True)
class BookAudio:
    """What :func:`assemble_book` wrote: the files (None when not asked for), the chapter marks,
    the chapters left out and any warnings (a cover that could not be used, ...)."""

    m4b: Path | None
    mp3: Path | None
    srt: Path
    duration: float
    marks: tuple[ChapterMark, ...]
    missing: tuple[MissingChapter, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


# ---- chapter assembly ---------------------------------------------------------------------


def chapter_filename(number: int, title: str, ext: str, total: int = 0) -> str:
    """``NN - Title.ext``, zero-padded so that files sort in reading order."""
    width = max(2, len(str(total)))
    return f"{number:0{width}d} - {safe_filename(title.strip() or f'Chapter {number}')}.{ext}"


def assemble_chapter(
    number: int,
    title: str,
    chunks: Sequence,
    chunk_wav_paths: Sequence[str | os.PathLike | None],
    out_dir: str | os.PathLike,
    settings,
    *,
    book=None,
    allow_missing: bool = False,
) -> ChapterAudio:
    """Join one chapter's chunk wavs into ``out_dir/NN - Title.<chapter_format>`` and its ``.srt``.

    ``chunks`` are the chapter's :class:`audiobook.text.Chunk` in reading order and
    ``chunk_wav_paths`` their audio files (``None`` for a chunk without audio, which is an
    error unless ``allow_missing``). Each chunk's leading and trailing silence is trimmed to
    ``TRIM_MARGIN_MS``, the configured pauses go between chunks, joins get short fades, and
    the chapter is normalised to ``settings.loudness_lufs`` under ``settings.true_peak_db``.
    ``book`` (optional) supplies album/artist tags and the number of chapters for padding.
    Returns a :class:`ChapterAudio` with the path, exact length and subtitle cues.
    """
    if len(chunks) != len(chunk_wav_paths):
        raise ValueError("chunks and chunk_wav_paths must have the same length")
    fmt = settings.chapter_format
    if fmt not in CHAPTER_FORMATS:
        raise AudiobookError(f"Chapter format must be one of {', '.join(CHAPTER_FORMATS)}, not {fmt!r}.")
    label = f"Chapter {number} ({title})" if title else f"Chapter {number}"
    missing = tuple(c.index for c, p in zip(chunks, chunk_wav_paths) if p is None)
    if missing and not allow_missing:
        raise AudiobookError(f"{label} has {_plural(len(missing), 'chunk')} without audio, so it was not assembled.")
    if len(missing) == len(chunks):
        raise AudiobookError(f"{label} has no audio to assemble.")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ext, codec, muxer = CHAPTER_FORMATS[fmt]
    total = len(book.chapters) if book is not None else 0
    path = out_dir / chapter_filename(number, title, ext, total)
    pauses = Pauses.from_settings(settings)
    meter = LoudnessMeter(SAMPLE_RATE)

    fd, raw_name = tempfile.mkstemp(prefix=".assembling-", suffix=".f32", dir=out_dir)
    raw = Path(raw_name)
    limited_raw = raw.with_name(raw.name + ".limited")
    try:
        with os.fdopen(fd, "wb") as fh:
            cues, written, lead, tail = _join_to_raw(fh, meter, chunks, chunk_wav_paths, pauses, number)
        loudness = meter.integrated()
        gain = settings.loudness_lufs - loudness if np.isfinite(loudness) else 0.0
        limited = meter.true_peak_db() + gain > settings.true_peak_db
        source, filters = raw, [f"volume={gain:.4f}dB"]
        if limited:
            gain = _limit_to_raw(raw, limited_raw, gain, settings, path.name)
            source, filters = limited_raw, ["anull"]
        tags = {"title": title, "track": f"{number}/{total}" if total else str(number)}
        if book is not None:
            tags.update(album=book.title, artist=book.author)
        with atomic_output(path) as tmp:
            ffmpeg_write(
                [*_RAW_INPUT, "-i", str(source), "-af", ",".join(filters), *codec, *_metadata_args(tags), "-f", muxer, str(tmp)],
                path.name,
            )
    except OSError as e:
        raise disk_error(path, e) from None
    finally:
        raw.unlink(missing_ok=True)
        limited_raw.unlink(missing_ok=True)

    srt_path = write_srt(path.with_suffix(".srt"), cues)
    return ChapterAudio(
        number=number, title=title, path=path, srt_path=srt_path, samples=written, cues=tuple(cues),
        lead_s=lead / SAMPLE_RATE, tail_s=tail / SAMPLE_RATE, loudness_lufs=float(loudness),
        gain_db=float(gain), limited=bool(limited), missing_chunks=missing,
    )


def _limit_to_raw(raw: Path, out: Path, gain: float, settings, name: str, tries: int = 3) -> float:
    """Apply ``gain`` and a peak limiter from ``raw`` into ``out``; returns the gain finally used.

    Limiting takes some loudness away, so the result is measured and the gain raised until
    the chapter is within 0.3 LU of the target (the limiter keeps the peaks down meanwhile).
    """
    limit = 10 ** ((settings.true_peak_db - LIMITER_HEADROOM_DB) / 20)
    for _ in range(tries):
        # latency=1 keeps the output sample-aligned with the input, so cues stay true
        limiter = f"volume={gain:.4f}dB,alimiter=limit={limit:.6f}:attack=5:release=50:level=0:latency=1"
        ffmpeg_write([*_RAW_INPUT, "-i", str(raw), "-af", limiter, "-f", "f32le", str(out)], name)
        meter = LoudnessMeter(SAMPLE_RATE)
        with open(out, "rb") as fh:
            while data := fh.read(4 * BLOCK_SAMPLES):
                meter.add(np.frombuffer(data, dtype="<f4"))
        miss = settings.loudness_lufs - meter.integrated()
        if not np.isfinite(miss) or abs(miss) < 0.3:
            break
        gain += miss
    return gain


def _join_to_raw(fh, meter, chunks, paths, pauses: Pauses, number: int):
    """Stream trimmed chunks and pauses into ``fh`` as float32; returns cues, samples, lead, tail."""
    cues: list[Cue] = []
    written = 0
    pending_pause = 0  # samples of pause owed before the next chunk with audio
    prev_tail = 0
    lead = 0
    for chunk, p in zip(chunks, paths):
        if p is None:
            # a skipped chunk still ends where its pause says: keep the longer pause
            pending_pause = max(pending_pause, _samples(pauses.after(chunk)))
            continue
        wav, head, tail_margin = trim_silence(_load_chunk(Path(p), number, chunk.index))
        _fade_edges(wav)
        if written:
            # the margins already are silence: the pause is the gap between speech
            gap = max(0, pending_pause - prev_tail - head)
            written += _write_block(fh, meter, np.zeros(gap, dtype=np.float32))
        else:
            lead = head
        start = written
        written += _write_block(fh, meter, wav)
        cues.append(Cue(start / SAMPLE_RATE, written / SAMPLE_RATE, chunk.text))
        pending_pause = _samples(pauses.after(chunk))
        prev_tail = tail_margin
    return cues, written, lead, prev_tail


def _write_block(fh, meter: "LoudnessMeter", wav: np.ndarray) -> int:
    for i in range(0, len(wav), BLOCK_SAMPLES):
        block = wav[i : i + BLOCK_SAMPLES]
        meter.add(block)
        fh.write(block.astype("<f4", copy=False).tobytes())
    return len(wav)


def _load_chunk(path: Path, number: int, index: int) -> np.ndarray:
    """A chunk's audio as mono float32 at ``SAMPLE_RATE``."""
    if not path.is_file():
        raise AudiobookError(f"The audio of chunk {index + 1} in chapter {number} is missing ({path.name}); render the chapter again.")
    try:
        wav, sr = read_wav(path)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise AudiobookError(f"The audio of chunk {index + 1} in chapter {number} cannot be read ({path.name}: {e}).") from None
    if sr != SAMPLE_RATE:
        from scipy.signal import resample_poly  # here, not at the top: scipy.signal costs a second to import

        g = np.gcd(int(sr), SAMPLE_RATE)
        wav = resample_poly(wav, SAMPLE_RATE // g, int(sr) // g).astype(np.float32)
    return np.ascontiguousarray(wav, dtype=np.float32)


def trim_silence(wav: np.ndarray, margin_ms: int = TRIM_MARGIN_MS, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, int, int]:
    """Cut leading and trailing silence down to ``margin_ms``; returns (audio, lead, tail) in samples.

    A 10 ms frame is silence when it is below ``TRIM_FLOOR_DB`` or ``TRIM_RANGE_DB`` under the
    loudest frame; the cut is then refined to the first and last loud sample. An all-silent
    chunk becomes two margins of silence.
    """
    lo, hi, head, tail = trim_range(wav, margin_ms, sr)
    if hi <= lo and len(wav):
        keep = head + tail
        return np.zeros(keep, dtype=np.float32), head, tail
    return wav[lo:hi].copy(), head, tail


def trim_range(wav: np.ndarray, margin_ms: int = TRIM_MARGIN_MS, sr: int = SAMPLE_RATE) -> tuple[int, int, int, int]:
    """Where :func:`trim_silence` cuts: ``(first kept sample, end, lead, tail)``; an all-silent
    chunk gives an empty range and the lead and tail of the silence that replaces it."""
    margin = _samples(margin_ms, sr)
    frame = max(1, sr // 100)
    n = len(wav)
    if n == 0:
        return 0, 0, 0, 0
    whole = n // frame * frame
    # frame energies in float32 on a view: a five-minute chunk costs one extra copy, not four
    energy = np.square(wav[:whole]).reshape(-1, frame).mean(axis=1)
    if whole < n:
        energy = np.append(energy, np.mean(np.square(wav[whole:])))
    level = 10 * np.log10(np.maximum(energy.astype(np.float64), 1e-24))
    threshold_db = max(TRIM_FLOOR_DB, float(level.max()) - TRIM_RANGE_DB)
    loud = np.flatnonzero(level > threshold_db)
    if len(loud) == 0:
        keep = min(n, 2 * margin)
        return 0, 0, keep // 2, keep - keep // 2
    amp = 10 ** (threshold_db / 20)
    first, last = loud[0] * frame, min(n, (loud[-1] + 1) * frame)
    over = np.flatnonzero(np.abs(wav[first : min(n, first + frame)]) >= amp)
    start = first + (int(over[0]) if len(over) else 0)
    over = np.flatnonzero(np.abs(wav[max(0, last - frame) : last]) >= amp)
    end = max(0, last - frame) + (int(over[-1]) + 1 if len(over) else frame)
    end = max(end, start + 1)
    head, tail = min(margin, start), min(margin, n - end)
    return start - head, end + tail, head, tail


def _fade_edges(wav: np.ndarray, ms: int = FADE_MS) -> None:
    """Short linear fades in place, so joins never click."""
    k = min(_samples(ms), len(wav) // 2)
    if k <= 0:
        return
    ramp = np.linspace(0.0, 1.0, k, endpoint=False, dtype=np.float32)
    wav[:k] *= ramp
    wav[-k:] *= ramp[::-1]


# ---- book assembly --------------------------------------------------------------------------


def assemble_book(
    book,
    chapter_audios: Sequence[ChapterAudio],
    out_dir: str | os.PathLike,
    settings,
    missing: Mapping[int, str] | None = None,
    *,
    include_incomplete: bool = False,
    progress: Callable[[float], None] | None = None,
    chapter_cues: Mapping[int, Sequence[Cue]] | None = None,
) -> BookAudio:
    """Write the whole book from its assembled chapters: ``<Title>.m4b``, ``<Title>.srt``, ``<Title>.mp3``.

    ``chapter_audios`` are the chapters that :func:`assemble_chapter` wrote (numbered from 1
    like ``book.chapters``); chapters with chunks missing are left out unless
    ``include_incomplete``. ``missing`` maps chapter numbers the caller could not assemble
    to the reason, in a sentence. The m4b (when ``settings.make_m4b``) is AAC with a chapter
    mark at each chapter start, title/author/year/genre tags and the cover; the mp3 is
    written when ``settings.make_book_mp3``. Chapters are ``settings.pause_chapter_ms`` apart.
    ``progress`` is called with the fraction done. ``chapter_cues`` (chapter number -> cues in
    chapter time, the sentence timings) replace the chunk cues in the book's ``.srt`` and ``.vtt``.
    Returns a :class:`BookAudio`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reasons = dict(missing or {})
    used: list[ChapterAudio] = []
    for ca in sorted(chapter_audios, key=lambda c: c.number):
        if not ca.complete and not include_incomplete:
            reasons[ca.number] = f"It has {_plural(len(ca.missing_chunks), 'chunk')} without audio."
        elif ca.number in {u.number for u in used}:
            continue
        else:
            reasons.pop(ca.number, None)
            used.append(ca)
    have = {c.number for c in used}
    titles = {i: ch.title for i, ch in enumerate(book.chapters, 1)}
    left_out = tuple(
        MissingChapter(n, titles.get(n, ""), reasons.get(n, "It has not been rendered yet."))
        for n in sorted(set(titles) | set(reasons)) if n not in have
    )
    if not used:
        raise AudiobookError(f"No chapter of '{book.title}' is ready, so there is no audiobook to write yet.")

    gap_ms = settings.pause_chapter_ms
    gaps = [0] + [max(0, _samples(gap_ms) - _samples(a.tail_s * 1000) - _samples(b.lead_s * 1000)) for a, b in zip(used, used[1:])]
    marks, cues, t = [], [], 0
    for ca, gap in zip(used, gaps):
        t += gap
        if marks:  # the gap belongs to the chapter before it: each mark is where a chapter's audio starts
            marks[-1] = ChapterMark(marks[-1].number, marks[-1].title, marks[-1].start, t / SAMPLE_RATE)
        start = t / SAMPLE_RATE
        own = (chapter_cues or {}).get(ca.number) or ca.cues
        cues += [Cue(start + c.start, start + c.end, c.text) for c in own]
        t += ca.samples
        marks.append(ChapterMark(ca.number, ca.title, start, t / SAMPLE_RATE))
    total = t

    name = safe_filename(book.title)
    srt = write_srt(out_dir / f"{name}.srt", cues)
    if chapter_cues:
        write_vtt(out_dir / f"{name}.vtt", cues)
    warnings: list[str] = []
    outputs: list[tuple[Path, list[str]]] = []
    cover, cover_ext, warning = _usable_cover(getattr(book, "cover", None))
    if warning:
        warnings.append(warning)
    if settings.make_m4b:
        outputs.append((out_dir / f"{name}.m4b", ["-c:a", "aac", "-b:a", AAC_BITRATE, "-metadata", "media_type=2", "-f", "ipod"]))
    if settings.make_book_mp3:
        outputs.append((out_dir / f"{name}.mp3", ["-c:a", "libmp3lame", "-b:a", MP3_BITRATE, "-id3v2_version", "3", "-f", "mp3"]))
    if outputs:
        _encode_book(book, used, gaps, marks, total, outputs, cover, cover_ext, out_dir, progress)
    if progress:
        progress(1.0)
    paths = {p.suffix: p for p, _ in outputs}
    return BookAudio(
        m4b=paths.get(".m4b"), mp3=paths.get(".mp3"), srt=srt, duration=total / SAMPLE_RATE,
        marks=tuple(marks), missing=left_out, warnings=tuple(warnings),
    )


def _encode_book(book, used, gaps, marks, total, outputs, cover, cover_ext, out_dir: Path, progress) -> None:
    """Pipe every chapter, with its gap, into one ffmpeg that writes all book outputs."""
    tags = {
        "title": book.title, "album": book.title, "artist": getattr(book, "author", ""),
        "album_artist": getattr(book, "author", ""), "date": str(getattr(book, "year", "") or ""),
        "genre": getattr(book, "genre", "") or "Audiobook", "language": getattr(book, "language", ""),
    }
    with tempfile.TemporaryDirectory(prefix=".assembling-", dir=out_dir) as work:
        work = Path(work)
        meta = work / "chapters.txt"
        meta.write_text(_ffmetadata(tags, marks), encoding="utf-8")
        inputs = [*_RAW_INPUT, "-i", "pipe:0", "-f", "ffmetadata", "-i", str(meta)]
        if cover is not None:
            cover_path = work / f"cover.{cover_ext}"
            cover_path.write_bytes(cover)
            inputs += ["-i", str(cover_path)]
        with atomic_outputs([p for p, _ in outputs]) as tmps:
            args = list(inputs)
            for tmp, (_, codec) in zip(tmps, outputs):
                args += ["-map", "0:a", "-map_metadata", "1", "-map_chapters", "1"]
                if cover is not None:
                    args += ["-map", "2:v", "-c:v", "copy", "-disposition:v:0", "attached_pic"]
                args += [*codec, str(tmp)]
            _pipe_chapters(args, used, gaps, total, outputs[0][0].name, progress)


def _pipe_chapters(args: list[str], used, gaps, total: int, name: str, progress) -> None:
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty ffmpeg never blocks
        enc = subprocess.Popen(ffmpeg_command(args, reads_stdin=True),
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
        done = 0
        try:
            for ca, gap in zip(used, gaps):
                enc.stdin.write(bytes(4 * gap))
                done += gap
                for data in _decode(ca):
                    enc.stdin.write(data)
                    done += len(data) // 4
                    if progress:
                        progress(min(0.99, done / max(1, total)))
            enc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # ffmpeg stopped reading: its own message says why
        except BaseException:
            enc.kill()
            enc.wait()
            raise
        rc = enc.wait()
        errors.seek(0)
        message = errors.read().decode("utf-8", "replace")
    if rc != 0:
        raise ffmpeg_failure(name, message, rc)


def _decode(ca: ChapterAudio) -> Iterator[bytes]:
    """A chapter file as float32 bytes, exactly ``ca.samples`` long (codec padding removed)."""
    if not ca.path.is_file():
        raise AudiobookError(f"The file of chapter {ca.number} is gone ({ca.path.name}); assemble the chapter again.")
    dec = subprocess.Popen(
        ffmpeg_command(["-i", str(ca.path), "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"]),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    left = 4 * ca.samples
    try:
        while left > 0:
            data = dec.stdout.read(min(left, 1 << 20))
            if not data:
                break
            left -= len(data)
            yield data
    finally:
        dec.stdout.close()
        dec.kill()
        dec.wait()
    if left > 0:
        yield bytes(left)  # a decoder that stops short (mp3 padding): keep the marks aligned


def _ffmetadata(tags: Mapping[str, str], marks: Sequence[ChapterMark]) -> str:
    lines = [";FFMETADATA1"] + [f"{k}={_meta_escape(v)}" for k, v in tags.items() if v]
    for m in marks:
        lines += ["[CHAPTER]", f"TIMEBASE=1/{SAMPLE_RATE}", f"START={round(m.start * SAMPLE_RATE)}",
                  f"END={round(m.end * SAMPLE_RATE)}", f"title={_meta_escape(m.title or f'Chapter {m.number}')}"]
    return "\n".join(lines) + "\n"


def _meta_escape(value: str) -> str:
    value = " ".join(str(value).split())
    for c in "\\=;#":
        value = value.replace(c, "\\" + c)
    return value


def _usable_cover(data: bytes | None) -> tuple[bytes | None, str, str | None]:
    """The cover as JPEG or PNG bytes, or a warning sentence when it is not a readable image."""
    if not data:
        return None, "", None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            img.load()
            kind = img.format
            if kind in ("JPEG", "PNG"):
                return bytes(data), "jpg" if kind == "JPEG" else "png", None
            out = io.BytesIO()
            img.convert("RGB").save(out, format="JPEG", quality=90)
            return out.getvalue(), "jpg", None
    except Exception:  # any decoder error means the same thing to the user
        return None, "", "The book's cover is not an image that can be read, so the audiobook has no cover."


# ---- ffmpeg arguments ----------------------------------------------------------------------


def _metadata_args(tags: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    for k, v in tags.items():
        if v:
            args += ["-metadata", f"{k}={v}"]
    return args


def _samples(ms: float, sr: int = SAMPLE_RATE) -> int:
    return int(round(sr * ms / 1000))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
