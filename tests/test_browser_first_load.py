"""The first minute on an empty project: no false alarm on any tab, and buttons that would do nothing are disabled."""

from __future__ import annotations

import time

import numpy as np
import pytest

from playwright.sync_api import expect

from audiobook.voices import BUILTIN, Voice, VoiceLibrary
from browser_helpers import AppServer, count_page_events, new_project_root, screenshot

pytestmark = pytest.mark.browser

TABS = ["Render", "Book", "Voice Lab", "Review", "Advanced Settings"]

# Buttons with nothing to act on in an empty project (no book, no voice, no render), by tab.
IDLE = {
    "Render": ["#render-start", "#render-stop", "#render-resume", "#render-queue-add"],
    "Book": ["#book-rename", "#book-set-text", "#book-merge", "#book-drop", "#book-reorder", "#book-save",
             "#cast-find", "#cast-map", "#cast-hear", "#cast-merge", "#cast-rename", "#cast-split", "#cast-hide",
             "#cast-design", "#cast-redo", "#cast-part-set"],
    "Voice Lab": ["#voice-preview", "#voice-save", "#voice-play", "#voice-delete", "#voice-export", "#voice-rename"],
    "Review": ["#review-rebuild", "#review-reroll", "#review-render", "#review-keep", "#review-readalong-play"],
}
# What a loaded book enables (each of the others waits for a chapter, a character, numbers or a render).
WITH_A_BOOK = ["#render-start", "#render-queue-add", "#book-save", "#cast-find", "#cast-design", "#review-sample"]

# Every element showing the word "Error" on its own (Gradio's badge on a component whose event failed),
# and every error toast.
ALARMS_JS = """() => {
    const shown = el => el.offsetParent !== null || el.getClientRects().length > 0;
    const badges = [...document.querySelectorAll('body *')].filter(
        el => el.children.length === 0 && el.textContent.trim() === 'Error' && shown(el));
    const toasts = [...document.querySelectorAll('[data-testid="toast-body"]')].map(t => t.innerText.trim());
    return {badges: badges.length, toasts};
}"""


def test_an_empty_project_opens_without_an_alarm_and_with_idle_buttons_disabled(browser, tmp_path, tiny_models_dir):
    book = tmp_path / "days.txt"
    book.write_text("Chapter 1: Dawn\n\nThe sun rose.\n\nChapter 2: Dusk\n\nThe sun set.\n", encoding="utf-8")
    library = VoiceLibrary(tmp_path / "elsewhere")  # a voice to import, made without a model
    library.save(Voice(name="Keeper", kind=BUILTIN, speaker="ryan"), preview=np.full(2400, 0.1, dtype=np.float32))
    voice_zip = library.export_zip("Keeper", tmp_path / "keeper.zip")
    app = AppServer(new_project_root(tmp_path / "empty"), tiny_models_dir).start()
    try:
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(app.url)
        page.wait_for_selector("#status-line")
        page.wait_for_function("document.querySelector('#render-narrator input').value !== ''")  # the page has loaded
        # While nothing renders, the page asks for the render state every IDLE_POLL_S (5 s), not every second;
        # the queue panel (closed) does not poll at all.
        polls = count_page_events(page, 8.0)
        assert 1 <= polls <= 3, f"{polls} events in 8 s on an idle page"
        for tab in TABS:
            page.get_by_role("tab", name=tab).click()
            time.sleep(1.0)
            screenshot(page, f"first-load-{tab.lower().replace(' ', '-')}")
            alarms = page.evaluate(ALARMS_JS)
            assert alarms == {"badges": 0, "toasts": []}, f"{tab}: {alarms}"

        for tab, buttons in IDLE.items():
            page.get_by_role("tab", name=tab).click()
            for button in buttons:
                assert page.locator(button).is_disabled(), button
        page.get_by_role("tab", name="Review").click()
        page.get_by_text("Sample: hear a voice in context", exact=False).first.click()
        assert page.locator("#review-sample").is_disabled()  # no book loaded
        page.get_by_role("tab", name="Advanced Settings").click()
        page.locator("#models-panel").get_by_text("Models", exact=True).first.click()
        assert page.locator("#models-download").is_disabled()  # no checkpoint picked
        page.get_by_role("tab", name="Voice Lab").click()
        page.locator("#voice-description textarea").fill("A calm, low voice")
        expect(page.locator("#voice-preview")).to_be_enabled()  # a preview needs only a description
        page.locator("#voice-name textarea").fill("Keeper")
        page.locator("#voice-rename-to textarea").fill("Old keeper")
        time.sleep(1.0)  # the page has heard both
        assert page.locator("#voice-save").is_disabled() and page.locator("#voice-rename").is_disabled()
        # A voice in the library (imported) enables what acts on it; deleting it disables them again.
        page.set_input_files("#voice-import input[type=file]", str(voice_zip))
        for button in ("#voice-play", "#voice-delete", "#voice-export", "#voice-rename"):
            expect(page.locator(button)).to_be_enabled(timeout=30_000)
        page.locator("#voice-delete").click()
        expect(page.locator("#voice-lib-message")).to_contain_text("Deleted the voice", timeout=30_000)
        for button in ("#voice-play", "#voice-delete", "#voice-export", "#voice-rename"):
            expect(page.locator(button)).to_be_disabled()

        page.get_by_role("tab", name="Render").click()
        assert not page.locator("#queue-table").is_visible()  # the queue panel starts closed
        page.get_by_text("Queue", exact=True).click()
        page.locator("#queue-table").wait_for(state="visible")
        for button in ("#queue-up", "#queue-down", "#queue-remove", "#queue-retry", "#queue-run"):
            assert page.locator(button).is_disabled(), button
        assert page.locator("#queue-item").count() == 0  # rows are chosen in the table, not by number

        # A book enables what acts on a book, at once; the rest wait for what they act on.
        page.set_input_files("#render-book-file input[type=file]", str(book))
        expect(page.locator("#render-book-info")).to_contain_text("2 chapters", timeout=60_000)
        for button in WITH_A_BOOK:
            expect(page.locator(button)).to_be_enabled()
        for button in ("#render-stop", "#render-resume", "#book-merge", "#book-rename", "#cast-map"):
            assert page.locator(button).is_disabled(), button
        page.get_by_role("tab", name="Book").click()
        page.locator("#book-numbers textarea").fill("1, 2")
        for button in ("#book-merge", "#book-drop", "#book-reorder"):
            expect(page.locator(button)).to_be_enabled()
        page.locator("#book-numbers textarea").fill("")
        expect(page.locator("#book-merge")).to_be_disabled()
        screenshot(page, "first-load-book-loaded")
        assert page.evaluate(ALARMS_JS) == {"badges": 0, "toasts": []}
        page.close()
    finally:
        app.stop()
