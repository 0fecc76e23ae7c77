"""Ray workers each run a stream for the render's pipeline: on a real local Ray cluster with two CPU actors.

One Ray cluster serves the whole module (2 CPUs, so 2 actors); each render places its actors
and removes them when it ends. The driver (this process) is the only writer of chunk files.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from audiobook import manifest as mf
from audiobook.books import Book, Chapter
from audiobook.errors import AudiobookError
from audiobook.ray_actors import RAY_DEFAULT_ENV, release_kept
from audiobook.settings import Settings
from audiobook.tts import Narrator
from audiobook.workers import WorkerPool

ROOT = Path(__file__).resolve().parent.parent
RYAN = Narrator(kind="preset", speaker="ryan")
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]

pytestmark = pytest.mark.slow


def book(n_chapters=3, sentences=4, title="Workers Book"):
    chapters = [Chapter(f"Part {c + 1}", " ".join(f"The {WORDS[c]} chapter has its {WORDS[i]} line of narration."
                                                   for i in range(sentences)))
                for c in range(n_chapters)]
    return Book(title, chapters, language="en")


def backend_for(root, models_dir, **kw):
    from backend import Backend

    b = Backend(root=root, settings_path=root / "user_settings.json", models_dir=str(models_dir))
    b.apply_settings(b.settings.updated(**{**dict(device="cpu", max_new_tokens=64, batch_size=2, chunk_chars=60,
                                                   make_m4b=False, duration_outlier_factor=20.0, runaway_margin_s=0.0,
                                                   do_sample=False, max_retries=0), **kw}))
    return b


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module (2 CPUs, so 2 actors; no dashboard; a small object store); yields its address.

    Each render places its own actors and removes them when it ends; the cluster stops at the module's end.
    Ray starts on this (the main) thread: its processes end with the thread that started them. Its own
    start timeouts bound the wait, and the test timeout bounds everything.
    """
    for k, v in RAY_DEFAULT_ENV.items():
        os.environ.setdefault(k, v)
    import ray

    try:
        ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 object_store_memory=128 * 1024 * 1024, runtime_env={"py_modules": [str(ROOT / "audiobook")]})
        yield ray.get_runtime_context().gcs_address
    finally:
        release_kept()
        ray.shutdown()


