"""What an open, idle page costs: ``python bench/page_idle.py [--app app.py --app OTHER/app.py] [--rounds 3]``.

Starts each ``app.py`` given (default: this checkout's) on an empty project and the tiny checkpoints, opens
the page in headless Chromium (Debian's, through Playwright, as the browser tests do), lets it settle, then
counts the CPU time of the browser's processes and of the app's process over ``--seconds`` of doing nothing.
The apps take turns, ``--rounds`` times, so a busy machine weighs on each alike. A page that only waits
should cost next to nothing: the user's CPU renders the book.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser_helpers import CHROMIUM_ARGS, AppServer, chromium_path, new_project_root  # noqa: E402


def cpu_seconds(keep) -> float:
    """The CPU time so far of every process for which ``keep(pid, command line)`` holds."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if keep(int(pid), cmd):
            fields = stat[stat.rfind(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def idle_cost(browser, app: Path, models: Path, settle_s: float, seconds: float) -> tuple[float, float]:
    """(browser CPU s, app CPU s) over ``seconds`` of an open page doing nothing."""
    with tempfile.TemporaryDirectory(prefix="page-idle-") as project:
        server = AppServer(new_project_root(Path(project)), models, app=app).start()
        try:
            page = browser.new_page()
            page.goto(server.url)
            page.wait_for_selector("#status-line")
            time.sleep(settle_s)

            def in_browser(pid, cmd):
                return "chromium" in cmd

            def in_app(pid, cmd):
                return pid == server.proc.pid

            b0, a0 = cpu_seconds(in_browser), cpu_seconds(in_app)
            time.sleep(seconds)
            b1, a1 = cpu_seconds(in_browser), cpu_seconds(in_app)
            page.close()
            return b1 - b0, a1 - a0
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", action="append", help="an app.py to measure (repeat to compare; default this one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="idle seconds measured per page (default 20)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the page shows before measuring")
    parser.add_argument("--models-dir", default=str(Path(tempfile.gettempdir()) / "audiobook-bench-page-models"))
    args = parser.parse_args(argv)
    apps = [Path(a).resolve() for a in (args.app or [str(ROOT / "app.py")])]
    exe = chromium_path()
    if exe is None:
        raise SystemExit("Chromium is not installed; `make browser` installs Debian's chromium.")
    from playwright.sync_api import sync_playwright

    from audiobook.tiny import build_tiny_models

    models = Path(args.models_dir)
    build_tiny_models(models)
    costs: dict[Path, list[tuple[float, float]]] = {a: [] for a in apps}
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        browser = pw.chromium.launch_persistent_context(profile, executable_path=exe, args=CHROMIUM_ARGS, headless=True,
                                                        viewport={"width": 1280, "height": 900})
        for n in range(args.rounds):
            for app in apps:
                costs[app].append(idle_cost(browser, app, models, args.settle, args.seconds))
                b, a = costs[app][-1]
                print(f"round {n + 1} {app}: browser {b:.1f} CPU s, app {a:.1f} CPU s over {args.seconds:.0f} s")
        browser.close()
    print(f"\nAn idle page, CPU cores busy (CPU seconds per second), mean of {args.rounds} rounds:\n")
    print("| app | browser | app server | both |")
    print("|---|---|---|---|")
    for app, rows in costs.items():
        b = sum(r[0] for r in rows) / len(rows) / args.seconds
        a = sum(r[1] for r in rows) / len(rows) / args.seconds
        print(f"| {app} | {b:.2f} | {a:.2f} | {b + a:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
