"""The Cast panel of the Book tab: who speaks, their voices, the character list's edits (merge, rename,
split, hide), "Design the cast", and each part of a chapter coloured by speaker or by how sure it is."""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import gradio as gr

from audiobook.books import Book
from audiobook.errors import AudiobookError
from audiobook.page.voice_lab import narrator_for
from audiobook.page.widgets import MODEL_WORK, Backend, keep_enabled, page_errors
from audiobook.serving import ServedFiles

NO_VOICE = "(narrator)"  # the cast table's word for a character without a voice of their own
CAST_HEADERS = ["character", "lines", "gender", "voice", "also called", "hidden", "one of their lines"]
# How sure a quote's speaker is, by the rule that found it (attribution.CONFIDENCE), and the colours shown.
SURE, LIKELY, GUESS, UNKNOWN, BY_HAND = "sure", "likely", "a guess", "no one known", "marked or set by hand"
CONFIDENCE_COLOURS = {SURE: "#16a34a", LIKELY: "#ca8a04", GUESS: "#ea580c", UNKNOWN: "#dc2626", BY_HAND: "#2563eb"}


def cast_rows(book: Book | None) -> list[list[Any]]:
    """Rows of the cast table: character, lines, gender, voice, other names, hidden, one of their lines."""
    if book is None or book.cast is None:
        return []
    return [[m.name, m.lines, m.gender or "", m.voice or NO_VOICE, ", ".join(m.aliases), "hidden" if m.hidden else "",
             m.preview] for m in book.cast.members]


def confidence(span) -> str | None:
    """How sure the speaker of a span is (None for narration)."""
    from audiobook.attribution import CONFIDENCE

    if span.speaker == "narrator":
        return None
    if span.speaker == "dialogue":
        return UNKNOWN
    if not span.rule or span.rule == "markup":
        return BY_HAND
    score = CONFIDENCE.get(span.rule, 0.0)
    return SURE if score >= 0.85 else LIKELY if score >= 0.75 else GUESS


def span_parts(book: Book | None, index: int | None, by_confidence: bool = False) -> tuple[list[tuple[str, str | None]], list[list[Any]]]:
    """A chapter's text marked with who speaks it (narration unmarked), or with how sure that is, and its
    parts as table rows (the rule that found each speaker included)."""
    if book is None or index is None or not book.chapters[int(index)].spans:
        return [], []
    spans = book.chapters[int(index)].spans
    if by_confidence:
        marked = [(s.text, confidence(s)) for s in spans]
    else:
        marked = [(s.text, None if s.speaker == "narrator" and not s.style else s.speaker + (f" ({s.style})" if s.style else ""))
                  for s in spans]
    rows = [[k + 1, s.speaker, s.style, s.rule, " ".join(s.text.split())] for k, s in enumerate(spans) if s.text.strip()]
    return marked, rows


def marked_parts(book: Book | None, chapter: int | None, sure: bool = False) -> tuple[dict, list[list[Any]]]:
    """The marked chapter (coloured by speaker, or by how sure each speaker is, with that legend) and its parts."""
    marked, rows = span_parts(book, chapter, bool(sure))
    return gr.update(value=marked, color_map=CONFIDENCE_COLOURS if sure else {}), rows


def cast_buttons(book: Book | None, chapter: int | None, character: str | None, other: str | None,
                 part: float | None) -> dict[str, bool]:
    """Which of the cast panel's buttons have something to act on: a book (Find who speaks, Design the cast), a
    character picked (Use this voice, Hear their line, Hide / show, Design this one again) and another name given
    (Merge, Rename, Split), a part of the picked chapter numbered (Change this part)."""
    loaded = book is not None
    picked = loaded and bool(character)
    named = picked and bool((other or "").strip())
    return {"find": loaded, "design": loaded, "map": picked, "hear": picked, "hide": picked, "redo": picked,
            "merge": named, "rename": named, "split": named, "part": loaded and chapter is not None and bool(part)}