def kept_files(out: Path) -> dict[str, tuple[int, int]]:
    """Every chunk file on disk: name -> (inode, mtime); an atomic rewrite changes both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "chunks").glob("*.wav")}


@pytest.fixture
def writes(monkeypatch):
    """Every chunk file written in this process (the driver): (pid, file name), in order; the writes still happen."""
    seen: list[tuple[int, str]] = []
    write = mf.write_chunk_audio

    def spy(out_dir, chunk, wav):
        name = write(out_dir, chunk, wav)
        seen.append((os.getpid(), Path(name).name))
        return name

    monkeypatch.setattr(mf, "write_chunk_audio", spy)
    return seen


def test_two_workers_render_what_one_process_renders(tmp_path, tiny_models_dir, ray_cluster, writes, monkeypatch):
    streamed = []
    stream = WorkerPool.stream
    monkeypatch.setattr(WorkerPool, "stream", lambda pool, sr: (streamed.append(len(pool.workers)), stream(pool, sr))[1])
    b = book()
    here = backend_for(tmp_path, tiny_models_dir, workers=0).render(b, RYAN, out_dir=tmp_path / "here")
    writes.clear()
    be = backend_for(tmp_path, tiny_models_dir, workers=2)
    lines = []
    spread = be.render(b, RYAN, out_dir=tmp_path / "workers", on_progress=lambda p: lines.append(p.message))
    assert here.complete and spread.complete
    one, two = mf.load_manifest(tmp_path / "here"), mf.load_manifest(tmp_path / "workers")
    assert [[r.id for r in ch.chunks] for ch in two.chapters] == [[r.id for r in ch.chunks] for ch in one.chapters]
    assert {i: s.status for i, s in two.chunks.items()} == {i: s.status for i, s in one.chunks.items()}
    # Greedy decoding in float32, seeds per take: the workers made the very same takes.
    assert {i: s.duration_s for i, s in two.chunks.items()} == {i: s.duration_s for i, s in one.chunks.items()}
    assert {i: s.seed for i, s in two.chunks.items()} == {i: s.seed for i, s in one.chunks.items()}
    assert sorted(kept_files(tmp_path / "workers")) == sorted(kept_files(tmp_path / "here"))
    assert [f.name for f in spread.chapter_files] == [f.name for f in here.chapter_files]
    # The driver alone wrote every chunk file, each once.
    assert sorted(name for _, name in writes) == sorted(kept_files(tmp_path / "workers"))
    assert {pid for pid, _ in writes} == {os.getpid()}
    workers = be.worker_infos()
    assert len(workers) == 2 and all(w.chunks > 0 for w in workers), workers  # both streams made takes
    assert sum(w.chunks for w in workers) == len(two.chunks)
    assert os.getpid() not in {w.pid for w in workers}
    log = "\n".join(lines)
    assert "2 workers ready on Ray (cpu)" in log
    assert streamed == [2]  # the render's pipeline ran over the workers' streams, not the batch loop

    # This process runs Ray itself: the next render takes the same workers, models loaded.
    lines.clear()
    again = be.render(book(n_chapters=1, title="Again"), RYAN, out_dir=tmp_path / "again",
                      on_progress=lambda p: lines.append(p.message))
    assert again.complete and {w.pid for w in be.worker_infos()} == {w.pid for w in workers}
    assert "2 workers ready on Ray (cpu). 2 kept from the last render, models loaded." in "\n".join(lines)


def test_a_killed_worker_has_its_takes_fed_again_and_nothing_is_written_twice(tmp_path, tiny_models_dir, ray_cluster,
                                                                              writes):
    b = book(n_chapters=3, sentences=5)
    out = tmp_path / "out"
    be = backend_for(tmp_path, tiny_models_dir, workers=2, batch_size=2, max_new_tokens=96)
    seen: dict[str, tuple[int, int]] = {}
    killed: list[int] = []

    def record(progress):
        for name, stamp in kept_files(out).items() if (out / "chunks").is_dir() else ():
            seen.setdefault(name, stamp)

    def killer():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            done = len(list((out / "chunks").glob("*.wav"))) if (out / "chunks").is_dir() else 0
            busy = [w for w in be.worker_infos() if w.state.startswith("rendering") and w.pid]
            if done >= 2 and busy:
                os.kill(busy[0].pid, signal.SIGKILL)  # the actor's process, as Ray reports it
                killed.append(busy[0].pid)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    lines = []
    result = be.render(b, RYAN, out_dir=out, on_progress=lambda p: (record(p), lines.append(p.message)))
    thread.join(5)
    assert killed, "no worker was seen rendering"
    log = "\n".join(lines)
    fed_again = re.search(r"died \(.*\); Ray restarts it, and its (\d+) takes? in flight were fed again", log)
    assert fed_again and int(fed_again.group(1)) >= 1, log
    assert sum(w.restarts for w in be.worker_infos()) == 1
    final = mf.load_manifest(out)
    assert result.complete and final.count(mf.DONE, mf.SUSPECT) == len(final.chunks)
    assert result.generated == len(final.chunks)  # every chunk kept exactly once
    now = kept_files(out)
    assert len(now) == len(final.chunks)
    for name, stamp in seen.items():  # no finished chunk file was written again
        assert now[name] == stamp, name
    names = [name for _, name in writes]
    assert sorted(names) == sorted(now) and len(set(names)) == len(names)  # the driver wrote each file, once
    assert {pid for pid, _ in writes} == {os.getpid()}


def test_the_qwen_tts_engine_deals_whole_batches_to_the_workers(tmp_path, tiny_models_dir, ray_cluster, writes,
                                                               monkeypatch):
    streamed = []
    stream = WorkerPool.stream
    monkeypatch.setattr(WorkerPool, "stream", lambda pool, sr: (streamed.append(1), stream(pool, sr))[1])
    be = backend_for(tmp_path, tiny_models_dir, workers=2, engine="qwen_tts")
    result = be.render(book(n_chapters=2, sentences=3), RYAN, out_dir=tmp_path / "out")
    assert result.complete and not streamed  # the seed's design: static batches, no stream
    workers = be.worker_infos()
    assert sum(w.batches for w in workers) == result.batches and sum(w.chunks for w in workers) == result.generated
    assert sorted(name for _, name in writes) == sorted(kept_files(tmp_path / "out"))
    assert {pid for pid, _ in writes} == {os.getpid()}


def test_stop_during_a_worker_render_then_resume(tmp_path, tiny_models_dir, ray_cluster):
    b = book(n_chapters=4, sentences=6)  # long enough that a Stop after two kept chunks leaves some
    out = tmp_path / "out"
    be = backend_for(tmp_path, tiny_models_dir, workers=2, batch_size=1)
    be.start_render(b, RYAN, out_dir=out)
    deadline = time.time() + 300
    while time.time() < deadline and be.render_state().running and be.render_state().chunks_done < 2:
        time.sleep(0.05)
    during = be.render_state()
    be.stop_render()
    state = be.wait_render(300)
    assert len(during.workers) == 2 and all(row[0].startswith("worker ") for row in during.workers)
    assert state.stopped and state.finished and not state.error, state.error
    stopped = mf.load_manifest(out)
    done = {i for i, s in stopped.chunks.items() if s.kept}
    assert 2 <= len(done) < len(stopped.chunks)
    before = kept_files(out)
    assert set(before) == {Path(stopped.chunks[i].file).name for i in done}  # the manifest knows every file

    # Resumed in this process: what the workers kept is reused, nothing is written again.
    result = backend_for(tmp_path, tiny_models_dir, workers=0, batch_size=1).render(b, RYAN, out_dir=out)
    assert result.complete and result.reused == len(done)
    assert result.generated == len(stopped.chunks) - len(done)
    after = kept_files(out)
    assert all(after[name] == stamp for name, stamp in before.items())
    assert mf.load_manifest(out).count(mf.DONE, mf.SUSPECT) == len(stopped.chunks)


def test_more_workers_than_the_cluster_holds_is_one_sentence(ray_cluster):
    with pytest.raises(AudiobookError, match=r"Asked for 3 workers, but the Ray cluster has 2 CPUs; set workers to 2"):
        WorkerPool(Settings(device="cpu"), workers=3).start()


def test_render_command_joins_a_running_cluster(tmp_path, tiny_models_dir, ray_cluster):
    release_kept()  # this process's workers from earlier renders hold the cluster's CPUs
    b = book(n_chapters=2, sentences=3, title="Joined")
    path = tmp_path / "joined.json"
    path.write_text(json.dumps(b.to_dict()))
    root = tmp_path / "root"  # a project folder of its own: the command reads its user_settings.json
    root.mkdir()
    (root / "backend.py").write_text((ROOT / "backend.py").read_text())
    settings = dict(device="cpu", max_new_tokens=64, batch_size=2, chunk_chars=60, make_m4b=False,
                    duration_outlier_factor=20.0, runaway_margin_s=0.0)
    (root / "user_settings.json").write_text(json.dumps(settings))
    done = subprocess.run([sys.executable, str(root / "backend.py"), "render", str(path), "--speaker", "ryan",
                           "--workers", "1", "--ray-address", ray_cluster, "--models-dir", str(tiny_models_dir),
                           "--output", str(tmp_path / "out")],
                          cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    said = done.stdout + done.stderr
    assert done.returncode in (0, 1), said[-3000:]  # 1: some takes suspect, still rendered
    assert "1 worker ready on Ray (cpu)" in said, said[-3000:]
    final = mf.load_manifest(tmp_path / "out")
    assert final.count(mf.DONE, mf.SUSPECT) == len(final.chunks)
    assert sorted(p.name for p in (tmp_path / "out").glob("0*.wav")) == ["01 - Part 1.wav", "02 - Part 2.wav"]


def test_workers_benchmark_runs_and_checks_equal_work(tmp_path, tiny_models_dir, ray_cluster):
    sys.path.insert(0, str(ROOT))
    from bench.run import STORY
    from bench.workers import bench_workers, eos_scaled_copy, markdown_table

    models = eos_scaled_copy(tiny_models_dir, 0.3)
    result = bench_workers(models, "tiny", STORY[:1], 1, 64, 2, log=lambda *a, **k: None)
    assert result.same_work and result.chunks >= 4 and result.frames > 0
    assert result.one_process_s > 0 and result.workers_s > 0
    assert result.ratio == pytest.approx(result.one_process_s / result.workers_s, abs=0.01)
    assert len(result.per_worker_takes) == 2 and sum(result.per_worker_takes) >= result.chunks
    assert "| tiny |" in markdown_table([result])
