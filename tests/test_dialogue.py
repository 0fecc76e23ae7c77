"""Spans: the [voice:]/[style:] markup, quoted dialogue and its attribution, chunks that follow speakers."""

import pytest
from hypothesis import given, settings, strategies as st

from audiobook.dialogue import (
    DIALOGUE,
    NARRATOR,
    Span,
    find_dialogue,
    has_markup,
    is_markup_line,
    join_spans,
    quote_ranges,
    strip_markup,
)
from audiobook.text import chunk_spans, chunk_text

CAST = ["Alice", "Bob", "Marie", "Anna", "Mr. Darcy", "Kenji"]


def said(text, cast=CAST):
    spans = find_dialogue(text, cast)
    assert join_spans(spans) == text
    return [(s.text, s.speaker) for s in spans if s.text.strip()]


# ---- quotes of every style, attribution --------------------------------------------------------


@pytest.mark.parametrize("text, quote, speaker", [
    ('"Hold fast," said Alice. The light stayed on.', '"Hold fast,"', "Alice"),  # straight
    ("\u201cHold fast,\u201d Bob said.", "\u201cHold fast,\u201d", "Bob"),  # typographic
    ("\u00ab Bonjour \u00bb, dit Marie.", "\u00ab Bonjour \u00bb", "Marie"),  # French guillemets
    ("\u00bbWer da?\u00ab fragte Anna.", "\u00bbWer da?\u00ab", "Anna"),  # German guillemets
    ("\u201eHallo\u201c, sagte Anna.", "\u201eHallo\u201c", "Anna"),  # German low-high
    ("\u300c\u3053\u3093\u306b\u3061\u306f\u300d said Kenji.", "\u300c\u3053\u3093\u306b\u3061\u306f\u300d", "Kenji"),  # corner brackets
    ("Alice asked, \u201cWhere is it?\u201d", "\u201cWhere is it?\u201d", "Alice"),  # attribution before
    ("\u201cYes,\u201d said Mr. Darcy.", "\u201cYes,\u201d", "Mr. Darcy"),  # a title in the name
])
def test_each_quote_style_is_found_and_attributed(text, quote, speaker):
    assert (quote, speaker) in said(text)


def test_unknown_or_unnamed_speakers_go_to_dialogue_and_narration_stays():
    spans = said('"Hold fast," the keeper said. "Who?" asked Zed.')
    assert spans == [('"Hold fast,"', DIALOGUE), (" the keeper said. ", NARRATOR), ('"Who?"', DIALOGUE), (" asked Zed.", NARRATOR)]


def test_a_second_quote_in_the_paragraph_keeps_the_attributed_speaker():
    assert said('"Yes," said Bob. "And bring the lamp."')[2] == ('"And bring the lamp."', "Bob")


def test_nested_quotes_belong_to_the_outer_quote():
    text = "\u201cHe told me \u2018run\u2019 and I didn\u2019t,\u201d said Bob.\n\nThen \u00ab a \u2039b\u203a \u00bb."
    spans = said(text)
    assert spans[0] == ("\u201cHe told me \u2018run\u2019 and I didn\u2019t,\u201d", "Bob")
    assert ("\u00ab a \u2039b\u203a \u00bb", DIALOGUE) in spans


def test_a_quote_spanning_paragraphs_is_one_span():
    text = "\u201cThe first part of a long speech.\n\n\u201cAnd the second part,\u201d Alice added.\n\nThe end."
    spans = said(text)
    assert spans[0] == ("\u201cThe first part of a long speech.\n\n\u201cAnd the second part,\u201d", "Alice")
    assert spans[-1][1] == NARRATOR


def test_an_unclosed_quote_ends_with_its_paragraph():
    assert said('"Never closed.\n\nNarration goes on.') == [('"Never closed.', DIALOGUE), ("\n\nNarration goes on.", NARRATOR)]


def test_apostrophes_are_not_quotes():
    assert said("The boys\u2019 hats and Alice\u2019s coat were red.") == [("The boys\u2019 hats and Alice\u2019s coat were red.", NARRATOR)]


