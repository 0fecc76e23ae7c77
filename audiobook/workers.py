"""Where a render's takes are generated: in this process, or on Ray actors.

- ``InProcess`` (setting ``workers`` = 0): this process's model (the render's own pipeline,
  ``pipeline.py``, or the batch loop for ``engine = qwen_tts``);
- ``WorkerPool`` (``workers`` = N) keeps N Ray actors, each holding one model and engine, on
  one GPU each where the cluster has GPUs, else on one CPU each.

With the fast engine the render's pipeline runs here and its generation and decoding run on
the workers (``WorkerPool.stream``): each actor runs a stream of its own
(``worker_stream.py``: one engine session, fed as slots free up), and one driver thread per
worker feeds it up to ``STREAM_DEPTH`` times its slot count of takes, each with its own seed
and frame limit, so a take is the same on any worker. Workers decode their takes and send
audio back through Ray's object store, so this process needs no model. With ``engine =
qwen_tts`` the batch loop deals whole batches to whichever actor is free (``run``). Either
way the checks, the chunk files and the manifest stay with the render in this process, which
is their only writer, so resume, stop, review and assembly work unchanged.

An actor that dies (its process killed, out of memory) loses only the takes in flight on it:
they are fed again, first, to whichever worker is free (a batch: dealt again), and Ray
restarts the dead one. Nothing it had finished is lost, because finished takes were already
written here, and nothing is written twice. Without an address a local Ray starts with the
pool and stops with it; with one, the pool joins that cluster and leaves it running.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import AudiobookError
from .ray_actors import MODEL_SETTINGS, RenderActor, import_ray, kill, park_warm, take_warm

log = logging.getLogger(__name__)

STREAM_DEPTH = 2  # a worker's stream holds up to this many times its slot count of takes (in slots and waiting)
EXCHANGE_WAIT_S = 0.5  # an exchange with a worker's stream waits this long for a finished take
MAX_DEALS = 8  # a call that finds its worker dead this many times in a row ends the render with a sentence
RESTART_WAIT_S = 1.0  # a call that met a worker still restarting waits this long before it is dealt again
START_TIMEOUT_S = 300.0  # actors must be placed and answering within this (a busy cluster may queue them)

NextBatch = Callable[[], "list[str] | None"]
RenderBatch = Callable[[list[str], Any], None]


class InProcess:
    """Batches rendered one after another by this process's model (setting ``workers`` = 0)."""

    parallel = 1  # batches in flight at once

    def __init__(self, tts) -> None:
        self.tts = tts

    def run(self, next_batch: NextBatch, render_batch: RenderBatch,
            log_line: Callable[[str], None] | None = None) -> Iterator[tuple[list[str], float]]:
        """Render ``next_batch()`` until it returns None; yield each batch with its seconds once done."""
        while (batch := next_batch()) is not None:
            t0 = time.perf_counter()
            render_batch(batch, self.tts)
            yield batch, time.perf_counter() - t0

    def infos(self) -> list["WorkerInfo"]:
        return []

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, *exc) -> None:
        pass


@dataclass
class WorkerInfo:
    """One worker as the page and the log show it."""

    name: str  # "worker 1"
    state: str = "starting"  # starting, idle, rendering N chunks, restarting, stopped
    pid: int | None = None
    node: str = ""
    device: str = ""
    batches: int = 0  # model calls answered
    chunks: int = 0  # takes returned
    restarts: int = 0

    def row(self) -> list:
        """The workers table's row: worker, doing, device, node, pid, calls, takes, restarts."""
        return [self.name, self.state, self.device, self.node, self.pid or "", self.batches, self.chunks, self.restarts]


WORKER_COLUMNS = ["worker", "doing", "device", "node", "pid", "calls", "takes", "restarts"]


@dataclass
class _Worker:
    actor: Any
    info: WorkerInfo


