"""The one door the page and the command line use: settings, books, voices, render.

Run ``python backend.py --help`` for the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable

from audiobook.books import Book, load_book
from audiobook.books.cast import CAST_FILE, LLM, Cast, label_book, load_cast, save_cast
from audiobook.dialogue import DIALOGUE
from audiobook.errors import AudiobookError
from audiobook.manifest import Manifest
from audiobook.render import Progress, RenderOptions, RenderResult, RenderState, plan_book, render_events
from audiobook.settings import FOLDER_SETTINGS, SETTINGS_FILE, Settings, load_settings, save_settings
from audiobook.tts import PRESET, TTS, Narrator
from audiobook.previews import VoicePreview
from audiobook.voices import Voice, VoiceLibrary
from audiobook.queue import QUEUE_FILE, QueueItem, RenderQueue, run_queue, settings_for, snapshot
from audiobook.voicing import Voicing
from audiobook.workers import WorkerInfo, WorkerPool, executor_for

ROOT = Path(__file__).resolve().parent

SAMPLE_BOOK = """Chapter 1: The Lighthouse

The lighthouse stood at the edge of the world. Every night its keeper climbed the stairs.

He counted them as he went, one hundred and twelve. Then he lit the lamp.

Chapter 2: The Storm

The storm came in from the west. "Hold fast," the keeper said. The light did not go out.
"""


class Backend:
    """State shared by the page and the command line: settings, the resident model, renders.

    ``root`` is the project folder (``user_settings.json``, ``output/``, ``voices/`` live there);
    ``models_dir`` overrides the setting for this process without saving it. With
    ``lock_folders`` (a page served to the network) the folder settings cannot be changed.
    """

    def __init__(self, root: str | Path | None = None, settings_path: str | Path | None = None, models_dir: str | None = None,
                 lock_folders: bool = False):
        # The command line works on the project folder, or on $AUDIOBOOK_ROOT (as the page does).
        self.root = Path(root) if root else Path(os.environ.get("AUDIOBOOK_ROOT") or ROOT)
        self.lock_folders = lock_folders
        self.settings_path = Path(settings_path) if settings_path else self.root / SETTINGS_FILE
        self._models_dir_override = str(models_dir) if models_dir else None
        self.settings = self._with_overrides(load_settings(self.settings_path))
        self.tts = TTS(self.settings)  # its ``lock`` is the one model lock: a render holds it throughout
        self._job: _RenderJob | None = None
        self._executor = None  # where the current (or last) render's batches run: workers.InProcess or WorkerPool
        self._download = None  # the page's background checkpoint download (models.DownloadState)
        self._download_guard = threading.Lock()
        self._epub_sources: dict[str, Path] = {}  # book title -> the EPUB it was read from (its read-along pages)

    # ---- settings -----------------------------------------------------------------------

    def _with_overrides(self, s: Settings) -> Settings:
        return s.updated(models_dir=self._models_dir_override) if self._models_dir_override else s

    def save_settings(self, **changes) -> Settings:
        """Validate, save to ``user_settings.json`` and apply; raise AudiobookError naming a bad key."""
        self._refuse_folder_changes(changes)
        on_disk = load_settings(self.settings_path) if self.settings_path.exists() else Settings()
        new = on_disk.updated(**changes)
        self._check_model_settings_free(self._with_overrides(new))
        with _file_errors(f"save the settings to {self.settings_path}"):
            save_settings(new, self.settings_path)
        self.apply_settings(self._with_overrides(new))
        return new

    def settings_errors(self, values: dict, label: Callable[[str], str] = str) -> dict[str, str]:
        """Check each value on its own against the current settings; {name: sentence} for the bad ones.

        ``label`` names a setting in the sentences the way the caller shows it.
        """
        errors: dict[str, str] = {}
        for name, value in values.items():
            if isinstance(value, str) and Settings.kind(name) in (int, float):
                errors[name] = f"{label(name)} must be a number."
                continue
            if value is None:
                errors[name] = f"{label(name)} needs a value."
                continue
            try:
                self.settings.updated(**{name: value})
            except AudiobookError as e:
                errors[name] = str(e)
        return errors

    def save_changed_settings(self, values: dict, label: Callable[[str], str] = str) -> dict[str, str]:
        """Save a form's values unless one is bad; returns {name: sentence} (empty when saved).

        A ``models_dir`` equal to this process's ``--models-dir`` is left out: it is for this run only.
        """
        override = self.models_dir_override
        if override and values.get("models_dir") == override:
            values = {k: v for k, v in values.items() if k != "models_dir"}
        errors = self.settings_errors(values, label)
        if not errors:
            self.save_settings(**values)
        return errors

    def reset_settings(self) -> Settings:
        """Restore the defaults (and save them); folder settings stay as they are while they are locked."""
        new = Settings()
        if self.lock_folders:
            on_disk = load_settings(self.settings_path) if self.settings_path.exists() else Settings()
            new = new.updated(**{k: getattr(on_disk, k) for k in FOLDER_SETTINGS})
        self._check_model_settings_free(self._with_overrides(new))
        with _file_errors(f"save the settings to {self.settings_path}"):
            save_settings(new, self.settings_path)
        self.apply_settings(self._with_overrides(new))
        return self.settings

    def _refuse_folder_changes(self, changes: dict) -> None:
        if not self.lock_folders:
            return
        changed = [k for k in FOLDER_SETTINGS if k in changes and changes[k] != getattr(self.settings, k)]
        if changed:
            raise AudiobookError(
                f"The folder setting{'s' if len(changed) > 1 else ''} {', '.join(repr(k) for k in changed)} cannot be "
                "changed from a page served to the network; change it on this computer in user_settings.json, "
                "or in a page started without --listen or --share.")

    def _check_model_settings_free(self, new: Settings) -> None:
        changed = [k for k in MODEL_KEYS if getattr(new, k) != getattr(self.settings, k)]
        if changed and self.tts.lock.held_by_other():
            raise AudiobookError(f"The setting '{changed[0]}' cannot change while the model is busy with "
                                 f"{self.tts.lock.holder}; save it when that is done.")

    @property
    def models_dir_override(self) -> str | None:
        """The ``--models-dir`` of this process: used instead of the setting, never saved."""
        return self._models_dir_override

    def apply_settings(self, new: Settings) -> None:
        """Use ``new`` in this process without saving it (unloads the model when device, dtype or attention change).

        Settings that change which model runs, or how, cannot change while a render holds the model.
        """
        self._check_model_settings_free(new)
        reload_keys = ("device", "dtype", "attention_mode")
        if any(getattr(new, k) != getattr(self.settings, k) for k in reload_keys):
            self.tts.unload()
        self.settings = new
        self.tts.settings = new

    # ---- paths ----------------------------------------------------------------------------

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def output_root(self) -> Path:
        return self.resolve(self.settings.output_dir)

    def book_dir(self, book: Book) -> Path:
        from audiobook.files import safe_filename

        return self.output_root / safe_filename(book.title or "book")

    # ---- voices ---------------------------------------------------------------------------

    @property
    def voices(self) -> VoiceLibrary:
        """The voice library in the ``voices_dir`` setting."""
        return VoiceLibrary(self.resolve(self.settings.voices_dir))

    def list_voices(self) -> list[Voice]:
        return self.voices.list()

    def get_voice(self, name: str) -> Voice:
        return self.voices.get(name)

    def speakers(self) -> list[str]:
        """The built-in speakers of the CustomVoice model at the current model size."""
        return self.tts.speakers()

    def supports_instruct(self) -> bool:
        """Whether built-in speakers follow a style instruction at the current model size."""
        return self.tts.supports_instruct()

    def preview_design(self, description: str, language: str = "auto", text: str | None = None,
                       seed: int | None = None) -> VoicePreview:
        """The VoiceDesign model speaks the reference passage (``text``) in the described voice.

        Call again (``seed`` None) to regenerate; ``save_voice`` keeps the one the user liked.
        """
        from audiobook import previews

        with self.tts.lock.hold("a voice preview"):  # refused with a sentence while a render holds the model
            preview = previews.preview_design(self.tts, description, language, text, seed)
        return self._keep_preview(preview)

    def preview_clone(self, audio_path: str | Path, transcript: str = "", language: str = "auto",
                      test_line: str | None = None) -> VoicePreview:
        """Check and prepare a clip, then speak a test line in its voice (x-vector only without transcript)."""
        from audiobook import previews

        with self.tts.lock.hold("a voice preview"):  # refused with a sentence while a render holds the model
            preview = previews.preview_clone(self.tts, audio_path, transcript, language, test_line)
        return self._keep_preview(preview)

    def preview_preset(self, speaker: str, instruct: str = "", language: str = "auto",
                       test_line: str | None = None) -> VoicePreview:
        """A built-in speaker speaks a test line; an instruction on a model that cannot follow one is an error."""
        from audiobook import previews

        with self.tts.lock.hold("a voice preview"):  # refused with a sentence while a render holds the model
            preview = previews.preview_preset(self.tts, speaker, instruct, language, test_line)
        return self._keep_preview(preview)

    def _keep_preview(self, preview: VoicePreview) -> VoicePreview:
        """Write the preview audio where the page can play it; old previews are pruned."""
        import uuid

        from audiobook.audio import write_wav

        folder = Path(tempfile.gettempdir()) / "audiobook-previews"
        folder.mkdir(parents=True, exist_ok=True)
        for old in sorted(folder.glob("*.wav"), key=lambda f: f.stat().st_mtime)[:-30]:
            old.unlink(missing_ok=True)
        preview.wav_path = write_wav(folder / f"{preview.voice.kind}-{uuid.uuid4().hex[:10]}.wav", preview.audio)
        return preview

    def save_voice(self, preview: VoicePreview, name: str, notes: str | None = None, overwrite: bool = False) -> Voice:
        """Save a previewed voice under ``name``; a taken name is an error unless ``overwrite``."""
        from dataclasses import replace

        voice = replace(preview.voice, name=name, notes=preview.voice.notes if notes is None else notes)
        with _file_errors(f"save the voice '{name}' in {self.voices.root}"):
            return self.voices.save(voice, preview.reference, preview.audio, overwrite=overwrite)

    def rename_voice(self, old: str, new: str, overwrite: bool = False) -> Voice:
        with _file_errors(f"rename the voice '{old}' in {self.voices.root}"):
            return self.voices.rename(old, new, overwrite=overwrite)

    def delete_voice(self, name: str) -> None:
        with _file_errors(f"delete the voice '{name}' from {self.voices.root}"):
            self.voices.delete(name)

    def import_voice(self, zip_path: str | Path, overwrite: bool = False, name: str | None = None) -> Voice:
        """Add a voice from an exported zip (safely extracted); a taken name is an error unless ``overwrite``."""
        with _file_errors(f"import the voice into {self.voices.root}"):
            return self.voices.import_zip(zip_path, overwrite=overwrite, name=name)

    def export_voice(self, name: str, dest: str | Path | None = None) -> Path:
        """Zip a voice for sharing; returns the zip's path."""
        with _file_errors(f"export the voice '{name}'" + (f" to {dest}" if dest else "")):
            return self.voices.export_zip(name, dest)

    def narrator_for(self, voice: str | Voice) -> Narrator:
        """The narrator of a saved voice (by name): designed/cloned clone their clip, presets name a speaker."""
        from audiobook import voices

        voice = voice if isinstance(voice, Voice) else self.get_voice(voice)
        narrator = voices.narrator_for(voice)
        if narrator.kind == PRESET:
            self.tts.check_instruct(narrator.instruct)
        return narrator

    def clone_prompt_for(self, narrator: Narrator, maker=None):
        """The clone prompt for a render: loaded from the voice's cache when fresh, else computed and cached.

        ``maker`` computes it (a ``WorkerPool``, so that this process loads no model); default: our model.
        """
        from audiobook import voices

        if narrator.kind == PRESET:
            return None
        cache = voices.prompt_cache_path(narrator, self.tts.settings.model_size)
        if maker is not None:  # a pool has the settings and the clone_prompt that a TTS uses here
            return TTS.cached_clone_prompt(maker, narrator, cache)
        return self.tts.cached_clone_prompt(narrator, cache)

    # ---- checkpoints ------------------------------------------------------------------------

    def checkpoints(self):
        """Every checkpoint the app can use, with whether it is on disk, where, and its size."""
        from audiobook import check, models

        whisper = None
        try:
            device = self.tts.device()
        except AudiobookError:
            device = "cpu"
        if check.verify_enabled(self.settings.verify, device):
            wanted = self.settings.verify_model.strip()
            whisper = wanted if wanted and wanted != "auto" else (check.GPU_MODEL if device.startswith("cuda") else check.CPU_MODEL)
        return models.list_checkpoints(self.settings.models_dir or None, whisper)

    def download_model(self, name: str, on_progress=None):
        """Download one checkpoint (into the models folder when set, else the Hugging Face cache), resuming
        a broken earlier download; ``on_progress`` gets ``models.DownloadProgress``. Returns the checkpoint."""
        from audiobook import models

        return models.download(name, self.settings.models_dir or None, on_progress)

    def start_download(self, name: str):
        """Download a checkpoint in a background thread; follow it with ``download_state``.

        One download at a time; an unknown name or a download already running is an AudiobookError.
        """
        from audiobook import models

        name = models.check_name(name)
        with self._download_guard:
            if self._download is not None and self._download.running:
                raise AudiobookError(f"{self._download.name} is downloading; wait for it to finish before starting another.")
            state = self._download = models.DownloadState(name=name, running=True)

        def report(p) -> None:
            state.progress = p

        def work() -> None:
            try:
                self.download_model(name, report)
                state.done = True
            except AudiobookError as e:
                state.error = str(e)
            except Exception as e:  # the thread must never die silently: the page shows the sentence
                logging.getLogger(__name__).exception("download failed")
                state.error = (f"The download of {name} stopped on an unexpected error ({type(e).__name__}: {e}); "
                               "download it again to resume.")
            finally:
                state.running = False

        threading.Thread(target=work, name=f"download-{name}", daemon=True).start()
        return self.download_state()

    def download_state(self):
        """A copy of the background download's state (an empty one when none was started)."""
        from dataclasses import replace as copy

        from audiobook import models

        return copy(self._download) if self._download is not None else models.DownloadState()

    def doctor(self, live: bool = True, on_step=None):
        """Check this computer (device, checkpoints, the fast engine against qwen_tts, speed, memory).

        Returns ``doctor.DoctorReport``. When the engine disagrees with qwen_tts, the ``engine``
        setting is saved as ``qwen_tts`` (the report says so). Refused while a render runs.
        """
        from audiobook import doctor

        if self.tts.lock.held_by_other() and self.tts.lock.holder.startswith("a render"):
            raise AudiobookError("A render is running; check this computer when it has finished or been stopped.")
        with self.tts.exclusive("a check of this computer"):
            report = doctor.run_doctor(self.tts, [c.to_dict() for c in self.checkpoints()], live, on_step)
        if report.engine_switched:
            self.save_settings(engine="qwen_tts")
        return report

    # ---- books and render ----------------------------------------------------------------

    def load_book(self, path: str | Path | None) -> Book:
        """Read a book file; AudiobookError for a missing or unreadable one."""
        if not path:
            raise AudiobookError("Choose a book file first (.txt, .md, .epub, .pdf or .json).")
        book = load_book(path)
        self._remember_source(book, path)
        return book

    def _remember_source(self, book: Book, path) -> None:
        """An EPUB's pages become its read-along book, so its file is remembered by title."""
        if Path(path).suffix.lower() == ".epub":
            self._epub_sources[book.title] = Path(path)

    def edit_book(self, book: Book | None, action: str, chapter: int | None = None, value: str = "") -> Book:
        """Apply one edit to ``book`` and return the edited copy (``book`` itself is left as it was).

        ``action`` is rename (chapter, value=title), text (chapter, value=text), merge or drop
        (value='2, 3') or reorder (value='3, 1, 2'); chapters are 0-based, numbers in ``value`` 1-based.
        """
        from audiobook import books

        if book is None:
            raise AudiobookError("Load a book first.")
        if action in ("rename", "text") and chapter is None:
            raise AudiobookError("Pick a chapter first.")
        if action == "rename":
            return books.rename_chapter(book, int(chapter), value)
        if action == "text":
            return books.set_chapter_text(book, int(chapter), value)
        edits = {"merge": books.merge_chapters, "drop": books.drop_chapters, "reorder": books.reorder_chapters}
        if action not in edits:
            raise ValueError(f"unknown edit {action!r}")
        return edits[action](book, _chapter_numbers(value, book))

    def save_book(self, book: Book | None) -> Path:
        """Write the (edited) book as JSON under ``<output>/books/``; returns the file."""
        from audiobook.books import save_book_json
        from audiobook.files import safe_filename

        if book is None:
            raise AudiobookError("Load a book first.")
        return save_book_json(book, self.output_root / "books" / f"{safe_filename(book.title or 'book')}.json")

    def render(
        self,
        book: Book | str | Path,
        narrator: Narrator | str,
        out_dir: str | Path | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        *,
        redo_chunks: tuple[str, ...] | list[str] = (),
        redo_chapters: tuple[int, ...] | list[int] = (),
        rebuild: bool = False,
        allow_incomplete: bool = False,
        cast: Cast | None = None,
        chapters: tuple[int, ...] | list[int] = (),
    ) -> RenderResult:
        """Render a book (a Book or a path) with ``narrator`` (a Narrator or a saved voice's name), blocking.

        Continues from ``<out_dir>/manifest.json``: only chunks not done yet are generated.
        ``redo_chunks`` (ids) and ``redo_chapters`` (1-based numbers) are rendered again;
        ``rebuild`` recovers a damaged manifest from the chunk files; ``allow_incomplete``
        assembles chapters whose failed chunks are left out; ``chapters`` (1-based) renders
        and assembles only those (the book files once every chapter is done). ``cast`` maps
        characters to voices (see ``render_cast``). Raises AudiobookError while another render runs.
        """
        book, narrator, target = self._render_inputs(book, narrator, out_dir)
        with self._hold_for_render(book):
            book, voicing = self.render_cast(book, narrator, target, cast)
            options = RenderOptions(tuple(redo_chunks), tuple(int(n) for n in redo_chapters), rebuild, allow_incomplete,
                                    tuple(int(n) for n in chapters))
            return self._render(book, narrator, target, options, on_progress, should_stop, voicing)

    def _hold_for_render(self, book: Book | str, what: str = "a render"):
        """Take the model lock for a render of ``book`` (a Book or its title); a render or preview
        already holding it is a sentence."""
        from audiobook.tts import ModelLock

        lock: ModelLock = self.tts.lock
        if lock.held_by_other() and lock.holder.startswith("a render"):
            raise AudiobookError(RENDER_BUSY)
        title = book.title if isinstance(book, Book) else book
        return lock.hold(f"{what} of '{title or 'a book'}'")

    def _render_inputs(self, book, narrator, out_dir) -> tuple[Book, Narrator, Path]:
        if not isinstance(book, Book):
            path, book = book, load_book(book)
            self._remember_source(book, path)
        if isinstance(narrator, str):
            narrator = self.narrator_for(narrator)
        return book, narrator, Path(out_dir) if out_dir else self.book_dir(book)

    def _render(self, book, narrator, target, options, on_progress, should_stop, voicing=None,
                settings=None) -> RenderResult:
        """One render; ``settings`` (a queued book's snapshot) is used instead of the current ones."""
        settings = settings or self.settings
        result = RenderResult(out_dir=target)
        self.tts.settings = settings
        try:
            with executor_for(settings, self.tts) as executor:  # workers > 0: Ray workers render the batches
                self._executor = executor
                maker = executor if isinstance(executor, WorkerPool) else None
                prompt = (lambda: self.clone_prompt_for(narrator, maker)) if narrator.kind != PRESET else None
                if voicing is not None:
                    voicing.prompt_for = lambda voice: self.clone_prompt_for(voice, maker)
                for progress in render_events(book, narrator, settings, target, self.tts, result, should_stop,
                                              options, clone_prompt=prompt, executor=executor, voicing=voicing):
                    if on_progress:
                        on_progress(progress)
            if settings.make_readalong and not result.stopped:
                self._readalong_after_render(book, target, result)
        finally:
            if self.tts.settings is settings:  # unless the settings were changed meanwhile
                self.tts.settings = self.settings
        return result

    def _readalong_after_render(self, book: Book, target: Path, result: RenderResult) -> None:
        """The read-along EPUB of a finished render; a failure is a line in the log, not a failed render."""
        if not result.chapter_files:
            return
        try:
            made = self.readalong(target, self._epub_sources.get(book.title))
        except AudiobookError as e:
            result.log.append(f"The read-along EPUB was not made: {e}")
            return
        result.book_files.append(made.path)
        result.log.append(made.summary())

    def readalong(self, out_dir: str | Path, source: str | Path | None = None):
        """Build ``<title> (read-along).epub`` in a render folder from its chapters and sentence timings
        (nothing is rendered). ``source``: the book's EPUB, whose pages it then uses; it is kept beside
        the render for the next time. Returns a ``readalong.ReadAlong``."""
        from audiobook.readalong import build_readalong, keep_source

        out_dir = Path(out_dir)
        if source is not None:
            if not Path(source).is_file():
                raise AudiobookError(f"The source book {source} is not there.")
            keep_source(source, out_dir)
        return build_readalong(out_dir)

    def worker_infos(self) -> list[WorkerInfo]:
        """The Ray workers of the current (or last) render and what each is doing; empty without workers."""
        return self._executor.infos() if self._executor is not None else []

    # ---- review and fixes ----------------------------------------------------------------

    def rendered_books(self) -> list[Path]:
        """Book folders under the output folder that hold a render (newest first)."""
        from audiobook.manifest import MANIFEST_FILE

        found = [p.parent for p in self.output_root.glob(f"*/{MANIFEST_FILE}")]
        return sorted(found, key=lambda p: (p / MANIFEST_FILE).stat().st_mtime, reverse=True)

    def review(self, out_dir: str | Path, flagged: bool = False, chapter: int | None = None):
        """The chunks of a rendered book with their check scores (``audiobook.review.ReviewRow``)."""
        from audiobook.review import review_rows

        return review_rows(self.resolve(str(out_dir)), flagged, chapter)

    def fix_chunk(self, out_dir: str | Path, chunk: str, *, text: str | None = None, reroll: bool = False,
                  accept: bool = False, assemble: bool = True,
                  on_progress: Callable[[Progress], None] | None = None) -> RenderResult | None:
        """Fix one chunk of a rendered book: new ``text``, a ``reroll`` (same text, new seed) or ``accept``.

        Only that chunk is generated; with ``assemble`` its chapter and the book files are
        assembled again (the page assembles on Rebuild). Accepting changes no audio and returns None.
        """
        from audiobook import review

        out_dir = self.resolve(str(out_dir))
        if accept:
            review.accept_chunk(out_dir, chunk)
            return None
        if text is None and not reroll:
            raise AudiobookError("Say how to fix the chunk: new text, a re-roll, or accept it as it is.")
        review.render_inputs(out_dir, self.settings)  # fail before recording anything
        if text is not None:
            new_id = review.edit_chunk(out_dir, chunk, text)
            if reroll:  # the new text's id where the chunk stands (a cast's chunk hashes its own voice and style)
                new_id = self._planned_id(out_dir, chunk) or new_id
            redo = (new_id,) if reroll else ()
        else:
            redo = (chunk,)
        return self._render_recorded(out_dir, RenderOptions(redo_chunks=redo, assemble=assemble), on_progress)

    def _planned_id(self, out_dir: Path, chunk: str) -> str | None:
        """The id a render of ``out_dir`` now plans at the first place of ``chunk`` (after an edit of its text)."""
        from audiobook.manifest import load_manifest
        from audiobook.review import render_inputs

        m = load_manifest(out_dir)
        place = next(((ci, r.index) for ci, ch in enumerate(m.chapters) for r in ch.chunks if r.id == chunk), None)
        if place is None:
            return None
        book, narrator, settings = render_inputs(out_dir, self.settings)
        book, voicing = self.render_cast(book, narrator, out_dir, None, save=False)
        planned = plan_book(book, narrator, settings, out_dir, voicing=voicing)
        return planned.chapters[place[0]].chunks[place[1]].id

    def rebuild_book(self, out_dir: str | Path, on_progress: Callable[[Progress], None] | None = None) -> RenderResult:
        """Assemble the chapters of a rendered book whose chunks changed, then the book files."""
        return self._render_recorded(self.resolve(str(out_dir)), RenderOptions(), on_progress)

    def _render_recorded(self, out_dir: Path, options: RenderOptions, on_progress) -> RenderResult:
        """Render with the book, voice and settings recorded by the render in ``out_dir``."""
        from audiobook.review import render_inputs

        with self._hold_for_render(out_dir.name):
            return self._render_recorded_held(out_dir, options, on_progress)

    def _render_recorded_held(self, out_dir: Path, options: RenderOptions, on_progress) -> RenderResult:
        from audiobook.review import render_inputs

        saved = self.tts.settings
        try:
            book, narrator, settings = render_inputs(out_dir, self.settings)
            self.tts.settings = settings  # the render's model size, this machine's device
            book, voicing = self.render_cast(book, narrator, out_dir, None, save=False)  # a cast render's voices
            result = RenderResult(out_dir=out_dir)
            prompt = (lambda: self.clone_prompt_for(narrator)) if narrator.kind != PRESET else None
            for progress in render_events(book, narrator, settings, out_dir, self.tts, result, options=options,
                                          clone_prompt=prompt, voicing=voicing):
                if on_progress:
                    on_progress(progress)
            return result
        finally:
            self.tts.settings = saved

    def sample(self, book: Book | str | Path, narrator: Narrator | str, chapter: int = 1, seconds: float = 60.0,
               out_path: str | Path | None = None) -> Path:
        """Render about the first ``seconds`` of a chapter with ``narrator`` into one wav; return its path."""
        from audiobook.review import render_sample

        book, narrator, target = self._render_inputs(book, narrator, None)
        with self._hold_for_render(book, "a sample"):
            prompt = self.clone_prompt_for(narrator) if narrator.kind != PRESET else None
            out = Path(out_path) if out_path else target / "samples" / f"sample-chapter-{chapter}-{narrator_label(narrator)}.wav"
            return render_sample(book, narrator, self.settings, self.tts, chapter, seconds, out, prompt)

    def render_plan(self, book: Book | str | Path, narrator: Narrator | str, out_dir: str | Path | None = None,
                    cast: Cast | None = None) -> Manifest:
        """What a render would start from: every chapter's chunks (ids, text, status), without a model."""
        book, narrator, target = self._render_inputs(book, narrator, out_dir)
        book, voicing = self.render_cast(book, narrator, target, cast, save=False)
        return plan_book(book, narrator, self.settings, target, voicing=voicing)

    # ---- the cast ---------------------------------------------------------------------------

    def cast_path(self, book: Book) -> Path:
        """Where the book's cast is kept: ``output/<book>/cast.json``."""
        return self.book_dir(book) / CAST_FILE

    def saved_cast(self, book: Book) -> Cast | None:
        """The cast last saved for this book (voices the user mapped), or None."""
        path = self.cast_path(book)
        return load_cast(path) if path.is_file() else None

    def label_book(self, book: Book, cast: Cast | None = None, llm: bool = False) -> tuple[Book, list[str]]:
        """The book with spans in every chapter and its cast counted; voices from ``cast``, else the saved cast.

        With ``llm`` the language model of the settings labels the chapters without markup.
        Returns the book and one sentence per rejected answer of the model.
        """
        model = LLM.from_settings(self.settings) if llm else None
        return label_book(book, cast if cast is not None else self.saved_cast(book), model)

    def save_cast(self, book: Book, cast: Cast, out_dir: str | Path | None = None) -> Path:
        """Keep the cast in ``output/<book>/cast.json`` (or ``out_dir``)."""
        return save_cast(cast, (Path(out_dir) if out_dir else self.book_dir(book)) / CAST_FILE)

    def voice_narrator(self, voice: str) -> Narrator:
        """The narrator for a cast's voice: a saved voice by name, else a built-in speaker."""
        if self.voices.exists(voice):
            return self.narrator_for(voice)
        if voice.lower() in [s.lower() for s in self.speakers()]:
            return Narrator(kind=PRESET, speaker=voice.lower(), name=voice.lower())
        raise AudiobookError(f"'{voice}' is neither a saved voice nor a built-in speaker; pick one from the voice list.")

    def cast_voices(self) -> list[str]:
        """What a character can be mapped to: the saved voices, then the built-in speakers."""
        saved = [v.name for v in self.list_voices()]
        return saved + [s for s in self.speakers() if s not in saved]

    def map_voice(self, book: Book, character: str, voice: str) -> Book:
        """The book with ``character`` read by ``voice`` ("" for no voice of their own); the cast is saved
        in ``output/<book>/cast.json``. An unknown voice is an AudiobookError sentence."""
        voice = (voice or "").strip()
        if voice:
            try:
                self.voice_narrator(voice)
            except AudiobookError:
                raise AudiobookError(f"'{voice}' is neither a saved voice nor a built-in speaker; pick one from the list.") from None
        cast = (book.cast or Cast()).with_voice(character, voice)
        book = replace(book, cast=cast)
        self.save_cast(book, cast)
        return book

    def edit_span(self, book: Book, chapter: int, part: int, speaker: str | None = None, style: str | None = None) -> Book:
        """The book with part ``part`` of chapter ``chapter`` (0-based) given another speaker and/or style;
        the cast is counted again and saved."""
        from audiobook.books import cast_of, set_span

        if 0 <= chapter < len(book.chapters) and book.chapters[chapter].spans is None:
            book, _ = self.label_book(book)  # not labelled yet: find who speaks first
        book = set_span(book, chapter, part, speaker, style)
        book = replace(book, cast=cast_of(book.chapters, book.cast))
        self.save_cast(book, book.cast)
        return book

    def hear_line(self, book: Book, character: str, narrator: Narrator | None = None) -> Path:
        """A wav of ``character``'s preview line in their voice (``narrator`` when they have none)."""
        from audiobook.audio import write_wav
        from audiobook.tts import GenerationOptions

        member = book.cast.get(character) if book.cast else None
        if member is None or not member.preview:
            raise AudiobookError(f"{character or 'That character'} has no line in this book to hear.")
        if not member.voice and narrator is None:
            raise AudiobookError(f"Pick a voice for {member.name} first, or a narrator on the Render tab.")
        voice = self.voice_narrator(member.voice) if member.voice else narrator
        prompt = self.clone_prompt_for(voice)
        language = self.settings.language if self.settings.language != "auto" else (book.language or "auto")
        wav = self.tts.narrate(voice, [member.preview], language, GenerationOptions.from_settings(self.settings), prompt=prompt)[0]
        folder = Path(tempfile.gettempdir()) / "audiobook-previews"
        folder.mkdir(parents=True, exist_ok=True)
        return write_wav(folder / f"line-{abs(hash((member.name, member.voice, member.preview))) % 10**10}.wav", wav)

    def speaker_rows(self, out_dir: str | Path | None) -> list[list]:
        """Who spoke in a render (from its manifest): speaker, voice, chunks, seconds of audio kept."""
        from audiobook.manifest import load_manifest

        m = load_manifest(out_dir) if out_dir and Path(out_dir).is_dir() else None
        rows: dict[tuple[str, str], list] = {}
        for st in (m.chunks.values() if m else []):
            row = rows.setdefault((st.speaker or "narrator", st.voice), [st.speaker or "narrator", st.voice, 0, 0.0])
            row[2] += 1
            row[3] += round(st.duration_s, 1) if st.kept else 0.0
        return sorted(rows.values(), key=lambda r: (r[0] != "narrator", -r[2]))

    def voicing_for(self, narrator: Narrator, cast: Cast | None) -> Voicing:
        """Who reads whom: the cast's mapped characters by their voices, everyone else by ``narrator``."""
        voices = {}
        for m in (cast.members if cast else []):
            if m.voice:
                try:
                    voices[m.name] = self.voice_narrator(m.voice)
                except AudiobookError:
                    raise AudiobookError(f"The cast maps {m.name} to '{m.voice}', which is neither a saved voice nor a "
                                         f"built-in speaker; pick another voice for {m.name}.") from None
        return Voicing(narrator, voices, prompt_for=self.clone_prompt_for)

    def render_cast(self, book: Book, narrator: Narrator, target: Path, cast: Cast | None,
                    save: bool = True) -> tuple[Book, Voicing | None]:
        """The book and voices a render uses: with a cast, or a book with speakers (markup, a JSON
        book's spans or cast), every chapter gets spans and the cast is saved in ``target/cast.json``."""
        has_speakers = any(c.spans for c in book.chapters) or bool(book.cast and book.cast.members)
        if cast is None and not has_speakers:
            return book, None
        book, _ = label_book(book, cast)
        voicing = self.voicing_for(narrator, book.cast)
        if save:
            self.save_cast(book, book.cast, target)
        return book, voicing

    # ---- background render (the page) ------------------------------------------------------

    def start_render(
        self,
        book: Book | str | Path,
        narrator: Narrator | str,
        out_dir: str | Path | None = None,
        *,
        redo_chunks: tuple[str, ...] | list[str] = (),
        redo_chapters: tuple[int, ...] | list[int] = (),
        rebuild: bool = False,
        allow_incomplete: bool = False,
        cast: Cast | None = None,
    ) -> RenderState:
        """Start rendering in a background thread and return at once; follow it with ``render_state``.

        Same arguments as ``render``. Raises AudiobookError when a render is already running
        or the book or voice cannot be read (before anything starts).
        """
        book, narrator, target = self._render_inputs(book, narrator, out_dir)
        options = RenderOptions(tuple(redo_chunks), tuple(int(n) for n in redo_chapters), rebuild, allow_incomplete)

        def prepare():
            nonlocal book
            book, voicing = self.render_cast(book, narrator, target, cast)
            job = _RenderJob(RenderState(running=True, book_title=book.title, out_dir=str(target)))
            return job, lambda: self._render(book, narrator, target, options, job.update, job.stop.is_set, voicing)

        return self._start_job(self._hold_for_render(book), prepare, "render")

    def _start_job(self, hold, prepare, name: str) -> RenderState:
        """Run a render-like job in a background thread that holds the model lock.

        ``hold`` is taken here, so a busy model is refused before anything starts; ``prepare()``
        returns the job and the function its thread runs. The lock passes to that thread and is
        released when it ends.
        """
        hold.__enter__()
        handed = threading.Event()
        try:
            job, body = prepare()

            def work() -> None:
                handed.wait()
                try:
                    job.run(body)
                finally:
                    hold.__exit__(None, None, None)

            thread = threading.Thread(target=work, name=name, daemon=True)
            thread.start()
            self.tts.lock.hand_over(thread.ident)
        except BaseException:
            hold.__exit__(None, None, None)
            raise
        self._job = job
        handed.set()
        return job.snapshot()

    def stop_render(self) -> RenderState:
        """Ask the background render to stop after the batch in flight; returns the state at once."""
        if self._job is None:
            return RenderState()
        self._job.request_stop()
        return self._job.snapshot()

    def render_state(self) -> RenderState:
        """A snapshot of the background render (the last one, when none runs), with its workers."""
        state = self._job.snapshot() if self._job else RenderState()
        state.workers = [w.row() for w in self.worker_infos()]
        return state

    def wait_render(self, timeout: float | None = None) -> RenderState:
        """Block until the background render ends (or ``timeout`` seconds pass); return its state."""
        if self._job is not None:
            self._job.done.wait(timeout)
        return self.render_state()


    # ---- the queue ---------------------------------------------------------------------------

    @property
    def queue(self) -> RenderQueue:
        """The render queue in ``<output>/queue.json``."""
        return RenderQueue(self.output_root / QUEUE_FILE)

    def queue_add(self, book: Book | str | Path, voice: str | None = None, speaker: str | None = None,
                  instruct: str = "", output: str | Path | None = None) -> QueueItem:
        """Queue a book (a file, or a loaded and perhaps edited Book) with a saved voice or a built-in speaker.

        The current settings are kept with it. The book file is read when its turn comes, so a
        damaged file fails then, with its sentence; a missing file or voice is refused now.
        """
        from audiobook.books import BOOK_EXTENSIONS, save_book_json
        from audiobook.files import safe_filename

        if bool(voice) == bool(speaker):
            raise AudiobookError("Queue a book with either a saved voice or a built-in speaker.")
        if voice:
            self.get_voice(voice)
        else:
            known = self.speakers()
            if known and speaker.lower() not in known:
                raise AudiobookError(f"There is no built-in speaker called '{speaker}'; choose one of: {', '.join(known)}.")
            self.tts.check_instruct(instruct)
        if isinstance(book, Book):  # the page's book, with the user's edits: kept as a JSON book
            import uuid

            path = self.output_root / "queued-books" / f"{safe_filename(book.title or 'book')}-{uuid.uuid4().hex[:8]}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_book_json(book, path)
            title = book.title or path.stem
        else:
            path = self.resolve(str(book)).resolve()
            if not path.is_file():
                raise AudiobookError(f"There is no book file at {path}.")
            if path.suffix.lower() not in BOOK_EXTENSIONS:
                raise AudiobookError(f"Cannot read '{path.suffix or path.name}' files; use {', '.join(BOOK_EXTENSIONS)}.")
            title = path.stem
        item = QueueItem(book=str(path), title=title, voice=voice or "", speaker=(speaker or "").lower(),
                         instruct=instruct or "", output=str(self.resolve(str(output))) if output else "",
                         settings=snapshot(self.settings))
        return self.queue.add(item)

    def queue_items(self) -> list[QueueItem]:
        return self.queue.items()

    def queue_remove(self, n: int) -> QueueItem:
        """Remove item ``n`` (1-based); its rendered files stay where they are."""
        return self.queue.remove(n)

    def queue_move(self, n: int, to: int) -> list[QueueItem]:
        """Move item ``n`` to position ``to`` (1-based)."""
        return self.queue.move(n, to)

    def queue_retry(self, n: int) -> QueueItem:
        """Put a failed item back in line."""
        return self.queue.retry(n)

    def run_queue(self, on_progress: Callable[[Progress], None] | None = None, should_stop: Callable[[], bool] = lambda: False,
                  on_item: Callable[[QueueItem], None] | None = None) -> list[QueueItem]:
        """Render the queued books one after another (blocking); returns the items at the end.

        The book in progress when a run was killed continues from its manifest; a book that
        fails is marked failed with its sentence and the next one starts.
        """
        with self._hold_for_render("the queue"):
            return run_queue(self.queue, lambda item, progress: self._render_item(item, progress, on_progress, should_stop),
                             should_stop, on_item)

    def _render_item(self, item: QueueItem, progress, on_progress, should_stop) -> RenderResult:
        book = load_book(item.book)
        narrator = self.narrator_for(item.voice) if item.voice else Narrator(kind=PRESET, speaker=item.speaker,
                                                                              instruct=item.instruct)
        target = Path(item.output) if item.output else self.book_dir(book)
        if book.title and book.title != item.title:
            self.queue.update(item.id, title=book.title)

        def report(p: Progress) -> None:
            progress(p)
            if on_progress:
                on_progress(p)

        return self._render(book, narrator, target, RenderOptions(), report, should_stop,
                            settings=settings_for(item, self.settings))

    def start_queue(self) -> RenderState:
        """Run the queue in a background thread (the page); follow it with ``render_state`` and ``queue_items``."""
        if self.queue.next_item() is None:
            raise AudiobookError("There is no book waiting in the queue; add one first.")

        def prepare():
            job = _RenderJob(RenderState(running=True, book_title="Queue"))
            last = [RenderResult(out_dir=self.output_root)]

            def on_item(item: QueueItem) -> None:
                with job.lock:
                    st = job.state
                    st.book_title, st.out_dir, st.chunks_done, st.chunks_total = item.title, item.output, 0, 0
                    st.log = (st.log + [f"Queue: rendering {item.title} with {item.narrator_label}."])[-LOG_LINES_KEPT:]

            def render_item(item: QueueItem, progress) -> RenderResult:
                try:
                    last[0] = self._render_item(item, progress, job.update, job.stop.is_set)
                except AudiobookError as e:
                    with job.lock:
                        job.state.log = (job.state.log + [f"Queue: {item.title} failed: {e}"])[-LOG_LINES_KEPT:]
                    raise
                return last[0]

            return job, lambda: (run_queue(self.queue, render_item, job.stop.is_set, on_item), last[0])[1]

        return self._start_job(self._hold_for_render("the queue"), prepare, "queue")


