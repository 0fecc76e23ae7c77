"""Which buttons the page enables: each only while it has something to act on (no model, no browser)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from audiobook.books import Book, Chapter
from audiobook.page.book import book_buttons
from audiobook.page.cast import cast_buttons
from audiobook.page.render import poll_pace, render_buttons
from audiobook.page.review import sample_button
from audiobook.page.voice_lab import MODE_CLONE, MODE_DESIGN, MODE_PRESET, preview_button, voice_buttons
from audiobook.page.widgets import IDLE_POLL_S, POLL_S
from audiobook.previews import VoicePreview
from audiobook.render import ChunkReport, RenderState
from audiobook.voices import Voice

BOOK = Book(title="Days", chapters=[Chapter("Dawn", "The sun rose."), Chapter("Dusk", "The sun set.")])


def test_the_book_tab_needs_a_book_a_chapter_and_chapter_numbers():
    assert not any(book_buttons(None, None, "").values())
    assert not any(book_buttons(None, 0, "1, 2").values())  # a chapter and numbers left from another book
    assert book_buttons(BOOK, None, "  ") == {"rename": False, "text": False, "merge": False, "drop": False,
                                              "reorder": False, "save": True}
    assert all(book_buttons(BOOK, 0, "1, 2").values())


def test_the_cast_panel_needs_a_book_a_character_and_another_name():
    assert not any(cast_buttons(None, 0, "Alice", "Bob", 3).values())
    loaded = cast_buttons(BOOK, None, None, "", None)
    assert {k for k, on in loaded.items() if on} == {"find", "design"}
    picked = cast_buttons(BOOK, None, "Alice", " ", None)
    assert {k for k, on in picked.items() if on} == {"find", "design", "map", "hear", "hide", "redo"}
    assert {k for k, on in cast_buttons(BOOK, None, "Alice", "Bob", 3).items() if not on} == {"part"}
    assert all(cast_buttons(BOOK, 1, "Alice", "Bob", 3).values())


def test_the_voice_lab_needs_a_preview_with_a_name_and_a_picked_voice():
    assert not any(voice_buttons(None, "", None, "").values())
    assert not any(voice_buttons(None, "Keeper", "", "New").values())  # names typed, nothing to act on
    preview = VoicePreview(voice=Voice(name="", kind="designed"), audio=np.zeros(10, dtype=np.float32))
    assert voice_buttons(preview, "", None, "") == {"save": False, "play": False, "delete": False, "export": False,
                                                   "rename": False}
    assert voice_buttons(preview, "Keeper", "Old", "") == {"save": True, "play": True, "delete": True, "export": True,
                                                          "rename": False}
    assert all(voice_buttons(preview, "Keeper", "Old", "Older").values())


def test_the_render_tab_follows_the_book_and_the_render():
    idle = RenderState()
    assert not any(render_buttons(idle, None).values())
    assert {k for k, on in render_buttons(idle, BOOK).items() if on} == {"start", "queue_add"}
    running = RenderState(running=True)
    assert {k for k, on in render_buttons(running, BOOK).items() if on} == {"stop", "queue_add"}
    assert not any(render_buttons(replace(running, stopping=True), None).values())
    problem = ChunkReport("c1", 1, "Dawn", 1, "The sun rose.", "failed", "ran to the length limit")
    stopped = RenderState(stopped=True, finished=True, failed=[problem])
    assert {k for k, on in render_buttons(stopped, None).items() if on} == set()  # no book to continue with
    assert {k for k, on in render_buttons(stopped, BOOK).items() if on} == {"start", "resume", "queue_add", "rerender"}


def test_a_preview_needs_what_its_mode_hears_and_a_sample_a_book_and_a_voice():
    assert preview_button(MODE_DESIGN, " ", "clip.wav", "ryan") == {"preview": False}  # the other modes' inputs
    assert preview_button(MODE_DESIGN, "A calm voice", None, None) == {"preview": True}
    assert preview_button(MODE_CLONE, "A calm voice", None, "ryan") == {"preview": False}
    assert preview_button(MODE_CLONE, "", "clip.wav", None) == {"preview": True}
    assert preview_button(MODE_PRESET, "A calm voice", "clip.wav", None) == {"preview": False}
    assert preview_button(MODE_PRESET, "", None, "ryan") == {"preview": True}
    assert sample_button(None, "speaker:ryan") == {"sample": False}
    assert sample_button(BOOK, None) == {"sample": False}
    assert sample_button(BOOK, "speaker:ryan") == {"sample": True}


def test_the_render_tab_polls_every_second_only_while_a_render_runs():
    assert POLL_S == 1.0 and IDLE_POLL_S > POLL_S
    assert poll_pace(RenderState(running=True)) == POLL_S
    assert poll_pace(RenderState(running=True, stopping=True)) == POLL_S  # the stop is followed to its end
    for idle in (RenderState(), RenderState(stopped=True), RenderState(finished=True), RenderState(error="disk full")):
        assert poll_pace(idle) == IDLE_POLL_S
