"""The cast for the Backend: who speaks, their voices, span edits, hearing a line, the voicing of a render.

Each function takes the ``backend.Backend`` first; ``Backend`` lists them as its methods.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from audiobook.books import Book
from audiobook.books import cast as casting
from audiobook.books.cast import CAST_FILE, LLM, Cast, load_cast
from audiobook.dialogue import DIALOGUE, speaker_name
from audiobook.errors import AudiobookError
from audiobook.tts import PRESET, Narrator
from audiobook.voicing import Voicing


def cast_path(backend, book: Book) -> Path:
    """Where the book's cast is kept: ``output/<book>/cast.json``."""
    return backend.book_dir(book) / CAST_FILE


def saved_cast(backend, book: Book) -> Cast | None:
    """The cast last saved for this book (voices the user mapped), or None."""
    path = backend.cast_path(book)
    return load_cast(path) if path.is_file() else None


def label_book(backend, book: Book, cast: Cast | None = None, llm: bool = False) -> tuple[Book, list[str]]:
    """The book with spans in every chapter and its cast counted; voices from ``cast``, else the saved cast.

    With ``llm`` the language model of the settings labels the chapters without markup.
    Returns the book and one sentence per rejected answer of the model.
    """
    model = LLM.from_settings(backend.settings) if llm else None
    return casting.label_book(book, cast if cast is not None else backend.saved_cast(book), model)


def save_cast(backend, book: Book, cast: Cast, out_dir: str | Path | None = None) -> Path:
    """Keep the cast in ``output/<book>/cast.json`` (or ``out_dir``)."""
    return casting.save_cast(cast, (Path(out_dir) if out_dir else backend.book_dir(book)) / CAST_FILE)


def voice_narrator(backend, voice: str) -> Narrator:
    """The narrator for a cast's voice: a saved voice by name, else a built-in speaker."""
    if backend.voices.exists(voice):
        return backend.narrator_for(voice)
    if voice.lower() in [s.lower() for s in backend.speakers()]:
        return Narrator(kind=PRESET, speaker=voice.lower(), name=voice.lower())
    raise AudiobookError(f"'{voice}' is neither a saved voice nor a built-in speaker; pick one from the voice list.")


def cast_voices(backend) -> list[str]:
    """What a character can be mapped to: the saved voices, then the built-in speakers."""
    saved = [v.name for v in backend.list_voices()]
    return saved + [s for s in backend.speakers() if s not in saved]


def map_voice(backend, book: Book, character: str, voice: str) -> Book:
    """The book with ``character`` read by ``voice`` ("" for no voice of their own); the cast is saved
    in ``output/<book>/cast.json``. An unknown voice is an AudiobookError sentence."""
    voice = (voice or "").strip()
    if voice:
        try:
            backend.voice_narrator(voice)
        except AudiobookError:
            raise AudiobookError(f"'{voice}' is neither a saved voice nor a built-in speaker; pick one from the list.") from None
    cast = (book.cast or Cast()).with_voice(character, voice)
    book = replace(book, cast=cast)
    backend.save_cast(book, cast)
    return book


def edit_span(backend, book: Book, chapter: int, part: int, speaker: str | None = None, style: str | None = None) -> Book:
    """The book with part ``part`` of chapter ``chapter`` (0-based) given another speaker and/or style;
    the cast is counted again and saved."""
    from audiobook.books import cast_of, set_span

    if 0 <= chapter < len(book.chapters) and book.chapters[chapter].spans is None:
        book, _ = backend.label_book(book)  # not labelled yet: find who speaks first
    book = set_span(book, chapter, part, speaker, style)
    book = replace(book, cast=cast_of(book.chapters, book.cast))
    backend.save_cast(book, book.cast)
    return book


def hear_line(backend, book: Book, character: str, narrator: Narrator | None = None) -> Path:
    """A wav of ``character``'s preview line in their voice (``narrator`` when they have none)."""
    from audiobook.audio import write_wav
    from audiobook.tts import GenerationOptions

    member = book.cast.get(character) if book.cast else None
    if member is None or not member.preview:
        raise AudiobookError(f"{character or 'That character'} has no line in this book to hear.")
    if not member.voice and narrator is None:
        raise AudiobookError(f"Pick a voice for {member.name} first, or a narrator on the Render tab.")
    voice = backend.voice_narrator(member.voice) if member.voice else narrator
    prompt = backend.clone_prompt_for(voice)
    language = backend.settings.language if backend.settings.language != "auto" else (book.language or "auto")
    wav = backend.tts.narrate(voice, [member.preview], language, GenerationOptions.from_settings(backend.settings), prompt=prompt)[0]
    folder = Path(tempfile.gettempdir()) / "audiobook-previews"
    folder.mkdir(parents=True, exist_ok=True)
    return write_wav(folder / f"line-{abs(hash((member.name, member.voice, member.preview))) % 10**10}.wav", wav)