@contextmanager
def _file_errors(doing: str):
    """Turn a failed file operation (full disk, no permission, missing folder) into a sentence."""
    from audiobook.errors import os_error_sentence

    try:
        yield
    except OSError as e:
        raise AudiobookError(os_error_sentence(e, doing)) from None


# Settings that pick the model or how it runs: they wait while a render holds the model.
MODEL_KEYS = ("device", "dtype", "attention_mode", "model_size", "models_dir", "engine")
RENDER_BUSY = "A render is already running; stop it or wait for it to finish before starting another."
LOG_LINES_KEPT = 500  # the page shows the tail of the log; older lines stay in memory no longer


def _chapter_numbers(text: str, book: Book) -> list[int]:
    """'2, 3' or '3 1 2' -> 0-based chapter indexes; AudiobookError for anything else."""
    parts = [p for p in (text or "").replace(",", " ").split() if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise AudiobookError(f"Type chapter numbers separated by commas, for example 2, 3 (the book has {len(book.chapters)}).")
    return [int(p) - 1 for p in parts]


class _RenderJob:
    """The state of one background render, updated by its thread and read by the page."""

    def __init__(self, state: RenderState):
        self.state = state
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.done = threading.Event()

    def update(self, p: Progress) -> None:
        with self.lock:
            st = self.state
            st.chunks_done, st.chunks_total, st.audio_s, st.elapsed_s = p.chunks_done, p.chunks_total, p.audio_s, p.elapsed_s
            st.x_real_time, st.eta_s, st.batch_size = p.x_real_time, p.eta_s, p.batch_size
            st.failed_count, st.suspect_count = p.failed, p.suspect
            if p.message:
                st.log = (st.log + p.message.split("\n"))[-LOG_LINES_KEPT:]

    def request_stop(self) -> None:
        self.stop.set()
        with self.lock:
            if self.state.running:
                self.state.stopping = True

    def run(self, render: Callable[[], RenderResult]) -> None:
        try:
            result = render()
            with self.lock:
                st = self.state
                st.failed, st.suspect, st.skipped_chapters = list(result.failed), list(result.suspect), list(result.skipped_chapters)
                st.chapter_files = [str(f) for f in result.chapter_files]
                st.book_files = [str(f) for f in result.book_files]
                st.stopped, st.finished = result.stopped, True
        except AudiobookError as e:
            self._fail(str(e))
        except Exception as e:  # the thread must never die silently: the page shows a sentence, the log the traceback
            from audiobook.errors import unexpected_sentence, write_error_log

            logging.getLogger(__name__).info("render failed", exc_info=True)
            self._fail(unexpected_sentence(e, write_error_log(e, "render")))
        finally:
            with self.lock:
                self.state.running = self.state.stopping = False
            self.done.set()

    def _fail(self, sentence: str) -> None:
        with self.lock:
            self.state.error = sentence
            self.state.log = (self.state.log + [sentence])[-LOG_LINES_KEPT:]

    def snapshot(self) -> RenderState:
        with self.lock:
            st = self.state
            return replace(st, log=list(st.log), failed=list(st.failed), suspect=list(st.suspect),
                           skipped_chapters=list(st.skipped_chapters), chapter_files=list(st.chapter_files),
                           book_files=list(st.book_files))


# ---- command line ---------------------------------------------------------------------------


def narrator_label(narrator: Narrator) -> str:
    """A short file-name-safe name for a narrator (its saved name, speaker, or 'clone')."""
    from audiobook.audio import safe_filename

    return safe_filename(narrator.name or narrator.speaker or "clone")


def parse_chapters(text: str) -> list[int]:
    """'1,3-5' -> [1, 3, 4, 5]; AudiobookError on anything else."""
    out: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        try:
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise AudiobookError(f"'{part}' is not a chapter number or range; write chapters like 1,3-5.") from None
        if first < 1 or last < first:
            raise AudiobookError(f"'{part}' is not a chapter range; chapters count from 1, like 1,3-5.")
        out += [n for n in range(first, last + 1) if n not in out]
    if not out:
        raise AudiobookError("No chapters given; write chapters like 1,3-5.")
    return out


def _narrator_from_args(args, backend: Backend) -> Narrator:
    if getattr(args, "voice", None):
        return backend.narrator_for(args.voice)
    if getattr(args, "ref_audio", None):
        from audiobook.clips import load_clip

        load_clip(args.ref_audio)  # a missing or unreadable clip is a sentence before any model loads
        return Narrator(kind="clone", ref_audio=str(args.ref_audio), ref_text=args.ref_text or "",
                        x_vector_only=not args.ref_text)
    if getattr(args, "ref_text", None):
        raise AudiobookError("--ref-text is the transcript of a clip; give the clip with --ref-audio too.")
    speaker = getattr(args, "speaker", None)
    if not speaker:
        names = ", ".join(backend.speakers())
        raise AudiobookError("Choose who narrates: --voice NAME (a saved voice, see `backend.py voices`), "
                             f"--speaker NAME (a built-in speaker: {names}), or --ref-audio CLIP --ref-text WORDS.")
    return Narrator(kind=PRESET, speaker=speaker, instruct=getattr(args, "instruct", "") or "")


def _tqdm_progress(total_hint: int = 0):
    from tqdm import tqdm

    bar = tqdm(total=total_hint or None, unit="chunk", file=sys.stderr)

    def report(p: Progress) -> None:
        bar.total = p.chunks_total
        bar.n = p.chunks_done
        if p.message:
            bar.write(p.message)
        bar.set_postfix(audio=f"{p.audio_s / 60:.1f}min", xrt=f"{p.x_real_time:.2f}")
        bar.refresh()

    return bar, report


def cmd_render(args) -> int:
    backend = Backend(models_dir=args.models_dir)
    if args.batch_size is not None:
        backend.apply_settings(backend.settings.updated(batch_size=args.batch_size))
    _apply_worker_args(backend, args)
    if args.verify:
        backend.apply_settings(backend.settings.updated(verify=args.verify))
    chapters = parse_chapters(args.chapters) if args.chapters else ()
    book = backend.load_book(args.book)  # a bad book is reported before any model loads
    narrator = _narrator_from_args(args, backend)
    cast = load_cast(args.cast) if args.cast else None
    if args.dialogue:
        cast = (cast or Cast()).with_voice(DIALOGUE, args.dialogue)
    bar, report = _tqdm_progress()
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def first_ctrl_c(signum, frame):  # the first Ctrl-C stops after the batch; a second one quits
        stop.set()
        bar.write("Stopping after the batch in flight (Ctrl-C again to quit now)...")
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, first_ctrl_c)
    try:
        result = backend.render(book, narrator, out_dir=args.output, on_progress=report, should_stop=stop.is_set,
                                redo_chunks=args.redo_chunk or (), redo_chapters=args.redo_chapter or (),
                                rebuild=args.rebuild, allow_incomplete=args.allow_incomplete, cast=cast,
                                chapters=chapters)
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    print(f"Rendered {result.generated} chunks in {result.batches} batches ({result.reused} of {result.chunks} were "
          f"already done), {result.audio_s:.1f}s of audio in {result.elapsed_s:.1f}s.")
    for rep in result.failed + result.suspect:
        print(f"{rep.status.capitalize()}: chapter {rep.chapter}, chunk {rep.index} [{rep.id}] ({rep.reason}): {rep.text}")
    for line in result.skipped_chapters:
        print(line)
    for f in result.chapter_files + result.book_files:
        print(f"  {f}")
    if result.stopped:
        print("Stopped; run the same command again to continue.")
    return 0 if result.complete and not result.suspect else 1


