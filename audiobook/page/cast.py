"""The Cast panel of the Book tab: who speaks, their voices, and each part of a chapter."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gradio as gr

from audiobook.books import Book
from audiobook.errors import AudiobookError
from audiobook.page.voice_lab import narrator_for
from audiobook.page.widgets import Backend, page_errors
from audiobook.serving import ServedFiles

NO_VOICE = "(narrator)"  # the cast table's word for a character without a voice of their own


def cast_rows(book: Book | None) -> list[list[Any]]:
    """Rows of the cast table: character, lines, voice, one of their lines."""
    if book is None or book.cast is None:
        return []
    return [[m.name, m.lines, m.voice or NO_VOICE, m.preview] for m in book.cast.members]


def span_parts(book: Book | None, index: int | None) -> tuple[list[tuple[str, str | None]], list[list[Any]]]:
    """A chapter's text marked with who speaks it (narration unmarked), and its parts as table rows."""
    if book is None or index is None or not book.chapters[int(index)].spans:
        return [], []
    spans = book.chapters[int(index)].spans
    marked = [(s.text, None if s.speaker == "narrator" and not s.style else s.speaker + (f" ({s.style})" if s.style else ""))
              for s in spans]
    rows = [[k + 1, s.speaker, s.style, " ".join(s.text.split())] for k, s in enumerate(spans) if s.text.strip()]
    return marked, rows


def build_cast_panel(backend: Backend, serve: ServedFiles, book_state: gr.State, chapter_sel: gr.Dropdown,
                     narrator: gr.Dropdown) -> SimpleNamespace:
    """The Book tab's cast: find who speaks, map characters to voices, hear a line, fix a part's speaker."""
    B = backend
    with gr.Accordion("Cast: who speaks", open=True, elem_id="cast-box"):
        gr.Markdown("Quotes and `[voice: Name]` lines give characters their own voices. Map each one to a saved "
                    "voice or a built-in speaker; those left to *(narrator)* are read by the narrator (quotes by "
                    "*dialogue*'s voice when it has one).")
        with gr.Row():
            find_btn = gr.Button("Find who speaks", elem_id="cast-find", scale=1)
            use_llm = gr.Checkbox(label="Ask the language model (llm_url in Advanced Settings)", value=False,
                                  elem_id="cast-llm", scale=2)
        cast_msg = gr.Markdown(elem_id="cast-message")
        table = gr.Dataframe(headers=["character", "lines", "voice", "one of their lines"], value=[], wrap=True,
                             interactive=False, elem_id="cast-table", label="Cast")
        with gr.Row():
            who = gr.Dropdown([], label="Character", elem_id="cast-character", scale=2)
            voice = gr.Dropdown([], label="Voice", elem_id="cast-voice", scale=2)
            map_btn = gr.Button("Use this voice", elem_id="cast-map", scale=1)
            hear_btn = gr.Button("Hear their line", elem_id="cast-hear", scale=1)
        line_audio = gr.Audio(label="Their line", type="filepath", interactive=False, elem_id="cast-line-audio")
        marked = gr.HighlightedText(label="Who speaks what (the chapter picked above)", combine_adjacent=False,
                                    show_legend=True, elem_id="cast-spans")
        parts = gr.Dataframe(headers=["part", "speaker", "style", "text"], value=[], wrap=True, interactive=False,
                             elem_id="cast-parts", label="Parts of the chapter")
        with gr.Row():
            part_no = gr.Number(label="Part", precision=0, elem_id="cast-part", scale=1)
            part_speaker = gr.Textbox(label="Speaker", elem_id="cast-part-speaker", scale=2)
            part_style = gr.Textbox(label="Style (1.7B models)", placeholder="whispering", elem_id="cast-part-style", scale=2)
            part_btn = gr.Button("Change this part", elem_id="cast-part-set", scale=1)

    def show(book, chapter, message=""):
        names = [m.name for m in book.cast.members] if book is not None and book.cast else []
        voices = [(NO_VOICE, "")] + [(v, v) for v in B.cast_voices()]
        text, rows = span_parts(book, chapter)
        return (cast_rows(book), gr.update(choices=names, value=names[0] if names else None),
                gr.update(choices=voices), text, rows, message)

    views = [table, who, voice, marked, parts, cast_msg]

    def on_find(book, chapter, llm):
        if book is None:
            raise AudiobookError("Load a book first.")
        labelled, warnings = B.label_book(book, llm=bool(llm))
        n = len(labelled.cast.members)
        message = f"Found {n} speaker{'s' if n != 1 else ''} besides the narrator." + "".join(f"\n\n⚠ {w}" for w in warnings)
        return (labelled, *show(labelled, chapter, message))

    def on_map(book, name, chosen):
        if book is None or not name:
            raise AudiobookError("Find who speaks first, then pick a character.")
        book = B.map_voice(book, name, chosen or "")
        return book, cast_rows(book), f"{name} is read by {chosen or 'the narrator'}."

    def on_part(book, chapter, part, speaker, style):
        if book is None or chapter is None:
            raise AudiobookError("Pick a chapter above first.")
        if not part:
            raise AudiobookError("Give the number of the part to change (the first column of the parts table).")
        book = B.edit_span(book, int(chapter), int(part) - 1, speaker or None, style)
        return (book, *show(book, chapter, f"Part {int(part)} is now read as {speaker or 'before'}"
                                           f"{f' ({style})' if style else ''}."))

    find_btn.click(page_errors(on_find), [book_state, chapter_sel, use_llm], [book_state, *views])
    map_btn.click(page_errors(on_map), [book_state, who, voice], [book_state, table, cast_msg])
    hear_btn.click(page_errors(lambda b, name, choice: serve(str(B.hear_line(
        b, name, narrator_for(B, choice) if choice else None)))), [book_state, who, narrator], line_audio)
    part_btn.click(page_errors(on_part), [book_state, chapter_sel, part_no, part_speaker, part_style], [book_state, *views])
    chapter_sel.change(lambda b, c: span_parts(b, c), [book_state, chapter_sel], [marked, parts], show_progress="hidden")

    def on_voice_pick(book, name):  # the voice dropdown shows the picked character's voice
        member = book.cast.get(name) if book is not None and book.cast and name else None
        return gr.update(value=member.voice if member else "")

    who.change(on_voice_pick, [book_state, who], voice, show_progress="hidden")
    return SimpleNamespace(show=show, views=views)
