"""The Book tab: load a book, see its chapters, edit them."""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import gradio as gr

from audiobook.books import Book
from audiobook.page.cast import build_cast_panel
from audiobook.page.widgets import Backend, book_file_box, cover_image, fmt_duration, keep_enabled, page_errors
from audiobook.serving import ServedFiles

WORDS_PER_MINUTE = 150  # a calm narration pace, for the estimates in the chapter table


def book_summary(book: Book | None) -> str:
    if book is None:
        return "No book loaded yet."
    words = sum(c.words for c in book.chapters)
    by = f" by {book.author}" if book.author else ""
    n = len(book.chapters)
    return (f"**{book.title}**{by} · {n} chapter{'s' if n != 1 else ''} · {words:,} words · "
            f"about {fmt_duration(words / WORDS_PER_MINUTE * 60)} of audio" + reading_summary(book))


def reading_summary(book: Book) -> str:
    """What the reader did, when there is more to say than the format: OCR, cleaning, warnings."""
    r = book.report
    if r is None:
        return ""
    done = []
    if r.converted_by:
        done.append(f"converted by {r.converted_by}")
    counts = [(r.ocr_pages, "page", f"read by OCR ({r.ocr_language})"), (r.running_lines, "running head/page number line", "removed"),
              (r.hyphens_joined, "line-end hyphen", "joined"), (r.note_marks, "footnote marker", "dropped")]
    done += [f"{n} {what}{'s' if n != 1 else ''} {verb}" for n, what, verb in counts if n]
    lines = [f"Read as {r.reader}" + (": " + ", ".join(done) if done else "") + "."]
    lines += [f"Warning: {w}" for w in r.warnings]
    return "\n\n" + "\n\n".join(lines)


def chapter_rows(book: Book | None) -> list[list[Any]]:
    """Rows of the chapter table: number, title, words, estimated minutes."""
    if book is None:
        return []
    return [[i + 1, c.title, c.words, round(c.words / WORDS_PER_MINUTE, 1)] for i, c in enumerate(book.chapters)]


def chapter_choices(book: Book | None) -> list[tuple[str, int]]:
    return [(f"{i + 1}. {c.title}", i) for i, c in enumerate(book.chapters)] if book else []


def book_buttons(book: Book | None, chapter: int | None, numbers: str | None) -> dict[str, bool]:
    """Which of the Book tab's buttons have something to act on: a chapter picked (Rename, Keep this text),
    chapter numbers given (Merge, Drop, Reorder), a book loaded (Save)."""
    picked = book is not None and chapter is not None
    listed = book is not None and bool((numbers or "").strip())
    return {"rename": picked, "text": picked, "merge": listed, "drop": listed, "reorder": listed, "save": book is not None}


def build_book_tab(backend: Backend, serve: ServedFiles, book_state: gr.State, render: SimpleNamespace) -> SimpleNamespace:
    """Book: load a book (here or on the Render tab), see its chapters and cover, edit and save it."""
    B = backend
    with gr.Tab("Book", id="book"):
        with gr.Row():
            with gr.Column(scale=3):
                book_file, book_info = book_file_box("Book file", "book")
            cover = gr.Image(label="Cover", interactive=False, height=180, scale=1, elem_id="book-cover")
        chapters = gr.Dataframe(headers=["#", "title", "words", "minutes"], value=[], interactive=False,
                                elem_id="book-chapters", label="Chapters")
        with gr.Accordion("Edit chapters", open=True):
            with gr.Row():
                chapter_sel = gr.Dropdown([], label="Chapter", elem_id="book-chapter", scale=2)
                new_title = gr.Textbox(label="New title", elem_id="book-new-title", scale=2)
                rename_btn = gr.Button("Rename", scale=1, interactive=False, elem_id="book-rename")
            chapter_text = gr.Textbox(label="Chapter text (paragraphs separated by a blank line)", lines=6, max_lines=14,
                                      elem_id="book-text")
            text_btn = gr.Button("Keep this text", size="sm", interactive=False, elem_id="book-set-text")
            with gr.Row():
                numbers = gr.Textbox(label="Chapter numbers", placeholder="2, 3", scale=2, elem_id="book-numbers",
                                     info="Merge or drop these chapters; or list every chapter in a new order and press Reorder.")
                merge_btn = gr.Button("Merge", scale=1, interactive=False, elem_id="book-merge")
                drop_btn = gr.Button("Drop", scale=1, interactive=False, elem_id="book-drop")
                reorder_btn = gr.Button("Reorder", scale=1, interactive=False, elem_id="book-reorder")
            with gr.Row():
                save_book_btn = gr.Button("Save the edited book (.json)", interactive=False, elem_id="book-save")
                saved_book = gr.File(label="Edited book", interactive=False, height=80, elem_id="book-saved")
        cast = build_cast_panel(B, serve, book_state, chapter_sel, render.narrator)

    def show_book(book):
        image = cover_image(book.cover) if book is not None and book.cover else None
        return (book, book_summary(book), book_summary(book), chapter_rows(book),
                gr.update(choices=chapter_choices(book), value=None), image)

    book_outputs = [book_state, render.book_info, book_info, chapters, chapter_sel, cover]
    def load(path, progress=gr.Progress()):
        """Read the dropped book; scanned pages show a progress bar while OCR reads them."""
        return show_book(B.load_book(path, on_progress=lambda done, total, what: progress((done, total), desc=what)))

    for upload in (render.book_file, book_file):
        upload.upload(page_errors(load), upload, book_outputs)

    def pick_chapter(book, index):
        if book is None or index is None:
            return "", ""
        return book.chapters[int(index)].title, book.chapters[int(index)].text

    chapter_sel.change(pick_chapter, [book_state, chapter_sel], [new_title, chapter_text], show_progress="hidden")
    rename_btn.click(page_errors(lambda b, i, t: show_book(B.edit_book(b, "rename", i, t))),
                     [book_state, chapter_sel, new_title], book_outputs)
    text_btn.click(page_errors(lambda b, i, t: show_book(B.edit_book(b, "text", i, t))),
                   [book_state, chapter_sel, chapter_text], book_outputs)
    for btn, action in ((merge_btn, "merge"), (drop_btn, "drop"), (reorder_btn, "reorder")):
        btn.click(page_errors(functools.partial(lambda a, b, v: show_book(B.edit_book(b, a, None, v)), action)),
                  [book_state, numbers], book_outputs)
    save_book_btn.click(page_errors(lambda b: serve(B.save_book(b))), book_state, saved_book)
    buttons = {"rename": rename_btn, "text": text_btn, "merge": merge_btn, "drop": drop_btn, "reorder": reorder_btn,
               "save": save_book_btn}
    keep_enabled(buttons, book_buttons, [book_state, chapter_sel, numbers], [book_state, chapter_sel, numbers])
    # Whatever changed the book (a new file, an edit, the cast), the cast panel shows it (its message stays).
    book_state.change(lambda b, c, sure: cast.show(b, c, sure=sure)[:-1], [book_state, chapter_sel, cast.by_confidence],
                      cast.views[:-1], show_progress="hidden")
    return SimpleNamespace(book_file=book_file, book_info=book_info, chapters=chapters)
