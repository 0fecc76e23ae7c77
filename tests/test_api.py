"""The page's API through gradio_client: a real client over HTTP against the launched app on tiny checkpoints."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import soundfile as sf

from audiobook.page.api import API_NAMES
from browser_helpers import AppServer, new_project_root

BOOK = """Chapter 1: The Harbour

The boats came in at dawn. The nets were full of silver fish.

Chapter 2: The Market

By noon the fish were sold. Someone was singing by the well.
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models_dir):
    root = new_project_root(tmp_path_factory.mktemp("project"), {"max_new_tokens": 64, "max_retries": 0})
    app = AppServer(root, Path(tiny_models_dir), args=["--auth", "reader:open sesame"]).start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server.url, auth=("reader", "open sesame"), verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path_factory.mktemp("downloads")))


def test_only_the_public_actions_are_named(server, client):
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == {f"/{n}" for n in API_NAMES}
    assert not api["unnamed_endpoints"]


def test_without_the_login_there_is_no_client(server):
    from gradio_client import Client

    from gradio_client.exceptions import AuthenticationError

    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        Client(server.url, verbose=False, analytics_enabled=False)
    with pytest.raises(ValueError, match="Could not login"):
        Client(server.url, auth=("reader", "guess"), verbose=False, analytics_enabled=False)


@pytest.mark.slow
def test_a_whole_render_through_the_client(server, client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    speakers = client.predict(api_name="/voices")["speakers"]
    assert "ryan" in speakers

    # A voice: hear a built-in speaker, save it, find it in the library.
    wav, note = client.predict("ryan", "", "auto", api_name="/preset_voice")
    assert sf.info(wav).samplerate == 24000 and note.startswith("Preview ready")
    assert "Saved the voice “Reader”" in client.predict("Reader", api_name="/save_voice")
    assert [v["name"] for v in client.predict(api_name="/voices")["voices"]] == ["Reader"]

    book = tmp_path / "harbour.txt"
    book.write_text(BOOK, encoding="utf-8")
    info = client.predict(handle_file(str(book)), api_name="/load_book")
    assert [c["title"] for c in info["chapters"]] == ["Chapter 1: The Harbour", "Chapter 2: The Market"]

    with pytest.raises(AppError, match="There is no voice called 'Nobody'"):
        client.predict("Nobody", api_name="/render")
    assert client.predict("Reader", api_name="/render").startswith("Started “")
    deadline = time.monotonic() + 300
    while True:
        state, m4b, srt, chapters = client.predict(api_name="/render_state")
        if state["finished"] or state["error"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert state["finished"] and not state["error"], state
    assert state["chunks_done"] == state["chunks_total"] > 0 and state["percent"] == 100.0
    assert any(line.startswith("Batch (") for line in state["log"])
    data = Path(m4b).read_bytes()
    assert data[4:8] == b"ftyp" and len(data) > 1000
    assert Path(srt).read_text(encoding="utf-8").startswith("1\n")
    assert [Path(c).name[:2] for c in chapters] == ["01", "02"]
    assert client.predict(api_name="/stop") == "Nothing is rendering."
    # Resume after a finished render redoes nothing and ends at once.
    takes = {p: p.stat().st_mtime_ns for p in (server.root / "output").glob("*/chunks/*.wav")}
    assert takes
    client.predict("Reader", api_name="/resume")
    deadline = time.monotonic() + 120
    while not (state := client.predict(api_name="/render_state")[0])["finished"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert state["finished"] and state["chunks_done"] == state["chunks_total"]
    assert not any(line.startswith("Batch (") for line in state["log"]), state["log"]  # no model call
    assert {p: p.stat().st_mtime_ns for p in (server.root / "output").glob("*/chunks/*.wav")} == takes
