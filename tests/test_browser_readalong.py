"""The read-along player in a real browser: a seek highlights the sentence being read; a click seeks to a sentence."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from browser_helpers import AppServer, new_project_root, screenshot
from test_browser import wait_for_text

sys.path.insert(0, str(Path(__file__).parent))
from test_timings import PausingTTS  # noqa: E402

pytestmark = pytest.mark.browser

BOOK = """Chapter 1

The boats came in at dawn. The nets were full of silver fish, more than anyone could remember. Gulls followed them.

By noon the fish were sold.
"""

ACTIVE = "() => { const s = document.querySelector('#review-readalong .ra-s.ra-active'); return s ? s.id : null; }"


def wait_active(page, sentence_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = page.evaluate(ACTIVE)
        if got == sentence_id:
            return
        time.sleep(0.1)
    raise AssertionError(f"the highlighted sentence is {got!r}, not {sentence_id!r}")


def test_player_highlights_the_sentence_after_a_seek_and_seeks_on_click(tmp_path, tiny_models_dir, browser):
    from audiobook import manifest as mf
    from audiobook.books import load_book
    from audiobook.render import RenderOptions, RenderResult, render_events
    from audiobook.settings import Settings
    from audiobook.timings import load_timings
    from audiobook.tts import Narrator

    root = new_project_root(tmp_path / "project")
    book_file = tmp_path / "harbour.txt"
    book_file.write_text(BOOK)
    out = root / "output" / "harbour"
    s = Settings(device="cpu", max_new_tokens=2000, chunk_chars=120, make_m4b=False, verify="off", duration_outlier_factor=20.0)
    list(render_events(load_book(book_file), Narrator(kind="preset", speaker="ryan"), s, out, PausingTTS(0.03),
                       RenderResult(out_dir=out), options=RenderOptions()))
    m = mf.load_manifest(out)  # one chunk flagged, as a check would leave it
    flagged = m.chunks[m.chapters[0].chunks[1].id]
    flagged.status, flagged.error = mf.SUSPECT, "word error rate 45%"
    mf.save_manifest(m, out)
    sentences = load_timings(out)[1].sentences
    assert [x.text for x in sentences[1:4]] == ["The boats came in at dawn.",
                                                "The nets were full of silver fish, more than anyone could remember.",
                                                "Gulls followed them."]

    app = AppServer(root, tiny_models_dir).start()
    page = browser.new_page()
    try:
        page.set_default_timeout(60_000)
        page.goto(app.url)
        page.get_by_role("tab", name="Review").click()
        wait_for_text(page.locator("#review-table"), "harbour|boats|suspect", timeout=90)
        page.locator("#review-readalong-play").click()
        page.locator("#review-readalong .ra-s").first.wait_for()
        page.wait_for_function("() => document.querySelector('#review-readalong audio').readyState >= 1")
        assert page.locator("#review-readalong .ra-s").count() == len(sentences)

        # A seek into the middle of the third sentence highlights it, and only it.
        third = sentences[2]
        page.evaluate("t => { document.querySelector('#review-readalong audio').currentTime = t; }",
                      (third.start + third.end) / 2)
        wait_active(page, "ra-s-3")
        assert page.locator("#review-readalong .ra-s.ra-active").count() == 1
        screenshot(page, "readalong-seek")

        # A click on the second sentence seeks there.
        page.locator("#ra-s-2").click()
        wait_active(page, "ra-s-2")
        at = page.evaluate("() => document.querySelector('#review-readalong audio').currentTime")
        assert sentences[1].start <= at < sentences[1].end

        # The flagged chunk's sentences are marked, with the reason on hover.
        marked = page.locator("#review-readalong .ra-flagged")
        assert marked.count() >= 1 and "word error rate 45%" in marked.first.get_attribute("title")
    finally:
        page.close()
        app.stop()
