"""Review for the Backend: rendered books, their chunks with scores, fixing a chunk and rebuilding.

Each function takes the ``backend.Backend`` first; ``Backend`` lists them as its methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from audiobook.errors import AudiobookError
from audiobook.render import Progress, RenderOptions, RenderResult, plan_book, render_events
from audiobook.services.renders import hold_for_render
from audiobook.tts import PRESET


def rendered_books(backend) -> list[Path]:
    """Book folders under the output folder that hold a render (newest first)."""
    from audiobook.manifest import MANIFEST_FILE

    found = [p.parent for p in backend.output_root.glob(f"*/{MANIFEST_FILE}")]
    return sorted(found, key=lambda p: (p / MANIFEST_FILE).stat().st_mtime, reverse=True)


def review(backend, out_dir: str | Path, flagged: bool = False, chapter: int | None = None):
    """The chunks of a rendered book with their check scores (``audiobook.review.ReviewRow``)."""
    from audiobook.review import review_rows

    return review_rows(backend.resolve(str(out_dir)), flagged, chapter)


def fix_chunk(backend, out_dir: str | Path, chunk: str, *, text: str | None = None, reroll: bool = False,
              accept: bool = False, assemble: bool = True,
              on_progress: Callable[[Progress], None] | None = None) -> RenderResult | None:
    """Fix one chunk of a rendered book: new ``text``, a ``reroll`` (same text, new seed) or ``accept``.

    Only that chunk is generated; with ``assemble`` its chapter and the book files are
    assembled again (the page assembles on Rebuild). Accepting changes no audio and returns None.
    """
    from audiobook import review

    out_dir = backend.resolve(str(out_dir))
    if accept:
        review.accept_chunk(out_dir, chunk)
        return None
    if text is None and not reroll:
        raise AudiobookError("Say how to fix the chunk: new text, a re-roll, or accept it as it is.")
    review.render_inputs(out_dir, backend.settings)  # fail before recording anything
    if text is not None:
        new_id = review.edit_chunk(out_dir, chunk, text)
        if reroll:  # the new text's id where the chunk stands (a cast's chunk hashes its own voice and style)
            new_id = planned_id(backend, out_dir, chunk) or new_id
        redo = (new_id,) if reroll else ()
    else:
        redo = (chunk,)
    return render_recorded(backend, out_dir, RenderOptions(redo_chunks=redo, assemble=assemble), on_progress)


def planned_id(backend, out_dir: Path, chunk: str) -> str | None:
    """The id a render of ``out_dir`` now plans at the first place of ``chunk`` (after an edit of its text)."""
    from audiobook.manifest import load_manifest
    from audiobook.review import render_inputs

    m = load_manifest(out_dir)
    place = next(((ci, r.index) for ci, ch in enumerate(m.chapters) for r in ch.chunks if r.id == chunk), None)
    if place is None:
        return None
    book, narrator, settings = render_inputs(out_dir, backend.settings)
    book, voicing = backend.render_cast(book, narrator, out_dir, None, save=False)
    planned = plan_book(book, narrator, settings, out_dir, voicing=voicing)
    return planned.chapters[place[0]].chunks[place[1]].id


def rebuild_book(backend, out_dir: str | Path, on_progress: Callable[[Progress], None] | None = None) -> RenderResult:
    """Assemble the chapters of a rendered book whose chunks changed, then the book files."""
    return render_recorded(backend, backend.resolve(str(out_dir)), RenderOptions(), on_progress)


def render_recorded(backend, out_dir: Path, options: RenderOptions, on_progress) -> RenderResult:
    """Render with the book, voice and settings recorded by the render in ``out_dir``."""
    with hold_for_render(backend, out_dir.name):
        return render_recorded_held(backend, out_dir, options, on_progress)


def render_recorded_held(backend, out_dir: Path, options: RenderOptions, on_progress) -> RenderResult:
    from audiobook.review import render_inputs

    saved = backend.tts.settings
    try:
        book, narrator, settings = render_inputs(out_dir, backend.settings)
        backend.tts.settings = settings  # the render's model size, this machine's device
        book, voicing = backend.render_cast(book, narrator, out_dir, None, save=False)  # a cast render's voices
        result = RenderResult(out_dir=out_dir)
        prompt = (lambda: backend.clone_prompt_for(narrator)) if narrator.kind != PRESET else None
        for progress in render_events(book, narrator, settings, out_dir, backend.tts, result, options=options,
                                      clone_prompt=prompt, voicing=voicing):
            if on_progress:
                on_progress(progress)
        return result
    finally:
        backend.tts.settings = saved
