"""The cast: counting lines, voices, cast.json, and labelling through an OpenAI-compatible server."""

import json
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from audiobook.books.cast import LLM, Cast, CastMember, align_labels, cast_of, load_cast, save_cast
from audiobook.dialogue import DIALOGUE, NARRATOR, Span, join_spans
from audiobook.errors import AudiobookError

CHAPTER = ("The storm came in from the west.\n\n"
           "\u201cHold fast,\u201d the keeper said. \u201cIt will pass.\u201d\n\n"
           "\u201cWill it?\u201d asked the boy.")
GOOD = [  # what a model that labels well answers (its quotes straightened, as models often do)
    {"speaker": "narrator", "text": "The storm came in from the west."},
    {"speaker": "Keeper", "text": "\"Hold fast,\""},
    {"speaker": "narrator", "text": "the keeper said."},
    {"speaker": "Keeper", "text": "\"It will pass.\""},
    {"speaker": "Boy", "text": "\"Will it?\""},
    {"speaker": "narrator", "text": "asked the boy."},
]


def test_a_good_answer_is_used(chat_server):
    chat_server.answer = "```json\n" + json.dumps({"spans": GOOD}) + "\n```"
    spans, warnings = LLM(chat_server.url, "tiny-labeller").label(CHAPTER, ["Keeper"])
    assert warnings == []
    assert join_spans(spans) == CHAPTER  # the chapter's own quotes and spacing are kept
    assert [(s.text.strip(), s.speaker) for s in spans] == [
        ("The storm came in from the west.", NARRATOR), ("\u201cHold fast,\u201d", "Keeper"),
        ("the keeper said.", NARRATOR), ("\u201cIt will pass.\u201d", "Keeper"),
        ("\u201cWill it?\u201d", "Boy"), ("asked the boy.", NARRATOR)]
    asked = chat_server.requests[0]
    assert asked["path"] == "/v1/chat/completions" and asked["model"] == "tiny-labeller"
    assert CHAPTER in asked["messages"][-1]["content"] and "Keeper" in asked["messages"][-1]["content"]


def test_a_rewritten_answer_is_rejected_and_the_quotes_found_stay(chat_server):
    rewritten = [dict(s) for s in GOOD]
    rewritten[2]["text"] = "the old keeper said."
    chat_server.answer = json.dumps({"spans": rewritten})
    spans, warnings = LLM(chat_server.url, "m").label(CHAPTER, ["Keeper"])
    assert len(warnings) == 1 and "changed the text" in warnings[0] and "rejected" in warnings[0]
    assert len(chat_server.requests) == 2  # asked once more before giving up
    assert join_spans(spans) == CHAPTER
    # The rules' labels stay: "the keeper said" names the known Keeper; the boy is no one known.
    assert [s.speaker for s in spans if s.text.strip().startswith("\u201c")] == ["Keeper", "Keeper", DIALOGUE]
    assert [s.rule for s in spans if s.text.strip().startswith("\u201c")] == ["said", "paragraph", ""]


def test_an_answer_that_is_not_json_is_rejected(chat_server):
    chat_server.answer = "Sure! The keeper speaks first."
    spans, warnings = LLM(chat_server.url, "m").label(CHAPTER)
    assert "not the JSON" in warnings[0] and join_spans(spans) == CHAPTER


def test_a_dead_server_gives_a_sentence():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    with pytest.raises(AudiobookError, match=r"^Could not reach the language model at http://127\.0\.0\.1:\d+/v1/chat/completions .*\.$"):
        LLM(f"http://127.0.0.1:{port}", "m", timeout_s=5).label(CHAPTER)


def test_align_labels_keeps_the_text_and_refuses_changes():
    text = 'A  "b,"\n\nsaid C.'
    spans = align_labels(text, [("narrator", "A"), ("C", '"b,"'), ("narrator", "said C.")])
    assert spans == [Span("A  "), Span('"b,"\n\n', "C"), Span("said C.")]
    with pytest.raises(ValueError):
        align_labels(text, [("narrator", "A"), ("C", '"b,"')])  # a word left out


# ---- the cast ---------------------------------------------------------------------------------


class Ch:
    def __init__(self, spans):
        self.spans = spans


