"""The command line (``python backend.py --help``): ``main`` runs a command on a Backend.

``parser.py`` holds the parser; one module per group of commands holds their functions (``render.py``,
``review.py``, ``voices.py``, ``books.py``, ``models.py``); ``options.py`` says what shared options mean and
``progress.py`` draws progress bars and handles Ctrl-C. ``backend.py`` runs ``main`` with the ``Backend``
class; every command opens its Backend through ``args.open_backend`` (the package never imports
``backend.py``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable

from audiobook.cli.options import parse_chapters
from audiobook.cli.parser import build_parser
from audiobook.errors import AudiobookError

__all__ = ["build_parser", "main", "parse_chapters"]


def main(argv: list[str] | None, open_backend: Callable[..., Any]) -> int:
    """Run the command line; ``open_backend(**options)`` makes the ``backend.Backend`` a command works with."""
    args = build_parser().parse_args(argv)
    args.open_backend = open_backend
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