def speaker_rows(backend, out_dir: str | Path | None) -> list[list]:
    """Who spoke in a render (from its manifest): speaker, voice, chunks, seconds of audio kept."""
    from audiobook.manifest import load_manifest

    m = load_manifest(out_dir) if out_dir and Path(out_dir).is_dir() else None
    rows: dict[tuple[str, str], list] = {}
    for st in (m.chunks.values() if m else []):
        row = rows.setdefault((st.speaker or "narrator", st.voice), [st.speaker or "narrator", st.voice, 0, 0.0])
        row[2] += 1
        row[3] += round(st.duration_s, 1) if st.kept else 0.0
    return sorted(rows.values(), key=lambda r: (r[0] != "narrator", -r[2]))


def voicing_for(backend, narrator: Narrator, cast: Cast | None) -> Voicing:
    """Who reads whom: the cast's mapped characters by their voices, everyone else by ``narrator``."""
    voices = {}
    for m in (cast.members if cast else []):
        if m.voice:
            try:
                voices[m.name] = backend.voice_narrator(m.voice)
            except AudiobookError:
                raise AudiobookError(f"The cast maps {m.name} to '{m.voice}', which is neither a saved voice nor a "
                                     f"built-in speaker; pick another voice for {m.name}.") from None
    return Voicing(narrator, voices, prompt_for=backend.clone_prompt_for)


def render_cast(backend, book: Book, narrator: Narrator, target: Path, cast: Cast | None,
                save: bool = True) -> tuple[Book, Voicing | None]:
    """The book and voices a render uses: with a cast, or a book with speakers (markup, a JSON
    book's spans or cast), every chapter gets spans and the cast is saved in ``target/cast.json``."""
    has_speakers = any(c.spans for c in book.chapters) or bool(book.cast and book.cast.members)
    if cast is None and not has_speakers:
        return book, None
    book, _ = casting.label_book(book, cast)
    voicing = backend.voicing_for(narrator, book.cast)
    if save:
        backend.save_cast(book, book.cast, target)
    return book, voicing


CAST_EDITS = ("merge", "rename", "split", "hide", "show")


def edit_cast(backend, book: Book, action: str, name: str, other: str = "") -> Book:
    """The book with its character list edited, labelled again and the cast saved:

    ``merge`` ``other`` into ``name``; ``rename`` ``name`` to ``other``; ``split`` the alias
    ``other`` off ``name``; ``hide`` or ``show`` ``name`` (a hidden character's quotes go to
    ``dialogue``). A merge, rename or hide renames the parts; a split or show labels the chapters
    whose speakers were found automatically again. Markup and parts set by hand stay as they are.
    """
    if book.cast is None or not any(c.spans for c in book.chapters):
        book, _ = backend.label_book(book)  # not labelled yet: find who speaks first
    cast = book.cast
    if action not in CAST_EDITS:
        raise AudiobookError(f"'{action}' is not a cast edit; use one of: {', '.join(CAST_EDITS)}.")
    if action in ("merge", "rename", "split") and not (other or "").strip():
        what = {"merge": "the character to merge into", "rename": "the new name", "split": "the other name to split off"}
        raise AudiobookError(f"Give {what[action]} {name}.")
    cast = {"merge": lambda: cast.merged(name, other), "rename": lambda: cast.renamed(name, other),
            "split": lambda: cast.split(name, other), "hide": lambda: cast.hidden(name, True),
            "show": lambda: cast.hidden(name, False)}[action]()
    if action in ("merge", "rename", "hide"):  # the same quotes, another name: keep every part as labelled
        new = {"merge": {other: name}, "rename": {name: other}, "hide": {name: DIALOGUE}}[action]
        book = casting.recast_book(book, cast, {speaker_name(k): speaker_name(v) for k, v in new.items()})
    else:  # someone new speaks, or speaks again: find their quotes
        book, _ = casting.relabel_book(book, cast)
    backend.save_cast(book, book.cast)
    return book


def design_cast(backend, book: Book, llm: bool = False, only: list[str] | None = None, progress=None):
    """Design a voice for each main character of ``book`` (or those named in ``only``), save and map them;
    the cast is saved. Returns ``(book, [cast_design.Designed], warnings)``. See ``audiobook/cast_design.py``."""
    from audiobook.cast_design import design_cast as design

    if book.cast is None or not any(c.spans for c in book.chapters):
        book, _ = backend.label_book(book)
    model = LLM.from_settings(backend.settings) if llm else None
    language = backend.settings.language if backend.settings.language != "auto" else (book.language or "auto")
    book, done, warnings = design(book, lambda description, line: backend.preview_design(description, language, line),
                                  lambda preview, name: backend.save_voice(preview, name, overwrite=True),
                                  llm=model, only=only, progress=progress)
    backend.save_cast(book, book.cast)
    return book, done, warnings
