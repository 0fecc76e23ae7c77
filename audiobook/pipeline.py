"""The render as a pipeline over one engine session: every slot busy for the whole book.

Stages, each on its own thread, joined by bounded queues (memory stays flat over any book):

- the feeder and generator (``_generate``): chunks in the planned order (length-sorted
  windows), retakes ahead of them, go into the engine session (``stream.Session``) as slots
  free up; finished codes go on at once;
- decoding (``_decode``): finished codes become audio in small groups, off the generation thread;
- checking (``_check``): the Whisper and voice checks on whatever takes are ready, batched;
- the keeper (``run``, the render's own thread): judges each take, writes its chunk file,
  saves the manifest (at least every ``batch_size`` kept takes and every ``SAVE_EVERY_S``),
  sends a failed take back into the feed with its next seed, and hands a chapter whose last
  chunk is kept to the assembler thread.

Each take has its own seed (from the render's seed, the chunk's id and its attempt) and its
own frame limit (``frame_limit``), so a take depends on its own inputs only and a runaway
holds one slot, briefly. Stop admits nothing new, lets the takes in flight end or drops them
after one take's time (``stop_clock``: the median time a take has needed so far, at least
``STOP_FLOOR_S``), keeps what passes, saves and assembles what is complete. Out of memory, the
slot count halves (``batching.BatchSizer``) and the lost takes are fed again first; after a calm
stretch of takes it doubles back toward the configured batch size.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import numpy as np

from . import manifest as mf
from .errors import AudiobookError
from .files import SAMPLE_RATE
from .tts import FRAME_RATE, PRESET, is_out_of_memory, release_accelerator_memory

log = logging.getLogger(__name__)

SAVE_EVERY_S = 10.0  # the manifest is saved at least this often while takes are kept
DEFAULT_S_PER_CHAR = 0.5  # frame limit before the book has a pace: about seven times ordinary speech
LIMIT_SLACK_S = 8.0  # added to every frame limit (very short texts, slow openings)
DECODE_GROUP = 8  # most takes decoded to audio in one padded batch
QUEUE_TAKES = 4  # bound of each queue between stages, in slot counts
STOP_FLOOR_S = 2.0  # a Stop waits at least this long for the takes in flight before dropping them
TAKE_TIMES = 64  # the last takes whose times make the Stop clock
_DONE = object()  # the end of a stage's input


def chunk_seed(base: int, chunk: str, attempt: int) -> int:
    """The seed of a chunk's ``attempt``-th take: from the render's seed and the chunk's own id only."""
    digest = hashlib.sha256(f"{base}:{chunk}".encode("utf-8")).digest()
    from .render import SEED_STEP

    return (int.from_bytes(digest[:4], "little") + SEED_STEP * attempt) & 0xFFFFFFFF


def frame_limit(text: str, s_per_char: float | None, outlier_factor: float, max_new_tokens: int) -> int:
    """Most frames a take of ``text`` may run before it counts as a runaway.

    A generous multiple of the book's own pace (twice the pace check's factor, so a take the
    limit ends would have failed the pace check anyway); before the book has a pace, a
    conservative default. Never above ``max_new_tokens - 1``.
    """
    from .take_length import MIN_RATE_CHARS

    chars = max(len(text), MIN_RATE_CHARS)
    if s_per_char:
        seconds = chars * s_per_char * max(2.0 * outlier_factor, 4.0) + LIMIT_SLACK_S
    else:
        seconds = chars * DEFAULT_S_PER_CHAR + 2 * LIMIT_SLACK_S
    return max(1, min(max_new_tokens - 1, math.ceil(seconds * FRAME_RATE)))


@dataclass
class _Item:
    """One take on its way through the pipeline."""

    chunk: str
    attempt: int
    seed: int
    limit: int = 0
    voice: Any = None  # the narrator reading it (style applied)
    job: str = ""
    runaway: bool = False
    codes: Any = None
    wav: np.ndarray | None = None
    error: BaseException | None = None
    check: Any = None
    started: float = 0.0  # when it went into the engine session (time.monotonic)


