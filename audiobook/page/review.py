"""The Review tab: a rendered book's chunks with their scores; fix, re-roll or accept one, rebuild."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from audiobook.errors import AudiobookError
from audiobook.page.readalong import PLAYER_JS, readalong_html
from audiobook.page.voice_lab import narrator_choices, narrator_for
from audiobook.page.widgets import Backend, keep_enabled, page_errors
from audiobook.serving import ServedFiles

REVIEW_HEADERS = ["chunk", "speaker", "text", "seconds", "WER", "voice", "status", "takes", "why"]


def review_books(backend: Backend) -> list[str]:
    """Names of the rendered books (folders under the output folder holding a render), newest first."""
    return [p.name for p in backend.rendered_books()]


def review_folder(backend: Backend, name: str | None) -> Path:
    """The book folder a Review tab choice names; AudiobookError when there is none."""
    if not name:
        raise AudiobookError("Pick a rendered book first (render one on the Render tab).")
    folder = (backend.output_root / name).resolve()
    if folder.parent != backend.output_root.resolve() or not (folder / "manifest.json").is_file():
        raise AudiobookError(f"There is no render called '{name}' in the output folder.")
    return folder


def review_chapters(backend: Backend, name: str | None) -> list[tuple[str, int]]:
    from audiobook.review import load_render

    m = load_render(review_folder(backend, name))
    return [(f"{i + 1}. {ch.title}", i + 1) for i, ch in enumerate(m.chapters)]


def review_table(backend: Backend, name: str | None, chapter: int | None, flagged: bool) -> tuple[list[list[Any]], list[str]]:
    """The chunk table of a chapter (rows for the page) and the chunk id of each row."""
    rows = backend.review(review_folder(backend, name), flagged=flagged, chapter=chapter)
    table = [[r.index, r.speaker or "narrator", r.text if len(r.text) <= 80 else r.text[:77] + "...", round(r.duration_s, 1),
              "" if r.wer is None else f"{r.wer:.0%}", "" if r.voice_similarity is None else f"{r.voice_similarity:.2f}",
              r.status + (" (edited)" if r.edited else ""), r.attempts, r.why] for r in rows]
    return table, [r.id for r in rows]


def review_chunk(backend: Backend, name: str | None, chunk: str | None):
    """What the page shows for one chunk: its audio, its transcript against its text, its text, a note."""
    from audiobook.audio import read_wav
    from audiobook.check import judge, marked_diff

    folder = review_folder(backend, name)
    row = next((r for r in backend.review(folder) if r.id == chunk), None)
    if row is None:
        raise AudiobookError("That chunk is no longer in this render; pick another row.")
    audio = None
    if row.file and (folder / row.file).is_file():
        wav, sr = read_wav(folder / row.file)
        audio = (sr, wav)
    language = load_manifest_language(folder)
    if row.transcript is not None:
        # The take is shown against what it was checked against; the flagging rule's words are marked.
        reference = row.book_text or row.text
        span = judge(reference, row.transcript, language, row.segments or ()).span if row.rule else None
        diff = marked_diff(reference, row.transcript, language, span=span)
    else:
        diff = [(row.text, None)]
    diff = [(word + " ", kind) for word, kind in diff]  # the page joins neighbouring words of one kind
    who = f" — {row.speaker}, read by {row.voice}" if row.speaker and row.speaker != "narrator" and row.voice else ""
    note = (f"Chapter {row.chapter}, chunk {row.index}{who} — {row.status}"
            + (f": {row.why}" if row.reason else "")
            + ("" if row.transcript is not None else " (not checked: no transcript)"))
    return audio, diff, row.text, note


def can_rebuild(backend: Backend, name: str | None) -> bool:
    """Whether Rebuild has something to do: a chapter of the picked render changed since it was assembled."""
    from audiobook.review import chapters_to_rebuild

    if not name:
        return False
    try:
        return bool(chapters_to_rebuild(review_folder(backend, name)))
    except AudiobookError:
        return False


def sample_button(book, voice: str | None) -> dict[str, bool]:
    """Sample has something to read: the book loaded on the Render tab, in a voice picked here."""
    return {"sample": book is not None and bool(voice)}


def load_manifest_language(folder: Path) -> str:
    from audiobook.review import load_render

    lang = load_render(folder).key.get("language") or "en"
    return "en" if lang == "auto" else lang


def build_review_tab(backend: Backend, serve: ServedFiles, book_state: gr.State) -> SimpleNamespace:
    """Review: a rendered book's chunks with their check scores; play, edit, re-roll or keep one; rebuild; sample."""
    B = backend
    with gr.Tab("Review", id="review"):
        with gr.Row():
            book_pick = gr.Dropdown([], label="Rendered book", elem_id="review-book", scale=2)
            chapter_pick = gr.Dropdown([], label="Chapter", elem_id="review-chapter", scale=2)
            flagged_only = gr.Checkbox(True, label="Only flagged chunks", elem_id="review-flagged", scale=1)
            refresh_btn = gr.Button("Refresh", size="sm", elem_id="review-refresh", scale=1)
        with gr.Accordion("Read along: the chapter's audio with its text, the sentence being read highlighted "
                          "(click a sentence to hear it; flagged chunks are underlined)", open=True,
                          elem_id="review-readalong-box"):
            readalong_btn = gr.Button("Read along with the chapter", size="sm", interactive=False,
                                      elem_id="review-readalong-play")
            readalong = gr.HTML("", js_on_load=PLAYER_JS, elem_id="review-readalong")
        table = gr.Dataframe(headers=REVIEW_HEADERS, value=[], wrap=True, interactive=False, elem_id="review-table")
        ids = gr.State([])
        chunk_id = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                chunk_note = gr.Markdown("Pick a chunk in the table.", elem_id="review-note")
                player = gr.Audio(label="Take", type="numpy", interactive=False, elem_id="review-player")
                heard = gr.HighlightedText(label="What the check heard (missing: in the text, not heard; heard: said "
                                                 "instead; flagged: what the rule is about)",
                                           color_map={"missing": "red", "heard": "orange", "flagged": "purple"},
                                           combine_adjacent=True,
                                           elem_id="review-heard")
            with gr.Column(scale=1):
                text_box = gr.Textbox(label="Text", lines=4, elem_id="review-text")
                with gr.Row():
                    # Usable once a chunk is picked in the table.
                    reroll_btn = gr.Button("Re-roll", interactive=False, elem_id="review-reroll")
                    render_btn = gr.Button("Render edited text", variant="primary", interactive=False,
                                           elem_id="review-render")
                    keep_btn = gr.Button("Keep", interactive=False, elem_id="review-keep")
                chunk_msg = gr.Markdown(elem_id="review-message")
        with gr.Row():
            rebuild_btn = gr.Button("Rebuild changed chapters and the m4b", variant="primary", interactive=False,
                                    elem_id="review-rebuild")
            m4b_file = gr.File(label="Audiobook (.m4b)", interactive=False, height=80, elem_id="review-m4b")
        rebuild_msg = gr.Markdown(elem_id="review-rebuild-message")
        with gr.Accordion("Sample: hear a voice in context before a long render", open=False, elem_id="review-sample-box"):
            with gr.Row():
                sample_voice = gr.Dropdown([], label="Voice", elem_id="review-sample-voice")
                sample_chapter = gr.Number(1, label="Chapter", precision=0, minimum=1, elem_id="review-sample-chapter")
                sample_seconds = gr.Number(60, label="Seconds", minimum=1, elem_id="review-sample-seconds")
                sample_btn = gr.Button("Sample", interactive=False, elem_id="review-sample")
            sample_player = gr.Audio(label="Sample", type="numpy", interactive=False, elem_id="review-sample-player")
            gr.Markdown("The sample reads the book loaded on the Render tab.")

    def show_table(name, chapter, flagged):
        rows, row_ids = review_table(B, name, chapter, flagged)
        return rows, row_ids

    def chunk_buttons(usable: bool):
        return [gr.update(interactive=usable)] * 3

    def on_book(name):
        """A book picked (or none): its chapters and flagged chunks; no chunk picked yet."""
        rebuild = gr.update(interactive=can_rebuild(B, name))
        if not name:  # an empty project: nothing to show, and nothing wrong
            return [gr.update(choices=[], value=None), [], [], None, rebuild, *chunk_buttons(False),
                    gr.update(interactive=False)]
        chapters = review_chapters(B, name)
        rows, row_ids = review_table(B, name, None, True)
        return [gr.update(choices=[("All chapters", 0)] + chapters, value=0), rows, row_ids, None, rebuild,
                *chunk_buttons(False), gr.update(interactive=True)]

    def on_filter(name, chapter, flagged):
        if not name:
            return [], []
        return show_table(name, chapter or None, flagged)

    def on_select(name, row_ids, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if row is None or row >= len(row_ids):
            return [gr.skip()] * 8
        chunk = row_ids[row]
        audio, diff, text, note = review_chunk(B, name, chunk)
        return [chunk, audio, diff, text, note, *chunk_buttons(True)]

    def after_fix(name, chapter, flagged, message, new_id=None):
        rows, row_ids = show_table(name, chapter or None, flagged)
        out = [message, rows, row_ids, gr.update(interactive=can_rebuild(B, name))]
        if new_id:
            audio, diff, text, note = review_chunk(B, name, new_id)
            return out + [new_id, audio, diff, text, note]
        return out + [gr.skip()] * 5

    def on_render(name, chapter, flagged, chunk, text):
        if not chunk:
            raise AudiobookError("Pick a chunk in the table first.")
        before = {r.id for r in B.review(review_folder(B, name))}
        result = B.fix_chunk(review_folder(B, name), chunk, text=text, assemble=False)
        after = [r for r in B.review(review_folder(B, name)) if r.id not in before]
        new = after[0].id if after else chunk
        return after_fix(name, chapter, flagged, f"Rendered the chunk ({result.generated} take kept); press Rebuild "
                         "to hear it in its chapter.", new)

    def on_reroll(name, chapter, flagged, chunk):
        if not chunk:
            raise AudiobookError("Pick a chunk in the table first.")
        B.fix_chunk(review_folder(B, name), chunk, reroll=True, assemble=False)
        return after_fix(name, chapter, flagged, "Took the chunk again with another seed; press Rebuild to hear it in "
                         "its chapter.", chunk)

    def on_keep(name, chapter, flagged, chunk):
        if not chunk:
            raise AudiobookError("Pick a chunk in the table first.")
        B.fix_chunk(review_folder(B, name), chunk, accept=True)
        return after_fix(name, chapter, flagged, "Kept as it is (accepted).", chunk)

    def on_rebuild(name):
        result = B.rebuild_book(review_folder(B, name))
        m4b = next((p for p in result.book_files if p.suffix == ".m4b"), None)
        if m4b is None:
            note = "Chapters rebuilt; the m4b is written once every chapter is complete."
        else:
            note = f"Rebuilt: {', '.join(p.name for p in result.chapter_files + result.book_files)}."
        return note, serve(m4b) if m4b else None, gr.update(interactive=can_rebuild(B, name))

    def on_sample(book, choice, chapter, seconds):
        from audiobook.audio import read_wav

        if book is None:
            raise AudiobookError("Load a book on the Render tab first; the sample reads its chapter.")
        path = B.sample(book, narrator_for(B, choice), chapter=int(chapter or 1), seconds=float(seconds or 60),
                        out_path=Path(tempfile.gettempdir()) / "audiobook-previews" / f"sample-{secrets.token_hex(6)}.wav")
        wav, sr = read_wav(path)
        path.unlink(missing_ok=True)
        return sr, wav

    fix_outputs = [chunk_msg, table, ids, rebuild_btn, chunk_id, player, heard, text_box, chunk_note]
    chunk_btns = [reroll_btn, render_btn, keep_btn]
    book_pick.change(page_errors(on_book), book_pick,
                     [chapter_pick, table, ids, chunk_id, rebuild_btn, *chunk_btns, readalong_btn])
    chapter_pick.change(page_errors(on_filter), [book_pick, chapter_pick, flagged_only], [table, ids])
    flagged_only.change(page_errors(on_filter), [book_pick, chapter_pick, flagged_only], [table, ids])
    table.select(page_errors(on_select), [book_pick, ids], [chunk_id, player, heard, text_box, chunk_note, *chunk_btns])
    render_btn.click(page_errors(on_render), [book_pick, chapter_pick, flagged_only, chunk_id, text_box], fix_outputs)
    reroll_btn.click(page_errors(on_reroll), [book_pick, chapter_pick, flagged_only, chunk_id], fix_outputs)
    keep_btn.click(page_errors(on_keep), [book_pick, chapter_pick, flagged_only, chunk_id], fix_outputs)
    rebuild_btn.click(page_errors(on_rebuild), book_pick, [rebuild_msg, m4b_file, rebuild_btn])
    sample_btn.click(page_errors(on_sample), [book_state, sample_voice, sample_chapter, sample_seconds], sample_player)
    keep_enabled({"sample": sample_btn}, sample_button, [book_state, sample_voice], [book_state, sample_voice])

    def on_refresh():
        books = review_books(B)
        return gr.update(choices=books, value=books[0] if books else None)

    refresh_btn.click(page_errors(on_refresh), None, book_pick)

    def on_readalong(name, chapter):
        return readalong_html(B, review_folder(B, name), int(chapter or 1), serve)

    readalong_btn.click(page_errors(on_readalong), [book_pick, chapter_pick], readalong)

    def on_load():
        books = review_books(B)
        voices = narrator_choices(B)
        return [gr.update(choices=books, value=books[0] if books else None),
                gr.update(choices=voices, value=voices[0][1] if voices else None)]

    return SimpleNamespace(on_load=([book_pick, sample_voice], on_load))