def build_cast_panel(backend: Backend, serve: ServedFiles, book_state: gr.State, chapter_sel: gr.Dropdown,
                     narrator: gr.Dropdown) -> SimpleNamespace:
    """The Book tab's cast: find who speaks, map characters to voices, hear a line, fix a part's speaker."""
    B = backend
    with gr.Accordion("Cast: who speaks", open=True, elem_id="cast-box"):
        gr.Markdown("Quotes and `[voice: Name]` lines give characters their own voices. Map each one to a saved "
                    "voice or a built-in speaker; those left to *(narrator)* are read by the narrator (quotes by "
                    "*dialogue*'s voice when it has one).")
        with gr.Row():
            find_btn = gr.Button("Find who speaks", interactive=False, elem_id="cast-find", scale=1)
            use_llm = gr.Checkbox(label="Ask the language model (llm_url in Advanced Settings)", value=False,
                                  elem_id="cast-llm", scale=2)
        cast_msg = gr.Markdown(elem_id="cast-message")
        table = gr.Dataframe(headers=CAST_HEADERS, value=[], wrap=True, interactive=False, elem_id="cast-table",
                             label="Cast")
        with gr.Row():
            who = gr.Dropdown([], label="Character", elem_id="cast-character", scale=2)
            voice = gr.Dropdown([], label="Voice", elem_id="cast-voice", scale=2)
            map_btn = gr.Button("Use this voice", interactive=False, elem_id="cast-map", scale=1)
            hear_btn = gr.Button("Hear their line", interactive=False, elem_id="cast-hear", scale=1)
        with gr.Row():
            other = gr.Textbox(label="Another character, a new name, or one of their other names", scale=3,
                               elem_id="cast-other")
            merge_btn = gr.Button("Merge that one into this one", interactive=False, elem_id="cast-merge", scale=1)
            rename_btn = gr.Button("Rename to that", interactive=False, elem_id="cast-rename", scale=1)
            split_btn = gr.Button("Split that name off", interactive=False, elem_id="cast-split", scale=1)
            hide_btn = gr.Button("Hide / show", interactive=False, elem_id="cast-hide", scale=1)
        with gr.Row():
            design_btn = gr.Button("Design the cast", variant="primary", interactive=False, elem_id="cast-design", scale=2)
            redo_btn = gr.Button("Design this one again", interactive=False, elem_id="cast-redo", scale=1)
        gr.Markdown("*Design the cast* writes a voice description for each main character (by the language model "
                    "when the box above is ticked, else from the text), designs it on one of their own lines, saves "
                    "it as a voice and maps them to it. The narrator keeps its voice.", elem_classes="status-line")
        line_audio = gr.Audio(label="Their line", type="filepath", interactive=False, elem_id="cast-line-audio")
        by_confidence = gr.Checkbox(label="Colour quotes by how sure their speaker is", value=False,
                                    elem_id="cast-confidence")
        marked = gr.HighlightedText(label="Who speaks what (the chapter picked above)", combine_adjacent=False,
                                    show_legend=True, elem_id="cast-spans")
        parts = gr.Dataframe(headers=["part", "speaker", "style", "found by", "text"], value=[], wrap=True,
                             interactive=False, elem_id="cast-parts", label="Parts of the chapter")
        with gr.Row():
            part_no = gr.Number(label="Part", precision=0, elem_id="cast-part", scale=1)
            part_speaker = gr.Textbox(label="Speaker", elem_id="cast-part-speaker", scale=2)
            part_style = gr.Textbox(label="Style (1.7B models)", placeholder="whispering", elem_id="cast-part-style", scale=2)
            part_btn = gr.Button("Change this part", interactive=False, elem_id="cast-part-set", scale=1)

    def show(book, chapter, message="", keep=None, sure=False):
        names = [m.name for m in book.cast.members] if book is not None and book.cast else []
        voices = [(NO_VOICE, "")] + [(v, v) for v in B.cast_voices()]
        pick = keep if keep in names else names[0] if names else None
        member = book.cast.get(pick) if pick else None
        return (cast_rows(book), gr.update(choices=names, value=pick),
                gr.update(choices=voices, value=member.voice if member else ""), *marked_parts(book, chapter, sure), message)

    views = [table, who, voice, marked, parts, cast_msg]

    def on_find(book, chapter, llm, sure):
        if book is None:
            raise AudiobookError("Load a book first.")
        labelled, warnings = B.label_book(book, llm=bool(llm))
        n = len(labelled.cast.members)
        message = f"Found {n} speaker{'s' if n != 1 else ''} besides the narrator." + "".join(f"\n\n⚠ {w}" for w in warnings)
        return (labelled, *show(labelled, chapter, message, sure=sure))

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

    def on_edit(action, book, chapter, name, value, sure):
        if book is None or not name:
            raise AudiobookError("Find who speaks first, then pick a character.")
        if action == "hide":
            member = book.cast.get(name) if book.cast else None
            action = "show" if member is not None and member.hidden else "hide"
        book = B.edit_cast(book, action, name, (value or "").strip())
        keep = (value or "").strip() if action == "rename" else name
        done = {"merge": f"{value} is now one character with {name}.", "rename": f"{name} is now called {value}.",
                "split": f"{value} is now a character of their own.", "hide": f"{name} is hidden: their quotes are read "
                "as dialogue.", "show": f"{name} speaks again."}[action]
        return (book, *show(book, chapter, done, keep, sure))

    def on_design(book, chapter, llm, name, sure, only=False, progress=gr.Progress()):
        if book is None:
            raise AudiobookError("Load a book first.")
        if only and not name:
            raise AudiobookError("Pick the character to design again.")

        def step(done, total, who):
            progress((done, total), desc=f"Designing {who}'s voice" if who else "Done")

        book, designed, warnings = B.design_cast(book, llm=bool(llm), only=[name] if only else None, progress=step)
        lines = [f"**{d.character}**: *{d.voice}*, {d.description}" for d in designed]
        message = (f"Designed {len(designed)} voice{'s' if len(designed) != 1 else ''}:\n\n" + "\n\n".join(lines)
                   + "".join(f"\n\n⚠ {w}" for w in warnings))
        audio = serve(designed[-1].wav_path) if designed and designed[-1].wav_path else None
        return (book, *show(book, chapter, message, name, sure), audio)

    find_btn.click(page_errors(on_find), [book_state, chapter_sel, use_llm, by_confidence], [book_state, *views])
    for button, action in ((merge_btn, "merge"), (rename_btn, "rename"), (split_btn, "split"), (hide_btn, "hide")):
        button.click(page_errors(functools.partial(on_edit, action)), [book_state, chapter_sel, who, other, by_confidence],
                     [book_state, *views])
    design_btn.click(page_errors(on_design), [book_state, chapter_sel, use_llm, who, by_confidence],
                     [book_state, *views, line_audio], **MODEL_WORK)
    def on_redo(book, chapter, llm, name, sure, progress=gr.Progress()):
        return on_design(book, chapter, llm, name, sure, True, progress)

    redo_btn.click(page_errors(on_redo), [book_state, chapter_sel, use_llm, who, by_confidence],
                   [book_state, *views, line_audio], **MODEL_WORK)
    by_confidence.change(marked_parts, [book_state, chapter_sel, by_confidence],
                         [marked, parts], show_progress="hidden")
    map_btn.click(page_errors(on_map), [book_state, who, voice], [book_state, table, cast_msg])
    hear_btn.click(page_errors(lambda b, name, choice: serve(str(B.hear_line(
        b, name, narrator_for(B, choice) if choice else None)))), [book_state, who, narrator], line_audio)
    part_btn.click(page_errors(on_part), [book_state, chapter_sel, part_no, part_speaker, part_style], [book_state, *views])
    chapter_sel.change(marked_parts, [book_state, chapter_sel, by_confidence], [marked, parts],
                       show_progress="hidden")

    def on_voice_pick(book, name):  # the voice dropdown shows the picked character's voice
        member = book.cast.get(name) if book is not None and book.cast and name else None
        return gr.update(value=member.voice if member else "")

    who.change(on_voice_pick, [book_state, who], voice, show_progress="hidden")
    buttons = {"find": find_btn, "design": design_btn, "map": map_btn, "hear": hear_btn, "hide": hide_btn,
               "redo": redo_btn, "merge": merge_btn, "rename": rename_btn, "split": split_btn, "part": part_btn}
    inputs = [book_state, chapter_sel, who, other, part_no]
    keep_enabled(buttons, cast_buttons, inputs, inputs)
    return SimpleNamespace(show=show, views=views, by_confidence=by_confidence)
