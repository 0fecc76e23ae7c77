"""The one door the page and the command line use: settings, books, voices, render.

Run ``python backend.py --help`` for the command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from audiobook.books import Book, load_book
from audiobook.errors import AudiobookError
from audiobook.render import Progress, RenderResult, render_events
from audiobook.settings import SETTINGS_FILE, Settings, load_settings, save_settings
from audiobook.tts import PRESET, TTS, Narrator

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
    ``models_dir`` overrides the setting for this process without saving it.
    """

    def __init__(self, root: str | Path = ROOT, settings_path: str | Path | None = None, models_dir: str | None = None):
        self.root = Path(root)
        self.settings_path = Path(settings_path) if settings_path else self.root / SETTINGS_FILE
        self._models_dir_override = str(models_dir) if models_dir else None
        self.settings = self._with_overrides(load_settings(self.settings_path))
        self.tts = TTS(self.settings)

    # ---- settings -----------------------------------------------------------------------

    def _with_overrides(self, s: Settings) -> Settings:
        return s.updated(models_dir=self._models_dir_override) if self._models_dir_override else s

    def save_settings(self, **changes) -> Settings:
        """Validate, save to ``user_settings.json`` and apply; raise AudiobookError naming a bad key."""
        on_disk = load_settings(self.settings_path) if self.settings_path.exists() else Settings()
        new = on_disk.updated(**changes)
        save_settings(new, self.settings_path)
        self._apply(self._with_overrides(new))
        return new

    def reset_settings(self) -> Settings:
        save_settings(Settings(), self.settings_path)
        self._apply(self._with_overrides(Settings()))
        return self.settings

    def _apply(self, new: Settings) -> None:
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
        from audiobook.audio import safe_filename

        return self.output_root / safe_filename(book.title or "book")

    # ---- books and render ----------------------------------------------------------------

    def load_book(self, path: str | Path) -> Book:
        return load_book(path)

    def render(
        self,
        book: Book | str | Path,
        narrator: Narrator,
        out_dir: str | Path | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> RenderResult:
        """Render a book (a Book or a path) with ``narrator``; chapter files go to ``out_dir``."""
        if not isinstance(book, Book):
            book = load_book(book)
        target = Path(out_dir) if out_dir else self.book_dir(book)
        result = RenderResult(out_dir=target)
        for progress in render_events(book, narrator, self.settings, target, self.tts, result, should_stop):
            if on_progress:
                on_progress(progress)
        return result


# ---- command line ---------------------------------------------------------------------------


def _narrator_from_args(args, backend: Backend) -> Narrator:
    if getattr(args, "ref_audio", None):
        return Narrator(kind="clone", ref_audio=str(args.ref_audio), ref_text=args.ref_text or "",
                        x_vector_only=not args.ref_text)
    speaker = getattr(args, "speaker", None)
    if not speaker:
        speakers = backend.tts.speakers()
        speaker = speakers[0] if speakers else ""
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
    if args.batch_size:
        backend._apply(backend.settings.updated(batch_size=args.batch_size))
    narrator = _narrator_from_args(args, backend)
    bar, report = _tqdm_progress()
    try:
        result = backend.render(args.book, narrator, out_dir=args.output, on_progress=report)
    finally:
        bar.close()
    print(f"Rendered {result.chunks} chunks in {result.batches} batches, {result.audio_s:.1f}s of audio "
          f"in {result.elapsed_s:.1f}s.")
    for f in result.chapter_files:
        print(f"  {f}")
    return 0


def cmd_tiny_models(args) -> int:
    from audiobook.tiny import build_tiny_models

    t0 = time.perf_counter()
    built = build_tiny_models(args.dir)
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
        backend._apply(backend.settings.updated(device="cpu", max_new_tokens=256, batch_size=5))
        narrator = _narrator_from_args(argparse.Namespace(speaker=None), backend)
        book = backend.load_book(book_path)
        result = backend.render(book, narrator, out_dir=tmp / "out", on_progress=lambda p: print(p.message) if p.message else None)
        print(f"Chapters: {len(book.chapters)}; chunks: {result.chunks}; batches: {result.batches}; "
              f"audio: {result.audio_s:.1f}s; render: {result.elapsed_s:.1f}s")
        ok = len(result.chapter_files) == len(book.chapters) and all(f.stat().st_size > 44 for f in result.chapter_files)
        print("Selftest passed." if ok else "Selftest FAILED: chapter files are missing.")
        return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backend.py", description="Render books into audiobooks with Qwen3-TTS.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("render", help="render a book into chapter files")
    p.add_argument("book", help="the book file (.txt, .md, .epub, .pdf, .json)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--speaker", help="a built-in speaker of the CustomVoice model")
    who.add_argument("--ref-audio", help="a reference clip to clone")
    p.add_argument("--ref-text", help="the transcript of --ref-audio (without it: x-vector-only cloning)")
    p.add_argument("--instruct", default="", help="a style instruction for a built-in speaker (1.7B only)")
    p.add_argument("--output", help="output folder (default: output/<book title>)")
    p.add_argument("--batch-size", type=int, help="chunks per model call (1-20)")
    p.add_argument("--models-dir", help="folder holding the checkpoints")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("tiny-models", help="write tiny random-weight checkpoints (for trying the app without downloads)")
    p.add_argument("dir")
    p.set_defaults(func=cmd_tiny_models)

    p = sub.add_parser("selftest", help="prove the install works, using tiny checkpoints")
    p.add_argument("--models-dir", help="ignored: selftest builds its own tiny checkpoints")
    p.set_defaults(func=cmd_selftest)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except AudiobookError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