def _fmt_score(v: float | None, pattern: str) -> str:
    return "-" if v is None else pattern.format(v)


def cmd_review(args) -> int:
    """review OUTPUT_DIR [--flagged] [--json FILE]: the chunks of a render with their check scores."""
    import json

    backend = Backend(models_dir=getattr(args, "models_dir", None))
    rows = backend.review(args.output_dir, flagged=args.flagged)
    if args.json:
        from audiobook.files import atomic_write_text

        keys = ("id", "chapter", "index", "text", "status", "wer", "transcript", "voice_similarity", "duration_s", "attempts",
                "speaker", "voice")
        atomic_write_text(Path(args.json), json.dumps([{k: r.to_dict()[k] for k in keys} for r in rows],
                                                      ensure_ascii=False, indent=1))
    print("chapter\tchunk\tid\tstatus\tseconds\tWER\tvoice\ttakes\tspeaker\ttext")
    for r in rows:
        text = r.text if len(r.text) <= 60 else r.text[:57] + "..."
        print(f"{r.chapter}\t{r.index}\t{r.id}\t{r.status}\t{r.duration_s:.1f}\t{_fmt_score(r.wer, '{:.0%}')}\t"
              f"{_fmt_score(r.voice_similarity, '{:.2f}')}\t{r.attempts}\t{r.speaker or 'narrator'}\t{text}")
    flagged = sum(1 for r in rows if r.flagged)
    print(f"{len(rows)} chunks listed, {flagged} flagged.")
    return 0


