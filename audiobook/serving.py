"""Serving the page: where it listens, the login it asks for, and the only files it hands out.

On 127.0.0.1 the page is the user's own. With ``--listen`` (all interfaces) or ``--share`` (a
public link tunnelled to 127.0.0.1) it needs a login, and its folder settings are locked.
Project files are never served by their path: the page hands out copies of finished files
(chapters, the book, subtitles, covers, previews, exports) placed in a folder of their own
under a random name, and everything else of the project is blocked.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import AudiobookError
from .manifest import CHUNKS_DIR, MANIFEST_FILE
from .settings import SETTINGS_FILE

DEFAULT_USER = "audiobook"
# What a finished file may be: audio, subtitles, covers, an edited book, a voice to share.
SERVED_SUFFIXES = frozenset({".m4b", ".mp3", ".wav", ".flac", ".m4a", ".ogg", ".srt", ".vtt", ".ass", ".png",
                             ".jpg", ".jpeg", ".webp", ".gif", ".json", ".zip"})
# ...and these whole endings: the read-along book (a source EPUB is never handed out)
SERVED_ENDINGS = (" (read-along).epub",)
# Files of the project's own state, never handed out whatever their suffix.
NEVER_SERVED = frozenset({MANIFEST_FILE, SETTINGS_FILE, "voice.json", "queue.json"})


@dataclass(frozen=True)
class Serving:
    """Where the page listens and who may use it."""

    host: str
    share: bool
    user: str | None = None
    password: str | None = None
    generated: bool = False  # the password was made up at start and must be printed

    @property
    def network(self) -> bool:
        """Whether others can reach the page (then folder settings are locked)."""
        return self.share or self.host != "127.0.0.1"

    @property
    def auth(self) -> list[tuple[str, str]] | None:
        return [(self.user, self.password)] if self.user and self.password else None

    def login_line(self) -> str | None:
        """The sentence printed at start when the page asks for a login."""
        if not self.auth:
            return None
        if self.generated:
            return f"Log in as '{self.user}' with the password {self.password} (or choose one with --auth USER:PASSWORD)."
        return f"Log in as '{self.user}' with the password given to --auth."


def parse_login(text: str) -> tuple[str, str]:
    """``USER:PASSWORD`` as (user, password); AudiobookError when either is missing."""
    user, sep, password = (text or "").partition(":")
    if not sep or not user.strip() or not password:
        raise AudiobookError("--auth takes USER:PASSWORD, for example --auth reader:a-long-passphrase.")
    return user.strip(), password


def serving_for(listen: bool = False, share: bool = False, auth: str | None = None) -> Serving:
    """How to serve for the command line's ``--listen``, ``--share`` and ``--auth``.

    A share link is tunnelled to 127.0.0.1, so ``--share`` alone never opens the page on the
    local network. Served to others, the page always asks for a login: the one given, else
    ``audiobook`` with a new random password.
    """
    host = "0.0.0.0" if listen else "127.0.0.1"
    if auth:
        user, password = parse_login(auth)
        return Serving(host, share, user, password)
    if listen or share:
        return Serving(host, share, DEFAULT_USER, secrets.token_urlsafe(12), generated=True)
    return Serving(host, share)


class ServedFiles:
    """Copies of finished files in ``folder``, each under a random name: the only project files a page serves.

    A copy is a hard link when the file system allows it (no extra disk), else a real copy;
    either way, rewriting or deleting the original later leaves the served copy as it was.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._copies: dict[tuple[str, int, int], Path] = {}
        self._lock = threading.Lock()

    def __call__(self, path: str | os.PathLike | None) -> str | None:
        """The served copy of ``path`` (None stays None); AudiobookError for a file that is not a finished one."""
        if path is None or path == "":
            return None
        source = Path(path).resolve()
        finished = source.suffix.lower() in SERVED_SUFFIXES or source.name.endswith(SERVED_ENDINGS)
        if source.name in NEVER_SERVED or source.parent.name == CHUNKS_DIR or not finished:
            raise AudiobookError(f"{source.name} is not a finished file, so the page does not hand it out.")
        try:
            st = source.stat()
        except OSError:
            raise AudiobookError(f"The file {source.name} is gone; render or save it again.") from None
        key = (str(source), st.st_size, st.st_mtime_ns)
        with self._lock:
            copy = self._copies.get(key)
            if copy is not None and copy.is_file():
                return str(copy)
            copy = self.folder / secrets.token_hex(16) / source.name
            try:
                copy.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(source, copy)
                except OSError:
                    shutil.copyfile(source, copy)
            except OSError as e:
                raise AudiobookError(f"Could not prepare {source.name} for download ({e.strerror}); "
                                     "check the free space of the temporary folder.") from None
            self._copies[key] = copy
            return str(copy)

    def owned(self, path: str | os.PathLike | None) -> str | None:
        """``path`` when it is one of these copies, else None (a value sent back by a browser is not trusted)."""
        if not path:
            return None
        p = Path(path).resolve()
        return str(p) if p.is_file() and self.folder.resolve() in p.parents else None

    def clear(self) -> None:
        """Remove every copy (at shutdown)."""
        with self._lock:
            self._copies.clear()
            shutil.rmtree(self.folder, ignore_errors=True)


def blocked_paths(places: list[str | os.PathLike], keep_open: list[str | os.PathLike]) -> list[str]:
    """The project's folders and files as paths the server refuses, except any that holds a folder in ``keep_open``.

    ``keep_open`` is where the server keeps uploads and served copies; a project placed
    around it (a temporary folder inside the project) must not block those too.
    """
    opened = [Path(p).resolve() for p in keep_open]
    out: list[str] = []
    for place in places:
        p = Path(place).resolve()
        if any(o == p or p in o.parents for o in opened):
            continue
        if str(p) not in out:
            out.append(str(p))
    return out
