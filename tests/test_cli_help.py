"""Every command line the README documents still parses: its command answers --help and knows each flag shown."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

import app
import backend
from audiobook import cli

README = Path(__file__).resolve().parent.parent / "README.md"


def documented_lines(program: str) -> list[list[str]]:
    """The words after ``program`` on each README line that runs it (code blocks and inline code)."""
    lines = []
    for line in README.read_text(encoding="utf-8").splitlines():
        for m in re.finditer(rf"{re.escape(program)}((?: [^`#]*)?)", line):
            text = m.group(1).split("  #")[0]
            try:
                lines.append(shlex.split(text))
            except ValueError:  # an unbalanced quote in prose: take the words as they are
                lines.append(text.split())
    return lines


def command_path(words: list[str]) -> tuple[list[str], argparse.ArgumentParser]:
    """The (sub)commands at the start of ``words`` and the parser of the last one."""
    parser, path = cli.build_parser(), []
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser, path = subs[0].choices[word], path + [word]
    return path, parser


def help_of(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0, argv
    return capsys.readouterr().out


def test_every_documented_backend_command_answers_help_and_knows_its_flags(capsys):
    lines = documented_lines("backend.py")
    assert len(lines) > 20  # the README's command-line section was found
    commands = set()
    for words in lines:
        path, _ = command_path(words)
        if not path:
            continue
        commands.add(path[0])
        text = help_of(backend.main, [*path, "--help"], capsys)
        assert text.startswith(f"usage: backend.py {' '.join(path)}"), path
        for flag in (w.strip("[]()|") for w in words if w.lstrip("[(").startswith("--")):
            flag = flag.split("=")[0]
            assert flag in text, f"the README shows `backend.py {' '.join(words)}` but {' '.join(path)} has no {flag}"
    # Every command of the parser is documented, and every documented one was checked.
    _, top = command_path([])
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    assert commands == set(sub.choices), set(sub.choices) ^ commands
    assert "usage: backend.py" in help_of(backend.main, ["--help"], capsys)


def test_the_page_answers_help_with_its_documented_options(capsys):
    text = help_of(app.main, ["--help"], capsys)
    assert text.startswith("usage: app.py")
    for flag in ("--port", "--listen", "--share", "--auth", "--models-dir", "--root"):
        assert flag in text