def cmd_fix(args) -> int:
    """fix OUTPUT_DIR CHUNK_ID (--text T | --reroll | --accept): one chunk again, then its chapter and the book."""
    backend = Backend(models_dir=args.models_dir)
    result = backend.fix_chunk(args.output_dir, args.chunk_id, text=args.text, reroll=args.reroll, accept=args.accept)
    if result is None:
        print(f"Accepted chunk {args.chunk_id} as it is.")
        return 0
    for rep in result.suspect + result.failed:
        print(f"{rep.status.capitalize()}: chapter {rep.chapter}, chunk {rep.index} [{rep.id}] ({rep.reason}): {rep.text}")
    print(f"Rendered {result.generated} chunk{'s' if result.generated != 1 else ''}.")
    for f in result.chapter_files + result.book_files:
        print(f"  {f}")
    return 0


def cmd_sample(args) -> int:
    """sample BOOK (--voice V | --speaker S) [--chapter N] [--seconds 60]: hear the voice in context."""
    backend = Backend(models_dir=args.models_dir)
    book = backend.load_book(args.book)
    narrator = _narrator_from_args(args, backend)
    print(backend.sample(book, narrator, chapter=args.chapter, seconds=args.seconds, out_path=args.output))
    return 0


def _apply_worker_args(backend: Backend, args) -> None:
    """``--workers`` and ``--ray-address`` for this run only (not saved)."""
    workers, address = getattr(args, "workers", None), getattr(args, "ray_address", None)
    if workers is not None or address is not None:
        backend.apply_settings(backend.settings.updated(
            workers=backend.settings.workers if workers is None else workers,
            ray_address=backend.settings.ray_address if address is None else address))