@dataclass
class _Feed:
    """The chunks waiting for a slot: retakes first, then the planned order. Thread-safe."""

    order: collections.deque = field(default_factory=collections.deque)
    cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False  # nothing more will come (finished or stopped)

    def push_front(self, item: _Item) -> None:
        with self.cond:
            self.order.appendleft(item)
            self.cond.notify_all()

    def take(self, n: int, job: str) -> list[_Item]:
        """Up to ``n`` waiting items of ``job``, in feed order (items of other jobs keep their places)."""
        with self.cond:
            out: list[_Item] = []
            rest: collections.deque = collections.deque()
            while self.order and len(out) < n:
                it = self.order.popleft()
                (out if it.job == job else rest).append(it)
            self.order.extendleft(reversed(rest))
            return out

    def has(self, job: str) -> bool:
        with self.cond:
            return any(it.job == job for it in self.order)

    def next_job(self) -> str | None:
        with self.cond:
            return self.order[0].job if self.order else None

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait(self, timeout: float) -> None:
        with self.cond:
            if not self.order and not self.closed:
                self.cond.wait(timeout)


class StreamRender:
    """One render's pipeline over ``r`` (a ``render._Render``) for the pending chunk ids ``todo``."""

    def __init__(self, r, todo: list[str], remote=None):
        self.r = r
        self.remote = remote  # generates and decodes the takes elsewhere (``workers.WorkerPool.stream``)
        self.tts = r.tts
        self.slots = max(1, int(r.settings.batch_size))
        bound = QUEUE_TAKES * self.slots
        self.feed = _Feed()
        self.decode_q: queue.Queue = queue.Queue(bound)
        self.check_q: queue.Queue = queue.Queue(bound)
        self.keep_q: queue.Queue = queue.Queue(bound)
        self.assemble_q: queue.Queue = queue.Queue()
        self.halt = threading.Event()  # every stage ends as soon as it can (an error, or the end)
        self.stopping = False
        self.check_lock = threading.Lock()  # the checker's voice profile: checked on one thread, grown on another
        self.takes: dict[str, list] = {i: [] for i in todo}
        self.open = set(todo)  # chunks not yet kept or failed
        self.failure: BaseException | None = None
        self.decoding = False  # the decode stage holds a group
        self.assembled_done = threading.Event()
        self.model_failures = 0  # model errors in a row (each fails the takes in flight)
        self.take_times: collections.deque = collections.deque(maxlen=TAKE_TIMES)  # seconds per finished take
        self.stop_at: float | None = None  # when the Stop came, and how long the takes in flight may go on
        self.stop_wait = 0.0
        states = r.m.chunks
        for i in todo:
            self.feed.order.append(self._item(i, states[i].attempts))

    # ---- items --------------------------------------------------------------------------

    def _item(self, chunk: str, attempt: int) -> _Item:
        r = self.r
        st = r.m.chunks[chunk]
        voice = r.voicing.voice_for(st.speaker)
        if st.style and voice.kind == PRESET:
            voice = replace(voice, instruct=st.style)
        return _Item(chunk, attempt, chunk_seed(r.opts.seed, chunk, attempt), voice=voice, job=voice.job)

    def _prompt_of(self, voice) -> Any:
        r = self.r
        if voice.job != "clone":
            return None
        if voice == r.narrator:
            return r.prompt
        return r.voicing.prompt(voice, self.tts)

    # ---- the keeper (the render's thread) -------------------------------------------------

    def run(self) -> Iterator[None]:
        """Run the stages until every chunk is kept or failed (or a Stop); yield after every ``batch_size`` kept."""
        r = self.r
        threads = [threading.Thread(target=self._guard, args=(f,), name=f"render-{f.__name__.strip('_')}", daemon=True)
                   for f in (*self._making(), self._check, self._assembler)]
        lock = getattr(self.tts, "lock", None)
        with lock.hold("a render") if lock else _nothing(), lock.shared_with(threads) if lock else _nothing():
            for t in threads:
                t.start()
            try:
                yield from self._keep_loop()
            finally:
                self.halt.set()
                self.feed.close()
                for q in (self.decode_q, self.check_q, self.keep_q, self.assemble_q):
                    _offer(q, _DONE)
                for t in threads:
                    t.join(timeout=60)
        if self.failure is not None:
            raise self.failure

    def _keep_loop(self) -> Iterator[None]:
        r = self.r
        kept_since, last_save, t0 = 0, time.monotonic(), time.perf_counter()
        while self.open and self.failure is None:
            if not self.stopping and r.should_stop():
                self.stop_wait, self.stop_at = self.stop_clock(), time.monotonic()
                self.stopping = True
                self.feed.close()
            try:
                item = self.keep_q.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is _DONE:
                break
            kept = self._judge(item)
            if kept:
                kept_since += 1
                for ci in r.chapters_of[item.chunk]:
                    if r.m.chapter_missing(ci) == []:
                        self.assemble_q.put(ci)
            now = time.monotonic()
            if kept_since >= self.slots or (kept_since and now - last_save >= SAVE_EVERY_S):
                mf.save_manifest(r.m, r.out_dir)
                last_save = now
                r.result.batches += 1
                r._log(_group_line(kept_since, time.perf_counter() - t0))
                kept_since, t0 = 0, time.perf_counter()
                yield
        if kept_since:
            mf.save_manifest(r.m, r.out_dir)
            r.result.batches += 1
            r._log(_group_line(kept_since, time.perf_counter() - t0))
        left = len(self.open)
        if left and self.failure is None:
            r.result.stopped = True
            for i in self.open:
                st = r.m.chunks[i]
                if st.status == mf.PENDING and self.takes.get(i):
                    st.error = "stopped before a take passed the checks"
            r._log(f"Stopped after the takes in flight; {left} chunks left. Render again to continue.")
        self.assemble_q.put(_DONE)
        self.assembled_done.wait(timeout=600)
        yield

    def _judge(self, item: _Item) -> bool:
        """Keep, retake or fail one take (the render's rules); True when its chunk is now kept."""
        from .render import MODEL_ERROR, _error_sentence, _Take
        from .take_length import check_take, take_badness

        r = self.r
        st = r.m.chunks[item.chunk]
        takes = self.takes[item.chunk]
        st.attempts = max(st.attempts, item.attempt + 1)
        if item.error is not None:
            if takes:
                self._keep(item.chunk, min(takes, key=lambda t: t.badness), mf.SUSPECT)
                return True
            st.status, st.error = mf.FAILED, _error_sentence(item.error)
            if st.error.startswith(MODEL_ERROR):
                r.model_errors[item.chunk] = st.error
            self.open.discard(item.chunk)
            return False
        r.model_errors.pop(item.chunk, None)
        duration = len(item.wav) / SAMPLE_RATE
        median = r.rate.median()
        if item.runaway:
            reason = (f"ran to its length limit ({duration:.1f}s for {len(st.text)} characters): "
                      "the model did not stop")
            badness = 1e6 + duration
        else:
            reason = check_take(duration, st.text, r.limits, median)
            badness = take_badness(duration, st.text, r.limits, median)
        if item.check is not None:
            reason, badness = reason or item.check.reason, badness + item.check.badness
        takes.append(_Take(item.wav, item.seed, reason, badness, item.check))
        if not reason:
            self._keep(item.chunk, takes[-1], mf.DONE)
            return True
        if len(takes) <= r.settings.max_retries and not self.stopping:
            r._log(f"A chunk failed the checks ({reason.split(' (')[0]}); taking it again with another seed.")
            nxt = self._item(item.chunk, item.attempt + 1)
            self.feed.push_front(nxt)
            return False
        if len(takes) <= r.settings.max_retries:
            st.status, st.error = mf.PENDING, "stopped before a take passed the checks"
            self.open.discard(item.chunk)
            return False
        self._keep(item.chunk, min(takes, key=lambda t: t.badness), mf.SUSPECT)
        return True

    def _keep(self, chunk: str, take, status: str) -> None:
        with self.check_lock:
            self.r._keep(chunk, take, status)
        self.open.discard(chunk)
        self.takes[chunk] = []  # the audio is on disk now

    def stop_clock(self) -> float:
        """How long a Stop lets the takes in flight go on: the time the median take needed so far, at least
        ``STOP_FLOOR_S`` (a runaway in flight is dropped then, not run to its frame limit)."""
        times = sorted(self.take_times)
        return max(STOP_FLOOR_S, times[len(times) // 2] if times else 0.0)

    # ---- the stages -------------------------------------------------------------------------

    def _guard(self, stage) -> None:
        try:
            stage()
        except BaseException as e:  # noqa: BLE001 - handed to the keeper, which raises it
            log.info("The render's %s stage failed", stage.__name__, exc_info=True)
            if self.failure is None:
                self.failure = e
            self.halt.set()
            _offer(self.keep_q, _DONE)

    def _generate(self) -> None:
        """Feed the engine session and step it; finished codes go to decoding."""
        session, job = None, None
        while not self.halt.is_set():
            busy = session is not None and session.busy
            resizing = session is not None and session.slots != self.slots
            if resizing and not busy:
                session, resizing = None, False  # drained: the next group makes a session of the new slot count
            if self.feed.closed:
                if session is not None and session.waiting():
                    session.drop_waiting()  # a Stop: nothing new is admitted
                if busy and self._stop_is_due():
                    dropped = session.drop_in_flight()
                    self.r._log(f"Stop: {len(dropped)} takes still speaking after {self.stop_wait:.1f}s (one take's "
                                "time) are dropped; their chunks are rendered next time.")
                    busy = False
            elif not resizing:  # a slot count about to change admits nothing until its takes are out
                room = self.slots - (session.waiting() if session is not None else 0)
                want = job if busy and self.feed.has(job) else (None if busy else self.feed.next_job())
                items = self.feed.take(room, want) if (room > 0 and want is not None) else []
                if items:
                    if want != job:
                        self._wait_decoded()  # the other model's takes are decoded before it goes
                        job = want
                    try:
                        session = self._submit(items, session)
                        self.model_failures = 0
                    except AudiobookError:
                        raise
                    except Exception as e:  # noqa: BLE001
                        if is_out_of_memory(e) and session is not None:
                            # Fewer slots from now on: the takes in flight are fed again with these.
                            items += [req.tag for req in session.drop_in_flight() + session.drop_waiting()]
                            session = None
                        self._fail(items, e)
                        continue
                    busy = True
            if not busy:
                if self.feed.closed:
                    self._put(self.decode_q, _DONE)
                    return
                self.feed.wait(0.2)
                continue
            try:
                finished = session.step()
            except AudiobookError:
                raise
            except Exception as e:  # noqa: BLE001
                lost = [req.tag for req in session.drop_in_flight() + session.drop_waiting()]
                session = None
                self._fail(lost, e)
                continue
            now = time.monotonic()
            for f in finished:
                it = f.tag
                it.codes, it.runaway = f.codes, f.runaway
                self.take_times.append(now - it.started)
                self._put(self.decode_q, it)
            self._calm(len(finished), session.slots)

    def _stop_is_due(self) -> bool:
        return self.stop_at is not None and time.monotonic() - self.stop_at >= self.stop_wait

    def _calm(self, takes: int, slots: int) -> None:
        """Count takes that finished without running out of memory; after a calm stretch the slots grow back."""
        grown = self.r.sizer.takes_done(takes, slots)
        if grown:
            self.r._log(grown)
            self.slots = self.r.sizer.current

    def _making(self) -> tuple:
        """The stages that make decoded takes: here (generate, decode), or on the remote's workers."""
        return (self._generate, self._decode) if self.remote is None else (self._remote,)

    def _remote(self) -> None:
        """Takes generated and decoded by the remote's workers, fed from this feed, go on to the checks."""
        self.remote.stream(self)
        self._put(self.check_q, _DONE)

    def _put(self, q: queue.Queue, item) -> None:
        """Put on a bounded queue, giving up once the pipeline halts (its reader may be gone)."""
        while True:
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                if self.halt.is_set():
                    return

    def _wait_decoded(self) -> None:
        while (self.decoding or not self.decode_q.empty()) and not self.halt.is_set():
            time.sleep(0.02)

    def _submit(self, items: list[_Item], session):
        """Build the items' prompts with qwen_tts's own code and give them to the session."""
        from .stream import Request

        r = self.r
        texts = [r.m.chunks[i.chunk].text for i in items]
        narrators = [i.voice for i in items]
        prompts = [self._prompt_of(v) for v in narrators] if items[0].job == "clone" else None
        model, built, sampling = self.tts.capture(narrators, texts, r.language, r.opts, prompt=prompts)
        if session is None or session.engine.qmodel is not model.model or session.sampling != sampling:
            session = self.tts.session(model, sampling, self.slots)
        median = r.rate.median()
        now = time.monotonic()
        for it, prompt, text in zip(items, built, texts):
            it.limit = frame_limit(text, median, r.settings.duration_outlier_factor, r.opts.max_new_tokens)
            it.started = now
            session.submit(Request(prompt, it.seed, it.limit, it))
        return session

    def _fail(self, items: list[_Item], e: BaseException) -> None:
        from .render import MAX_FAILED_BATCHES, MODEL_ERROR, _error_sentence

        if is_out_of_memory(e):
            release_accelerator_memory()
            if self.slots > 1:
                # The engine's memory follows its slots: go on with fewer, the lost takes fed again first.
                self.r._log(self.r.sizer.shrink(self.slots))
                self.slots = self.r.sizer.current
                for it in reversed(items):
                    self.feed.push_front(it)
                return
            error: BaseException = MemoryError("out of GPU memory even on its own")
            self.r._log("Out of GPU memory with a single slot; the takes in flight are marked failed.")
        else:
            error = RuntimeError(f"{MODEL_ERROR}: {type(e).__name__}: {_error_sentence(e)}")
        log.info("The model failed on %d takes", len(items), exc_info=e)
        self.model_failures += 1
        if self.model_failures >= MAX_FAILED_BATCHES:
            raise AudiobookError(
                f"The model failed {self.model_failures} times in a row ({_error_sentence(error)}), so the render "
                "stopped; finished chunks are kept: check the voice and the Advanced Settings, then render again.")
        for it in items:
            it.error = error
            self._put(self.keep_q, it)

    def _decode(self) -> None:
        """Codes to audio, a few takes at a time, grouped by voice model."""
        r = self.r
        while True:
            group, end = self._gather(self.decode_q, min(self.slots, DECODE_GROUP))
            if not group:
                self._put(self.check_q, _DONE)
                return
            self.decoding = True
            try:
                for job in {it.job for it in group}:
                    part = [it for it in group if it.job == job]
                    texts = [r.m.chunks[it.chunk].text for it in part]
                    voices = [it.voice for it in part]
                    prompts = [self._prompt_of(v) for v in voices] if job == "clone" else None
                    try:
                        wavs = decode_takes(self.tts, voices, texts, r.language, r.opts, [it.codes for it in part],
                                            prompts)
                    except AudiobookError:
                        raise
                    except Exception as e:  # noqa: BLE001
                        from .render import MODEL_ERROR

                        for it in part:
                            it.error = RuntimeError(f"{MODEL_ERROR}: {type(e).__name__}: {e}")
                        wavs = [None] * len(part)
                    for it, wav in zip(part, wavs):
                        it.codes = None
                        it.wav = None if wav is None else np.asarray(wav, dtype=np.float32)
                        self._put(self.check_q, it)
            finally:
                self.decoding = False
            if end:
                self._put(self.check_q, _DONE)
                return

    def _gather(self, q: queue.Queue, most: int) -> tuple[list[_Item], bool]:
        """``gather`` from a stage's queue; ``([], True)`` also when the pipeline halts."""
        group, end = gather(q, most, _DONE)
        return ([], True) if self.halt.is_set() else (group, end)

    def _check(self) -> None:
        """The checks on whatever takes are ready (batched), then on to the keeper."""
        r = self.r
        while True:
            group, end = self._gather(self.check_q, self.slots)
            if not group:
                self._put(self.keep_q, _DONE)
                return
            try:
                good = [it for it in group if it.error is None]
                if r.checker is not None and good:
                    with self.check_lock:
                        scores = self._scores(good)
                    for it, sc in zip(good, scores):
                        it.check = sc
            finally:
                for it in group:
                    self._put(self.keep_q, it)
            if end:
                self._put(self.keep_q, _DONE)
                return

    def _scores(self, items: list[_Item]):
        """The checker's scores of these takes, through the render's own check call."""
        got = self.r._check_takes({it.chunk: it.wav for it in items})
        return [got.get(it.chunk) for it in items]

    def _assembler(self) -> None:
        """Chapters whose last chunk is kept are assembled here, beside the generation."""
        r = self.r
        try:
            while True:
                ci = self.assemble_q.get()
                if ci is _DONE:
                    return
                r._assemble([ci], final=False)
        finally:
            self.assembled_done.set()


def _group_line(n: int, seconds: float) -> str:
    from .render import batch_log_line

    return batch_log_line(n, seconds)


def _offer(q: queue.Queue, item) -> None:
    try:
        q.put_nowait(item)
    except queue.Full:
        pass


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def gather(q: queue.Queue, most: int, end: Any) -> tuple[list, bool]:
    """A group from ``q``: waits for the first item, then takes up to ``most`` that are ready.

    ``([], True)`` when the first is ``end``; the flag is True when ``end`` came right after the group.
    """
    first = q.get()
    if first is end:
        return [], True
    group = [first]
    while len(group) < most:
        try:
            nxt = q.get_nowait()
        except queue.Empty:
            break
        if nxt is end:
            return group, True
        group.append(nxt)
    return group, False


def decode_takes(tts, voices: list, texts: list[str], language, opts, codes: list, prompts: list | None) -> list:
    """One float32 wav per take, decoded in one call; a take with no frame is silence of no length."""
    wavs: list = [np.zeros(0, dtype=np.float32)] * len(codes)
    speaking = [n for n, c in enumerate(codes) if c is not None and c.shape[0] > 0]
    if speaking:
        got = tts.decode_codes([voices[n] for n in speaking], [texts[n] for n in speaking], language, opts,
                               [codes[n] for n in speaking], prompt=[prompts[n] for n in speaking] if prompts else None)
        if len(got) != len(speaking):
            raise RuntimeError(f"decoding returned {len(got)} takes for {len(speaking)}")
        for n, wav in zip(speaking, got):
            wavs[n] = np.asarray(wav, dtype=np.float32)
    return wavs
