"""The first minute on an empty project: no false alarm on any tab, and buttons that would do nothing are disabled."""

from __future__ import annotations

import time

import pytest

from browser_helpers import AppServer, new_project_root, screenshot

pytestmark = pytest.mark.browser

TABS = ["Render", "Book", "Voice Lab", "Review", "Advanced Settings"]

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
    app = AppServer(new_project_root(tmp_path / "empty"), tiny_models_dir).start()
    try:
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(app.url)
        page.wait_for_selector("#status-line")
        page.wait_for_function("document.querySelector('#render-narrator input').value !== ''")  # the page has loaded
        time.sleep(3 * 1.0)  # a few polls of the render state and the queue
        for tab in TABS:
            page.get_by_role("tab", name=tab).click()
            time.sleep(1.0)
            screenshot(page, f"first-load-{tab.lower().replace(' ', '-')}")
            alarms = page.evaluate(ALARMS_JS)
            assert alarms == {"badges": 0, "toasts": []}, f"{tab}: {alarms}"

        page.get_by_role("tab", name="Render").click()
        for button in ("#render-stop", "#render-resume"):
            assert page.locator(button).is_disabled(), button
        assert page.locator("#render-start").is_enabled()
        assert not page.locator("#queue-table").is_visible()  # the queue panel starts closed
        page.get_by_text("Queue", exact=True).click()
        page.locator("#queue-table").wait_for(state="visible")
        for button in ("#queue-up", "#queue-down", "#queue-remove", "#queue-retry", "#queue-run"):
            assert page.locator(button).is_disabled(), button
        assert page.locator("#queue-item").count() == 0  # rows are chosen in the table, not by number

        page.get_by_role("tab", name="Review").click()
        for button in ("#review-rebuild", "#review-reroll", "#review-render", "#review-keep", "#review-readalong-play"):
            assert page.locator(button).is_disabled(), button
        assert page.evaluate(ALARMS_JS) == {"badges": 0, "toasts": []}
        page.close()
    finally:
        app.stop()