def cmd_queue(args) -> int:
    """queue add|list|remove|move|retry|run: the books that render one after another (output/queue.json)."""
    backend = Backend(models_dir=getattr(args, "models_dir", None))
    if args.action == "add":
        item = backend.queue_add(args.book, voice=args.voice, speaker=args.speaker, instruct=args.instruct or "",
                                 output=args.output)
        print(f"Queued '{item.title}' with {item.narrator_label} as item {len(backend.queue_items())}.")
        return 0
    if args.action == "list":
        items = backend.queue_items()
        if not items:
            print(f"The queue is empty ({backend.queue.path}).")
        for n, item in enumerate(items, 1):
            print("\t".join(str(x) for x in item.row(n)))
            for f in item.book_files:
                print(f"\t{f}")
        return 0
    if args.action == "remove":
        item = backend.queue_remove(args.n)
        print(f"Removed '{item.title}' from the queue.")
        return 0
    if args.action == "move":
        backend.queue_move(args.n, args.to)
        print(f"Moved item {args.n} to position {args.to}.")
        return 0
    if args.action == "retry":
        item = backend.queue_retry(args.n)
        print(f"'{item.title}' is queued again.")
        return 0
    _apply_worker_args(backend, args)
    bar, report = _tqdm_progress()
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def first_ctrl_c(signum, frame):
        stop.set()
        bar.write("Stopping after the batch in flight (Ctrl-C again to quit now)...")
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, first_ctrl_c)
    try:
        items = backend.run_queue(on_progress=report, should_stop=stop.is_set,
                                  on_item=lambda item: bar.write(f"Rendering '{item.title}' with {item.narrator_label}."))
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    for n, item in enumerate(items, 1):
        print("\t".join(str(x) for x in item.row(n)))
    if stop.is_set():
        print("Stopped; run `backend.py queue run` again to continue.")
    return 0 if all(i.status == "done" for i in items) else 1


