"""Voices for the cast: descriptions from the text or a language model, designed on the tiny VoiceDesign model."""

import json

import pytest

import backend as backend_module
from audiobook.books import Book, Chapter
from audiobook.books.cast import Cast, CastMember, label_book
from audiobook.cast_design import describe, design_cast, design_line, main_characters
from audiobook.errors import AudiobookError
from audiobook.llm import LLM

STORY = (
    'The old gentleman knocked at the door.\n\n'
    '"Let me in, I am wet through and through," growled the old gentleman.\n\n'
    '"I cannot, sir, my brothers would beat me," said Gluck softly.\n\n'
    '"Then I shall wait here all night," muttered the old gentleman gruffly.\n\n'
    '"Please do not be angry with me, sir," whispered Gluck.\n\n'
    '"Who is that?" asked a passer-by.'
)


def labelled():
    book, _ = label_book(Book("Golden River", [Chapter("One", STORY)]))
    return book


def test_main_characters_and_descriptions_come_from_the_text():
    book = labelled()
    assert [m.name for m in main_characters(book.cast)] == ["Gluck", "Old gentleman"]  # the passer-by speaks once
    old = book.cast.get("Old gentleman")
    text = describe(book, old)
    assert text.startswith("An elderly man with a slightly worn, low, resonant voice")
    assert "low and gruff" in text and "gruff" in text
    gluck = describe(book, book.cast.get("Gluck"))
    assert "soft" in gluck
    assert design_line(book, "Gluck") == "I cannot, sir, my brothers would beat me"


def test_design_the_cast_saves_and_maps_one_voice_per_main_character(cast_backend):
    b = cast_backend
    book = labelled()
    steps = []
    designed, done, warnings = design_cast(
        book, lambda description, line: b.preview_design(description, "auto", line, seed=1),
        lambda preview, name: b.save_voice(preview, name, overwrite=True),
        progress=lambda i, n, who: steps.append((i, n, who)))
    assert warnings == []
    assert [d.character for d in done] == ["Gluck", "Old gentleman"]
    assert steps == [(0, 2, "Gluck"), (1, 2, "Old gentleman"), (2, 2, "")]
    for d in done:
        voice = b.get_voice(d.voice)
        assert voice.kind == "designed" and voice.description == d.description and voice.reference_text == d.line
        assert designed.cast.voice_of(d.character) == d.voice == f"{d.character} (Golden River)"
        assert designed.cast.get(d.character).description == d.description
    assert designed.cast.voice_of("Passer-by") == ""  # not a main character
    # One character again, by name; an unknown one is a sentence.
    again, done, _ = design_cast(designed, lambda d, line: b.preview_design(d, "auto", line, seed=2),
                                 lambda p, name: b.save_voice(p, name, overwrite=True), only=["Gluck"])
    assert [d.character for d in done] == ["Gluck"]
    with pytest.raises(AudiobookError, match="no character 'Nobody'"):
        design_cast(designed, None, None, only=["Nobody"])


def test_the_language_model_writes_descriptions_and_a_failure_falls_back(chat_server):
    book = labelled()
    seen = []

    def preview(description, line):
        seen.append(description)
        return object()

    chat_server.answer = "A raspy, elderly man with a slow, grumbling voice."
    _, done, warnings = design_cast(book, preview, lambda p, n: None, llm=LLM(chat_server.url, "m"))
    assert seen == ["A raspy, elderly man with a slow, grumbling voice."] * 2 and warnings == []
    asked = chat_server.requests[1]["messages"][-1]["content"]
    assert "Character: Old gentleman" in asked and "The old gentleman knocked at the door." in asked
    assert "Let me in, I am wet through and through" in asked

    chat_server.status = 500
    seen.clear()
    _, done, warnings = design_cast(book, preview, lambda p, n: None, llm=LLM(chat_server.url, "m"))
    assert len(warnings) == 2 and "written from the text instead" in warnings[0]
    assert seen[1].startswith("An elderly man")


def test_design_needs_a_cast():
    with pytest.raises(AudiobookError, match="Find the speakers first"):
        design_cast(Book("T", [Chapter("One", "x")]), None, None)
    book = Book("T", [Chapter("One", "x")], cast=Cast([CastMember("dialogue", 3)]))
    with pytest.raises(AudiobookError, match="No character speaks"):
        design_cast(book, None, None)
    assert json.dumps(main_characters(None)) == "[]"


def test_the_command_line_designs_edits_and_lists_the_cast(cast_backend, tmp_path, capsys, monkeypatch):
    b = cast_backend
    path = tmp_path / "river.txt"
    path.write_text(STORY, encoding="utf-8")
    monkeypatch.setattr(backend_module, "Backend", lambda models_dir=None: b)
    assert backend_module.main(["cast", str(path), "--design"]) == 0
    out = capsys.readouterr().out
    assert "Designing Gluck's voice (1 of 2)..." in out and "Designing Old gentleman's voice (2 of 2)..." in out
    assert "Gluck: the voice 'Gluck (river)'" in out
    saved = json.loads((b.output_root / "river" / "cast.json").read_text())
    voices = {c["name"]: c["voice"] for c in saved["characters"]}
    assert voices == {"Gluck": "Gluck (river)", "Old gentleman": "Old gentleman (river)", "Passer-by": ""}
    assert b.voices.exists("Gluck (river)") and b.voices.exists("Old gentleman (river)")
    listing = [line.split() for line in out.splitlines() if line.startswith("Gluck ")]
    assert listing[0][:4] == ["Gluck", "2", "-", "Gluck"]  # name, lines, gender (the text does not tell), voice

    assert backend_module.main(["cast", str(path), "--rename", "Old gentleman", "Southwest Wind"]) == 0
    out = capsys.readouterr().out
    assert "Southwest Wind" in out and "(also Old gentleman)" in out
    assert backend_module.main(["cast", str(path), "--hide", "Passer-by"]) == 0
    assert "hidden" in capsys.readouterr().out
    saved = json.loads((b.output_root / "river" / "cast.json").read_text())
    wind = next(c for c in saved["characters"] if c["name"] == "Southwest Wind")
    assert wind["voice"] == "Old gentleman (river)" and wind["aliases"] == ["Old gentleman"] and wind["lines"] == 2
    assert next(c for c in saved["characters"] if c["name"] == "Passer-by")["hidden"] is True

    assert backend_module.main(["cast", str(path), "--merge", "Gluck", "Nobody"]) == 2
    assert "no character 'Nobody'" in capsys.readouterr().err
