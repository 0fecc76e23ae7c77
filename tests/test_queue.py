"""The render queue: output/queue.json, its commands, and a queue run that is killed and run again."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiobook import manifest as mf
from audiobook.books import Book, Chapter
from audiobook.errors import AudiobookError
from audiobook.queue import DONE, FAILED, QUEUED, RUNNING, RenderQueue, run_queue
from backend import Backend

ROOT = Path(__file__).resolve().parent.parent
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
SETTINGS = dict(device="cpu", max_new_tokens=64, batch_size=1, chunk_chars=60, make_m4b=True, engine="fast",
                duration_outlier_factor=20.0, runaway_margin_s=0.0, max_retries=0)


def book(title, n_chapters=2, sentences=3):
    chapters = [Chapter(f"Part {c + 1}", " ".join(f"The {WORDS[c]} chapter has its {WORDS[i]} line of narration."
                                                   for i in range(sentences)))
                for c in range(n_chapters)]
    return Book(title, chapters, language="en")


def project(tmp_path, **settings) -> Path:
    """A project folder of its own, with a copy of backend.py, so its command line reads its user_settings.json."""
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    (root / "backend.py").write_text((ROOT / "backend.py").read_text())
    (root / "user_settings.json").write_text(json.dumps({**SETTINGS, **settings}))
    return root


def cli(root, *args, timeout=1500):
    return subprocess.run([sys.executable, str(root / "backend.py"), *args], cwd=root, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def write_book(path: Path, b: Book) -> Path:
    path.write_text(json.dumps(b.to_dict()))
    return path


# ---- the file and its commands, without a model -----------------------------------------------


def test_add_list_move_remove_keep_order_and_snapshot(tmp_path, tiny_models_dir):
    root = project(tmp_path)
    be = Backend(root=root, settings_path=root / "user_settings.json", models_dir=str(tiny_models_dir))
    a = write_book(tmp_path / "a.json", book("A"))
    b = write_book(tmp_path / "b.json", book("B"))
    be.queue_add(a, speaker="ryan")
    be.save_settings(seed=77)
    be.queue_add(b, speaker="Ryan", output=tmp_path / "b-out")
    edited = book("Edited on the page")
    be.queue_add(edited, speaker="ryan")
    items = be.queue_items()
    assert [i.title for i in items] == ["a", "b", "Edited on the page"]
    assert [i.settings["seed"] for i in items] == [1234, 77, 77]  # each keeps the settings it was queued with
    assert "models_dir" not in items[0].settings and items[1].output == str(tmp_path / "b-out")
    assert Path(items[2].book).is_file() and json.loads(Path(items[2].book).read_text())["title"] == "Edited on the page"
    on_disk = json.loads((root / "output" / "queue.json").read_text())
    assert on_disk["format"] == "audiobook-queue" and len(on_disk["items"]) == 3

    be.queue_move(3, 1)
    assert [i.title for i in be.queue_items()] == ["Edited on the page", "a", "b"]
    assert be.queue_remove(2).title == "a"
    assert [i.title for i in be.queue_items()] == ["Edited on the page", "b"]
    with pytest.raises(AudiobookError, match="There is no item 5 in the queue; it has items 1 to 2."):
        be.queue_remove(5)


def test_add_refuses_what_cannot_render_now(tmp_path, tiny_models_dir):
    root = project(tmp_path)
    be = Backend(root=root, settings_path=root / "user_settings.json", models_dir=str(tiny_models_dir))
    a = write_book(tmp_path / "a.json", book("A"))
    with pytest.raises(AudiobookError, match="There is no book file at"):
        be.queue_add(tmp_path / "missing.epub", speaker="ryan")
    with pytest.raises(AudiobookError, match="There is no voice called 'nobody'"):
        be.queue_add(a, voice="nobody")
    with pytest.raises(AudiobookError, match="There is no built-in speaker called 'zed'"):
        be.queue_add(a, speaker="zed")
    (tmp_path / "a.xyz").write_text("x")
    with pytest.raises(AudiobookError, match="Cannot read '.xyz' files"):
        be.queue_add(tmp_path / "a.xyz", speaker="ryan")
    assert be.queue_items() == []


def test_damaged_queue_file_and_second_runner_are_sentences(tmp_path):
    q = RenderQueue(tmp_path / "queue.json")
    (tmp_path / "queue.json").write_text("{not json")
    with pytest.raises(AudiobookError, match=r"The queue file .* is damaged .* delete it to start a new queue\."):
        q.items()
    (tmp_path / "queue.json").unlink()
    with q.runner():
        assert q.is_running()
        with pytest.raises(AudiobookError, match="The queue is already running"):
            run_queue(q, lambda item, progress: None)
    assert not q.is_running()


# ---- real renders on the tiny checkpoints ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(2400)  # four command-line runs; on a loaded 2-core machine each start costs a while
def test_queue_of_three_with_a_damaged_epub_killed_and_run_again(tmp_path, tiny_models_dir):
    root = project(tmp_path)
    first = write_book(tmp_path / "first.json", book("Queue One", n_chapters=2, sentences=4))
    damaged = tmp_path / "second.epub"
    damaged.write_bytes(b"PK\x03\x04 this is not an EPUB any more")
    third = tmp_path / "third.txt"
    third.write_text("Chapter 1\n\nThe third book is short. It has two lines.\n\nChapter 2\n\nThe end comes soon.\n")

    added = cli(root, "queue", "add", str(first), "--speaker", "ryan", "--models-dir", str(tiny_models_dir))
    assert added.returncode == 0 and "as item 1" in added.stdout, added.stderr[-2000:]
    be = Backend(root=root, settings_path=root / "user_settings.json", models_dir=str(tiny_models_dir))
    be.queue_add(damaged, speaker="ryan")
    be.save_settings(seed=77)
    be.queue_add(third, speaker="ryan")

    # Kill the runner in the middle of the first book.
    out_one = root / "output" / "Queue One"
    runner = subprocess.Popen([sys.executable, str(root / "backend.py"), "queue", "run", "--models-dir", str(tiny_models_dir)],
                              cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 900
    try:
        while time.time() < deadline:
            m = mf.load_manifest(out_one) if mf.manifest_path(out_one).exists() else None
            if m is not None and m.count(mf.DONE, mf.SUSPECT) >= 2:
                break
            assert runner.poll() is None, runner.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        os.kill(runner.pid, signal.SIGKILL)
    finally:
        runner.wait()
    items = be.queue_items()
    assert items[0].status == RUNNING and [i.status for i in items[1:]] == [QUEUED, QUEUED]
    killed = mf.load_manifest(out_one)
    assert 2 <= killed.count(mf.DONE, mf.SUSPECT) < len(killed.chunks)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out_one / "chunks").glob("*.wav")}

    again = cli(root, "queue", "run", "--models-dir", str(tiny_models_dir))
    assert again.returncode == 1, again.stderr[-3000:]  # one book failed
    listed = cli(root, "queue", "list")
    assert listed.returncode == 0
    rows = [line.split("\t") for line in listed.stdout.splitlines() if not line.startswith("\t")]
    assert [r[:3] for r in rows] == [["1", "Queue One", "ryan (built-in)"], ["2", "second", "ryan (built-in)"],
                                     ["3", "third", "ryan (built-in)"]]
    assert rows[0][3] == "done" and rows[2][3] == "done"
    assert rows[1][3] == "failed: second.epub is not a valid EPUB: it is not a zip archive (the file may be truncated or renamed)."

    one, two, three = be.queue_items()
    assert one.status == DONE and three.status == DONE and two.status == FAILED
    for done in (one, three):  # the audiobook (and its subtitles)
        m4b = [f for f in done.book_files if f.endswith(".m4b")]
        assert len(m4b) == 1 and Path(m4b[0]).is_file() and Path(m4b[0]).read_bytes()[4:8] == b"ftyp"
    assert not two.book_files
    final = mf.load_manifest(out_one)
    assert final.count(mf.DONE, mf.SUSPECT) == len(final.chunks)
    for name, stamp in stamps.items():  # the first run's takes were kept, not made again
        assert (out_one / "chunks" / name).stat().st_mtime_ns == stamp
    assert final.key["options"]["seed"] == 1234
    assert mf.load_manifest(Path(three.out_dir)).key["options"]["seed"] == 77  # its own snapshot


@pytest.mark.slow
def test_stopping_a_queue_leaves_the_book_queued_and_the_next_run_finishes_it(tmp_path, tiny_models_dir):
    root = project(tmp_path, make_m4b=False)
    be = Backend(root=root, settings_path=root / "user_settings.json", models_dir=str(tiny_models_dir))
    be.queue_add(write_book(tmp_path / "a.json", book("Stop Me", n_chapters=2, sentences=4)), speaker="ryan")
    be.queue_add(write_book(tmp_path / "b.json", book("After", n_chapters=1, sentences=2)), speaker="ryan")
    batches = []
    items = be.run_queue(on_progress=batches.append, should_stop=lambda: len(batches) >= 2)
    assert [i.status for i in items] == [QUEUED, QUEUED] and 0 < items[0].chunks_done < items[0].chunks_total
    items = be.run_queue()
    assert [i.status for i in items] == [DONE, DONE] and items[0].chunks_done == items[0].chunks_total
