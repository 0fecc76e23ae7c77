"""The render queue: books that render one after another, in ``output/queue.json``.

Each item holds a book file, its narrator (a saved voice or a built-in speaker), where
its audio goes and a snapshot of the settings it was queued with. The file is written
atomically and changed under a file lock, so the page and the command line can share it;
a second lock lets one runner at a time work through it. After a crash or a restart the
runner takes the item it was on again, and the render continues from that book's
manifest. A book that fails (an unreadable file, a missing voice) is marked failed with
its sentence and the queue goes on with the next.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterator

from .errors import AudiobookError
from .files import atomic_write_text

log = logging.getLogger(__name__)

QUEUE_FILE = "queue.json"
QUEUE_FORMAT = "audiobook-queue"
QUEUE_VERSION = 1

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
STATUSES = (QUEUED, RUNNING, DONE, FAILED)

# Settings that belong to the machine that runs the queue, not to the book: they are not
# part of an item's snapshot, so a queue moved to another machine (or GPU) still runs.
MACHINE_SETTINGS = ("models_dir", "device", "dtype", "attention_mode", "workers", "ray_address", "output_dir",
                    "voices_dir")

COLUMNS = ["#", "book", "voice", "status", "progress"]


@dataclass
class QueueItem:
    """One book in the queue."""

    book: str  # absolute path of the book file
    title: str  # what the list shows (the file name until the book has been read)
    voice: str = ""  # a saved voice, or
    speaker: str = ""  # a built-in speaker
    instruct: str = ""  # the built-in speaker's style instruction
    output: str = ""  # the book's folder; empty: output/<book title> when it renders
    settings: dict = field(default_factory=dict)  # the snapshot it was queued with
    status: str = QUEUED
    error: str = ""  # why it failed, one sentence
    chunks_done: int = 0
    chunks_total: int = 0
    book_files: list[str] = field(default_factory=list)
    out_dir: str = ""  # where it rendered (known once it started)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    added: float = field(default_factory=time.time)
    finished: float = 0.0

    @property
    def narrator_label(self) -> str:
        if self.voice:
            return self.voice
        return f"{self.speaker} (built-in)" + (f", {self.instruct}" if self.instruct else "")

    @property
    def progress(self) -> str:
        if not self.chunks_total:
            return ""
        return f"{self.chunks_done}/{self.chunks_total} chunks ({100 * self.chunks_done // self.chunks_total}%)"

    @property
    def status_text(self) -> str:
        return f"{self.status}: {self.error}" if self.error else self.status

    def row(self, n: int) -> list:
        """The queue table's row (``COLUMNS``)."""
        return [n, self.title, self.narrator_label, self.status_text, self.progress]

    @classmethod
    def from_dict(cls, d: dict) -> "QueueItem":
        known = {f.name for f in fields(cls)}
        item = cls(**{k: v for k, v in d.items() if k in known})
        if item.status not in STATUSES or not isinstance(item.settings, dict) or not item.book:
            raise ValueError(f"item {item.id}")
        return item


def settings_for(item: QueueItem, current):
    """The settings an item renders with: its snapshot, over this machine's own settings."""
    names = {f.name for f in fields(current)}
    snapshot = {k: v for k, v in item.settings.items() if k in names and k not in MACHINE_SETTINGS}
    return current.updated(**snapshot)


def snapshot(settings) -> dict:
    """What an item keeps of the settings it is queued with."""
    return {k: v for k, v in settings.to_dict().items() if k not in MACHINE_SETTINGS}