class WorkerPool:
    """N Ray actors rendering the batches of one render loop (setting ``workers`` = N).

    Use as a context manager: ``with WorkerPool(settings) as pool: render_events(..., executor=pool)``.
    Ray starts (or is joined) when the first batch or clone prompt needs a worker, so a render
    with nothing left to do starts nothing. ``settings.ray_address`` joins a running cluster;
    empty starts a local Ray for the pool's life.
    """

    def __init__(self, settings, workers: int | None = None, address: str | None = None) -> None:
        self.settings = settings
        self.size = int(settings.workers if workers is None else workers)
        self.parallel = self.size  # batches in flight at once
        self.streams = True  # the render's pipeline can run its generation and decoding here (``stream``)
        self.address = (settings.ray_address if address is None else address) or ""
        self._log_to: Callable[[str], None] | None = None  # the render's log while ``run`` runs
        self._unlogged: list[str] = []  # lines from before a render's log was known
        self.workers: list[_Worker] = []
        self.started_ray = False
        self.closed = False
        self._driver = threading.Lock()  # the render loop's own code runs under it, one thread at a time
        self._info_lock = threading.Lock()
        self._free: queue.Queue[int] = queue.Queue()
        self._prompts: dict[int, tuple[Any, Any]] = {}  # id(prompt) -> (prompt, its object ref)
        self._local = threading.local()  # .lease: the worker a batch thread holds; .worker: the stream a thread feeds
        self._keys = itertools.count()  # names of the takes sent to the workers' streams
        self._warm_key: tuple | None = None  # what the actors were made for (``ray_actors.take_warm``)

    # ---- life -----------------------------------------------------------------------

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> "WorkerPool":
        """Start or join Ray and place the actors; raise AudiobookError when they cannot be placed."""
        if self.size < 1:
            raise AudiobookError("A worker pool needs at least one worker; set workers to 1 or more, or 0 to render here.")
        ray = import_ray()  # with Ray's dashboard and usage statistics off unless the environment says otherwise
        # The actors import this package: it travels with the job, so a cluster's nodes need only the packages.
        runtime_env = {"py_modules": [str(Path(__file__).resolve().parent)]}
        if ray.is_initialized():
            pass  # this process is already connected (its own runtime_env must carry this package)
        elif self.address:
            try:
                ray.init(address=self.address, runtime_env=runtime_env, log_to_driver=False,
                         configure_logging=False, include_dashboard=False)
            except Exception as e:
                raise AudiobookError(f"Could not join the Ray cluster at {self.address} ({_first_line(e)}); "
                                     "check that it runs (`ray start --head`) and that the address is right.") from None
            self.started_ray = True
        else:
            ray.init(num_cpus=max(self.size, os.cpu_count() or 1), runtime_env=runtime_env, log_to_driver=False,
                     configure_logging=False, include_dashboard=False)
            self.started_ray = True
        try:
            self._place_actors(ray)
        except BaseException:
            self._warm_key = None  # workers that failed to start are not kept
            self.close()
            raise
        return self

    def ready(self) -> "WorkerPool":
        """Start the pool unless it runs already. Call it on a thread that lives as long as the pool:
        a local Ray's processes end with the thread that started them."""
        if not self.workers:
            self.start()
        return self

    def _place_actors(self, ray) -> None:
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        on_gpu = self.settings.device != "cpu" and gpus > 0
        if on_gpu and self.size > gpus:
            raise AudiobookError(f"Asked for {self.size} workers, but the Ray cluster has {gpus} GPU"
                                 f"{'s' if gpus != 1 else ''}; set workers to {gpus} or fewer.")
        if not on_gpu and self.size > cpus:
            raise AudiobookError(f"Asked for {self.size} workers, but the Ray cluster has {cpus} CPU"
                                 f"{'s' if cpus != 1 else ''}; set workers to {cpus} or fewer.")
        settings = self.settings.updated(workers=0, ray_address="", **({} if on_gpu else {"device": "cpu"}))
        self._warm_key = (ray.get_runtime_context().gcs_address, *(getattr(settings, f) for f in MODEL_SETTINGS))
        kept = take_warm(ray, self._warm_key, self.size)
        # Threaded: a clone prompt (or a status call) runs beside a stream exchange that waits for takes.
        actor_class = ray.remote(RenderActor).options(
            num_gpus=1 if on_gpu else 0, num_cpus=1, max_restarts=-1, max_task_retries=0, max_concurrency=4,
        )
        for n in range(self.size):
            actor = kept[n] if n < len(kept) else actor_class.remote(settings.to_dict(), 0 if on_gpu else 1)
            self.workers.append(_Worker(actor, WorkerInfo(f"worker {n + 1}")))
        pending = {(w.actor.use_settings.remote(settings.to_dict()) if n < len(kept) else w.actor.info.remote()): w
                   for n, w in enumerate(self.workers)}
        ready, waiting = ray.wait(list(pending), num_returns=len(pending), timeout=START_TIMEOUT_S)
        if waiting:
            raise AudiobookError(f"Only {len(ready)} of {self.size} Ray workers started within {START_TIMEOUT_S:.0f}s; "
                                 "the cluster is busy or short of resources, so set fewer workers.")
        for ref in ready:
            w = pending[ref]
            try:
                got = ray.get(ref)
            except Exception as e:
                raise AudiobookError(f"A Ray worker could not start ({_first_line(e)}).") from None
            w.info.pid, w.info.node, w.info.device, w.info.state = got["pid"], got["node"], got["device"], "idle"
        for i in range(len(self.workers)):
            self._free.put(i)
        where = ", ".join(sorted({w.info.device for w in self.workers}))
        self._log(f"{self.size} worker{'s' if self.size != 1 else ''} ready on Ray ({where})."
                  + (f" {len(kept)} kept from the last render, models loaded." if kept else ""))

    def close(self) -> None:
        """Stop the actors, and the local Ray when this pool started it."""
        if self.closed:
            return
        self.closed = True
        try:
            ray = import_ray()
        except AudiobookError:
            return
        keep = not self.started_ray and ray.is_initialized() and self._warm_key is not None
        with self._info_lock:  # kept: those answering now (not one Ray is still restarting)
            alive = [w for w in self.workers if keep and w.info.pid is not None and w.info.state != "restarting"]
        if alive:  # this process runs Ray itself: the next render takes these workers, models loaded
            park_warm(ray, self._warm_key, [w.actor for w in alive])
        for w in self.workers:
            if w not in alive:
                kill(ray, w.actor)
            with self._info_lock:
                w.info.state = "stopped"
        if self.started_ray and ray.is_initialized():
            ray.shutdown()

    def infos(self) -> list[WorkerInfo]:
        """A snapshot of every worker (for the page and tests)."""
        with self._info_lock:
            return [replace(w.info) for w in self.workers]

    def _set(self, i: int, **changes) -> None:
        with self._info_lock:
            for k, v in changes.items():
                setattr(self.workers[i].info, k, v)

    # ---- the render loop's side ---------------------------------------------------------

    def _log(self, line: str) -> None:
        log.info(line)
        if self._log_to is not None:
            self._log_to(line)
        else:
            self._unlogged.append(line)

    def run(self, next_batch: NextBatch, render_batch: RenderBatch,
            log_line: Callable[[str], None] | None = None) -> Iterator[tuple[list[str], float]]:
        """Deal ``next_batch()`` to free workers until it returns None; yield each batch once done.

        Each batch runs ``render_batch(batch, lease)`` in its own thread, where ``lease.narrate``
        is the model call on a worker; the render loop's code (checks, writes, this generator's
        consumer) runs under one lock, so it never runs in two threads at once. An error in a
        batch stops the dealing; the batches in flight finish and are yielded, then it is raised.
        """
        if log_line is not None:
            self._log_to = log_line
            for line in self._unlogged:
                log_line(line)
            self._unlogged = []
        first = next_batch()
        if first is None:
            return
        if not self.workers:
            self.start()
        done: queue.Queue = queue.Queue()
        in_flight, error, dealing = 0, None, True

        def work(batch: list[str], i: int) -> None:
            lease = self._local.lease = _Lease(self, i)
            t0 = time.perf_counter()
            failure = None
            with self._driver:
                try:
                    render_batch(batch, lease)
                except BaseException as e:  # handed to the loop, which raises it
                    failure = e
            self._release(lease.worker)
            done.put((batch, time.perf_counter() - t0, failure))

        self._driver.acquire()
        try:
            while True:
                while dealing and error is None:
                    try:
                        i = self._free.get_nowait()
                    except queue.Empty:
                        break
                    batch, first = (first, None) if first is not None else (next_batch(), None)
                    if batch is None:
                        self._free.put(i)
                        dealing = False
                        break
                    threading.Thread(target=work, args=(batch, i), name=f"render-batch-{i + 1}", daemon=True).start()
                    in_flight += 1
                if in_flight == 0:
                    break
                self._driver.release()
                try:
                    batch, seconds, failure = done.get()
                finally:
                    self._driver.acquire()
                in_flight -= 1
                if failure is not None:
                    error = error or failure
                    continue
                yield batch, seconds
            if error is not None:
                raise error
        finally:
            self._log_to = None
            self._driver.release()

    def _release(self, i: int) -> None:
        self._set(i, state="idle")
        self._free.put(i)

    def _prompt_ref(self, prompt):
        """The clone prompt in Ray's object store, put there once per render."""
        if prompt is None:
            return None
        ray = import_ray()
        key = id(prompt)
        if key not in self._prompts:
            self._prompts = {key: (prompt, ray.put(prompt))}  # one voice per render: keep only the latest
        return self._prompts[key][1]

    def _call(self, lease: "_Lease", doing: str, method: str, *args):
        """Call ``method`` on the lease's worker with the driver lock released; deal it again if the worker dies.

        ``doing`` is the worker's state while the call runs. The caller holds the driver lock;
        it holds it again when this returns or raises.
        """
        ray = import_ray()
        from ray.exceptions import RayActorError, RayTaskError

        for deal in range(1, MAX_DEALS + 1):
            i = lease.worker
            self._set(i, state=doing)
            ref = getattr(self.workers[i].actor, method).remote(*args)
            died = ""
            self._driver.release()
            try:
                try:
                    out = ray.get(ref)
                    self._set(i, state="idle")
                    return out
                except RayTaskError as e:  # the call itself failed: its own error, as if it ran here
                    self._set(i, state="idle")
                    cause = getattr(e, "cause", None)
                    raise (cause if isinstance(cause, BaseException) else RuntimeError(_first_line(e))) from None
                except RayActorError as e:
                    died = _first_line(e)
                if self.closed:
                    raise AudiobookError("The workers were stopped while a batch was in flight; render again to continue.")
                with self._info_lock:
                    info = self.workers[i].info
                    fresh = info.pid is not None  # a death not seen yet (a restarting worker has no pid until it answers)
                    info.state, info.pid = "restarting", None
                    info.restarts += 1 if fresh else 0
                if deal == MAX_DEALS:
                    raise AudiobookError(f"A batch lost its worker {MAX_DEALS} times in a row (killed or out of memory); "
                                         "set fewer workers or a smaller batch size, then render again.")
                # Deal it again: hand the dead worker back (Ray restarts it) and take whichever worker is
                # free first; when that is one still restarting, give it a moment.
                if not fresh:
                    time.sleep(RESTART_WAIT_S)
                self._free.put(i)
                lease.worker = self._free.get()
            finally:
                self._driver.acquire()
            if fresh:
                self._log(f"{self.workers[i].info.name.capitalize()} died ({died[:160]}); Ray restarts it, and its batch "
                          f"went to {self.workers[lease.worker].info.name}.")
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- the render pipeline's side: one stream per worker ---------------------------------

    def stream(self, sr) -> None:
        """Generate and decode the takes of ``sr`` (a ``pipeline.StreamRender``) on the workers.

        One driver thread per worker takes chunks from the pipeline's feed (up to ``STREAM_DEPTH``
        times the slot count in flight on that worker, one model's voices at a time) and sends
        them with their seeds and frame limits; the audio that comes back goes on to the checks
        and the keeper, in this process, the only writer. A worker that dies has its takes in
        flight fed again, first, to whichever worker is free; Ray restarts it. Returns once the
        feed is closed and nothing is in flight; raises what ended a worker's thread.
        """
        if not self.workers:  # nothing to render (``ready`` starts them, on the render's own thread)
            return
        self._log_to = sr.r._log
        for line in self._unlogged:
            sr.r._log(line)
        self._unlogged = []
        ended, errors = threading.Event(), []

        def feed(i: int) -> None:
            try:
                self._feed_worker(i, sr, ended)
            except BaseException as e:  # noqa: BLE001 - raised below, once every thread has ended
                errors.append(e)
                ended.set()

        threads = [threading.Thread(target=feed, args=(i,), name=f"render-worker-{i + 1}", daemon=True)
                   for i in range(len(self.workers))]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            self._log_to = None
        if errors:
            raise errors[0]

    def _feed_worker(self, i: int, sr, ended: threading.Event) -> None:
        """Feed worker ``i``'s stream and hand its takes to the checks until the feed is closed and drained."""
        ray = import_ray()
        from ray.exceptions import RayActorError, RayTaskError

        from .pipeline import frame_limit
        from .worker_stream import DROP_ALL, DROP_WAITING, Take

        r, w = sr.r, self.workers[i]
        self._local.worker = i  # a clone prompt needed on the way is made by this worker
        in_flight: dict[int, Any] = {}  # key -> the pipeline's item
        sent: set[str] = set()  # the clone prompts this worker holds
        opened, job, deaths = False, None, 0
        restarting, probe = False, None  # a dead worker is asked (probe) until Ray has it back
        while not (sr.halt.is_set() or ended.is_set()):
            stopping = sr.feed.closed
            if stopping and not in_flight:
                break
            if restarting:
                probe = probe or w.actor.info.remote()
                if not ray.wait([probe], timeout=0.2)[0]:
                    continue
                try:
                    got = ray.get(probe)
                except RayActorError:
                    time.sleep(RESTART_WAIT_S)
                    continue
                finally:
                    probe = None
                restarting = False
                self._set(i, pid=got["pid"], state="idle")
                continue
            items = []
            if not stopping:
                room = STREAM_DEPTH * sr.slots - len(in_flight)
                want = job if in_flight and sr.feed.has(job) else (None if in_flight else sr.feed.next_job())
                items = sr.feed.take(room, want) if room > 0 and want is not None else []
                job = want if items else job
            if not items and not in_flight:
                sr.feed.wait(0.2)
                continue
            new = [(next(self._keys), it) for it in items]
            for it in items:
                it.started = time.monotonic()
            in_flight.update(new)
            try:
                takes, prompts = [], {}
                for key, it in new:
                    text = r.m.chunks[it.chunk].text
                    it.limit = frame_limit(text, r.rate.median(), r.settings.duration_outlier_factor, r.opts.max_new_tokens)
                    pk = repr(it.voice) if it.job == "clone" else ""
                    if pk and pk not in sent:
                        prompts[pk] = sr._prompt_of(it.voice)
                        sent.add(pk)
                    takes.append(Take(key, it.job, it.voice, text, it.seed, it.limit, pk))
                if not opened:
                    pid = ray.get(w.actor.open_stream.remote(sr.slots, r.language, r.opts))
                    opened = True
                    self._set(i, pid=pid)
                self._set(i, state=f"rendering {len(in_flight)} take{'s' if len(in_flight) != 1 else ''}")
                drop = 0
                if stopping:  # a Stop: nothing new is admitted; once its time is up, the takes in slots go too
                    drop = DROP_ALL if sr._stop_is_due() else DROP_WAITING
                done, dropped = ray.get(w.actor.exchange.remote(takes, prompts, drop, EXCHANGE_WAIT_S))
            except RayTaskError as e:  # our own code failed on the worker: as if it failed here
                cause = getattr(e, "cause", None)
                raise (cause if isinstance(cause, BaseException) else RuntimeError(_first_line(e))) from None
            except RayActorError as e:
                lost = list(in_flight.values())
                in_flight.clear()
                for it in reversed(lost):  # fed again first, with their own seeds: the same takes
                    sr.feed.push_front(it)
                opened, restarting, deaths = False, True, deaths + 1
                sent.clear()
                with self._info_lock:
                    w.info.state, w.info.pid, w.info.restarts = "restarting", None, w.info.restarts + 1
                self._log(f"{w.info.name.capitalize()} died ({_first_line(e)[:160]}); Ray restarts it, and its "
                          f"{len(lost)} take{'s' if len(lost) != 1 else ''} in flight were fed again.")
                if deaths >= MAX_DEALS:
                    raise AudiobookError(f"A worker died {MAX_DEALS} times in a row (killed or out of memory); "
                                         "set fewer workers or a smaller batch size, then render again.") from None
                continue
            dropped = [in_flight.pop(key) for key in dropped if key in in_flight]  # a Stop: rendered next time
            if drop == DROP_ALL and dropped:
                self._log(f"Stop: {len(dropped)} takes still on {w.info.name} after {sr.stop_wait:.1f}s (one take's "
                          "time) are dropped; their chunks are rendered next time.")
            failed: dict[int, tuple[BaseException, list]] = {}
            for d in done:
                it = in_flight.pop(d.key)
                if d.error is not None:
                    failed.setdefault(id(d.error), (d.error, []))[1].append(it)
                    continue
                it.wav, it.runaway = d.wav, d.runaway
                sr.take_times.append(time.monotonic() - it.started)  # the Stop's clock: one take's time
                sr._put(sr.check_q, it)
            if done:
                deaths = 0
                with self._info_lock:
                    w.info.batches += 1
                    w.info.chunks += sum(1 for d in done if d.error is None)
            for error, its in failed.values():
                sr._fail(its, error)
            if not in_flight:
                self._set(i, state="idle")
        if opened:
            w.actor.close_stream.remote()
        self._set(i, state="idle")

    def clone_prompt(self, ref_audio, ref_text: str = "", x_vector_only: bool = False):
        """A clone prompt made by a worker's model (so this process loads none).

        Called before the batches start, or inside a batch (a cast's voice met on the way), where
        the batch's own worker makes it, or on the way of a worker's stream, by that worker.
        """
        streaming = getattr(self._local, "worker", None)
        if streaming is not None:
            ray = import_ray()
            return ray.get(self.workers[streaming].actor.clone_prompt.remote(ref_audio, ref_text, x_vector_only))
        held = getattr(self._local, "lease", None)
        if held is not None:
            return self._call(held, "making a voice's clone prompt", "clone_prompt", ref_audio, ref_text, x_vector_only)
        if not self.workers:
            self.start()
        lease = _Lease(self, self._free.get())
        try:
            self._driver.acquire()
            try:
                return self._call(lease, "making the voice's clone prompt", "clone_prompt", ref_audio, ref_text, x_vector_only)
            finally:
                self._driver.release()
        finally:
            self._free.put(lease.worker)


class _Lease:
    """A batch's hold on one worker: what ``render_batch`` calls instead of a local TTS."""

    def __init__(self, pool: WorkerPool, worker: int) -> None:
        self.pool, self.worker = pool, worker

    @property
    def settings(self):
        return self.pool.settings

    def narrate(self, narrator, texts, language, opts, prompt=None, slots=None):
        pool = self.pool
        doing = f"rendering {len(texts)} chunk{'s' if len(texts) != 1 else ''}"
        pid, wavs = pool._call(self, doing, "narrate", narrator, list(texts), language, opts, pool._prompt_ref(prompt), slots)
        with pool._info_lock:
            info = pool.workers[self.worker].info
            info.pid, info.batches, info.chunks = pid, info.batches + 1, info.chunks + len(wavs)
        return wavs


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def executor_for(settings, tts):
    """The executor the settings ask for: ``InProcess`` for ``workers`` = 0, else an unstarted ``WorkerPool``."""
    return WorkerPool(settings) if settings.workers > 0 else InProcess(tts)
