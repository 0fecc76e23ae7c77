"""The command line's parser: every command, its options and their help (``python backend.py --help``)."""

from __future__ import annotations

import argparse
import re
import sys

from audiobook.cli.books import cmd_book, cmd_cast
from audiobook.cli.models import cmd_doctor, cmd_models, cmd_selftest, cmd_tiny_models
from audiobook.cli.render import cmd_queue, cmd_render, cmd_sample
from audiobook.cli.review import cmd_fix, cmd_readalong, cmd_review
from audiobook.cli.voices import cmd_voice, cmd_voices
from audiobook.settings import Settings


BOOK_FILE = "the book file (.txt, .md, .epub, .pdf, .json)"
OUTPUT_DIR = "the book's output folder (holding manifest.json)"
MODELS_DIR = "folder holding the checkpoints"


def command(sub, func, name: str, *, models_dir: bool = False, **options) -> argparse.ArgumentParser:
    """A command's parser, which runs ``func(args)`` (with ``--models-dir`` when the command loads a model)."""
    p = sub.add_parser(name, **options)
    p.set_defaults(func=func)
    if models_dir:
        p.add_argument("--models-dir", help=MODELS_DIR)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="backend.py", description="Render books into audiobooks with Qwen3-TTS.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more, and print the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = command(sub, cmd_render, "render", models_dir=True, help="render a book into chapter files")
    p.add_argument("book", help=BOOK_FILE)
    who = p.add_mutually_exclusive_group()
    who.add_argument("--speaker", help="a built-in speaker of the CustomVoice model")
    who.add_argument("--ref-audio", help="a reference clip to clone")
    who.add_argument("--voice", help="a saved voice (see `backend.py voices`)")
    p.add_argument("--ref-text", help="the transcript of --ref-audio (without it: x-vector-only cloning)")
    p.add_argument("--instruct", default="", help="a style instruction for a built-in speaker (1.7B only)")
    p.add_argument("--output", help="output folder (default: output/<book title>)")
    p.add_argument("--batch-size", type=setting_arg("batch_size", "--batch-size"), help="chunks per model call (1-64; more than 20 where the doctor measured room on a GPU)")
    p.add_argument("--workers", type=setting_arg("workers", "--workers"), help="Ray workers, one model each on a GPU (or a CPU); 0 renders in this process")
    p.add_argument("--ray-address", help="join this running Ray cluster (default: a local Ray for the render)")
    p.add_argument("--redo-chapter", type=positive_int("--redo-chapter"), action="append", metavar="N", help="render chapter N again (repeatable)")
    p.add_argument("--redo-chunk", action="append", metavar="ID", help="render the chunk with this id again (repeatable)")
    p.add_argument("--rebuild", action="store_true", help="rebuild a damaged manifest.json from the chunk files")
    p.add_argument("--allow-incomplete", action="store_true", help="assemble chapters even when some chunks failed")
    p.add_argument("--cast", metavar="CAST.json", help="characters mapped to voices (see `backend.py cast`)")
    p.add_argument("--dialogue", metavar="VOICE", help="the voice of quoted speech no character of the cast is mapped for")
    p.add_argument("--verify", choices=("on", "off", "auto"), help="check every take with Whisper (default: the setting)")
    p.add_argument("--chapters", metavar="LIST", help="render and assemble only these chapters, e.g. 1,3-5")
    p.add_argument("--readalong", action="store_true",
                   help="also write '<title> (read-along).epub': the text with the narration, highlighted as it is read")

    p = command(sub, cmd_readalong, "readalong", help="write the read-along EPUB 3 (text and narration in step) of a finished render")
    p.add_argument("output_dir", help=OUTPUT_DIR)
    p.add_argument("--source", metavar="BOOK.epub",
                   help="the EPUB the book was read from, whose own pages to use (default: the copy kept with the render)")

    p = command(sub, cmd_review, "review", help="list the chunks of a render with their check scores")
    p.add_argument("output_dir", help=OUTPUT_DIR)
    p.add_argument("--flagged", action="store_true", help="only suspect and failed chunks")
    p.add_argument("--json", metavar="FILE", help="also write the chunk records as JSON")

    p = command(sub, cmd_fix, "fix", models_dir=True, help="render one chunk again (new text or seed) or accept it; re-assemble its chapter")
    p.add_argument("output_dir", help=OUTPUT_DIR)
    p.add_argument("chunk_id", help="the chunk's id (see `review`)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--text", help="new text for the chunk")
    how.add_argument("--reroll", action="store_true", help="same text, another seed")
    how.add_argument("--accept", action="store_true", help="keep the take despite its flags")

    p = command(sub, cmd_sample, "sample", models_dir=True, help="render the first minute of a chapter to hear a voice in context")
    p.add_argument("book", help=BOOK_FILE)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--voice", help="a saved voice")
    who.add_argument("--speaker", help="a built-in speaker")
    p.add_argument("--chapter", type=int, default=1, help="chapter number (default 1)")
    p.add_argument("--seconds", type=float, default=60.0, help="about how long (default 60)")
    p.add_argument("--output", help="wav file to write (default: output/<book>/samples/...)")

    p = sub.add_parser("queue", help="books that render one after another (output/queue.json)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("add", help="queue a book with a voice and the current settings")
    a.add_argument("book", help=BOOK_FILE)
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
        action.add_argument("--models-dir", help=MODELS_DIR)
        action.set_defaults(func=cmd_queue)

    p = command(sub, cmd_voices, "voices", models_dir=True, help="list the saved voices")

    p = sub.add_parser("voice", help="design, clone or pick a voice and save it (prints its preview wav)")
    actions = p.add_subparsers(dest="action", required=True)
    for action, help_text in (("design", "design a voice from a description"),
                              ("clone", "clone a voice from a clip"),
                              ("preset", "save a built-in speaker as a voice")):
        a = actions.add_parser(action, help=help_text)
        a.add_argument("name", help="the voice's name")
        a.add_argument("--language", default="auto", help="language of the preview (default: auto)")
        a.add_argument("--overwrite", action="store_true", help="replace a voice of the same name")
        a.add_argument("--models-dir", help=MODELS_DIR)
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
        actions.choices[action].add_argument("--models-dir", help=MODELS_DIR)
        actions.choices[action].set_defaults(func=cmd_voice)

    p = command(sub, cmd_book, "book", help="show the chapters and chunks the reader finds in a book")
    p.add_argument("book", help=BOOK_FILE)
    p.add_argument("--json", metavar="OUT", help="also save the book in the JSON book format")
    p.add_argument("--chunks", action="store_true", help="print every chunk too")
    p.add_argument("--chunk-chars", type=setting_arg("chunk_chars", "--chunk-chars"),
                   help="longest chunk in characters, 50-2000 (default: the saved setting)")

    p = command(sub, cmd_doctor, "doctor", models_dir=True, help="check this computer: device, checkpoints, engine against qwen_tts, speed, batch size")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON (attach it to a bug report)")
    p.add_argument("--no-live", action="store_true", help="skip the live check (no model is loaded)")

    p = command(sub, cmd_models, "models", help="list the checkpoints and whether each is on disk; download one")
    p.add_argument("--models-dir", help="folder holding the checkpoints (default: the setting, else the Hugging Face cache)")
    p.add_argument("--download", metavar="NAME", help="download this checkpoint, e.g. Qwen3-TTS-12Hz-1.7B-Base "
                   "(a broken download resumes)")

    p = command(sub, cmd_cast, "cast", help="list the characters who speak in a book, with their lines and voices")
    p.add_argument("book", help=BOOK_FILE)
    p.add_argument("--llm", action="store_true", help="label speakers with the language model of the llm_url setting")
    p.add_argument("--cast", metavar="CAST.json", help="start from this cast (its names and voices)")
    p.add_argument("--json", metavar="OUT", help="save the cast as JSON (for render --cast)")
    p.add_argument("--merge", nargs=2, metavar=("NAME", "OTHER"), help="OTHER is the same character as NAME")
    p.add_argument("--rename", nargs=2, metavar=("NAME", "NEW"), help="call NAME NEW from now on")
    p.add_argument("--split", nargs=2, metavar=("NAME", "ALIAS"), help="ALIAS of NAME is a character of their own")
    p.add_argument("--hide", metavar="NAME", help="read NAME's quotes with the dialogue voice")
    p.add_argument("--show", metavar="NAME", help="give a hidden character their quotes back")
    p.add_argument("--design", action="store_true", help="design, save and map a voice for each main character "
                   "(descriptions by the language model with --llm, else from the text)")
    p.add_argument("--only", action="append", metavar="NAME", help="with --design: only this character (repeatable)")

    p = command(sub, cmd_tiny_models, "tiny-models", help="write tiny random-weight checkpoints (for trying the app without downloads)")
    p.add_argument("dir")

    p = command(sub, cmd_selftest, "selftest", help="prove the install works, using tiny checkpoints")
    p.add_argument("--models-dir", help="ignored: selftest builds its own tiny checkpoints")
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
        message = re.sub(r"^argument [^:]+: (?=--)", "", message)  # our own sentences name their flag already
        sentence = message[:1].upper() + message[1:]
        self.exit(2, f"Error: {sentence if sentence.endswith('.') else sentence + '.'}\n")