def _print_voice(voice: Voice) -> None:
    what = {"designed": voice.description, "cloned": voice.reference_text or "(no transcript: x-vector only)",
            "preset": voice.speaker + (f" ({voice.instruct})" if voice.instruct else "")}[voice.kind]
    print(f"{voice.name}\t{voice.kind}\t{voice.language}\t{what}")


def cmd_voices(args) -> int:
    backend = Backend(models_dir=args.models_dir)
    voices = backend.list_voices()
    if not voices:
        print(f"No saved voices in {backend.voices.root}.")
    for v in voices:
        _print_voice(v)
    return 0


def cmd_voice(args) -> int:
    """voice design|clone|preset NAME ... (saves the voice and writes its preview) and voice delete|rename|export|import."""
    backend = Backend(models_dir=args.models_dir)
    if args.action == "delete":
        backend.delete_voice(args.name)
        print(f"Deleted the voice '{args.name}'.")
        return 0
    if args.action == "rename":
        voice = backend.rename_voice(args.name, args.new_name, overwrite=args.overwrite)
        print(f"Renamed to '{voice.name}' ({voice.folder}).")
        return 0
    if args.action == "export":
        print(backend.export_voice(args.name, args.output))
        return 0
    if args.action == "import":
        voice = backend.import_voice(args.zip, overwrite=args.overwrite, name=args.name)
        print(f"Imported the voice '{voice.name}' into {voice.folder}.")
        return 0
    if backend.voices.exists(args.name) and not args.overwrite:
        # ask before the slow part, not after it
        raise AudiobookError(f"A voice called '{args.name}' already exists; add --overwrite to replace it.")
    if args.action == "design":
        preview = backend.preview_design(args.description, args.language, args.text, args.seed)
    elif args.action == "clone":
        preview = backend.preview_clone(args.audio, args.text or "", args.language)
    else:
        preview = backend.preview_preset(args.speaker, args.instruct or "", args.language)
    for warning in preview.warnings:
        print(f"Note: {warning}", file=sys.stderr)
    voice = backend.save_voice(preview, args.name, overwrite=args.overwrite)
    print(f"Saved the {voice.kind} voice '{voice.name}' in {voice.folder}.")
    print(voice.preview_path)
    return 0


