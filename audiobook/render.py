"""The render loop: pending chunks go to the model in batches; checked takes go to disk; chapters come out.

The manifest (``manifest.py``) says what is done, so a render that is stopped, killed or
crashes continues where it was. Each batch is written to disk before the next starts.
Out of GPU memory, a batch is split in half down to single chunks; a take that ran to
``max_new_tokens`` or whose length does not fit its text is taken again with another seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import audio, timings
from .batching import LENGTH_WINDOW_BATCHES, BatchSizer, order_for_batches
from . import manifest as mf
from .check import TakeCheck, TakeChecker
from .books import Book
from .errors import AudiobookError, os_error_sentence
from .take_length import QualityLimits, SpeakingRate, check_take, take_badness
from .text import Chunk, load_pronunciations, plan_chunks
from .files import SAMPLE_RATE
from .tts import TTS, GenerationOptions, Narrator, is_out_of_memory, release_accelerator_memory
from .voicing import Voicing
from .workers import InProcess

log = logging.getLogger(__name__)

SEED_STEP = 7919  # seed distance between takes of a chunk (any odd step gives fresh samples)
MODEL_ERROR = "model error"  # how a chunk's error starts when the model raised on its batch
MAX_FAILED_BATCHES = 3  # batches in a row whose every chunk hit a model error before the render gives up
BOOK_FILE = "book.json"  # the rendered book, beside its manifest (fixes re-render from it)


# ---- results and progress -------------------------------------------------------------------


@dataclass(frozen=True)
class RenderOptions:
    """What a render should do besides continuing where it was."""

    redo_chunks: tuple[str, ...] = ()  # chunk ids to render again
    redo_chapters: tuple[int, ...] = ()  # chapter numbers (1-based) to render again
    rebuild: bool = False  # ignore (and set aside) the manifest; recover done chunks from their files
    allow_incomplete: bool = False  # assemble chapters even when some of their chunks failed
    chapters: tuple[int, ...] = ()  # render and assemble only these chapters (1-based); () is all
    assemble: bool = True  # False: only render the chunks (the page assembles on Rebuild)


@dataclass
class Progress:
    """One report from a running render (what the progress bar and log show).

    ``chunks_done`` and ``audio_s`` count the whole book, earlier renders included;
    ``new_chunks``/``new_audio_s`` only this render, which the speed and ETA come from.
    """

    chunks_done: int
    chunks_total: int
    audio_s: float = 0.0
    elapsed_s: float = 0.0
    message: str = ""
    new_chunks: int = 0
    new_audio_s: float = 0.0
    batch_size: int = 0
    failed: int = 0
    suspect: int = 0

    @property
    def x_real_time(self) -> float:
        """Seconds of audio made per second of rendering, in this render."""
        return self.new_audio_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at this render's pace; None until one batch has finished."""
        left = self.chunks_total - self.chunks_done - self.failed
        if left <= 0:
            return 0.0
        if not self.new_chunks:
            return None
        return self.elapsed_s / self.new_chunks * left


@dataclass(frozen=True)
class ChunkReport:
    """A chunk the user should hear or fix: where it is, what it says and why it is listed."""

    id: str
    chapter: int  # 1-based
    chapter_title: str
    index: int  # 1-based position in the chapter
    text: str
    status: str
    reason: str


@dataclass
class RenderResult:
    out_dir: Path
    chapter_files: list[Path] = field(default_factory=list)
    book_files: list[Path] = field(default_factory=list)
    chunks: int = 0  # unique chunks in the book
    reused: int = 0  # already done before this render
    generated: int = 0  # kept takes made by this render
    batches: int = 0
    audio_s: float = 0.0  # audio made by this render
    elapsed_s: float = 0.0
    log: list[str] = field(default_factory=list)
    failed: list[ChunkReport] = field(default_factory=list)
    suspect: list[ChunkReport] = field(default_factory=list)
    skipped_chapters: list[str] = field(default_factory=list)  # sentences: chapters not assembled and why
    stopped: bool = False

    @property
    def complete(self) -> bool:
        return not self.stopped and not self.failed and not self.skipped_chapters