def test_cast_counts_lines_keeps_voices_and_round_trips(tmp_path):
    chapters = [Ch([Span("Narration. "), Span('"Hi there, how are you today?"', "Alice"), Span(" x ", NARRATOR)]),
                Ch([Span('"Go."', "Alice"), Span('"Who?"', DIALOGUE), Span('"Me."', "Bob")])]
    previous = Cast([CastMember("Bob", 9, "Ryan voice"), CastMember("Gone", 3, "Old")])
    cast = cast_of(chapters, previous)
    assert [(m.name, m.lines, m.voice) for m in cast.members] == [
        ("Alice", 2, ""), ("Bob", 1, "Ryan voice"), (DIALOGUE, 1, ""), ("Gone", 0, "Old")]
    assert cast.get("Alice").preview == '"Hi there, how are you today?"'
    cast = cast.with_voice("Alice", "Storyteller")
    path = save_cast(cast, tmp_path / "cast.json")
    assert load_cast(path) == cast
    assert json.loads(path.read_text())["characters"][0] == {
        "name": "Alice", "lines": 2, "voice": "Storyteller", "preview": '"Hi there, how are you today?"'}


def test_bad_cast_files_give_sentences(tmp_path):
    bad = tmp_path / "cast.json"
    bad.write_text("{nope")
    with pytest.raises(AudiobookError, match="not valid JSON"):
        load_cast(bad)
    bad.write_text(json.dumps({"characters": [{"voice": "x"}]}))
    with pytest.raises(AudiobookError, match='no "name"'):
        load_cast(bad)
    with pytest.raises(AudiobookError, match="narrator's voice"):
        Cast().with_voice("Narrator", "x")


# ---- the book carries spans and cast ------------------------------------------------------------

from audiobook.books import Book, Chapter, load_book, merge_chapters, save_book_json, set_chapter_text, set_span  # noqa: E402
from audiobook.books.cast import label_book  # noqa: E402

MARKUP = """Chapter 1

It was late.

[voice: Alice]
[style: tired]
Is anyone there?

Chapter 2

Still Alice speaking here.

[voice: narrator]
"Yes," said Bob.
"""


@pytest.mark.parametrize("suffix", [".txt", ".md"])
def test_markup_books_have_spans_and_the_tags_are_gone(tmp_path, suffix):
    text = MARKUP.replace("Chapter 1", "# Chapter 1").replace("Chapter 2", "# Chapter 2") if suffix == ".md" else MARKUP
    path = tmp_path / f"book{suffix}"
    path.write_text(text, encoding="utf-8")
    book = load_book(path)
    assert [c.title for c in book.chapters] == ["Chapter 1", "Chapter 2"]
    assert all("[" not in c.text for c in book.chapters)
    one, two = book.chapters
    assert [(s.text.strip(), s.speaker, s.style) for s in one.spans] == [
        ("It was late.", NARRATOR, ""), ("Is anyone there?", "Alice", "tired")]
    assert two.spans[0] == Span("Still Alice speaking here.\n\n", "Alice")  # the voice goes on into chapter 2
    labelled, _ = label_book(book)
    assert [(m.name, m.lines) for m in labelled.cast.members] == [("Alice", 2)]  # markup is kept, not re-detected


def test_json_book_round_trips_spans_and_cast(tmp_path):
    text = '"Hold fast," said Bob. The light stayed on.'
    book, _ = label_book(Book("T", [Chapter("One", text), Chapter("Two", "No one speaks.")]), Cast([CastMember("Bob", voice="ryan")]))
    assert book.chapters[0].spans[0] == Span('"Hold fast,"', "Bob")
    assert book.cast.members == [CastMember("Bob", 1, "ryan", '"Hold fast,"')]
    path = save_book_json(book, tmp_path / "t.json")
    data = json.loads(path.read_text())
    assert data["cast"] == [{"name": "Bob", "lines": 1, "voice": "ryan", "preview": '"Hold fast,"'}]
    assert data["chapters"][0]["spans"][0] == {"text": '"Hold fast,"', "speaker": "Bob", "style": "", "rule": "said"}
    again = load_book(path)
    assert again == book and again.chapters[0].spans[0].rule == "said"  # the rule that found the speaker is kept
    assert load_cast(path) == book.cast  # a JSON book serves as a cast file


def test_json_spans_must_rebuild_the_text(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"chapters": [{"title": "A", "text": "One two.", "spans": [{"text": "One", "speaker": "X"}]}]}))
    with pytest.raises(AudiobookError, match="do not add up to its text"):
        load_book(path)
    path.write_text(json.dumps({"chapters": [{"title": "A", "spans": [{"text": "Hi. "}, {"text": '"Yo."', "speaker": "Al"}]}]}))
    assert load_book(path).chapters[0].text == 'Hi. "Yo."'  # the spans alone make the chapter