def cmd_tiny_models(args) -> int:
    from audiobook.tiny import build_tiny_models, build_tiny_whisper

    t0 = time.perf_counter()
    built = {**build_tiny_models(args.dir), **build_tiny_whisper(args.dir)}
    for name, path in built.items():
        print(f"{name}: {path}")
    print(f"Tiny checkpoints ready in {time.perf_counter() - t0:.1f}s; use --models-dir {args.dir}")
    return 0


def cmd_selftest(args) -> int:
    """Build tiny checkpoints, render the sample book through the whole pipeline, report."""
    from audiobook.tiny import build_tiny_models

    with tempfile.TemporaryDirectory(prefix="audiobook-selftest-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        build_tiny_models(tmp / "models")
        print(f"Built tiny checkpoints in {time.perf_counter() - t0:.1f}s")
        book_path = tmp / "sample.txt"
        book_path.write_text(SAMPLE_BOOK, encoding="utf-8")
        backend = Backend(root=tmp, settings_path=tmp / SETTINGS_FILE, models_dir=str(tmp / "models"))
        backend.apply_settings(backend.settings.updated(device="cpu", max_new_tokens=256, batch_size=5))
        narrator = _narrator_from_args(argparse.Namespace(speaker=backend.speakers()[0]), backend)
        book = backend.load_book(book_path)
        result = backend.render(book, narrator, out_dir=tmp / "out", on_progress=lambda p: print(p.message) if p.message else None)
        print(f"Chapters: {len(book.chapters)}; chunks: {result.chunks}; batches: {result.batches}; "
              f"audio: {result.audio_s:.1f}s; render: {result.elapsed_s:.1f}s")
        ok = len(result.chapter_files) == len(book.chapters) and all(f.stat().st_size > 44 for f in result.chapter_files)
        print("Selftest passed." if ok else "Selftest FAILED: chapter files are missing.")
        return 0 if ok else 1


def cmd_doctor(args) -> int:
    """doctor [--json FILE]: check the device, checkpoints, engine, speed and memory; exit 1 if the engine disagrees."""
    import json

    backend = Backend(models_dir=args.models_dir)
    report = backend.doctor(live=not args.no_live, on_step=lambda line: print(f"{line}...", file=sys.stderr))
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"Saved the report to {args.json}; attach it to a bug report.")
    return 0 if report.ok else 1


def cmd_models(args) -> int:
    """models [--download NAME]: every checkpoint with its status; download one with a progress bar."""
    from tqdm import tqdm

    backend = Backend(models_dir=args.models_dir)
    if args.download:
        bars = []  # made at the first report, once the hub has answered

        def report(p) -> None:
            if not bars:
                bars.append(tqdm(total=p.total_bytes, initial=p.done_bytes, unit="B", unit_scale=True,
                                 unit_divisor=1000, desc=p.name, file=sys.stderr))
            bars[0].n = p.done_bytes
            bars[0].refresh()

        try:
            got = backend.download_model(args.download, report)
        finally:
            for bar in bars:
                bar.close()
        print(f"Downloaded {got.name} to {got.path} ({got.status}).")
        return 0
    for c in backend.checkpoints():
        print(f"{c.name}\t{c.status}\t{c.path}\t{c.purpose}")
    return 0


def cmd_book(args) -> int:
    """book BOOK [--json OUT] [--chunks]: show what the reader found, optionally save the JSON book."""
    from audiobook.books import describe_book, save_book_json

    from audiobook.render import pronunciations_from_settings

    backend = Backend()
    read = load_book(args.book)
    settings = backend.settings
    chunk_chars = args.chunk_chars or settings.chunk_chars
    # The chunks of a render by the narrator alone (markup speakers kept); the cast a render with a cast would use.
    print(describe_book(read, chunk_chars, show_chunks=args.chunks, pronunciations=pronunciations_from_settings(settings)))
    book, _ = backend.label_book(read)
    if book.cast.members:
        print("\nCast: " + ", ".join(f"{m.name} ({m.lines})" for m in book.cast.members))
    if args.json:
        print(f"Saved the JSON book to {save_book_json(book, args.json)}")
    return 0


