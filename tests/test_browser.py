"""The page in a real browser: Playwright driving Chromium against the app on tiny checkpoints."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from browser_helpers import AppServer, new_project_root, play_and_hear, screenshot

pytestmark = pytest.mark.browser

BOOK = """Chapter 1: The Harbour

The boats came in at dawn. The nets were full of silver fish.

The harbour master counted every boat. Gulls circled the masts and cried.

Chapter 2: The Market

By noon the fish were sold. Someone was singing by the well.

The baker closed his shutters early. Children chased a dog along the quay.
"""


@pytest.fixture(scope="session")
def models_dir(request, tmp_path_factory) -> Path:
    """The suite's tiny checkpoints."""
    return Path(request.getfixturevalue("tiny_models_dir"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_dir):
    # One chunk a call (qwen_tts's own loop: the fast engine would take several chunks a call)
    # and short takes: several batches, so a render can be stopped mid-way.
    root = new_project_root(tmp_path_factory.mktemp("project"),
                            {"batch_size": 1, "max_new_tokens": 64, "engine": "qwen_tts"})
    app = AppServer(root, models_dir).start()
    yield app
    app.stop()


def new_page(browser, url: str):
    page = browser.new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    page.wait_for_selector("#status-line")
    return page


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def wait_for_text(locator, pattern: str, timeout: float = 60.0) -> str:
    """Poll ``locator``'s text until it matches ``pattern``; return the text."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = locator.inner_text()
        if re.search(pattern, text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"text never matched {pattern!r}; last: {text!r}")


def test_batch_slider_saves_and_survives_restart(browser, tmp_path, models_dir):
    app = AppServer(new_project_root(tmp_path / "project"), models_dir).start()
    try:
        page = new_page(browser, app.url)
        open_tab(page, "Advanced Settings")
        number = page.locator("#setting-batch_size input[type=number]")
        assert number.input_value() == "5"
        assert page.get_by_text("If you run out of GPU memory, lower this").is_visible()
        number.fill("12")
        number.press("Enter")
        page.locator("#settings-save").click()
        wait_for_text(page.locator("#settings-message"), "Saved")
        assert app.settings()["batch_size"] == 12
        screenshot(page, "tab-advanced-settings")

        # A bad value is refused next to its control and nothing is written.
        page.get_by_text("Sampling", exact=True).click()
        page.locator("#setting-temperature input").fill("9")
        page.locator("#settings-save").click()
        wait_for_text(page.locator("#error-temperature"), "between 0.05 and 2")
        wait_for_text(page.locator("#settings-message"), "Not saved")
        assert app.settings()["temperature"] != 9
        screenshot(page, "settings-error")
        page.close()

        app.stop()
        app.start()
        page = new_page(browser, app.url)
        open_tab(page, "Advanced Settings")
        page.wait_for_function("document.querySelector('#setting-batch_size input[type=number]').value === '12'")
        assert app.settings()["batch_size"] == 12
        page.close()
    finally:
        app.stop()


def test_design_a_voice_play_it_save_it_and_find_it_in_the_library(browser, server):
    page = new_page(browser, server.url)
    open_tab(page, "Voice Lab")
    page.locator("#voice-description textarea").fill("A calm, low voice of an old lighthouse keeper")
    page.locator("#voice-seed input").fill("7")
    page.locator("#voice-preview").click()
    wait_for_text(page.locator("#voice-preview-message"), "Preview ready")
    play_and_hear(page, "#voice-preview-audio")
    page.locator("#voice-name textarea").fill("Keeper")
    page.locator("#voice-save").click()
    wait_for_text(page.locator("#voice-save-message"), "Saved the voice “Keeper”")
    wait_for_text(page.locator("#voice-library"), "Keeper")
    assert (server.root / "voices" / "Keeper" / "voice.json").is_file()
    screenshot(page, "tab-voice-lab")
    page.close()


def test_render_stop_resume_reach_100_percent_and_download_the_m4b(browser, server, tmp_path):
    # Enough one-chunk paragraphs that a Stop always lands before the render ends.
    extra = "\n\n".join(f"Boat number {n} came home with its nets." for n in range(1, 16))
    book = tmp_path / "harbour.txt"
    book.write_text(BOOK.replace("Chapter 2:", extra + "\n\nChapter 2:"), encoding="utf-8")
    page = new_page(browser, server.url)
    page.set_input_files("#render-book-file input[type=file]", str(book))
    wait_for_text(page.locator("#render-book-info"), "2 chapters")
    page.wait_for_function("document.querySelector('#render-narrator input').value !== ''")
    page.locator("#render-start").click()
    progress = page.locator("#render-progress")
    wait_for_text(progress, r"Rendering .* [1-9]\d* / \d+ chunks")

    # A second tab (or a reload) shows the same running render: its state lives in the backend.
    other = new_page(browser, server.url)
    wait_for_text(other.locator("#render-progress"), r"Rendering|Done")
    other.close()

    page.locator("#render-stop").click()
    stopped = wait_for_text(progress, r"Stopped")
    done, total = map(int, re.search(r"(\d+) / (\d+) chunks", stopped).groups())
    assert 0 < done < total, stopped
    screenshot(page, "render-stopped")

    page.locator("#render-resume").click()
    wait_for_text(progress, r"Done .*100%", timeout=120)
    log = page.locator("#render-log textarea").input_value()
    assert "Batch (1 chunk) done in" in log
    screenshot(page, "tab-render")

    link = page.locator("#render-m4b a").first
    link.wait_for()
    with page.expect_download() as d:
        link.click()
    saved = tmp_path / "book.m4b"
    d.value.save_as(saved)
    assert saved.stat().st_size > 1000 and saved.read_bytes()[4:8] == b"ftyp"
    page.close()


def test_book_tab_shows_chapters_and_edits_them(browser, server, tmp_path):
    book = tmp_path / "harbour.txt"
    book.write_text(BOOK, encoding="utf-8")
    page = new_page(browser, server.url)
    open_tab(page, "Book")
    page.set_input_files("#book-file input[type=file]", str(book))
    wait_for_text(page.locator("#book-chapters"), "The Market")
    page.locator("#book-numbers textarea").fill("2, 1")
    page.locator("#book-reorder").click()
    # The chapter table lists the new order: The Market first, then The Harbour.
    wait_for_text(page.locator("#book-chapters"), r"The Market[\s\S]*The Harbour")
    page.locator("#book-save").click()
    page.locator("#book-saved a").first.wait_for()
    saved = next((server.root / "output" / "books").glob("*.json")).read_text(encoding="utf-8")
    assert saved.index("The Market") < saved.index("The Harbour")
    screenshot(page, "tab-book")
    page.close()


def test_book_tab_reads_a_scanned_pdf_with_a_progress_bar_and_says_what_it_did(browser, server, tmp_path):
    import uuid

    from test_book_formats import SCANNED_PAGES, draw_page

    pages = [draw_page(heading, paragraphs, n) for n, (heading, paragraphs) in enumerate(SCANNED_PAGES, 1)]
    scan = tmp_path / "scanned.pdf"  # a title of its own: never in the OCR cache, so the pages are read now
    pages[0].save(scan, save_all=True, append_images=pages[1:], resolution=200, title=f"Scan {uuid.uuid4().hex}")
    page = new_page(browser, server.url)
    open_tab(page, "Book")
    assert ".docx" in page.locator("#book-file").inner_text()  # the picker's label lists the formats read
    page.set_input_files("#book-file input[type=file]", str(scan))
    wait_for_text(page.locator("body"), r"Reading scanned page \d of 3 with OCR", timeout=60)
    info = wait_for_text(page.locator("#book-info"), r"3 pages read by OCR", timeout=120)
    assert "Read as PDF" in info and "running head" in info
    wait_for_text(page.locator("#book-chapters"), "Chapter 2")
    page.close()


def test_a_page_on_the_network_asks_for_a_login_and_hands_out_only_finished_files(browser, tmp_path, models_dir):
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    import numpy as np

    from audiobook.voices import Voice, VoiceLibrary

    root = new_project_root(tmp_path / "project", {"max_new_tokens": 64, "max_retries": 0})
    rng = np.random.default_rng(0)
    VoiceLibrary(root / "voices").save(Voice(name="Keeper", kind="cloned", reference_text="A short line."),
                                       reference=(0.1 * rng.standard_normal(24000 * 4)).astype(np.float32))
    outside = tmp_path / "private.wav"
    outside.write_bytes((root / "voices" / "Keeper" / "reference.wav").read_bytes())
    app = AppServer(root, models_dir, args=["--listen", "--auth", "reader:open sesame"]).start()

    def status_of(url: str, headers: dict | None = None) -> int:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    try:
        assert status_of(app.url + "config") == 401  # nothing without a login
        page = browser.new_page()
        page.set_default_timeout(30_000)
        wrong = page.request.post(app.url + "login", form={"username": "reader", "password": "guess"})
        assert wrong.status >= 400
        assert page.request.post(app.url + "login", form={"username": "reader", "password": "open sesame"}).ok
        page.goto(app.url)
        page.wait_for_selector("#status-line")

        # A render on the page: its m4b downloads from the link the page shows.
        book = tmp_path / "harbour.txt"
        book.write_text(BOOK, encoding="utf-8")
        page.set_input_files("#render-book-file input[type=file]", str(book))
        wait_for_text(page.locator("#render-book-info"), "2 chapters")
        page.wait_for_function("document.querySelector('#render-narrator input').value.includes('Keeper')")
        page.locator("#render-start").click()
        wait_for_text(page.locator("#render-progress"), r"Done .*100%", timeout=180)
        link = page.locator("#render-m4b a").first
        link.wait_for()
        with page.expect_download() as d:
            link.click()
        saved = tmp_path / "book.m4b"
        d.value.save_as(saved)
        assert saved.read_bytes()[4:8] == b"ftyp"
        href = urllib.parse.urljoin(app.url, link.get_attribute("href"))
        assert page.request.get(href).ok
        assert status_of(href) == 401  # the same link without the login

        # Nothing of the project is served by its path, even to someone logged in.
        out = next((root / "output").glob("*/manifest.json")).parent
        manifest = json.loads((out / "manifest.json").read_text())
        chunk = out / next(iter(manifest["chunks"].values()))["file"]
        m4b = next(out.glob("*.m4b"))
        forbidden = [out / "manifest.json", chunk, root / "voices" / "Keeper" / "reference.wav", m4b,
                     root / "user_settings.json", outside, Path("/etc/passwd")]
        for path in forbidden:
            assert path.is_file(), path
            for route in ("gradio_api/file=", "file="):
                got = page.request.get(app.url + route + str(path))
                assert got.status in (403, 404), (route, path, got.status)

        # The folders cannot be changed from here; the other settings can.
        open_tab(page, "Advanced Settings")
        page.get_by_text("Output", exact=True).click()
        assert page.locator("#setting-output_dir textarea, #setting-output_dir input").first.is_disabled()
        screenshot(page, "settings-on-the-network")
        page.close()
    finally:
        app.stop()


def test_design_the_cast_in_one_click_then_rename_a_character(browser, server, tmp_path):
    book = tmp_path / "river.txt"
    book.write_text('Chapter 1: The Knock\n\nThe old gentleman knocked at the door.\n\n'
                    '"Let me in, I am wet through and through," growled the old gentleman.\n\n'
                    '"I cannot, sir, my brothers would beat me," said Gluck softly.\n\n'
                    '"Then I shall wait here all night," muttered the old gentleman.\n\n'
                    '"Please do not be angry with me, sir," whispered Gluck.\n', encoding="utf-8")
    page = new_page(browser, server.url)
    open_tab(page, "Book")
    page.set_input_files("#book-file input[type=file]", str(book))
    wait_for_text(page.locator("#book-chapters"), "The Knock")
    page.locator("#cast-find").click()
    wait_for_text(page.locator("#cast-message"), r"Found 2 speakers")
    page.locator("#book-chapter input").click()
    page.get_by_role("option", name="1. Chapter 1: The Knock").click()
    legend = page.locator('#cast-spans [data-testid="highlighted-text:category-legend"]')
    wait_for_text(legend, "Gluck")
    assert "sure" not in legend.inner_text()  # coloured by speaker
    page.locator("#cast-confidence input").check()
    wait_for_text(legend, "sure")  # every quote here says who speaks
    assert "Gluck" not in legend.inner_text()
    page.locator("#cast-design").click()
    wait_for_text(page.locator("#cast-message"), r"Designed 2 voices", timeout=180)
    wait_for_text(page.locator("#cast-table"), r"Gluck\s+2[\s\S]*Gluck \(river\)")
    assert "Gluck" not in legend.inner_text()  # still coloured by how sure
    saved = json.loads((server.root / "output" / "river" / "cast.json").read_text())
    assert {c["name"]: c["voice"] for c in saved["characters"]} == {
        "Gluck": "Gluck (river)", "Old gentleman": "Old gentleman (river)"}
    assert (server.root / "voices").is_dir() and any("Gluck" in p.name for p in (server.root / "voices").iterdir())
    screenshot(page, "cast-designed")

    page.locator("#cast-character input").click()
    page.get_by_role("option", name="Old gentleman", exact=True).click()
    page.locator("#cast-other textarea, #cast-other input").first.fill("Southwest Wind")
    page.locator("#cast-rename").click()
    wait_for_text(page.locator("#cast-message"), "Old gentleman is now called Southwest Wind")
    wait_for_text(page.locator("#cast-table"), r"Southwest Wind\s+2\s+male\s+Old gentleman \(river\)\s+Old gentleman")
    page.close()


def test_cast_map_a_character_to_a_saved_voice_render_and_see_who_spoke(browser, server, tmp_path):
    import numpy as np

    from audiobook import manifest as mf
    from audiobook.voices import Voice, VoiceLibrary

    t = np.arange(48000) / 24000
    clip = (0.2 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)  # a tone, no person
    VoiceLibrary(server.root / "voices").save(Voice(name="Alice voice", kind="cloned", reference_text="A tone."), clip,
                                             overwrite=True)
    book = tmp_path / "gate.txt"
    book.write_text('Chapter 1: The Gate\n\n"Who goes there?" asked Alice. The gate was shut.\n\n'
                    '"Only me," someone said.\n', encoding="utf-8")
    page = new_page(browser, server.url)
    page.locator("button", has_text="Refresh the list").click()
    open_tab(page, "Book")
    page.set_input_files("#book-file input[type=file]", str(book))
    wait_for_text(page.locator("#book-chapters"), "The Gate")
    page.locator("#cast-find").click()
    wait_for_text(page.locator("#cast-message"), r"Found 2 speakers")
    wait_for_text(page.locator("#cast-table"), r"Alice[\s\S]*dialogue")
    page.locator("#cast-character input").click()
    page.get_by_role("option", name="Alice", exact=True).click()
    page.locator("#cast-voice input").click()
    page.get_by_role("option", name="Alice voice", exact=True).click()
    page.locator("#cast-map").click()
    wait_for_text(page.locator("#cast-message"), "Alice is read by Alice voice")
    wait_for_text(page.locator("#cast-table"), r"Alice\s+1\s+Alice voice")
    assert json.loads((server.root / "output" / "gate" / "cast.json").read_text())["characters"][0]["voice"] == "Alice voice"

    # The chapter's text shows who speaks what; one part gets another speaker and a style.
    page.locator("#book-chapter input").click()
    page.get_by_role("option", name="1. Chapter 1: The Gate").click()
    wait_for_text(page.locator("#cast-spans"), r"Alice")
    wait_for_text(page.locator("#cast-parts"), r"3\s+dialogue\s+\"Only me,\"")
    page.locator("#cast-part input").fill("3")
    page.locator("#cast-part-speaker input, #cast-part-speaker textarea").first.fill("Keeper")
    page.locator("#cast-part-set").click()
    wait_for_text(page.locator("#cast-message"), "Part 3 is now read as Keeper")
    wait_for_text(page.locator("#cast-parts"), r"3\s+Keeper")
    wait_for_text(page.locator("#cast-table"), r"Keeper\s+1")
    screenshot(page, "book-cast")

    open_tab(page, "Render")
    page.locator("#render-narrator input").click()
    page.get_by_role("option", name="Ryan (built-in speaker)").click()
    page.locator("#render-start").click()
    wait_for_text(page.locator("#render-progress"), r"Done .*100%", timeout=180)
    speakers = wait_for_text(page.locator("#render-speakers"), r"Alice\s+Alice voice")
    assert re.search(r"narrator\s+ryan\s+3", speakers) and re.search(r"Keeper\s+ryan\s+1", speakers), speakers
    screenshot(page, "render-cast")

    # The Review tab names each chunk's speaker, and the voice that read it.
    open_tab(page, "Review")
    page.locator("#review-refresh").click()
    page.wait_for_function("document.querySelector('#review-book input').value === 'gate'")
    page.locator("#review-flagged input").uncheck()
    table = page.locator("#review-table")
    wait_for_text(table, r"Alice\s+\"Who goes there\?\"")
    assert re.search(r"Keeper\s+\"Only me,\"", table.inner_text())
    table.get_by_text('"Who goes there?"').click()
    wait_for_text(page.locator("#review-note"), r"Alice, read by Alice voice")
    screenshot(page, "review-cast")
    page.close()  # an open page costs the browser and the app CPU time while the next tests run
    m = mf.load_manifest(server.root / "output" / "gate")
    said = {s.text: (s.speaker, s.voice) for s in m.chunks.values()}
    assert said['"Who goes there?"'] == ("Alice", "Alice voice") and said["someone said."] == ("narrator", "ryan")
    assert said['"Only me,"'][0] == "Keeper"  # as the part was changed on the page


def test_queue_two_books_on_the_page_and_watch_both_finish(browser, server, tmp_path):
    books = {"ropes": "Chapter 1: Ropes\n\nThe ropes were coiled on the quay.\n\nChapter 2: Sails\n\nThe sails were mended.\n",
             "lamps": "Chapter 1: Lamps\n\nThe lamps were lit at dusk.\n\nChapter 2: Bells\n\nThe bells rang twice.\n"}
    page = new_page(browser, server.url)
    page.wait_for_function("document.querySelector('#render-narrator input').value !== ''")
    for title, text in books.items():
        path = tmp_path / f"{title}.txt"
        path.write_text(text, encoding="utf-8")
        if title != "ropes":  # the file box holds the first book: clear it for the next
            page.locator("#render-book-file button[aria-label='Clear']").click()
        page.set_input_files("#render-book-file input[type=file]", str(path))
        wait_for_text(page.locator("#render-book-info"), title)
        page.locator("#render-queue-add").click()
        wait_for_text(page.locator("#render-message"), f"Queued “{title}”")
    page.get_by_text("Queue", exact=True).click()  # the panel starts closed
    table = page.locator("#queue-table")
    wait_for_text(table, r"ropes[\s\S]*queued[\s\S]*lamps[\s\S]*queued")
    screenshot(page, "queue-added")

    page.locator("#queue-run").click()
    wait_for_text(page.locator("#render-message"), "Rendering the queue: 2 books to go")
    wait_for_text(table, r"ropes[\s\S]*done[\s\S]*lamps[\s\S]*done", timeout=300)
    screenshot(page, "queue-done")
    for title in books:
        assert len(list((server.root / "output" / title).glob("*.m4b"))) == 1, title
    queue = (server.root / "output" / "queue.json").read_text(encoding="utf-8")
    assert queue.count('"status": "done"') == 2
    page.close()
