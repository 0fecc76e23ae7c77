"""The one door the page and the command line use: settings, books, voices, renders, review, cast, queue.

``Backend`` holds the state (settings, the resident model, the background render); what it does
lives in ``audiobook/services/``, one module per concern, and the class below lists it as a
table of contents. Run ``python backend.py --help`` for the command line (``audiobook/cli/``).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from audiobook import cli
from audiobook.books import Book
from audiobook.files import safe_filename
from audiobook.queue import QUEUE_FILE, QueueItem, RenderQueue
from audiobook.services import books as books_svc
from audiobook.services import cast as cast_svc
from audiobook.services import models as models_svc
from audiobook.services import queue as queue_svc
from audiobook.services import readalong as readalong_svc
from audiobook.services import renders as renders_svc
from audiobook.services import review as review_svc
from audiobook.services import settings as settings_svc
from audiobook.services import voices as voices_svc
from audiobook.services.renders import RenderJob
from audiobook.settings import SETTINGS_FILE, load_settings
from audiobook.tts import TTS
from audiobook.voices import Voice, VoiceLibrary

ROOT = Path(__file__).resolve().parent


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
        self.settings = settings_svc.with_overrides(self, load_settings(self.settings_path))
        self.tts = TTS(self.settings)  # its ``lock`` is the one model lock: a render holds it throughout
        self._job: RenderJob | None = None
        self._executor = None  # where the current (or last) render's batches run: workers.InProcess or WorkerPool
        self._download = None  # the page's background checkpoint download (models.DownloadState)
        self._download_guard = threading.Lock()
        self._epub_sources: dict[str, Path] = {}  # book title -> the EPUB it was read from (its read-along pages)

    # ---- settings: audiobook/services/settings.py ------------------------------------------

    save_settings = settings_svc.save_settings
    settings_errors = settings_svc.settings_errors
    save_changed_settings = settings_svc.save_changed_settings
    reset_settings = settings_svc.reset_settings
    apply_settings = settings_svc.apply_settings

    @property
    def models_dir_override(self) -> str | None:
        """The ``--models-dir`` of this process: used instead of the setting, never saved."""
        return self._models_dir_override

    # ---- paths ------------------------------------------------------------------------------

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def output_root(self) -> Path:
        return self.resolve(self.settings.output_dir)

    def book_dir(self, book: Book) -> Path:
        return self.output_root / safe_filename(book.title or "book")

    # ---- voices: audiobook/services/voices.py -----------------------------------------------

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

    preview_design = voices_svc.preview_design
    preview_clone = voices_svc.preview_clone
    preview_preset = voices_svc.preview_preset
    save_voice = voices_svc.save_voice
    rename_voice = voices_svc.rename_voice
    delete_voice = voices_svc.delete_voice
    import_voice = voices_svc.import_voice
    export_voice = voices_svc.export_voice
    narrator_for = voices_svc.narrator_for
    clone_prompt_for = voices_svc.clone_prompt_for

    # ---- checkpoints and the computer check: audiobook/services/models.py -------------------

    checkpoints = models_svc.checkpoints
    download_model = models_svc.download_model
    start_download = models_svc.start_download
    download_state = models_svc.download_state
    doctor = models_svc.doctor

    # ---- books: audiobook/services/books.py -------------------------------------------------

    load_book = books_svc.load_book
    edit_book = books_svc.edit_book
    save_book = books_svc.save_book

    # ---- renders: audiobook/services/renders.py ---------------------------------------------

    render = renders_svc.render
    render_plan = renders_svc.render_plan
    sample = renders_svc.sample
    start_render = renders_svc.start_render
    stop_render = renders_svc.stop_render
    render_state = renders_svc.render_state
    wait_render = renders_svc.wait_render
    worker_infos = renders_svc.worker_infos

    # ---- review and fixes: audiobook/services/review.py -------------------------------------

    rendered_books = review_svc.rendered_books
    review = review_svc.review
    fix_chunk = review_svc.fix_chunk
    rebuild_book = review_svc.rebuild_book

    # ---- read-along books: audiobook/services/readalong.py ----------------------------------

    readalong = readalong_svc.readalong

    # ---- the cast: audiobook/services/cast.py -----------------------------------------------

    cast_path = cast_svc.cast_path
    saved_cast = cast_svc.saved_cast
    label_book = cast_svc.label_book
    save_cast = cast_svc.save_cast
    voice_narrator = cast_svc.voice_narrator
    cast_voices = cast_svc.cast_voices
    map_voice = cast_svc.map_voice
    edit_span = cast_svc.edit_span
    hear_line = cast_svc.hear_line
    speaker_rows = cast_svc.speaker_rows
    voicing_for = cast_svc.voicing_for
    render_cast = cast_svc.render_cast
    edit_cast = cast_svc.edit_cast
    design_cast = cast_svc.design_cast

    # ---- the queue: audiobook/services/queue.py ---------------------------------------------

    @property
    def queue(self) -> RenderQueue:
        """The render queue in ``<output>/queue.json``."""
        return RenderQueue(self.output_root / QUEUE_FILE)

    def queue_items(self) -> list[QueueItem]:
        return self.queue.items()

    queue_add = queue_svc.queue_add
    queue_remove = queue_svc.queue_remove
    queue_move = queue_svc.queue_move
    queue_retry = queue_svc.queue_retry
    run_queue = queue_svc.run_queue
    start_queue = queue_svc.start_queue


def main(argv: list[str] | None = None) -> int:
    """The command line (``audiobook/cli/``) on this Backend."""
    return cli.main(argv, lambda **options: Backend(**options))


if __name__ == "__main__":
    sys.exit(main())
