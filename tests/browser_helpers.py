"""Starting the app in a subprocess and driving Debian's Chromium through Playwright."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Fast, small renders on the tiny checkpoints.
TEST_SETTINGS = {"device": "cpu", "max_new_tokens": 200, "batch_size": 5, "chunk_chars": 120}


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    """The app running in a subprocess against a temporary project root."""

    root: Path
    models_dir: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    args: list[str] = field(default_factory=list)  # more command-line arguments, e.g. ["--listen"]
    app: Path = REPO / "app.py"  # the app to run (a benchmark may compare another checkout's)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def settings_file(self) -> Path:
        return self.root / "user_settings.json"

    def settings(self) -> dict:
        return json.loads(self.settings_file.read_text(encoding="utf-8"))

    def start(self, timeout: float = 90.0) -> "AppServer":
        self.port = free_port()
        log = open(self.root / f"app-{self.port}.log", "wb")
        # One torch thread, as in the test process: on a shared CPU extra threads spin-wait and a
        # tiny preview takes minutes instead of seconds.
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(self.app), "--root", str(self.root), "--models-dir", str(self.models_dir),
             "--port", str(self.port), *self.args],
            cwd=self.root, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(self.url + "config", timeout=2) as r:
                    if r.status == 200:
                        return self
            except urllib.error.HTTPError as e:
                if e.code == 401:  # up, and asking for a login
                    return self
                time.sleep(0.3)
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"the app did not start in {timeout}s:\n{self.log_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.root.glob("app-*.log")))


def new_project_root(base: Path, settings: dict | None = None) -> Path:
    """A fresh project folder with test settings in its user_settings.json."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "user_settings.json").write_text(json.dumps({**TEST_SETTINGS, **(settings or {})}, indent=2), encoding="utf-8")
    return base


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/ and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# Gradio draws its audio player with WaveSurfer in a shadow root: the waveform's canvases appear once
# the take is fetched and decoded (and the player has run its own stop-on-ready), and the progress
# bar's width follows the playing position.
_WAVEFORM = """(player) => {
  for (const el of document.querySelectorAll(player + ' *')) {
    if (el.shadowRoot && el.shadowRoot.querySelector('.progress')) return el.shadowRoot;
  }
  return null;
}"""
_LOADED = f"(player) => {{ const s = ({_WAVEFORM})(player); return !!s && s.querySelectorAll('canvas').length > 0; }}"
_PLAYED = f"""(player) => {{
  const s = ({_WAVEFORM})(player);
  return !!s && parseFloat(s.querySelector('.progress').style.width || '0') > 0;
}}"""


def play_and_hear(page, player: str, timeout: float = 30.0) -> None:
    """Press Play on the (until now empty) audio player ``player`` and wait until it really plays.

    A click before the take has loaded does nothing (and the player's stop-on-load would undo it),
    so wait for the waveform first. Playing is proven by the position moving on, which also holds for a
    take shorter than a second that has ended (and shows Play again) before anyone looked for Pause.
    """
    page.wait_for_function(_LOADED, arg=player, timeout=timeout * 1000)
    page.locator(f"{player} button[aria-label='Play']").first.click()
    page.wait_for_function(_PLAYED, arg=player, timeout=timeout * 1000)


def count_page_events(page, seconds: float) -> int:
    """How many events the page sends its app (Gradio's queue joins: clicks, changes and timer ticks) in the
    next ``seconds``, while waiting through Playwright so that its request events are delivered."""
    joins = []

    def seen(request):
        if request.method == "POST" and urlparse(request.url).path.rstrip("/").endswith("/queue/join"):
            joins.append(request.url)

    page.on("request", seen)
    try:
        page.wait_for_timeout(seconds * 1000)
    finally:
        page.remove_listener("request", seen)
    return len(joins)
