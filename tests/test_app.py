"""The page's handlers as plain functions, against a real Backend on the tiny checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest

import app
from audiobook.page import api as api_page
from audiobook.page import book as book_page
from audiobook.page import cast as cast_page
from audiobook.page import render as render_page
from audiobook.page import settings as settings_page
from audiobook.page import voice_lab as voice_lab_page
from audiobook.page import widgets as widgets_page
from audiobook.books import Book, Chapter
from audiobook.errors import AudiobookError
from audiobook.render import ChunkReport, RenderState
from audiobook.settings import Settings
from backend import Backend

BOOK = "Chapter 1: Dawn\n\nThe sun rose. The birds sang.\n\nChapter 2: Dusk\n\nThe sun set. The owls woke.\n"


@pytest.fixture
def backend(tmp_path, tiny_models_dir) -> Backend:
    (tmp_path / "user_settings.json").write_text(json.dumps({"device": "cpu", "max_new_tokens": 100}), encoding="utf-8")
    return Backend(root=tmp_path, models_dir=str(tiny_models_dir))


@pytest.fixture
def book() -> Book:
    return Book(title="Days", chapters=[Chapter("Dawn", "The sun rose."), Chapter("Noon", "It was hot."),
                                        Chapter("Dusk", "The sun set.")])


# ---- settings ----


def test_every_setting_has_a_control_in_some_group():
    names = settings_page.setting_names()
    assert sorted(names) == sorted(f for f in Settings().to_dict())
    assert len(names) == len(set(names))
    assert [n for _, group in settings_page.setting_groups() for n in group] == names


def test_save_settings_writes_user_settings_json(backend):
    message, errors = settings_page.save_settings(backend, {"batch_size": 12, "attention_mode": "eager"})
    assert errors == {} and "Saved" in message
    on_disk = json.loads(backend.settings_path.read_text())
    assert on_disk["batch_size"] == 12 and on_disk["attention_mode"] == "eager"
    assert on_disk["device"] == "cpu"  # untouched values stay


def test_bad_values_are_reported_per_field_and_nothing_is_written(backend):
    before = backend.settings_path.read_text()
    message, errors = settings_page.save_settings(backend, {"batch_size": 65, "temperature": "warm", "top_p": 0.5})
    assert set(errors) == {"batch_size", "temperature"}
    assert "between 1 and 64" in errors["batch_size"]
    assert "Not saved: 2 settings need fixing" in message
    assert backend.settings_path.read_text() == before


def test_the_models_dir_override_is_not_saved(backend, tiny_models_dir):
    settings_page.save_settings(backend, {"models_dir": str(tiny_models_dir), "batch_size": 3})
    assert json.loads(backend.settings_path.read_text())["models_dir"] == ""


def test_reset_restores_defaults(backend):
    settings_page.save_settings(backend, {"batch_size": 9})
    message, values = settings_page.reset_settings(backend)
    assert values[settings_page.setting_names().index("batch_size")] == 5
    assert json.loads(backend.settings_path.read_text())["batch_size"] == 5


def test_attention_choices_offer_flash_attention_only_when_installed(monkeypatch):
    monkeypatch.setattr(settings_page.importlib.util, "find_spec", lambda name: None)
    assert settings_page.attention_choices() == ["sdpa", "eager"]
    monkeypatch.setattr(settings_page.importlib.util, "find_spec", lambda name: object())
    assert settings_page.attention_choices()[-1] == "flash_attention_2"


def test_status_line_names_device_and_model(backend):
    text = widgets_page.status_text(backend)
    assert "cpu" in text and "none loaded yet" in text


# ---- books ----


def test_load_book_summary_and_rows(backend, tmp_path):
    path = tmp_path / "days.txt"
    path.write_text(BOOK, encoding="utf-8")
    book = backend.load_book(str(path))
    assert "2 chapters" in book_page.book_summary(book)
    rows = book_page.chapter_rows(book)
    assert [r[0] for r in rows] == [1, 2] and rows[0][1].endswith("Dawn") and rows[0][2] > 0


def test_load_book_without_a_file_is_a_sentence(backend):
    with pytest.raises(AudiobookError, match="Choose a book file"):
        backend.load_book(None)


def test_book_edits(backend, book):
    assert backend.edit_book(book, "rename", 1, "Midday").chapters[1].title == "Midday"
    assert backend.edit_book(book, "text", 0, "New words.").chapters[0].text == "New words."
    assert [c.title for c in backend.edit_book(book, "reorder", value="3, 1, 2").chapters] == ["Dusk", "Dawn", "Noon"]
    assert [c.title for c in backend.edit_book(book, "drop", value="2").chapters] == ["Dawn", "Dusk"]
    merged = backend.edit_book(book, "merge", value="1,2")
    assert len(merged.chapters) == 2 and "It was hot." in merged.chapters[0].text
    with pytest.raises(AudiobookError, match="chapter numbers"):
        backend.edit_book(book, "drop", value="two")
    with pytest.raises(AudiobookError, match="Pick a chapter"):
        backend.edit_book(book, "rename", None, "x")


def test_save_book_writes_json_under_output(backend, book):
    path = backend.save_book(book)
    assert path.parent == backend.output_root / "books"
    assert json.loads(path.read_text())["chapters"][2]["title"] == "Dusk"


# ---- voices ----


def test_narrator_choices_and_narrators(backend):
    choices = voice_lab_page.narrator_choices(backend)
    assert choices and all(v.startswith(widgets_page.SPEAKER_PREFIX) for _, v in choices)
    narrator = voice_lab_page.narrator_for(backend, choices[0][1])
    assert narrator.kind == "preset" and narrator.speaker
    with pytest.raises(AudiobookError, match="Choose a narrator"):
        voice_lab_page.narrator_for(backend, None)


def test_design_preview_save_and_library(backend):
    preview = voice_lab_page.preview_voice(backend, voice_lab_page.MODE_DESIGN, description="A bright young voice", seed=3,
                                text="Hello there, this is a test of the voice.")
    assert preview.wav_path.is_file() and "seed 3" in voice_lab_page.preview_notes(preview)
    assert "Saved the voice" in voice_lab_page.save_voice(backend, preview, "Bright")
    assert voice_lab_page.voice_rows(backend)[0][:2] == ["Bright", "designed"]
    assert Path(voice_lab_page.voice_audio(backend, "Bright")).is_file()
    assert any(v == widgets_page.VOICE_PREFIX + "Bright" for _, v in voice_lab_page.narrator_choices(backend))
    assert voice_lab_page.narrator_for(backend, widgets_page.VOICE_PREFIX + "Bright").kind == "clone"


def test_voice_errors_are_sentences(backend):
    with pytest.raises(AudiobookError, match="preview first"):
        voice_lab_page.save_voice(backend, None, "X")
    with pytest.raises(AudiobookError, match="Upload or record"):
        voice_lab_page.preview_voice(backend, voice_lab_page.MODE_CLONE, clip=None)
    with pytest.raises(AudiobookError, match="Pick a voice"):
        voice_lab_page.voice_audio(backend, None)


# ---- render ----


def test_render_needs_a_book_and_refuses_a_second_one(backend, book):
    with pytest.raises(AudiobookError, match="Load a book first"):
        render_page.start_render(backend, None, widgets_page.SPEAKER_PREFIX + "vivian")
    assert "Started “Days”" in render_page.start_render(backend, book, widgets_page.SPEAKER_PREFIX + "vivian")
    try:
        with pytest.raises(AudiobookError, match="already running"):
            render_page.start_render(backend, book, widgets_page.SPEAKER_PREFIX + "vivian")
    finally:
        backend.stop_render()
        backend.wait_render(120)
    assert render_page.stop_render(backend) == "Nothing is rendering."


def test_progress_html_shows_the_numbers():
    state = RenderState(running=True, book_title="Days", chunks_done=3, chunks_total=12, audio_s=90.0,
                        elapsed_s=30.0, x_real_time=3.0, eta_s=125.0)
    text = render_page.progress_html(state)
    assert "3 / 12 chunks (25%)" in text and "1.5 min of audio" in text and "3.00× real time" in text
    assert "ETA 2:05" in text and "Rendering" in text and "width:25.0%" in text
    assert "No render yet" in render_page.progress_html(RenderState())
    done = RenderState(chunks_done=12, chunks_total=12, finished=True)
    assert "Done" in render_page.progress_html(done) and "100%" in render_page.progress_html(done)
    failed = render_page.progress_html(RenderState(chunks_total=4, error="The model <x> is missing."))
    assert "Failed" in failed and "&lt;x&gt;" in failed


def test_problem_rows_and_result_files():
    bad = ChunkReport(id="abc", chapter=2, chapter_title="Dusk", index=3, text="The owls woke.", status="failed", reason="no audio")
    state = RenderState(failed=[bad], chapter_files=["/o/01.wav"], book_files=["/o/b.m4b", "/o/b.srt", "/o/b (read-along).epub"])
    assert render_page.problem_rows(state) == [["failed", "2. Dusk", 3, "no audio", "The owls woke."]]
    assert render_page.result_files(state) == {"chapters": ["/o/01.wav"], "m4b": "/o/b.m4b", "srt": "/o/b.srt",
                                               "epub": "/o/b (read-along).epub"}


def test_rerender_without_problems_says_so(backend, book):
    with pytest.raises(AudiobookError, match="no failed or suspect"):
        render_page.rerender_problems(backend, book, widgets_page.SPEAKER_PREFIX + "vivian")


def test_page_errors_turn_audiobook_errors_into_page_messages(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOBOOK_LOG_DIR", str(tmp_path / "logs"))

    def bad():
        raise AudiobookError("The book is empty.")

    def bug():
        raise KeyError("x")

    with pytest.raises(gr.Error) as shown:
        widgets_page.page_errors(bad)()
    assert shown.value.message == "The book is empty."
    with pytest.raises(gr.Error) as shown:
        widgets_page.page_errors(bug)()
    assert shown.value.message.startswith("An unexpected error (KeyError) stopped this; the details are in ")
    log = Path(shown.value.message.split("the details are in ")[1].split(";")[0])
    assert log.parent == tmp_path / "logs" and "KeyError: 'x'" in log.read_text()


def test_every_page_handler_is_guarded(backend):
    demo = app.build_app(backend)
    handlers = [f for f in demo.fns.values() if f.fn is not None]
    assert len(handlers) > 20
    unguarded = [f.name for f in handlers if not getattr(f.fn, "_page_safe", False)]
    assert unguarded == []


def test_a_taken_port_is_one_sentence(tmp_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert app.main(["--root", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"Error: The port {port} is taken by another program" in err and "Traceback" not in err


def test_fmt_duration():
    assert widgets_page.fmt_duration(75) == "1:15"
    assert widgets_page.fmt_duration(3725) == "1:02:05"
    assert widgets_page.fmt_duration(None) == "—"


# ---- command line ----


def test_listens_on_localhost_unless_asked(monkeypatch, tmp_path, capsys):
    seen = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: seen.update(kw))
    assert app.main(["--root", str(tmp_path), "--port", "7999"]) == 0
    assert seen["server_name"] == "127.0.0.1" and seen["server_port"] == 7999 and not seen["share"]
    assert seen["auth"] is None and seen["allowed_paths"] == []  # nothing of the project is served by its path
    assert {str(tmp_path / "output"), str(tmp_path / "voices"), str(tmp_path / "user_settings.json")} <= set(seen["blocked_paths"])
    assert "Log in" not in capsys.readouterr().out

    # On the network: a login, made up and printed when none is given.
    assert app.main(["--root", str(tmp_path), "--listen"]) == 0
    assert seen["server_name"] == "0.0.0.0"
    [(user, password)] = seen["auth"]
    assert user == "audiobook" and len(password) >= 12
    assert f"Log in as 'audiobook' with the password {password}" in capsys.readouterr().out

    # A share link tunnels to 127.0.0.1: the page is not opened to the local network as well.
    assert app.main(["--root", str(tmp_path), "--share", "--auth", "reader:open sesame"]) == 0
    assert seen["server_name"] == "127.0.0.1" and seen["share"] and seen["auth"] == [("reader", "open sesame")]


def test_a_bad_login_is_one_sentence(tmp_path, capsys):
    assert app.main(["--root", str(tmp_path), "--listen", "--auth", "reader"]) == 2
    assert capsys.readouterr().err.strip() == "Error: --auth takes USER:PASSWORD, for example --auth reader:a-long-passphrase."


def test_api_narrators_are_plain_names(backend):
    assert api_page.api_choice(backend, "ryan") == "speaker:ryan"
    assert api_page.api_choice(backend, "voice:Anna") == "voice:Anna" and api_page.api_choice(backend, "") == ""
    with pytest.raises(AudiobookError, match="There is no voice called 'Anna'"):
        api_page.api_choice(backend, "Anna")


def test_cast_table_and_the_parts_of_a_chapter():
    from audiobook.books.cast import Cast, CastMember, label_book

    book, _ = label_book(Book("T", [Chapter("One", '"Go," said Al.\n\n"No."')]), Cast([CastMember("Al", voice="ryan", aliases=["Alan"])]))
    assert cast_page.cast_rows(book) == [["Al", 1, "", "ryan", "Alan", "", '"Go,"'],
                                         ["dialogue", 1, "", cast_page.NO_VOICE, "", "", '"No."']]
    marked, rows = cast_page.span_parts(book, 0)
    assert "".join(t for t, _ in marked) == book.chapters[0].text
    assert [label for _, label in marked] == ["Al", None, "dialogue"]
    assert rows == [[1, "Al", "", "said", '"Go,"'], [2, "narrator", "", "", "said Al."], [3, "dialogue", "", "", '"No."']]
    marked, _ = cast_page.span_parts(book, 0, by_confidence=True)
    assert [label for _, label in marked] == [cast_page.SURE, None, cast_page.UNKNOWN]
    assert cast_page.cast_rows(None) == [] and cast_page.span_parts(book, None) == ([], [])