class RenderQueue:
    """``queue.json`` and its locks; every change is a locked read-modify-write."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    # ---- reading and writing ------------------------------------------------------------

    def items(self) -> list[QueueItem]:
        """The items in order; an empty list when there is no queue yet."""
        with self._locked():
            return self._read()

    def _read(self) -> list[QueueItem]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") != QUEUE_FORMAT:
                raise ValueError("not a queue")
            return [QueueItem.from_dict(d) for d in data["items"]]
        except OSError as e:
            raise AudiobookError(f"Could not read the queue {self.path}: {e.strerror}.") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise AudiobookError(f"The queue file {self.path} is damaged ({type(e).__name__}: {e}); "
                                 "fix it or delete it to start a new queue.") from None

    def _write(self, items: list[QueueItem]) -> None:
        data = {"format": QUEUE_FORMAT, "version": QUEUE_VERSION, "items": [asdict(i) for i in items]}
        atomic_write_text(self.path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _change(self, change: Callable[[list[QueueItem]], object]):
        with self._locked():
            items = self._read()
            out = change(items)
            self._write(items)
            return out

    # ---- what the user does ---------------------------------------------------------------

    def add(self, item: QueueItem) -> QueueItem:
        self._change(lambda items: items.append(item))
        return item

    def remove(self, n: int) -> QueueItem:
        """Remove the item at 1-based position ``n``; the one rendering now only when no runner is on it."""
        running = self.is_running()

        def change(items):
            item = items[self._index(items, n)]
            if item.status == RUNNING and running:
                raise AudiobookError(f"Item {n} ({item.title}) is rendering now; stop the queue first, then remove it.")
            items.remove(item)
            return item

        return self._change(change)

    def move(self, n: int, to: int) -> list[QueueItem]:
        """Move the item at position ``n`` to position ``to`` (both 1-based)."""

        def change(items):
            item = items.pop(self._index(items, n))
            items.insert(max(0, min(len(items), int(to) - 1)), item)
            return list(items)

        return self._change(change)

    def retry(self, n: int) -> QueueItem:
        """Put a failed or finished item back in line (its manifest keeps what was done)."""

        def change(items):
            item = items[self._index(items, n)]
            item.status, item.error, item.finished = QUEUED, "", 0.0
            return item

        return self._change(change)

    @staticmethod
    def _index(items: list[QueueItem], n: int) -> int:
        if not items:
            raise AudiobookError("The queue is empty.")
        if not 1 <= int(n) <= len(items):
            raise AudiobookError(f"There is no item {n} in the queue; it has items 1 to {len(items)}.")
        return int(n) - 1

    def update(self, item_id: str, **changes) -> None:
        """Change one item's fields (nothing when it was removed meanwhile)."""

        def change(items):
            for item in items:
                if item.id == item_id:
                    for k, v in changes.items():
                        setattr(item, k, v)

        self._change(change)

    # ---- running ----------------------------------------------------------------------------

    @contextmanager
    def runner(self) -> Iterator[None]:
        """Held while a process works through the queue; a second runner gets a sentence."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".run.lock"), "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AudiobookError("The queue is already running (in this app or another process); "
                                     "wait for it or stop it first.") from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def is_running(self) -> bool:
        """Whether some process holds the runner lock now."""
        try:
            with self.runner():
                return False
        except AudiobookError:
            return True

    def next_item(self) -> QueueItem | None:
        """The item to render next: the one a crash interrupted, else the first queued one."""
        for item in self.items():
            if item.status in (RUNNING, QUEUED):
                return item
        return None


def run_queue(q: RenderQueue, render_item: Callable[[QueueItem, Callable], object],
              should_stop: Callable[[], bool] = lambda: False,
              on_item: Callable[[QueueItem], None] | None = None) -> list[QueueItem]:
    """Render the queue's books one after another until none is left or ``should_stop``.

    ``render_item(item, on_progress)`` renders one book and returns its ``RenderResult``
    (raising AudiobookError for a book that cannot be rendered); ``on_progress`` takes the
    render's ``Progress``. Returns the items as they are at the end.
    """
    with q.runner():
        while not should_stop():
            item = q.next_item()
            if item is None:
                break
            q.update(item.id, status=RUNNING, error="")
            item.status = RUNNING
            if on_item:
                on_item(item)

            def progress(p, item_id=item.id) -> None:
                q.update(item_id, chunks_done=p.chunks_done, chunks_total=p.chunks_total)

            try:
                result = render_item(item, progress)
            except AudiobookError as e:
                q.update(item.id, status=FAILED, error=str(e), finished=time.time())
                continue
            except Exception as e:  # one broken book must not end the queue
                log.exception("queue item failed")
                q.update(item.id, status=FAILED, finished=time.time(),
                         error=f"The render stopped on an unexpected error ({type(e).__name__}: {e}).")
                continue
            files = [str(f) for f in result.book_files] or [str(f) for f in result.chapter_files]
            if result.stopped:
                q.update(item.id, status=QUEUED, out_dir=str(result.out_dir))
                break
            q.update(item.id, status=DONE if result.complete else FAILED, error=_incomplete(result),
                     book_files=files, out_dir=str(result.out_dir), finished=time.time())
    return q.items()


def _incomplete(result) -> str:
    if result.complete:
        return ""
    n = len(result.failed)
    if not n:
        return result.skipped_chapters[0] if result.skipped_chapters else "The render did not finish; run the queue again."
    first = f" (the first: {result.failed[0].reason})" if result.failed else ""
    return (f"{n} chunk{'s' if n != 1 else ''} failed{first}; render the book again to retry "
            f"{'them' if n != 1 else 'it'}, or allow incomplete chapters.")
