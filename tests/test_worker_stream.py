"""A worker's own stream (``worker_stream.WorkerStream``), run in this process: takes in, audio out."""

import time

import numpy as np

from audiobook import batching
from audiobook.settings import Settings
from audiobook.tts import TTS, GenerationOptions, Narrator
from audiobook.worker_stream import Take, WorkerStream
from model_helpers import ENGINE_TEXTS, out_of_memory_once, varied_lengths

RYAN = Narrator(kind="preset", speaker="ryan")


def run_stream(tts, slots: int, takes: list[Take], timeout_s: float = 300.0) -> dict:
    """Every take through a fresh stream of ``slots`` slots; their results by key."""
    settings = tts.settings
    stream = WorkerStream(tts, slots, "en", GenerationOptions.from_settings(settings))
    done = {}
    try:
        out, dropped = stream.exchange(takes, {}, 0, 0.0)
        deadline = time.monotonic() + timeout_s
        while True:
            assert not dropped
            done.update({d.key: d for d in out})
            if len(done) == len(takes) or time.monotonic() > deadline:
                break
            out, dropped = stream.exchange([], {}, 0, 0.5)
    finally:
        stream.close()
    return done


def test_out_of_memory_halves_a_workers_slots_and_they_grow_back(tiny_models_dir, monkeypatch):
    """A worker that runs out of memory with 4 slots goes on with 2, and after a calm stretch takes 4 again;
    no take is lost and each is the take it would have been without the error."""
    monkeypatch.setattr(batching, "RECOVER_AFTER_BATCHES", 2)  # two calm rounds of the slots, then double
    tts = TTS(Settings(models_dir=str(tiny_models_dir), device="cpu", engine="fast", max_new_tokens=48,
                       do_sample=False, batch_size=4))
    takes = [Take(i, RYAN.job, RYAN, ENGINE_TEXTS[i % len(ENGINE_TEXTS)], seed=100 + i, limit=40)
             for i in range(16)]
    with varied_lengths(tts.model("preset")):
        want = run_stream(tts, 4, takes)  # the same takes with no error on the way
        failed, sessions = out_of_memory_once(tts, above=2)
        got = run_stream(tts, 4, takes)

    assert sorted(got) == sorted(want) == list(range(len(takes)))
    assert all(d.error is None and d.wav is not None and len(d.wav) for d in got.values())
    assert failed == [4]
    assert sorted(set(sessions), key=sessions.index) == [2, 4], sessions  # halved, then back to 4
    lengths = [len(got[k].wav) for k in sorted(got)]
    assert lengths == [len(want[k].wav) for k in sorted(want)]
    assert len(set(lengths)) > 2, "the takes all ended alike, so a mixed-up take would pass unseen"
    first = got[0].wav
    assert np.allclose(first, want[0].wav, atol=1e-4), "the retaken take is not the take it would have been"
