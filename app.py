"""The Gradio page: parses its options, builds the ``Backend``, composes the tabs and launches.

Run ``python app.py --help``. The page listens on 127.0.0.1 unless ``--listen`` or ``--share``.
Each tab lives in its own module of ``audiobook/page/`` (layout, handlers, API names) and talks
only to the ``Backend`` handed to it; this file only puts them together.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import secrets
import sys
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from audiobook.errors import AudiobookError
from audiobook.page.api import API_NAMES, build_api, hide_from_api
from audiobook.page.book import build_book_tab
from audiobook.page.render import build_render_tab
from audiobook.page.review import build_review_tab
from audiobook.page.settings import build_settings_tab
from audiobook.page.voice_lab import build_voice_tab
from audiobook.page.widgets import CSS, build_status_line, guard_every_handler, page_errors
from audiobook.serving import ServedFiles, blocked_paths, serving_for
from backend import ROOT, Backend

log = logging.getLogger("app")


def _wire_page_load(demo: gr.Blocks, parts: list[SimpleNamespace]) -> None:
    """One event, just after the page has mounted, that fills what each part asked for (the settings on disk,
    the voices, ...).

    A one-shot timer rather than ``demo.load``: with Gradio 6.17, a page-load event answered while the page is
    still mounting sets its tabs re-measuring themselves on every animation frame, about half a CPU core for as
    long as the page stays open (``bench/page_idle.py`` measures it).
    """
    outputs = [c for part in parts for c in part.on_load[0]]

    def on_load():
        return [v for part in parts for v in part.on_load[1]()]

    first = gr.Timer(0.2)
    first.tick(lambda: gr.Timer(active=False), None, first, show_progress="hidden").then(
        page_errors(on_load), None, outputs, show_progress="hidden")


def build_app(backend: Backend) -> gr.Blocks:
    """The whole page, wired to ``backend``: the status line and one builder per tab."""
    serve = served_files()  # finished files reach the browser only as copies in a folder of their own
    with gr.Blocks(title="Audiobook") as demo:
        gr.Markdown("# Audiobook\nMake or pick a voice in the **Voice Lab**, load a book, press **Render**.")
        status = build_status_line(backend)
        book_state = gr.State(None)
        render = build_render_tab(backend, serve, book_state, status.status)
        build_book_tab(backend, serve, book_state, render)
        voices = build_voice_tab(backend, serve, render.narrator)
        review = build_review_tab(backend, serve, book_state)
        settings = build_settings_tab(backend)
        _wire_page_load(demo, [status, render, render.queue, voices, review, settings])
        build_api(backend, serve)
    hide_from_api(demo, API_NAMES)
    guard_every_handler(demo)
    return demo


# ---- command line -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="app.py", description="The audiobook page (Gradio).")
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    p.add_argument("--listen", action="store_true", help="listen on all network interfaces, not only this computer")
    p.add_argument("--share", action="store_true", help="make a public gradio.live link (the page itself stays on 127.0.0.1)")
    p.add_argument("--auth", metavar="USER:PASSWORD",
                   help="ask for this login (with --listen or --share and no --auth, a password is made up and printed)")
    p.add_argument("--models-dir", help="folder holding the checkpoints (overrides the setting, not saved)")
    p.add_argument("--root", default=os.environ.get("AUDIOBOOK_ROOT", str(ROOT)),
                   help="project folder holding user_settings.json, output/ and voices/ (default: this folder)")
    return p


def served_files() -> ServedFiles:
    """A new folder for the page's copies of finished files, inside Gradio's upload folder (which it serves)."""
    from gradio.utils import get_upload_folder

    served = ServedFiles(Path(get_upload_folder()) / f"audiobook-{secrets.token_hex(8)}")
    atexit.register(served.clear)  # the copies go when the app ends
    return served


def project_places(backend: Backend) -> list[Path]:
    """Everything of the project the server must refuse to hand out by path."""
    s = backend.settings
    places = [backend.root, backend.output_root, backend.resolve(s.voices_dir), backend.settings_path]
    places += [backend.resolve(getattr(s, k)) for k in ("models_dir", "pronunciations_file") if getattr(s, k)]
    return places


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Gradio's queue otherwise sums up every event it has served (a table of all of them, rebuilt after each
    # event) for a monitoring page this app does not use: with the page's status polls, hours of render
    # make each poll slower than the last.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(10**9))
    try:
        serving = serving_for(args.listen, args.share, args.auth)
        backend = Backend(root=args.root, models_dir=args.models_dir, lock_folders=serving.network)
    except AudiobookError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    from gradio.utils import get_upload_folder

    try:
        return _launch(args, serving, backend, get_upload_folder())
    except AudiobookError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the last resort: one sentence, the traceback in a log file
        from audiobook.errors import unexpected_sentence, write_error_log

        if isinstance(e, OSError) and "port" in str(e).lower():
            print(f"Error: The port {args.port} is taken by another program; start with --port and another number, "
                  "or stop that program.", file=sys.stderr)
            return 2
        print(f"Error: {unexpected_sentence(e, write_error_log(e, 'app'))}", file=sys.stderr)
        return 1


def _launch(args, serving, backend: Backend, upload_folder: str) -> int:
    demo = build_app(backend)
    demo.queue(default_concurrency_limit=1)  # each event one at a time; previews also share one 'model' slot
    if serving.login_line():
        print(serving.login_line(), flush=True)
    demo.launch(
        server_name=serving.host,
        server_port=args.port,
        share=serving.share,
        auth=serving.auth,
        allowed_paths=[],
        blocked_paths=blocked_paths(project_places(backend), keep_open=[upload_folder]),
        css=CSS,
        footer_links=[],
        show_error=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