def test_span_edits_and_chapter_edits_keep_speakers(tmp_path):
    book, _ = label_book(Book("T", [Chapter("One", '"Go," said Al.'), Chapter("Two", '"No."')]), Cast([CastMember("Al")]))
    edited = set_span(book, 1, 0, speaker="Al", style="angry")
    assert edited.chapters[1].spans == [Span('"No."', "Al", "angry")] and book.chapters[1].spans[0].speaker == DIALOGUE
    with pytest.raises(AudiobookError, match="no part 5"):
        set_span(book, 0, 4, speaker="x")
    merged = merge_chapters(edited, [0, 1])
    assert join_spans(merged.chapters[0].spans) == merged.chapters[0].text
    assert merged.chapters[0].spans[-1] == Span('"No."', "Al", "angry")
    assert set_chapter_text(edited, 1, "Fresh words.").chapters[1].spans is None


CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared EPUB corpus is not at {CORPUS}")
def test_the_cast_of_a_real_book_of_fairy_tales():
    book, _ = label_book(load_book(CORPUS / "childrens-literature.epub"))
    for chapter in book.chapters:
        assert join_spans(chapter.spans) == chapter.text
    lines = {m.name: m.lines for m in book.cast.members}
    assert lines["Gluck"] >= 30 and lines["Swallow"] >= 20 and lines["Emperor"] >= 20
    assert not {"Once", "Yet", "He", "She", "Then"} & set(lines)  # words that start sentences are nobody's name
    assert lines[DIALOGUE] > 0 and book.cast.members[-1].name == DIALOGUE


# ---- the user edits the character list ------------------------------------------------------------

STORY = ('"Come in," said Mr. Knightley. He held the door.\n\n"Thank you," said Emma.\n\n'
         '"Sit down," said George.\n\n"Hush," whispered the old gentleman.')


def test_merge_rename_split_and_hide_characters_and_label_again():
    from audiobook.books.cast import relabel_book
    from audiobook.dialogue import strip_markup

    marked, spans, _ = strip_markup("[voice: Emma]\nMarked up.")
    book, _ = label_book(Book("T", [Chapter("One", STORY), Chapter("Two", marked, spans)]))
    assert {m.name for m in book.cast.members} == {"Mr. Knightley", "Emma", "George", "Old gentleman"}
    assert book.cast.get("Mr. Knightley").gender == "male"
    assert book.cast.get("Emma").lines == 2  # one quote, one marked-up paragraph

    merged = book.cast.merged("Mr. Knightley", "George")
    assert merged.get("Mr. Knightley").aliases == ["George"] and merged.get("George") is None
    book2, _ = relabel_book(book, merged)
    assert [s.speaker for s in book2.chapters[0].spans if s.text.startswith('"')] == [
        "Mr. Knightley", "Emma", "Mr. Knightley", "Old gentleman"]
    assert book2.chapters[1].spans == book.chapters[1].spans  # markup stays

    renamed = merged.renamed("Mr. Knightley", "George Knightley")
    book3, _ = relabel_book(book2, renamed)
    assert book3.cast.get("George Knightley").lines == 2 and "Mr. Knightley" in book3.cast.get("George Knightley").aliases
    assert book3.cast.get("George Knightley").aliases == ["Mr. Knightley", "George"]

    split = book3.cast.split("George Knightley", "George")
    book4, _ = relabel_book(book3, split)
    assert book4.cast.get("George").lines == 1 and book4.cast.get("George Knightley").lines == 1

    hidden = book4.cast.hidden("Old gentleman")
    book5, _ = relabel_book(book4, hidden)
    assert book5.chapters[0].spans[-2].text == '"Hush,"' and book5.chapters[0].spans[-2].speaker == DIALOGUE
    assert book5.cast.get("Old gentleman").hidden and book5.cast.get("Old gentleman").lines == 0
    assert Cast.from_dict(json.loads(json.dumps(book5.cast.to_dict()))) == book5.cast  # the JSON cast keeps it all
    shown, _ = relabel_book(book5, book5.cast.hidden("Old gentleman", False))
    assert shown.chapters[0].spans[-2].speaker == "Old gentleman"