def cmd_cast(args) -> int:
    """cast BOOK [--llm] [--json OUT]: the characters who speak, their lines and voices."""
    backend = Backend()
    book = load_book(args.book)
    labelled, warnings = backend.label_book(book, load_cast(args.cast) if args.cast else None, llm=args.llm)
    for w in warnings:
        print(f"Warning: {w}", file=sys.stderr)
    members = labelled.cast.members
    if not members:
        print("No one but the narrator speaks in this book (no quotes or [voice: Name] markup found).")
    width = max([len(m.name) for m in members] + [9])
    for m in members:
        print(f"{m.name:<{width}}  {m.lines:>5}  {m.voice or '(narrator)':<16}  {m.preview[:70]}")
    if args.json:
        print(f"Saved the cast to {save_cast(labelled.cast, args.json)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="backend.py", description="Render books into audiobooks with Qwen3-TTS.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more, and print the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("render", help="render a book into chapter files")
    p.add_argument("book", help="the book file (.txt, .md, .epub, .pdf, .json)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--speaker", help="a built-in speaker of the CustomVoice model")
    who.add_argument("--ref-audio", help="a reference clip to clone")
    who.add_argument("--voice", help="a saved voice (see `backend.py voices`)")
    p.add_argument("--ref-text", help="the transcript of --ref-audio (without it: x-vector-only cloning)")
    p.add_argument("--instruct", default="", help="a style instruction for a built-in speaker (1.7B only)")
    p.add_argument("--output", help="output folder (default: output/<book title>)")
    p.add_argument("--batch-size", type=setting_arg("batch_size", "--batch-size"), help="chunks per model call (1-20)")
    p.add_argument("--workers", type=setting_arg("workers", "--workers"), help="Ray workers, one model each on a GPU (or a CPU); 0 renders in this process")
    p.add_argument("--ray-address", help="join this running Ray cluster (default: a local Ray for the render)")
    p.add_argument("--models-dir", help="folder holding the checkpoints")
    p.add_argument("--redo-chapter", type=positive_int("--redo-chapter"), action="append", metavar="N", help="render chapter N again (repeatable)")
    p.add_argument("--redo-chunk", action="append", metavar="ID", help="render the chunk with this id again (repeatable)")
    p.add_argument("--rebuild", action="store_true", help="rebuild a damaged manifest.json from the chunk files")
    p.add_argument("--allow-incomplete", action="store_true", help="assemble chapters even when some chunks failed")
    p.add_argument("--cast", metavar="CAST.json", help="characters mapped to voices (see `backend.py cast`)")
    p.add_argument("--dialogue", metavar="VOICE", help="the voice of quoted speech no character of the cast is mapped for")
    p.add_argument("--verify", choices=("on", "off", "auto"), help="check every take with Whisper (default: the setting)")
    p.add_argument("--chapters", metavar="LIST", help="render and assemble only these chapters, e.g. 1,3-5")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("review", help="list the chunks of a render with their check scores")
    p.add_argument("output_dir", help="the book's output folder (holding manifest.json)")
    p.add_argument("--flagged", action="store_true", help="only suspect and failed chunks")
    p.add_argument("--json", metavar="FILE", help="also write the chunk records as JSON")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("fix", help="render one chunk again (new text or seed) or accept it; re-assemble its chapter")
    p.add_argument("output_dir", help="the book's output folder (holding manifest.json)")
    p.add_argument("chunk_id", help="the chunk's id (see `review`)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--text", help="new text for the chunk")
    how.add_argument("--reroll", action="store_true", help="same text, another seed")
    how.add_argument("--accept", action="store_true", help="keep the take despite its flags")
    p.add_argument("--models-dir", help="folder holding the checkpoints")
    p.set_defaults(func=cmd_fix)

    p = sub.add_parser("sample", help="render the first minute of a chapter to hear a voice in context")
    p.add_argument("book", help="the book file (.txt, .md, .epub, .pdf, .json)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--voice", help="a saved voice")
    who.add_argument("--speaker", help="a built-in speaker")
    p.add_argument("--chapter", type=int, default=1, help="chapter number (default 1)")
    p.add_argument("--seconds", type=float, default=60.0, help="about how long (default 60)")
    p.add_argument("--output", help="wav file to write (default: output/<book>/samples/...)")
    p.add_argument("--models-dir", help="folder holding the checkpoints")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("queue", help="books that render one after another (output/queue.json)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("add", help="queue a book with a voice and the current settings")
    a.add_argument("book", help="the book file (.txt, .md, .epub, .pdf, .json)")
    who = a.add_mutually_exclusive_group(required=True)
    who.add_argument("--voice", help="a saved voice (see `backend.py voices`)")
    who.add_argument("--speaker", help="a built-in speaker of the CustomVoice model")
    a.add_argument("--instruct", default="", help="a style instruction for a built-in speaker (1.7B only)")
    a.add_argument("--output", help="output folder (default: output/<book title>)")
    actions.add_parser("list", help="show the queue: book, voice, status, progress")
    a = actions.add_parser("remove", help="take item N out of the queue")
    a.add_argument("n", type=int)
    a = actions.add_parser("move", help="move item N to position TO")
    a.add_argument("n", type=int)
    a.add_argument("to", type=int)
    a = actions.add_parser("retry", help="put a failed item N back in line")
    a.add_argument("n", type=int)
    a = actions.add_parser("run", help="render the queued books one after another (continues after a crash)")
    a.add_argument("--workers", type=int, help="Ray workers, one model each on a GPU (or a CPU); 0 renders in this process")
    a.add_argument("--ray-address", help="join this running Ray cluster (default: a local Ray for each book)")
    for action in actions.choices.values():
        action.add_argument("--models-dir", help="folder holding the checkpoints")
        action.set_defaults(func=cmd_queue)

    p = sub.add_parser("voices", help="list the saved voices")
    p.add_argument("--models-dir", help="folder holding the checkpoints")
    p.set_defaults(func=cmd_voices)

    p = sub.add_parser("voice", help="design, clone or pick a voice and save it (prints its preview wav)")
    actions = p.add_subparsers(dest="action", required=True)
    for action, help_text in (("design", "design a voice from a description"),
                              ("clone", "clone a voice from a clip"),
                              ("preset", "save a built-in speaker as a voice")):
        a = actions.add_parser(action, help=help_text)
        a.add_argument("name", help="the voice's name")
        a.add_argument("--language", default="auto", help="language of the preview (default: auto)")
        a.add_argument("--overwrite", action="store_true", help="replace a voice of the same name")
        a.add_argument("--models-dir", help="folder holding the checkpoints")
        a.set_defaults(func=cmd_voice)
        if action == "design":
            a.add_argument("--description", required=True, help="what the voice sounds like")
            a.add_argument("--text", help="the reference passage it speaks (default: a built-in passage)")
            a.add_argument("--seed", type=setting_arg("seed", "--seed"), help="seed for the design (default: random)")
        elif action == "clone":
            a.add_argument("--audio", required=True, help="the clip: wav, mp3, flac, m4a or ogg")
            a.add_argument("--text", help="the words spoken in the clip (without: x-vector only, weaker likeness)")
        else:
            a.add_argument("--speaker", required=True, help="a built-in speaker (see the page's list)")
            a.add_argument("--instruct", help="a style instruction (1.7B only)")
    a = actions.add_parser("delete", help="delete a saved voice")
    a.add_argument("name")
    a = actions.add_parser("rename", help="rename a saved voice")
    a.add_argument("name")
    a.add_argument("new_name")
    a.add_argument("--overwrite", action="store_true", help="replace a voice that has the new name")
    a = actions.add_parser("export", help="zip a saved voice for sharing")
    a.add_argument("name")
    a.add_argument("--output", help="zip file or folder to write")
    a = actions.add_parser("import", help="add a voice from a zip")
    a.add_argument("zip")
    a.add_argument("--name", help="save it under another name")
    a.add_argument("--overwrite", action="store_true", help="replace a voice of the same name")
    for action in ("delete", "rename", "export", "import"):
        actions.choices[action].add_argument("--models-dir", help="folder holding the checkpoints")
        actions.choices[action].set_defaults(func=cmd_voice)

    p = sub.add_parser("book", help="show the chapters and chunks the reader finds in a book")
    p.add_argument("book", help="the book file (.txt, .md, .epub, .pdf, .json)")
    p.add_argument("--json", metavar="OUT", help="also save the book in the JSON book format")
    p.add_argument("--chunks", action="store_true", help="print every chunk too")
    p.add_argument("--chunk-chars", type=setting_arg("chunk_chars", "--chunk-chars"),
                   help="longest chunk in characters, 50-2000 (default: the saved setting)")
    p.set_defaults(func=cmd_book)

    p = sub.add_parser("doctor", help="check this computer: device, checkpoints, engine against qwen_tts, speed, batch size")
    p.add_argument("--models-dir", help="folder holding the checkpoints")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON (attach it to a bug report)")
    p.add_argument("--no-live", action="store_true", help="skip the live check (no model is loaded)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("models", help="list the checkpoints and whether each is on disk; download one")
    p.add_argument("--models-dir", help="folder holding the checkpoints (default: the setting, else the Hugging Face cache)")
    p.add_argument("--download", metavar="NAME", help="download this checkpoint, e.g. Qwen3-TTS-12Hz-1.7B-Base "
                   "(a broken download resumes)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("cast", help="list the characters who speak in a book, with their lines and voices")
    p.add_argument("book", help="the book file (.txt, .md, .epub, .pdf, .json)")
    p.add_argument("--llm", action="store_true", help="label speakers with the language model of the llm_url setting")
    p.add_argument("--cast", metavar="CAST.json", help="start from this cast (its names and voices)")
    p.add_argument("--json", metavar="OUT", help="save the cast as JSON (for render --cast)")
    p.set_defaults(func=cmd_cast)

    p = sub.add_parser("tiny-models", help="write tiny random-weight checkpoints (for trying the app without downloads)")
    p.add_argument("dir")
    p.set_defaults(func=cmd_tiny_models)

    p = sub.add_parser("selftest", help="prove the install works, using tiny checkpoints")
    p.add_argument("--models-dir", help="ignored: selftest builds its own tiny checkpoints")
    p.set_defaults(func=cmd_selftest)
    return parser


def setting_arg(name: str, flag: str):
    """An argparse type for a command-line value that must lie in a setting's range (a sentence when not)."""
    from dataclasses import fields

    meta = next(f.metadata for f in fields(Settings) if f.name == name)
    lo, hi = meta["range"]
    kind = Settings.kind(name)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a {'whole ' if kind is int else ''}number, not '{text}'.") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{flag} must be between {lo:g} and {hi:g}, not {text}.")
        return value

    return parse


def positive_int(flag: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a whole number, not '{text}'.") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} counts from 1, not {text}.")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """argparse that ends a refusal with one sentence (and the usage line), never a traceback."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        import re

        message = re.sub(r"^argument [^:]+: (?=--)", "", message)  # our own sentences name their flag already
        sentence = message[:1].upper() + message[1:]
        self.exit(2, f"Error: {sentence if sentence.endswith('.') else sentence + '.'}\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:
        logging.getLogger("sox").setLevel(logging.ERROR)  # a library's import-time note about an optional tool
    try:
        return args.func(args)
    except AudiobookError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
        return 130
    except Exception as e:  # the last resort: one sentence here, the traceback in a log file (and here with -v)
        from audiobook.errors import unexpected_sentence, write_error_log

        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"Error: {unexpected_sentence(e, write_error_log(e, 'backend'))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
