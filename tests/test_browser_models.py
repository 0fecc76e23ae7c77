"""The Models panel, a preview whose checkpoint is missing, and "Check this computer", in a real browser.

The app downloads from a local hub (tests/hub_server.py) that serves the tiny checkpoints the way
huggingface.co does; the first download of each weights file breaks off at 85 % and resumes.
"""

from __future__ import annotations

import re

import pytest

from browser_helpers import AppServer, new_project_root, screenshot
from test_browser import new_page, open_tab, wait_for_text
from tests.hub_server import LocalHub

pytestmark = pytest.mark.browser

DESIGN = "Qwen3-TTS-12Hz-1.7B-VoiceDesign"
PRESET = "Qwen3-TTS-12Hz-1.7B-CustomVoice"


@pytest.fixture()
def hub(tiny_models_dir, monkeypatch, tmp_path):
    server = LocalHub()
    for name in (DESIGN, PRESET):
        server.add_folder(f"Qwen/{name}", tiny_models_dir / name)
        # Past huggingface_hub's first 10 MB write, so the break leaves bytes on disk to resume from.
        server.break_file(f"Qwen/{name}", "model.safetensors", times=1, at=0.85)
    server.start()
    # The app's subprocess inherits these: the local hub, and an empty Hugging Face cache.
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    yield server
    server.stop()


def wait_done(page, selector: str, timeout: float = 120.0) -> str:
    page.wait_for_selector(f"{selector} [data-state=done]", timeout=timeout * 1000)
    return page.locator(selector).inner_text()


def test_missing_checkpoint_download_models_panel_and_check_this_computer(browser, hub, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    app = AppServer(new_project_root(tmp_path / "project", {"batch_size": 2}), models).start()
    try:
        page = new_page(browser, app.url)
        assert not hub.ranges("/cdn/"), "a download started that nobody asked for"

        # Generate preview with the design checkpoint missing: the page names the download and offers it.
        open_tab(page, "Voice Lab")
        page.locator("#voice-description textarea").fill("A calm, low voice.")
        page.locator("#voice-preview").click()
        wait_for_text(page.locator("#voice-preview-message"), f"{DESIGN}.*not downloaded yet")
        button = page.locator("#voice-need-download")
        assert button.is_visible() and DESIGN in button.inner_text()
        assert not hub.ranges("/cdn/")
        screenshot(page, "voice-lab-missing-model")
        button.click()
        text = wait_done(page, "#voice-need-progress")
        assert re.search(r"Downloaded .*100 %", text), text
        assert page.locator("#voice-need-progress progress").get_attribute("value") == "1.0000"
        # The weights broke off once and the download resumed from the bytes on disk.
        weights = hub.ranges("/cdn/")
        assert any(r.startswith("bytes=") and r != "bytes=0-" for r in weights), weights
        wait_for_text(page.locator("#voice-preview-message"), "press Generate preview")
        page.locator("#voice-preview").click()
        wait_for_text(page.locator("#voice-preview-message"), "Preview ready", timeout=120)

        # The Models panel: the status of every checkpoint; download another with a progress bar.
        open_tab(page, "Advanced Settings")
        page.locator("#models-panel").get_by_text("Models", exact=True).first.click()
        table = page.locator("#models-table")
        wait_for_text(table, rf"{DESIGN}\s+on disk")
        wait_for_text(table, rf"{PRESET}\s+not downloaded")
        page.locator("#models-pick input").fill(PRESET)
        page.locator("#models-pick input").press("Enter")
        page.locator("#models-download").click()
        text = wait_done(page, "#models-progress")
        assert f"Downloaded {PRESET}: 100 %" in text
        wait_for_text(table, rf"{PRESET}\s+on disk")
        assert (models / PRESET / "config.json").is_file()
        screenshot(page, "models-panel")

        # Check this computer: the live check on the downloaded checkpoint, then use its batch size.
        page.locator("#doctor-panel").get_by_text("Check this computer", exact=True).first.click()
        page.locator("#doctor-run").click()
        report = wait_for_text(page.locator("#doctor-report"), "Suggested batch size", timeout=240)
        assert "the fast engine agrees with qwen_tts" in report and PRESET in report
        use = page.locator("#doctor-use-batch")
        suggested = int(re.search(r"Use suggested batch size \((\d+)\)", use.inner_text()).group(1))
        assert suggested != 2 and f"Suggested batch size: {suggested}" in report
        screenshot(page, "check-this-computer")
        use.click()
        wait_for_text(page.locator("#doctor-use-message"), f"batch size {suggested}")
        assert app.settings()["batch_size"] == suggested
        page.wait_for_function(
            f"document.querySelector('#setting-batch_size input[type=number]').value === '{suggested}'")
        page.close()
    finally:
        app.stop()