@dataclass
class RenderState:
    """A snapshot of the background render for the page: survives a page reload, never blocks.

    ``error`` is the sentence to show when the render ended on an error; ``log`` holds the
    latest lines (the per-batch line among them).
    """

    running: bool = False
    book_title: str = ""
    out_dir: str = ""
    chunks_done: int = 0
    chunks_total: int = 0
    failed_count: int = 0
    suspect_count: int = 0
    audio_s: float = 0.0
    elapsed_s: float = 0.0
    x_real_time: float = 0.0
    eta_s: float | None = None
    batch_size: int = 0
    log: list[str] = field(default_factory=list)
    failed: list[ChunkReport] = field(default_factory=list)
    suspect: list[ChunkReport] = field(default_factory=list)
    skipped_chapters: list[str] = field(default_factory=list)
    chapter_files: list[str] = field(default_factory=list)
    book_files: list[str] = field(default_factory=list)
    stopping: bool = False
    stopped: bool = False
    finished: bool = False  # ended without an error (complete, stopped, or with failed chunks)
    error: str = ""
    workers: list[list] = field(default_factory=list)  # rows of workers.WORKER_COLUMNS (Ray workers only)


def batch_log_line(n: int, seconds: float) -> str:
    """The per-batch log line users know: ``Batch (5 chunks) done in 81.59s (16.32s/chunk)``."""
    return f"Batch ({n} chunk{'s' if n != 1 else ''}) done in {seconds:.2f}s ({seconds / max(n, 1):.2f}s/chunk)"


# ---- the render -----------------------------------------------------------------------------


@dataclass
class _Take:
    wav: np.ndarray
    seed: int
    reason: str
    badness: float
    check: TakeCheck | None = None


def render_events(
    book: Book,
    narrator: Narrator,
    settings,
    out_dir: Path,
    tts: TTS,
    result: RenderResult,
    should_stop: Callable[[], bool] = lambda: False,
    options: RenderOptions = RenderOptions(),
    clone_prompt: Callable[[], object] | None = None,
    executor=None,
    voicing: Voicing | None = None,
) -> Iterator[Progress]:
    """Render ``book`` into ``out_dir``, continuing from its manifest; yield Progress after every batch.

    Fills ``result`` as it goes (the caller keeps a reference). Chapters are assembled as
    soon as all their chunks are kept; the book files at the end of a complete render.
    ``clone_prompt`` returns the (cached) clone prompt of a cloned narrator; it is called
    only when there is something to generate. ``executor`` runs the batches (``workers.py``:
    Ray workers); by default they run here on ``tts``. ``voicing`` gives the voices of a cast
    (the speakers of the chapters' spans); without it every chunk is read by ``narrator``.
    Raises AudiobookError for problems the user can fix (a damaged manifest, no text).
    """
    r = _Render(book, narrator, settings, Path(out_dir), tts, result, should_stop, options)
    r.prompt_source = clone_prompt
    r.executor = executor or InProcess(tts)
    r.voicing = voicing or Voicing(narrator)
    try:
        yield from r.run()
    except OSError as e:  # a full disk, a folder we may not write to: the work done so far is on disk
        log.info("Writing into %s failed", out_dir, exc_info=True)
        raise AudiobookError(os_error_sentence(e, f"write the audiobook into {out_dir}",
                                               "render again to continue where it stopped")) from None


def plan_book(book: Book, narrator: Narrator, settings, out_dir: Path, options: RenderOptions = RenderOptions(),
              voicing: Voicing | None = None) -> mf.Manifest:
    """The manifest a render of ``book`` would start from (no model needed); it is not saved."""
    language = _language(book, settings)
    chunks = plan_chunks(book.chapters, settings.chunk_chars, "en" if language == "auto" else language,
                         pronunciations=pronunciations_from_settings(settings),
                         book_texts=getattr(settings, "verify", "off") != "off")  # what takes are checked against
    if not chunks:
        raise AudiobookError("This book has no text to narrate.")
    opts = GenerationOptions.from_settings(settings)
    key = mf.RenderKey.make(narrator, opts, settings.model_size, language)
    previous = None if options.rebuild else mf.load_manifest(out_dir)
    digest = key.digest()
    voicing = voicing or Voicing(narrator)
    voicing.check(chunks, settings.model_size)
    voice_of = voicing.key_of(lambda v: mf.RenderKey.make(v, opts, settings.model_size, language), digest)
    for n in (*options.redo_chapters, *options.chapters):
        if not 1 <= n <= len(book.chapters):
            raise AudiobookError(f"There is no chapter {n}; this book has chapters 1 to {len(book.chapters)}.")
    redo = set(options.redo_chunks)
    redo |= {mf.chunk_id(c.text, voice_of(c)[0]) for c in chunks if c.chapter + 1 in options.redo_chapters}
    # Everything the book's tags come from, so a changed tag re-writes the m4b.
    meta = {"title": book.title, "author": book.author, "language": book.language, "year": book.year, "genre": book.genre}
    return mf.plan_manifest(meta, [c.title for c in book.chapters], chunks, key, out_dir, previous, redo, voice_of)


