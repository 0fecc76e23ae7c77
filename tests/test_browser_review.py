"""The Review tab in a real browser: open a flagged chunk, play, edit, render, rebuild, download; flags survive a reload."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from browser_helpers import AppServer, new_project_root, play_and_hear, screenshot
from test_browser import wait_for_text

pytestmark = pytest.mark.browser

BOOK = """Chapter 1: The Harbour

The boats came in at dawn. The nets were full of silver fish.

Chapter 2: The Market

By noon the fish were sold. Someone was singing by the well.
"""


def test_review_a_flagged_chunk_fix_it_rebuild_and_download(tmp_path, tiny_models_dir, browser):
    import backend
    from audiobook import manifest as mf
    from audiobook.tts import Narrator

    # A book rendered with the check on: tiny Whisper hears noise, so every chunk is flagged.
    root = new_project_root(tmp_path / "project", {"verify": "on", "max_retries": 0, "max_new_tokens": 80,
                                                    "engine": "qwen_tts", "chunk_chars": 60})
    book_file = tmp_path / "harbour.txt"
    book_file.write_text(BOOK)
    be = backend.Backend(root=root, models_dir=str(tiny_models_dir))
    result = be.render(book_file, Narrator(kind="preset", speaker="ryan"))
    out = result.out_dir
    old_m4b = (out / "harbour.m4b").read_bytes()
    flagged = [s for s in mf.load_manifest(out).chunks.values() if s.status == mf.SUSPECT]
    assert flagged

    app = AppServer(root, tiny_models_dir).start()
    page = browser.new_page()
    try:
        page.set_viewport_size({"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(app.url)
        page.get_by_role("tab", name="Review").click()
        table = page.locator("#review-table")
        wait_for_text(table, "suspect", timeout=90)
        deadline = time.monotonic() + 30
        while table.inner_text().count("suspect") != len(flagged) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert table.inner_text().count("suspect") == len(flagged)  # one row per flagged chunk

        # Open the first flagged chunk: the note says which rule flagged it and why; its take plays.
        first = mf.load_manifest(out).chunks[mf.load_manifest(out).chapters[0].chunks[0].id]
        assert first.rule and first.error
        # The reason's own words (a quote of what tiny Whisper heard may hold characters a page shows otherwise).
        said = re.split(r" [(']", first.error)[0]
        why = re.escape(f"{first.rule}: {said}")
        assert re.search(why, table.inner_text())  # the table's "why" column
        table.get_by_text("Chapter one: The Harbour").click()
        wait_for_text(page.locator("#review-note"), r"Chapter 1, chunk 1 — suspect: " + why, timeout=90)
        play_and_hear(page, "#review-player")
        assert page.locator("#review-heard").inner_text().strip()  # the transcript against the text
        page.locator("#review-text textarea").fill("The harbour at dawn, fixed by hand.")
        page.locator("#review-render").click()
        wait_for_text(page.locator("#review-message"), "Rendered the chunk", timeout=90)
        screenshot(page, "review-rendered")

        page.locator("#review-rebuild").click()
        wait_for_text(page.locator("#review-rebuild-message"), r"Rebuilt: .*harbour\.m4b", timeout=90)
        link = page.locator("#review-m4b a").first
        link.wait_for()
        with page.expect_download() as d:
            link.click()
        got = Path(d.value.path()).read_bytes()
        assert got == (out / "harbour.m4b").read_bytes() and got != old_m4b

        # The edit is in the manifest, and the flags come back after a reload.
        m = mf.load_manifest(out)
        assert "The harbour at dawn, fixed by hand." in m.edits.values()
        page.reload()
        page.get_by_role("tab", name="Review").click()
        wait_for_text(page.locator("#review-table"), "suspect", timeout=90)
        assert page.locator("#review-table").inner_text().count("suspect") == len(flagged)
        screenshot(page, "review-after-reload")
    finally:
        page.close()
        app.stop()