def test_cast_names_match_by_a_word_of_the_full_name():
    assert said('"Come," said Alice.', ["Alice Liddell"])[0] == ('"Come,"', "Alice Liddell")


def test_the_characters_found_are_speakers_not_pronouns():
    from audiobook.attribution import find_characters

    found = find_characters(['"Hi," said Alice. "Go," she said.', 'Then Bob asked, "Why?" "No," Alice Liddell replied.'])
    assert {c.name: c.mentions for c in found.characters} == {"Alice Liddell": 2, "Bob": 1}


# ---- markup -----------------------------------------------------------------------------------


def test_markup_switches_speakers_and_styles_and_is_never_spoken():
    text = ("It began.\n\n[voice: Alice]\nHello there.\n\n[style: whispering]\n\nQuiet now. [voice: narrator] She left."
            "\n\nMore.")
    clean, spans, after = strip_markup(text)
    assert clean == "It began.\n\nHello there.\n\nQuiet now. She left.\n\nMore."
    assert not has_markup(clean)
    assert [(s.text.strip(), s.speaker, s.style) for s in spans] == [
        ("It began.", NARRATOR, ""), ("Hello there.", "Alice", ""), ("Quiet now.", "Alice", "whispering"),
        ("She left.", NARRATOR, "whispering"), ("More.", NARRATOR, "")]
    assert after == NARRATOR


def test_markup_speaker_carries_into_the_next_chapter():
    _, _, after = strip_markup("[voice: Bob] One.")
    _, spans, _ = strip_markup("Two.", after)
    assert spans == [Span("Two.", "Bob")]


def test_markup_lines():
    assert is_markup_line("[voice: Alice]") and is_markup_line(" [style: angry] [voice: Bob] ")
    assert not is_markup_line("[voice: Alice] Hello") and not is_markup_line("Hello")


# ---- the property: spans always rebuild the text -------------------------------------------------

_ALPHABET = st.sampled_from(list("ab said Alice Bob .,!?\n\n\t'\"\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e\u300c\u300d\u300e\u300f[]:") + [
    "[voice: Bob]", "[style: loud]", "[voice: narrator]", " said Alice", "Bob asked "])


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join), st.lists(st.sampled_from(CAST + ["Bob Smith"]), max_size=3))
def test_spans_always_rebuild_the_chapter_text(text, cast):
    spans = find_dialogue(text, cast)
    assert join_spans(spans) == text
    assert all(s.text for s in spans)
    for a, b in quote_ranges(text):
        assert 0 <= a < b <= len(text)
    clean, marked, _ = strip_markup(text)
    assert join_spans(marked) == clean
    assert not has_markup(clean)
    # chunks never cross a span, and every word of the spans is in a chunk
    chunks = chunk_spans(spans, 40)
    assert all(len(t) <= 40 for t, *_ in chunks)
    spoken = [s for s in spans if s.text.strip()]
    # Span by span, in order: each span's chunks carry its speaker and style (none lost, none moved) ...
    assert [(t, who, style) for t, _, who, style, _ in chunks] == [
        (t, s.speaker, s.style) for s in spoken for t, _ in chunk_text(s.text, 40)]
    # ... and say the span's own text: cutting it at 40 characters loses and adds nothing.
    def letters(pieces):
        return "".join(" ".join(pieces).split())

    for s in spoken:
        assert letters(t for t, _ in chunk_text(s.text, 40)) == letters(t for t, _ in chunk_text(s.text, 100_000))
    assert letters(t for t, *_ in chunks) == "".join(letters(t for t, _ in chunk_text(s.text, 100_000)) for s in spoken)


def test_chunks_follow_speakers_with_paragraph_and_turn_ends():
    spans = find_dialogue('"Hold fast," said Alice. The storm went on.\n\n"Yes," Bob said.', CAST)
    chunks = chunk_spans(spans, 200)
    assert [(t, who, para, turn) for t, para, who, _, turn in chunks] == [
        ('"Hold fast,"', "Alice", False, True),
        ("said Alice. The storm went on.", NARRATOR, True, True),
        ('"Yes,"', "Bob", False, True),
        ("Bob said.", NARRATOR, True, False),
    ]