def pronunciations_from_settings(settings):
    """The user's pronunciation dictionary, or None when the setting is empty."""
    path = getattr(settings, "pronunciations_file", "")
    return load_pronunciations(Path(path).expanduser()) if path else None


def _language(book: Book, settings) -> str:
    return settings.language if settings.language != "auto" else (book.language or "auto")


class _Render:
    """One render's working state; ``run`` is the loop."""

    def __init__(self, book, narrator, settings, out_dir, tts, result, should_stop, options):
        self.book, self.narrator, self.settings, self.out_dir = book, narrator, settings, out_dir
        self.tts, self.result, self.should_stop, self.options = tts, result, should_stop, options
        self.language = _language(book, settings)
        self.opts = GenerationOptions.from_settings(settings)
        self.limits = QualityLimits.from_settings(settings)
        self.rate = SpeakingRate()
        self.sizer = BatchSizer(settings.batch_size)
        self.prompt = None
        self.prompt_source: Callable[[], object] | None = None
        self.voicing = Voicing(narrator)
        self.start = time.perf_counter()
        self.lines: list[str] = []  # log lines not yet reported in a Progress
        self.checker = TakeChecker.for_render(settings, tts, narrator, self.language, self._log)
        if self.checker is not None:  # a dictionary word may be heard as written or as respelled
            self.checker.respellings = dict(getattr(pronunciations_from_settings(settings), "entries", ()))
        self.model_errors: dict[str, str] = {}  # chunk id -> the model error of its last take, this render
        self.failed_batches = 0  # batches in a row that failed entirely on model errors

    # ---- the loop ------------------------------------------------------------------

    def run(self) -> Iterator[Progress]:
        if self.options.rebuild:
            aside = mf.set_aside_manifest(self.out_dir)
            if aside:
                self._log(f"Set the old render record aside as {aside.name}; rebuilding it from the chunk files.")
        self.m = plan_book(self.book, self.narrator, self.settings, self.out_dir, self.options, self.voicing)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._record_source()
        mf.save_manifest(self.m, self.out_dir)
        states = self.m.chunks
        for s in states.values():
            if s.status == mf.DONE:
                self.rate.add(s.duration_s, s.text)
        todo = [i for i in self.m.ordered_ids() if states[i].status in (mf.PENDING, mf.FAILED)]
        if self.options.chapters:
            wanted = {i for n in self.options.chapters for i in self.m.chapter_ids(n - 1)}
            todo = [i for i in todo if i in wanted]
        self.result.chunks = len(states)
        self.result.reused = len(states) - len(todo)
        self.chapters_of: dict[str, list[int]] = {}
        for ci, ch in enumerate(self.m.chapters):
            for ref in ch.chunks:
                self.chapters_of.setdefault(ref.id, []).append(ci)
        if self.result.reused:
            self._log(f"Resuming: {self.result.reused} of {len(states)} chunks are already done; {len(todo)} to render.")
        else:
            self._log(f"Rendering {len(states)} chunks in {len(self.m.chapters)} chapters.")
        yield self._progress()

        self._assemble(self._chapter_range(), final=False)
        queue = order_for_batches(todo, {i: states[i].text for i in todo}, self.settings.batch_order, self.settings.batch_size)
        queue = self.voicing.order(queue, states, self.fast, self.settings.batch_size * LENGTH_WINDOW_BATCHES)
        if queue and self.checker is not None:
            self.checker.require()  # a missing Whisper is said now, before any take is made
        if queue and self.narrator.kind != "preset":
            self.prompt = (self.prompt_source() if self.prompt_source else
                           self.tts.clone_prompt(self.narrator.ref_audio, self.narrator.ref_text, self.narrator.x_vector_only))
            self.voicing.remember(self.narrator, self.prompt)

        if self.streams:
            # The pipeline over one engine session (pipeline.py): every slot busy for the whole book.
            from .pipeline import StreamRender

            remote = None if isinstance(self.executor, InProcess) else self.executor  # Ray workers: a stream each
            if remote is not None and queue:
                remote.ready()  # started here: a local Ray ends with the thread that starts it
            for _ in StreamRender(self, queue, remote).run():
                yield self._progress()
            queue = []

        def next_batch() -> list[str] | None:
            nonlocal queue
            if not queue or self.should_stop():
                return None
            # One batch is one model call of ``batch_size`` texts (the fast engine's slots), so a Stop
            # and a manifest save come at least every ``batch_size`` chunks.
            batch, queue = queue[: self.sizer.current], queue[self.sizer.current :]
            return batch

        for batch, seconds in self.executor.run(next_batch, self._render_batch, self._log):
            mf.save_manifest(self.m, self.out_dir)
            self.result.batches += 1
            self._log(batch_log_line(len(batch), seconds))
            self._check_model_failures(batch)
            grown = self.sizer.batch_done()
            if grown:
                self._log(grown)
            touched = sorted({ci for i in batch for ci in self.chapters_of[i]})
            self._assemble(touched, final=False)
            yield self._progress()
        if queue:
            self.result.stopped = True
            self._log(f"Stopped after the batch in flight; {len(queue)} chunks left. Render again to continue.")

        self._assemble(self._chapter_range(), final=True)
        self._report()
        if not self.result.stopped and self.options.assemble:
            self._assemble_book()
        mf.save_manifest(self.m, self.out_dir)
        self.result.elapsed_s = time.perf_counter() - self.start
        yield self._progress()

    def _record_source(self) -> None:
        """Keep the book, narrator and settings beside the manifest, so one chunk can be fixed later."""
        from .books import save_book_json

        to_dict = getattr(self.settings, "to_dict", None)
        self.m.source = {"narrator": asdict(self.narrator), "settings": to_dict() if to_dict else {}}
        path = self.out_dir / BOOK_FILE
        new = json.dumps(self.book.to_dict(), ensure_ascii=False, indent=1)
        if not path.is_file() or path.read_text(encoding="utf-8") != new:
            save_book_json(self.book, path)

    def _chapter_range(self) -> list[int]:
        """Chapter indexes this render assembles (all, or those asked for)."""
        if self.options.chapters:
            return [n - 1 for n in self.options.chapters]
        return list(range(len(self.m.chapters)))

    def _check_model_failures(self, batch: list[str]) -> None:
        """Give up, with a sentence, once several batches in a row failed entirely on model errors."""
        states = self.m.chunks
        if not all(states[i].status == mf.FAILED and i in self.model_errors for i in batch):
            self.failed_batches = 0
            return
        self.failed_batches += 1
        last = self.model_errors[batch[-1]]
        self._log(f"The model failed on a whole batch ({last}); its {len(batch)} chunks are marked failed.")
        if self.failed_batches >= MAX_FAILED_BATCHES:
            raise AudiobookError(
                f"The model failed on {self.failed_batches} batches in a row ({last}), so the render stopped; "
                "finished chunks are kept: check the voice and the Advanced Settings, then render again."
            )

    use_stream = True  # False: the batch loop even where the pipeline could run (the stream's reference in tests)

    @property
    def streams(self) -> bool:
        """Whether this render runs as the pipeline over engine sessions (the fast engine, here or on Ray workers)."""
        here = isinstance(self.executor, InProcess) and callable(getattr(self.tts, "capture", None))
        return self.use_stream and self.fast and (here or getattr(self.executor, "streams", False))

    @property
    def fast(self) -> bool:
        """Whether the model call runs on the continuous-batching engine (slots refill within a call)."""
        uses = getattr(self.tts, "uses_fast_engine", None)
        return bool(uses and uses(self.opts))

    def _log(self, line: str) -> None:
        log.info(line)
        self.result.log.append(line)
        self.lines.append(line)

    def _progress(self) -> Progress:
        message, self.lines = "\n".join(self.lines), []
        s = self.m.chunks.values()
        return Progress(
            chunks_done=sum(1 for c in s if c.kept), chunks_total=len(self.m.chunks),
            audio_s=sum(c.duration_s for c in s if c.kept), elapsed_s=time.perf_counter() - self.start,
            message=message, new_chunks=self.result.generated, new_audio_s=self.result.audio_s,
            batch_size=self.sizer.current, failed=sum(1 for c in s if c.status == mf.FAILED),
            suspect=sum(1 for c in s if c.status == mf.SUSPECT),
        )

    # ---- one batch: takes, checks, retries ------------------------------------------

    def _render_batch(self, ids: list[str], tts=None) -> None:
        """Generate, check and keep every chunk of a batch (or mark it failed or suspect).

        ``tts`` is where the model calls go (the executor's worker); this process's model by default.
        """
        states = self.m.chunks
        takes: dict[str, list[_Take]] = {i: [] for i in ids}
        todo, retry_round = list(ids), 0
        while todo:
            seed = self.opts.seed + SEED_STEP * max(states[i].attempts for i in todo)
            outcome = self._generate(todo, seed, tts)
            checks = self._check_takes(outcome)
            retry: list[str] = []
            for i in todo:
                st, out = states[i], outcome[i]
                st.attempts += 1
                if isinstance(out, BaseException):
                    if takes[i]:
                        self._keep(i, min(takes[i], key=lambda t: t.badness), mf.SUSPECT)
                    else:
                        st.status, st.error = mf.FAILED, _error_sentence(out)
                        if st.error.startswith(MODEL_ERROR):
                            self.model_errors[i] = st.error
                    continue
                self.model_errors.pop(i, None)
                duration = len(out) / SAMPLE_RATE
                median = self.rate.median()
                reason = check_take(duration, st.text, self.limits, median)
                badness = take_badness(duration, st.text, self.limits, median)
                scored = checks.get(i)
                if scored is not None:
                    reason, badness = reason or scored.reason, badness + scored.badness
                takes[i].append(_Take(out, seed, reason, badness, scored))
                if not reason:
                    self._keep(i, takes[i][-1], mf.DONE)
                elif retry_round < self.settings.max_retries and not self.should_stop():
                    retry.append(i)
                elif retry_round < self.settings.max_retries:
                    st.status, st.error = mf.PENDING, "stopped before a take passed the checks"
                else:
                    self._keep(i, min(takes[i], key=lambda t: t.badness), mf.SUSPECT)
            if retry:
                why = "; ".join(sorted({takes[i][-1].reason.split(" (")[0] for i in retry}))
                self._log(f"{len(retry)} chunk{'s' if len(retry) != 1 else ''} failed the checks ({why}); "
                          f"taking {'them' if len(retry) != 1 else 'it'} again with another seed.")
            todo, retry_round = retry, retry_round + 1

    def _check_takes(self, outcome: dict) -> dict[str, TakeCheck]:
        """Transcript and voice scores of this call's takes (none when the check is off)."""
        ids = [i for i, out in outcome.items() if not isinstance(out, BaseException)]
        if self.checker is None or not ids:
            return {}
        # The narrator's finished takes seed its voice profile; a cast's other voices are judged on their own.
        kept = [s.file for s in self.m.chunks.values() if s.status == mf.DONE and s.file
                and self.voicing.voice_for(s.speaker) == self.narrator]
        voices = [self.voicing.voice_for(self.m.chunks[i].speaker) for i in ids] if self.voicing.mixed else None
        states = [self.m.chunks[i] for i in ids]
        scores = self.checker.check([s.text for s in states], [outcome[i] for i in ids], SAMPLE_RATE,
                                    self.out_dir, kept, voices=voices, book_texts=[s.book_text for s in states])
        return dict(zip(ids, scores))

    def _generate(self, ids: list[str], seed: int, tts=None) -> dict[str, np.ndarray | BaseException]:
        """One model call for ``ids``; out of memory, split in half down to single chunks."""
        tts = tts or self.tts
        texts = [self.m.chunks[i].text for i in ids]
        oom: BaseException | None = None
        try:
            extra = {"slots": self.sizer.current} if self.fast else {}
            cast = [self.m.chunks[i] for i in ids]
            if any(s.style or self.voicing.voice_for(s.speaker) != self.narrator for s in cast):
                wavs = self.voicing.narrate(tts, cast, self.language, replace(self.opts, seed=seed), self.fast, **extra)
            else:
                wavs = tts.narrate(self.narrator, texts, self.language, replace(self.opts, seed=seed), prompt=self.prompt, **extra)
        except AudiobookError:
            raise  # the user must fix something first (a missing model, an unknown speaker): every batch would fail
        except Exception as e:
            if not is_out_of_memory(e):
                # A model error on this batch: its chunks are marked failed with the error, the render goes on.
                log.info("The model failed on a batch of %d chunks", len(ids), exc_info=True)
                error = RuntimeError(f"{MODEL_ERROR}: {type(e).__name__}: {_error_sentence(e)}")
                return {i: error for i in ids}
            oom = RuntimeError(str(e).splitlines()[0] if str(e) else "out of memory")  # drop the traceback's tensors
        if oom is not None:
            release_accelerator_memory()  # give the cached blocks back before the smaller retry
        if oom is None:
            if len(wavs) != len(ids):
                error = RuntimeError(f"{MODEL_ERROR}: it returned {len(wavs)} takes for {len(ids)} texts")
                return {i: error for i in ids}
            return dict(zip(ids, wavs))
        if self.fast and self.sizer.current > 1:
            # The engine's memory grows with its slots, not with the texts it is given: fewer slots.
            self._log(self.sizer.shrink(self.sizer.current))
            return self._generate(ids, seed, tts)
        if len(ids) == 1:
            self._log(f"Out of GPU memory on a single chunk ({len(texts[0])} characters); it is marked failed.")
            return {ids[0]: MemoryError("out of GPU memory even on its own")}
        self._log(self.sizer.shrink(len(ids)))
        half = (len(ids) + 1) // 2
        return {**self._generate(ids[:half], seed, tts), **self._generate(ids[half:], seed, tts)}

    def _keep(self, chunk: str, take: _Take, status: str) -> None:
        st = self.m.chunks[chunk]
        st.file = mf.write_chunk_audio(self.out_dir, chunk, take.wav)
        st.status, st.error, st.seed = status, take.reason, take.seed
        st.duration_s = len(take.wav) / SAMPLE_RATE
        c = take.check
        st.wer, st.transcript, st.voice_similarity = (c.wer, c.transcript, c.voice_similarity) if c else (None, None, None)
        st.rule = c.rule if c else ""
        st.segments = [seg.to_dict() for seg in c.segments] if c else None
        self.result.generated += 1
        self.result.audio_s += st.duration_s
        if status == mf.DONE:
            self.rate.add(st.duration_s, st.text)
            if c is not None and self.checker is not None:
                self.checker.accepted(c, self.voicing.voice_for(st.speaker))
        else:
            self._log(f"Kept the best of {st.attempts} takes of a chunk, marked suspect: {take.reason}.")

    # ---- assembly -------------------------------------------------------------------

    def _assembly_key(self, ci: int, missing: list[int]) -> str:
        s = self.settings
        pauses = [s.pause_chunk_ms, s.pause_paragraph_ms, s.pause_title_ms, s.chapter_format, s.loudness_lufs, s.true_peak_db]
        if any(r.turn_end for r in self.m.chapters[ci].chunks):
            pauses.append(s.pause_speaker_ms)
        blob = json.dumps([self.m.chapter_ids(ci), missing, self.m.chapters[ci].title, pauses, self.m.book], sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]

    def _up_to_date(self, ci: int, missing: list[int] | None) -> bool:
        """True when the chapter's file holds exactly its current kept chunks (``missing`` left out)."""
        ch = self.m.chapters[ci]
        return (missing is not None and bool(ch.file) and ch.assembled == self._assembly_key(ci, missing)
                and (self.out_dir / ch.file).is_file())

    def _assemble(self, chapters, final: bool) -> None:
        """Assemble each chapter whose chunks are all kept and whose file is out of date.

        With ``allow_incomplete`` (only at the end), chapters with failed chunks are
        assembled without them.
        """
        if not self.options.assemble:
            return
        states = self.m.chunks
        for ci in chapters:
            ch = self.m.chapters[ci]
            missing = self.m.chapter_missing(ci)
            if missing is None or (missing and not (final and self.options.allow_incomplete)):
                continue
            if self._up_to_date(ci, missing):
                continue
            key = self._assembly_key(ci, missing)
            chunks = [Chunk(ci, r.index, states[r.id].text, r.is_title, r.paragraph_end, r.chapter_end,
                            turn_end=r.turn_end) for r in ch.chunks]
            paths = [str(self.out_dir / states[r.id].file) if states[r.id].kept else None for r in ch.chunks]
            made = audio.assemble_chapter(ci + 1, ch.title, chunks, paths, self.out_dir, self.settings,
                                          book=self.book, allow_missing=bool(missing))
            ch.file, ch.assembled, ch.audio = made.path.name, key, _chapter_audio_to_dict(made, self.out_dir)
            timings.time_chapter(self.out_dir, self.m, ci)  # sentence times, subtitles
            self._log(f"Chapter {ci + 1} ({ch.title}) assembled: {made.path.name}, {made.duration:.1f}s"
                      + (f", without {len(missing)} failed chunks" if missing else "") + ".")

    def _report(self) -> None:
        states, r = self.m.chunks, self.result
        listed: set[str] = set()
        for ci, ch in enumerate(self.m.chapters):
            for ref in ch.chunks:
                st = states[ref.id]
                if st.status in (mf.FAILED, mf.SUSPECT) and ref.id not in listed:
                    listed.add(ref.id)
                    report = ChunkReport(ref.id, ci + 1, ch.title, ref.index + 1, st.text, st.status, st.error)
                    (r.failed if st.status == mf.FAILED else r.suspect).append(report)
            if self._up_to_date(ci, self.m.chapter_missing(ci)):
                r.chapter_files.append(self.out_dir / ch.file)
            elif self.m.chapter_has_failed(ci) and not self.options.allow_incomplete:
                n = sum(1 for x in ch.chunks if states[x.id].status == mf.FAILED)
                r.skipped_chapters.append(f"Chapter {ci + 1} ({ch.title}) was not assembled: {n} of its chunks "
                                          "failed; render again, or allow incomplete chapters.")
        for rep in r.failed:
            self._log(f"Failed: chapter {rep.chapter}, chunk {rep.index} ({rep.reason}): {rep.text}")
        for rep in r.suspect:
            self._log(f"Suspect: chapter {rep.chapter}, chunk {rep.index} ({rep.reason}): {rep.text}")
        for line in r.skipped_chapters:
            self._log(line)

    def _assemble_book(self) -> None:
        """The m4b (and mp3) once every chapter is assembled, or the assembled ones when allowed."""
        s, r = self.settings, self.result
        if not (s.make_m4b or s.make_book_mp3) or not r.chapter_files:
            return
        if len(r.chapter_files) < len(self.m.chapters) and not self.options.allow_incomplete:
            return
        made = [(ci, ch) for ci, ch in enumerate(self.m.chapters) if ch.audio and (self.out_dir / ch.file).is_file()]
        key = hashlib.sha256(json.dumps([[ch.assembled for _, ch in made], self.m.book, s.make_m4b, s.make_book_mp3,
                                         s.pause_chapter_ms]).encode()).hexdigest()[:20]
        outputs = [self.out_dir / f for f in self.m.book_file.split("|") if f]
        if key == self.m.book_assembled and outputs and all(p.is_file() for p in outputs):
            r.book_files = outputs
            return
        chapter_audios = [_chapter_audio_from_dict(ch.audio, self.out_dir) for _, ch in made]
        done = audio.assemble_book(self.book, chapter_audios, self.out_dir, s,
                                   include_incomplete=self.options.allow_incomplete,
                                   chapter_cues=timings.chapter_cues(self.out_dir, self.m))
        r.book_files = [p for p in (done.m4b, done.mp3, done.srt) if p is not None]
        self.m.book_file = "|".join(p.name for p in r.book_files)
        self.m.book_assembled = key
        for w in done.warnings:
            self._log(w)
        self._log(f"Book written: {', '.join(p.name for p in r.book_files)} ({done.duration / 60:.1f} min).")


def _error_sentence(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def _chapter_audio_to_dict(ca: "audio.ChapterAudio", out_dir: Path) -> dict:
    d = asdict(ca)
    d["path"], d["srt_path"] = ca.path.name, ca.srt_path.name
    d["cues"] = [[c.start, c.end, c.text] for c in ca.cues]
    d["missing_chunks"] = list(ca.missing_chunks)
    return d


def _chapter_audio_from_dict(d: dict, out_dir: Path) -> "audio.ChapterAudio":
    d = dict(d)
    d["path"], d["srt_path"] = out_dir / d["path"], out_dir / d["srt_path"]
    d["cues"] = tuple(audio.Cue(*c) for c in d["cues"])
    d["missing_chunks"] = tuple(d["missing_chunks"])
    return audio.ChapterAudio(**d)
