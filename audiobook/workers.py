"""Where the render loop's batches are generated: in this process, or on Ray actors.

The render loop (``render.py``) hands its batches to an executor's ``run``:

- ``InProcess`` (setting ``workers`` = 0) renders them one after another on this process's model;
- ``WorkerPool`` (``workers`` = N) keeps N Ray actors, each holding one model and engine, on
  one GPU each where the cluster has GPUs, else on one CPU each, and deals every batch to
  whichever actor is free. Actors only generate audio and send it back through Ray's object
  store; the checks, the chunk files and the manifest stay with the render loop in this
  process, which is their only writer, so resume, stop, review and assembly work unchanged.

An actor that dies (its process killed, out of memory) fails only the call in flight: that
call is dealt again to the next free actor, and Ray restarts the dead one. Nothing it had
finished is lost, because finished takes were already written here, and nothing is written
twice. Without an address a local Ray starts with the pool and stops with it; with one, the
pool joins that cluster and leaves it running.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import AudiobookError

log = logging.getLogger(__name__)

MAX_DEALS = 8  # a call that finds its worker dead this many times in a row ends the render with a sentence
RESTART_WAIT_S = 1.0  # a call that met a worker still restarting waits this long before it is dealt again
START_TIMEOUT_S = 300.0  # actors must be placed and answering within this (a busy cluster may queue them)
# Ray's own dashboard and usage statistics are off unless the user turns them on in the environment.
RAY_DEFAULT_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}

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


class _Actor:
    """The Ray actor: one TTS (model and engine) in its own process, on its own GPU or CPU."""

    def __init__(self, settings: dict, threads: int) -> None:
        import torch

        from audiobook.settings import Settings
        from audiobook.tts import TTS

        if threads:
            torch.set_num_threads(threads)
        self.tts = TTS(Settings.from_dict(settings))

    def info(self) -> dict:
        import ray
        import torch

        device = self.tts.device()
        if device.startswith("cuda"):
            device = f"{device} ({torch.cuda.get_device_name(0)})"
        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address(), "device": device}

    def narrate(self, narrator, texts, language, opts, prompt, slots):
        return os.getpid(), self.tts.narrate(narrator, texts, language, opts, prompt=prompt, slots=slots)

    def clone_prompt(self, ref_audio, ref_text, x_vector_only):
        return self.tts.clone_prompt(ref_audio, ref_text, x_vector_only)


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
        self._local = threading.local()  # .lease: the worker a batch thread holds

    # ---- life -----------------------------------------------------------------------

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> "WorkerPool":
        """Start or join Ray and place the actors; raise AudiobookError when they cannot be placed."""
        if self.size < 1:
            raise AudiobookError("A worker pool needs at least one worker; set workers to 1 or more, or 0 to render here.")
        ray = _import_ray()
        for k, v in RAY_DEFAULT_ENV.items():
            os.environ.setdefault(k, v)
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
            self.close()
            raise
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
        actor_class = ray.remote(_Actor).options(
            num_gpus=1 if on_gpu else 0, num_cpus=1, max_restarts=-1, max_task_retries=0,
        )
        for n in range(self.size):
            actor = actor_class.remote(settings.to_dict(), 0 if on_gpu else 1)
            self.workers.append(_Worker(actor, WorkerInfo(f"worker {n + 1}")))
        pending = {w.actor.info.remote(): w for w in self.workers}
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
        self._log(f"{self.size} worker{'s' if self.size != 1 else ''} ready on Ray ({where}).")

    def close(self) -> None:
        """Stop the actors, and the local Ray when this pool started it."""
        if self.closed:
            return
        self.closed = True
        try:
            ray = _import_ray()
        except AudiobookError:
            return
        for w in self.workers:
            try:
                ray.kill(w.actor, no_restart=True)
            except Exception:  # already gone
                pass
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
        ray = _import_ray()
        key = id(prompt)
        if key not in self._prompts:
            self._prompts = {key: (prompt, ray.put(prompt))}  # one voice per render: keep only the latest
        return self._prompts[key][1]

    def _call(self, lease: "_Lease", doing: str, method: str, *args):
        """Call ``method`` on the lease's worker with the driver lock released; deal it again if the worker dies.

        ``doing`` is the worker's state while the call runs. The caller holds the driver lock;
        it holds it again when this returns or raises.
        """
        ray = _import_ray()
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

    def clone_prompt(self, ref_audio, ref_text: str = "", x_vector_only: bool = False):
        """A clone prompt made by a worker's model (so this process loads none).

        Called before the batches start, or inside a batch (a cast's voice met on the way), where
        the batch's own worker makes it.
        """
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


def _import_ray():
    for k, v in RAY_DEFAULT_ENV.items():
        os.environ.setdefault(k, v)
    try:
        import ray
    except ImportError:
        raise AudiobookError("Workers need the ray package, which is not installed; run `pip install -r requirements.txt`, "
                             "or set workers to 0.") from None
    return ray


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def executor_for(settings, tts):
    """The executor the settings ask for: ``InProcess`` for ``workers`` = 0, else an unstarted ``WorkerPool``."""
    return WorkerPool(settings) if settings.workers > 0 else InProcess(tts)
