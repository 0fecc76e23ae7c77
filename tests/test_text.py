"""Speakable text and sentence-aligned chunks."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiobook.books import Chapter
from audiobook.errors import AudiobookError
from audiobook.text import (
    Chunk, Pronunciations, chunk_text, load_pronunciations, normalize, plan_chunks, speakable_title, split_sentences,
)


def squash(text: str) -> str:
    return "".join(text.split())


# ---------------------------------------------------------------- normalise


@pytest.mark.parametrize("raw,spoken", [
    ("\u201cHello,\u201d she said \u2014 twice\u2026", '"Hello," she said \u2014 twice...'),
    ("the \ufb01rst o\ufb00ice", "the first office"),
    ("in\u00advisible\u200b text\ufeff", "invisible text"),
    ("Mr. Smith met Dr. Jones on St. Mark's day, etc. Then he left.", "Mister Smith met Doctor Jones on Saint Mark's day, et cetera. Then he left."),
    ("It cost $3.50, not \u00a31.", "It cost three dollars and fifty cents, not one pound."),
    ("At 10:30 pm on the 2nd, in 1851.", "At ten thirty p.m. on the second, in eighteen fifty-one."),
    ("In the 1920s, 59,265 people; 50% and 3.14.", "In the nineteen twenties, fifty-nine thousand, two hundred and sixty-five people; fifty percent and three point one four."),
    ("From 1805\u20131875.", "From eighteen oh-five to eighteen seventy-five."),
    ("It was 30\u00b0 C, room 007.", "It was thirty degrees Celsius, room zero zero seven."),
])
def test_normalize_english(raw, spoken):
    assert normalize(raw, "en") == spoken


def test_normalize_is_language_aware():
    assert normalize("Er zahlte 1.234,5 Euro, z.B. 50 %.", "de-DE") == \
        "Er zahlte eintausendzweihundertvierunddreißig Komma fünf Euro, zum Beispiel fünfzig Prozent."
    assert normalize("Il a 21 ans.", "fr") == "Il a vingt et un ans."
    assert normalize("It is 5.", "English") == normalize("It is 5.", "auto") == "It is five."
    assert normalize("2012年に10個", "ja") == "2012年に10個"  # Japanese voices read digits well


def test_normalize_keeps_paragraphs_and_every_word():
    text = "One paragraph here.\n\nAnd another, with a line\nbreak."
    assert normalize(text) == text


@pytest.mark.parametrize("title,spoken", [
    ("CHAPTER XII", "Chapter twelve"),
    ("I. THE BURIAL OF THE DEAD", "One. The Burial of the Dead"),
    ("Part IV: the end", "Part four: the end"),
    ("Book ii", "Book two"),
    ("XIV", "Fourteen"),
    ("I Am Legend", "I Am Legend"),
    ("Chapter 3", "Chapter three"),
])
def test_speakable_title(title, spoken):
    assert speakable_title(title) == spoken


def test_pronunciation_dictionary_case_rules(tmp_path):
    path = tmp_path / "pron.json"
    path.write_text(json.dumps({"qwen": "chwen", "US": "United States", "Dr. Who": "Doctor Who", "東京": "とうきょう"}))
    pron = load_pronunciations(path)
    assert pron.apply("Qwen, QWEN and qwenx in the US with us. Dr. Who? 東京へ") == \
        "chwen, chwen and qwenx in the United States with us. Doctor Who? とうきょうへ"
    # Applied before numbers and abbreviations, so the user's wish wins.
    assert normalize("Dr. Who at 5.", "en", Pronunciations.from_dict({"Dr. Who": "the Doctor"})) == "the Doctor at five."


def test_bad_pronunciation_dictionary(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("[1, 2]")
    with pytest.raises(AudiobookError, match="JSON object"):
        load_pronunciations(path)
    path.write_text("{oops")
    with pytest.raises(AudiobookError, match="not valid JSON"):
        load_pronunciations(path)


# ---------------------------------------------------------------- sentences and chunks


def test_dialogue_and_abbreviations_split_as_sentences():
    text = 'He said, "Stop." Then Mr. Smith left at 3.5 p.m. on the 2nd. "Really?" she asked. "Yes."'
    assert split_sentences(text) == ['He said, "Stop."', "Then Mr. Smith left at 3.5 p.m. on the 2nd.",
                                     '"Really?" she asked.', '"Yes."']


def test_chunks_pack_whole_sentences_and_mark_paragraph_ends():
    text = "First sentence here. Second sentence here. Third one.\n\nNew paragraph."
    assert chunk_text(text, 45) == [("First sentence here. Second sentence here.", False),
                                    ("Third one.", True), ("New paragraph.", True)]


def test_long_sentence_splits_at_clause_then_words():
    sentence = "alpha beta gamma delta, epsilon zeta eta theta; iota kappa lambda mu nu xi omicron pi rho sigma tau"
    chunks = [t for t, _ in chunk_text(sentence, 40)]
    assert chunks[0] == "alpha beta gamma delta,"
    assert chunks[1] == "epsilon zeta eta theta;"
    assert all(len(c) <= 40 for c in chunks) and squash(" ".join(chunks)) == squash(sentence)


def test_cjk_text_chunks_without_spaces():
    text = "これは日本語の文です。" * 30
    chunks = [t for t, _ in chunk_text(text, 50, "ja")]
    assert all(len(c) <= 50 for c in chunks)
    assert "".join(chunks) == text and " " not in "".join(chunks)
    assert all(c.endswith("。") for c in chunks)
    long_run = "中" * 130  # no punctuation at all
    assert [len(t) for t, _ in chunk_text(long_run, 50, "zh")] == [50, 50, 30]


def test_plan_chunks_titles_and_chapter_ends():
    chapters = [Chapter("CHAPTER I", "One. Two.\n\nThree."), Chapter("Part Two", "Part Two"), Chapter("C", "x")]
    chunks = plan_chunks(chapters, 500)
    assert chunks[0] == Chunk(0, 0, "Chapter one", is_title=True, paragraph_end=True)
    assert plan_chunks(chapters, 500, book_texts=True)[0].book_text == "CHAPTER I"
    assert [c.text for c in chunks if c.chapter == 0] == ["Chapter one", "One. Two.", "Three."]
    assert [c.chapter_end for c in chunks] == [False, False, True, True, False, True]
    assert chunks[3].is_title and chunks[3].text == "Part Two"  # a title-only chapter is said once
    assert [c.text for c in plan_chunks(chapters, 500, speak_titles=False)] == ["One. Two.", "Three.", "Part Two", "x"]


def test_plan_chunks_reports_progress():
    seen = []
    plan_chunks([Chapter("a", "b"), Chapter("c", "d")], progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]


def test_one_megabyte_chunks_whole_and_in_order():
    """A megabyte of prose becomes chunks that keep every word in order (its speed: bench/quick.py)."""
    paragraph = ('"Well," said Mr. Brown, "it is 5 miles to the 3rd farm." She laughed; they walked on, '
                 "talking of the harvest and the rain and the long winter that was surely coming. ") * 4
    chapters = [Chapter(f"Chapter {i}", "\n\n".join([paragraph] * 100)) for i in range(16)]
    assert sum(len(c.text) for c in chapters) > 1_000_000
    chunks = plan_chunks(chapters, 500)
    assert len(chunks) > 2000
    assert all(len(c.text) <= 500 for c in chunks)
    assert [c.chapter for c in chunks] == sorted(c.chapter for c in chunks)
    for i, chapter in enumerate(chapters):
        body = [c.text for c in chunks if c.chapter == i and not c.is_title]
        assert squash("".join(body)) == squash(normalize(chapter.text))
        assert sum(c.paragraph_end for c in chunks if c.chapter == i and not c.is_title) == 100


# ---------------------------------------------------------------- properties

_WORDS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_TEXTS = st.lists(st.one_of(_WORDS, st.sampled_from([". ", "! ", "? ", "\n\n", ", ", "; ", " \u2014 ", '." ', "Mr. ", "3.5 ", "。", " "])),
                  max_size=60).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXTS, chunk_chars=st.integers(min_value=5, max_value=120))
def test_chunking_loses_and_reorders_nothing(text, chunk_chars):
    chunks = chunk_text(text, chunk_chars)
    assert squash("".join(t for t, _ in chunks)) == squash(normalize(text))
    assert all(len(t) <= chunk_chars and t.strip() for t, _ in chunks)
    if chunks:
        assert chunks[-1][1]  # the last chunk ends a paragraph


@pytest.mark.parametrize("language, written, spoken", [
    ("fr", "Il y avait 10 000 soldats.", "Il y avait dix mille soldats."),
    ("fr", "On compta 25\u202f000 habitants.", "On compta vingt-cinq mille habitants."),
    ("fr", "Un prix de 1 250 000 francs.", "Un prix de un million deux cent cinquante mille francs."),
    ("fr", "Il marcha 3,5 km.", "Il marcha trois virgule cinq km."),
    ("de", "Es kamen 10.000 Menschen.", "Es kamen zehntausend Menschen."),
    ("de", "Es kamen 10 000 Menschen.", "Es kamen zehntausend Menschen."),
    ("de", "Es kostete 10'000 Franken.", "Es kostete zehntausend Franken."),
    ("de", "Er trank 3,5 Liter.", "Er trank drei Komma fünf Liter."),
    ("ru", "Пришло 10 000 человек.", "Пришло десять тысяч человек."),
    ("en", "Some 10,000 men and 12\u2009000 stars.", "Some ten thousand men and twelve thousand stars."),
])
def test_grouped_thousands_are_one_number(language, written, spoken):
    assert normalize(written, language) == spoken


def test_a_year_beside_a_number_is_not_a_group():
    assert normalize("En 1998 200 personnes.", "fr") == "En mille neuf cent quatre-vingt-dix-huit deux cents personnes."


def test_chunks_carry_the_books_own_words_for_the_check():
    """Before the dictionary, abbreviations and numbers; only where they differ from what is said."""
    sentence = "In 1851 Mr. Qwen climbed 112 stairs. The lamp was lit at dusk. "
    chapters = [Chapter("IV", sentence * 8 + "\n\nA plain paragraph.")]
    dictionary = Pronunciations.from_dict({"Qwen": "chwen"})
    chunks = plan_chunks(chapters, 200, pronunciations=dictionary, book_texts=True)
    body = [c for c in chunks if not c.is_title]
    assert len(body) > 2 and body[-1].text == "A plain paragraph." and body[-1].book_text == ""
    for c in body[:-1]:
        assert "chwen" in c.text and "eighteen fifty-one" in c.text
        assert c.book_text.startswith("In 1851 Mr. Qwen climbed 112 stairs.") and c.book_text.endswith(".")
    assert [c.text for c in chunks] == [c.text for c in plan_chunks(chapters, 200, pronunciations=dictionary)]
    assert not any(c.book_text for c in plan_chunks(chapters, 200, pronunciations=dictionary))
