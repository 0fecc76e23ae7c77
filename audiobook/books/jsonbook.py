"""The project's JSON book format on disk: what an edited book is saved as."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import AudiobookError
from ..files import atomic_write_text
from .common import read_bytes
from .model import Book


def read_json(path: Path) -> Book:
    """The project's JSON book format (see ``Book.to_dict``)."""
    raw = read_bytes(path)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AudiobookError(f"{path.name} is not valid JSON.") from None
    return Book.from_dict(data)


def save_book_json(book: Book, path: str | Path) -> Path:
    """Write ``book`` in the JSON book format (atomically); ``load_book`` reads it back equal."""
    p = Path(path)
    atomic_write_text(p, json.dumps(book.to_dict(), ensure_ascii=False, indent=1))
    return p
