"""One model lock: render, previews and any other caller share it; the fast engine stops and saves every batch."""

import re
import threading

import pytest

from audiobook import manifest as mf
from audiobook.errors import AudiobookError
from audiobook.model_lock import ModelLock
from audiobook.tts import PRESET
from tests.test_errors import RYAN, backend_for, make_book


def test_model_lock_is_reentrant_refuses_others_and_hands_over():
    lock = ModelLock()
    with lock.hold("a render of 'X'"):
        with lock.hold("speech generation"):  # the holder's own calls go through
            assert lock.holder == "a render of 'X'"
        refused = []

        def other():
            try:
                lock.acquire("a voice preview")
            except AudiobookError as e:
                refused.append(str(e))

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert refused == ["The model is busy with a render of 'X'; try again when it is done, or stop the render."]
    assert lock.holder == "" and not lock.held_by_other()

    lock.acquire("a render of 'Y'")
    done = threading.Event()

    def worker():
        done.wait()
        lock.release()  # the thread it was handed to lets it go

    t = threading.Thread(target=worker)
    t.start()
    lock.hand_over(t.ident)
    assert lock.held_by_other()
    done.set()
    t.join()
    assert lock.holder == ""


class Gate:
    """Holds a render inside its first model call until the test lets it go."""

    def __init__(self, be):
        self.inside, self.go, self.real = threading.Event(), threading.Event(), be.tts.narrate
        be.tts.narrate = self

    def __call__(self, *a, **k):
        self.inside.set()
        assert self.go.wait(300)
        return self.real(*a, **k)


def test_preview_and_other_model_users_are_refused_during_a_render(tmp_path, tiny_models_dir):
    be = backend_for(tmp_path, tiny_models_dir)
    be.save_settings(**{k: v for k, v in be.settings.to_dict().items() if k != "models_dir"})
    gate = Gate(be)
    be.start_render(make_book(n_chapters=1, sentences=1), RYAN, out_dir=tmp_path / "out")
    try:
        assert gate.inside.wait(300)
        with pytest.raises(AudiobookError, match=r"^The model is busy with a render of 'Faults'; try again when it "
                                                 r"is done, or stop the render\.$"):
            be.preview_preset("ryan")
        with pytest.raises(AudiobookError, match="^The model is busy with a render of 'Faults'"):
            be.tts.model(PRESET)  # a later caller (doctor, a worker) goes through the same lock
        with pytest.raises(AudiobookError, match="^The setting 'model_size' cannot change while the model is busy"):
            be.save_settings(model_size="0.6B")
        assert '"model_size": "1.7B"' in (tmp_path / "user_settings.json").read_text()
        be.save_settings(pause_chunk_ms=300)  # settings that do not touch the model still save
    finally:
        gate.go.set()
    state = be.wait_render(300)
    assert state.finished and not state.error
    assert be.preview_preset("ryan").audio.size > 0  # free again once the render is done


def test_a_render_is_refused_during_a_preview(tmp_path, tiny_models_dir):
    be = backend_for(tmp_path, tiny_models_dir)
    inside, go, real = threading.Event(), threading.Event(), be.tts.preset

    def slow_preset(*a, **k):
        inside.set()
        assert go.wait(300)
        return real(*a, **k)

    be.tts.preset = slow_preset
    t = threading.Thread(target=lambda: be.preview_preset("ryan"))
    t.start()
    try:
        assert inside.wait(300)
        with pytest.raises(AudiobookError, match=r"^The model is busy with a voice preview; try again when it is done\.$"):
            be.start_render(make_book(), RYAN, out_dir=tmp_path / "out")
        with pytest.raises(AudiobookError, match="^The model is busy with a voice preview"):
            be.render(make_book(), RYAN, out_dir=tmp_path / "out")
    finally:
        go.set()
        t.join(300)
    assert not be.tts.lock.held_by_other()


# ---- the fast engine: one call per batch -----------------------------------------------------


def test_fast_engine_saves_the_manifest_and_logs_every_batch(tmp_path, tiny_models_dir):
    be = backend_for(tmp_path, tiny_models_dir, engine="fast", batch_size=3)
    real, calls = be.tts.narrate, []

    def narrate(narrator, texts, *a, **k):
        calls.append(len(texts))
        return real(narrator, texts, *a, **k)

    be.tts.narrate = narrate
    out, seen = tmp_path / "out", []

    def on_progress(p):
        for n in re.findall(r"Batch \((\d+) chunks?\)", p.message):
            m = mf.load_manifest(out)  # what a crash right now would keep
            seen.append((int(n), m.count(*mf.KEPT, mf.FAILED), sum(calls)))

    result = be.render(make_book(), RYAN, out_dir=out, on_progress=on_progress)
    m = mf.load_manifest(out)
    assert len(seen) == result.batches >= 4  # 10 chunks logged at most 3 at a time
    assert calls and all(n <= 3 for n in calls)  # never more texts given to the session than its slots
    assert all(n <= 3 for n, _, _ in seen) and sum(n for n, _, _ in seen) == len(m.chunks)
    kept = 0
    for n, on_disk, _ in seen:  # saved at least every batch_size kept takes: a crash keeps all logged ones
        kept += n
        assert on_disk == kept


def test_fast_engine_stop_takes_effect_within_the_takes_in_flight(tmp_path, tiny_models_dir):
    be = backend_for(tmp_path, tiny_models_dir, engine="fast", batch_size=2)
    out, batches = tmp_path / "out", []
    result = be.render(make_book(), RYAN, out_dir=out, should_stop=lambda: bool(batches),
                       on_progress=lambda p: batches.extend(re.findall(r"Batch \(\d+", p.message)))
    m = mf.load_manifest(out)
    done = m.count(*mf.KEPT, mf.FAILED)
    # Stop admits nothing new: the logged batch plus at most the takes in flight (the slots) are kept.
    assert result.stopped and 1 <= len(batches) <= 2
    assert 2 <= done <= 2 + 2 and m.count(mf.PENDING) == len(m.chunks) - done