def test_cast_edits_give_sentences():
    cast = Cast([CastMember("Emma", aliases=["Miss Woodhouse"]), CastMember("Harriet")])
    with pytest.raises(AudiobookError, match="no character 'Nobody'.*Emma, Harriet"):
        cast.merged("Emma", "Nobody")
    with pytest.raises(AudiobookError, match="already a character called Harriet; merge"):
        cast.renamed("Emma", "Harriet")
    with pytest.raises(AudiobookError, match="'Emmy' is not one of Emma's other names .*Miss Woodhouse"):
        cast.split("Emma", "Emmy")
    with pytest.raises(AudiobookError, match="two different characters"):
        cast.merged("Emma", "Emma")
    bad = {"characters": [{"name": "X", "aliases": "Y"}]}
    with pytest.raises(AudiobookError, match='"aliases" as a list'):
        Cast.from_dict(bad)


def test_the_model_gets_the_characters_and_the_rules_labels_as_hints(chat_server):
    chat_server.answer = json.dumps({"spans": GOOD})
    book, warnings = label_book(Book("T", [Chapter("Storm", CHAPTER)]), Cast([CastMember("Keeper", aliases=["the keeper"])]),
                                llm=LLM(chat_server.url, "m"))
    asked = chat_server.requests[0]["messages"][-1]["content"]
    assert "- Keeper (also the keeper)" in asked
    assert '\u201cHold fast,\u201d -> Keeper' in asked and '\u201cWill it?\u201d -> Boy' in asked and '- Boy (male)' in asked
    assert warnings == [] and [s.rule for s in book.chapters[0].spans if s.speaker == "Boy"] == ["llm"]


def test_a_failing_model_is_asked_again_then_reported_with_its_chapter(chat_server):
    chat_server.answer = ["not json", json.dumps({"spans": GOOD})]  # wrong once, then right
    book, warnings = label_book(Book("T", [Chapter("Storm", CHAPTER)]), llm=LLM(chat_server.url, "m"))
    assert warnings == [] and len(chat_server.requests) == 2 and book.chapters[0].spans[-2].speaker == "Boy"

    chat_server.requests.clear()
    chat_server.answer = "still not json"
    book, warnings = label_book(Book("T", [Chapter("Calm", "Quiet."), Chapter("Storm", CHAPTER)]), llm=LLM(chat_server.url, "m"))
    assert len(chat_server.requests) == 2  # the stormy chapter twice; one with no quotes is not sent
    assert warnings == ["Chapter 2 (Storm): the language model's answer was not the JSON list of spans asked for twice, "
                        "so it was rejected and the speakers found by the rules are kept for that part."]

    chat_server.requests.clear()
    chat_server.status = 500
    with pytest.raises(AudiobookError, match=r"answered with error 500 .* It failed twice, on chapter 1 \(Storm\)\.$"):
        label_book(Book("T", [Chapter("Storm", CHAPTER)]), llm=LLM(chat_server.url, "m"))
    assert len(chat_server.requests) == 2


def test_merge_rename_and_hide_keep_each_part_as_it_was_labelled(tmp_path):
    import backend as backend_module
    from audiobook.settings import SETTINGS_FILE

    b = backend_module.Backend(root=tmp_path, settings_path=tmp_path / SETTINGS_FILE)
    spans = [Span('"Hi,"', "Al", rule="llm"), Span(" he said. "), Span('"Yo."', "Bo", rule="llm"), Span(" "),
             Span('"Hm."', "Cy", rule="pronoun")]
    book = Book("Parts", [Chapter("One", join_spans(spans), spans)])
    book = replace(book, cast=cast_of(book.chapters))
    book = b.edit_cast(book, "merge", "Al", "Bo")
    assert [(s.speaker, s.rule) for s in book.chapters[0].spans if s.speaker != NARRATOR] == [
        ("Al", "llm"), ("Al", "llm"), ("Cy", "pronoun")]  # the language model's labels are not lost
    book = b.edit_cast(book, "rename", "Al", "Alan")
    book = b.edit_cast(book, "hide", "Cy")
    assert [(s.speaker, s.rule) for s in book.chapters[0].spans if s.speaker != NARRATOR] == [
        ("Alan", "llm"), ("Alan", "llm"), (DIALOGUE, "")]
    assert [(m.name, m.lines, m.aliases, m.hidden) for m in load_cast(b.cast_path(book)).members] == [
        ("Alan", 2, ["Al", "Bo"], False), (DIALOGUE, 1, [], False), ("Cy", 0, [], True)]
