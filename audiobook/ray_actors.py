"""The Ray side of the worker pool: the actor each worker process runs, Ray's import, and the workers kept.

``workers.WorkerPool`` places ``RenderActor``s and talks to them; what runs inside one is here
(one TTS, its model and engine, and its stream, ``worker_stream.py``). ``import_ray`` imports
Ray with this app's defaults, or says in one sentence that it is missing. Workers outlive a
render in a process that runs Ray itself: ``park_warm`` keeps them, ``take_warm`` hands them
to the next pool made for the same cluster and model settings, ``release_kept`` stops them.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .errors import AudiobookError

# Ray's own dashboard and usage statistics are off unless the user turns them on in the environment.
RAY_DEFAULT_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


class RenderActor:
    """The Ray actor: one TTS (model and engine) in its own process, on its own GPU or CPU."""

    def __init__(self, settings: dict, threads: int) -> None:
        import torch

        from audiobook.settings import Settings
        from audiobook.tts import TTS

        if threads:
            torch.set_num_threads(threads)
        self.tts = TTS(Settings.from_dict(settings))

    def use_settings(self, settings: dict) -> dict:
        """Take a new render's settings (a worker kept from the last render, its model loaded); ``info``."""
        from audiobook.settings import Settings

        self.close_stream()
        self.tts.settings = Settings.from_dict(settings)
        return self.info()

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
        from audiobook.worker_stream import LOCK_WAIT_S

        with self.tts.lock.hold("a voice's clone prompt", wait_s=LOCK_WAIT_S):  # beside this worker's stream
            return self.tts.clone_prompt(ref_audio, ref_text, x_vector_only)

    # The stream (``worker_stream.py``): the driver opens it, then exchanges takes for audio.

    def open_stream(self, slots, language, opts) -> int:
        from audiobook.worker_stream import WorkerStream

        self.close_stream()
        self.stream = WorkerStream(self.tts, slots, language, opts)
        return os.getpid()

    def exchange(self, takes, prompts, drop_waiting, wait_s):
        return self.stream.exchange(takes, prompts, drop_waiting, wait_s)

    def close_stream(self) -> None:
        old, self.stream = getattr(self, "stream", None), None
        if old is not None:
            old.close()


# Workers kept between renders. Only in a process that runs Ray itself (a pool that started or joined
# Ray stops it, and its actors with it): the next pool for the same cluster and model settings takes them
# with their models loaded instead of starting new ones, which costs seconds per worker.
MODEL_SETTINGS = ("models_dir", "model_size", "device", "dtype", "attention_mode")  # the rest: ``use_settings``
_warm: dict[str, Any] = {"key": None, "actors": []}
_warm_lock = threading.Lock()


def release_kept() -> int:
    """Stop the workers kept from the last render (they hold their CPUs or GPUs: another driver of the same
    cluster may need them); the number stopped."""
    if not _warm["actors"]:
        return 0
    ray = import_ray()
    return len([kill(ray, a) for a in take_warm(ray, (), 0)])


def take_warm(ray, key: tuple, n: int) -> list:
    """Up to ``n`` kept workers made for ``key``; any others are stopped (they hold the cluster's resources)."""
    with _warm_lock:
        actors, same = _warm["actors"], _warm["key"] == key
        _warm["key"], _warm["actors"] = None, []
    taken = actors[:n] if same else []
    for actor in actors[len(taken):]:
        kill(ray, actor)
    return taken


def park_warm(ray, key: tuple, actors: list) -> None:
    with _warm_lock:
        old, _warm["key"], _warm["actors"] = _warm["actors"], key, list(actors)
    for actor in old:
        kill(ray, actor)


def kill(ray, actor) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone
        pass


def import_ray():
    """Ray, imported with ``RAY_DEFAULT_ENV`` set where the environment does not say otherwise; or one sentence."""
    for k, v in RAY_DEFAULT_ENV.items():
        os.environ.setdefault(k, v)
    try:
        import ray
    except ImportError:
        raise AudiobookError("Workers need the ray package, which is not installed; run `pip install -r requirements.txt`, "
                             "or set workers to 0.") from None
    return ray
