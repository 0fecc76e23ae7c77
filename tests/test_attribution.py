"""Who says each quote: the character list and each attribution rule on passages written for it,
and the labelled set's scores (bench/attribution.py) never falling below their recorded values."""

import json
from pathlib import Path

from audiobook.attribution import CONFIDENCE, RULES, attribute, find_characters, label_spans
from audiobook.characters import FEMALE, MALE, Character, CharacterList
from audiobook.dialogue import DIALOGUE, join_spans

ROOT = Path(__file__).resolve().parents[1]


def who(text, characters):
    """(speaker, rule) of every quote of ``text``."""
    chars = characters if isinstance(characters, CharacterList) else CharacterList(characters)
    return [(speaker, rule) for _, _, speaker, rule in attribute(text, chars)]


TOM, ANNA = Character("Tom", gender=MALE), Character("Anna", gender=FEMALE)


def test_said_with_a_name_an_alias_or_a_descriptor():
    chars = CharacterList([Character("George Knightley", ["Mr. Knightley"], MALE), Character("Old gentleman", gender=MALE)])
    text = ('"Nonsense," said Knightley.\n\n"Indeed," Mr. Knightley replied.\n\n'
            '"Let me in!" cried the little gentleman.\n\n"Who?" asked Zed.')
    assert who(text, chars) == [("George Knightley", "said"), ("George Knightley", "said"), ("Old gentleman", "said"),
                                ("", "")]  # Zed is no one in the list: no guess


def test_a_pronoun_goes_to_the_last_character_of_its_gender_across_a_paragraph_break():
    text = ("Tom sat by the fire with his book. Anna came in from the rain and shook out her coat.\n\n"
            "\u201cIs there any tea left?\u201d she asked.\n\n"
            "Tom put the book down and stood up.\n\n"
            "\u201cI will make some,\u201d he said.")
    assert who(text, [TOM, ANNA]) == [("Anna", "pronoun"), ("Tom", "pronoun")]


def test_a_pronoun_with_two_people_of_its_gender_in_the_sentence_names_no_one():
    bob = Character("Bob", gender=MALE)
    text = "Tom and Bob sat at the table.\n\n\u201cWell?\u201d he said."
    assert who(text, [TOM, bob]) == [("", "")]
    text = "Tom looked at Bob across the table.\n\n\u201cWell?\u201d he said."
    assert who(text, [TOM, bob]) == [("Tom", "pronoun")]  # Bob comes after a preposition: not who "he" is


def test_a_gendered_stranger_is_nobody_known():
    text = "Tom went out. A young man came to the door and knocked.\n\n\u201cHello?\u201d he called."
    chars = CharacterList([TOM])
    assert who(text, chars) == [("Young man", "pronoun")]  # a new character, not Tom
    assert chars.get("Young man").gender == MALE


def test_two_people_take_turns_over_ten_quotes():
    lines = ['"Where are you going?" asked Tom.', '"To the market," said Anna.', '"Why?"', '"For bread."',
             '"Can I come?"', '"If you carry the basket."', '"Is it heavy?"', '"Only when it is full."',
             '"Then I will carry it home empty."', '"Then you will stay home."']
    text = "\n\n".join(lines)
    got = who(text, [TOM, ANNA])
    assert [s for s, _ in got] == ["Tom", "Anna"] * 5
    assert [r for _, r in got] == ["said", "said"] + ["turns"] * 8


def test_narration_between_turns_breaks_the_run():
    text = '"Where?" asked Tom.\n\n"Here," said Anna.\n\nThe clock struck nine and the dog barked.\n\n"Now?"'
    assert who(text, [TOM, ANNA])[-1] == ("", "")


def test_a_vocative_names_the_listener_not_the_speaker():
    text = '"Good morning," said Tom.\n\n"Good morning," said Anna.\n\n"Tom, did you sleep well?"'
    assert who(text, [TOM, ANNA])[-1] == ("Anna", "addressee")
    # nor does the paragraph rule give a quote to the one it speaks to
    text = '"Come here, Anna!" "Now, Anna," said Anna.'
    assert who(text, [TOM, ANNA])[0] == ("", "")


def test_a_paragraphs_other_quotes_share_its_speaker_unless_they_are_someone_elses():
    text = '"Yes," said Tom. "And bring the lamp."\n\n"Heave!" they shouted. "I am going," cried Tom.'
    assert who(text, [TOM, ANNA]) == [("Tom", "said"), ("Tom", "paragraph"), ("", ""), ("Tom", "said")]


def test_hidden_characters_are_read_as_dialogue():
    text = '"Yes," said Tom.'
    assert who(text, [Character("Tom", hidden=True)]) == [("", "")]
    spans = label_spans(text, CharacterList([Character("Tom", hidden=True)]))
    assert spans[0].speaker == DIALOGUE and join_spans(spans) == text


def test_the_character_list_clusters_aliases_and_guesses_genders():
    text = ('"Come," said Mr. Knightley. He smiled.\n\n"No," said George Knightley.\n\n"Well," said Knightley.\n\n'
            '"Oh!" cried Elizabeth Bennet. She laughed.\n\n"Lizzy!" said her mother.\n\n"Really," said Lizzy.\n\n'
            '"Hush," said the old gentleman.\n\n"Out!" cried the little gentleman.\n\n'
            '"Now," said the rogues.\n\n"Then he is he," said he.')
    chars = find_characters([text])
    names = {c.name: c for c in chars.characters}
    assert set(names) == {"George Knightley", "Elizabeth Bennet", "Mother", "Old gentleman", "Rogues"}
    assert set(names["George Knightley"].aliases) == {"Mr. Knightley", "Knightley"}
    assert names["George Knightley"].gender == MALE and names["Mother"].gender == FEMALE
    assert names["Elizabeth Bennet"].aliases == ["Lizzy"] and names["Elizabeth Bennet"].gender == FEMALE
    assert names["Old gentleman"].aliases == ["Little gentleman"] and names["Rogues"].group
    assert chars.resolve("Miss Bennet").name == "Elizabeth Bennet"  # the one Bennet
    assert chars.resolve("the young man") is None


def test_every_rule_has_a_confidence():
    assert set(RULES) <= set(CONFIDENCE)


def test_the_labelled_set_scores_no_lower_than_recorded():
    from bench.attribution import DATA, SCORES, score

    recorded = json.loads(SCORES.read_text())["after"]
    scores = score(json.loads(DATA.read_text(encoding="utf-8")))
    for part in ("all", "held_out"):
        assert scores[part]["quotes"] == recorded[part]["quotes"]
        assert scores[part]["accuracy"] >= recorded[part]["accuracy"], part
        assert scores[part]["precision"] >= recorded[part]["precision"], part
    before = json.loads(SCORES.read_text())["before"]
    assert scores["all"]["accuracy"] > before["all"]["accuracy"] and scores["held_out"]["accuracy"] > before["held_out"]["accuracy"]


def test_a_title_alone_is_a_name_of_its_own():
    text = '"Why?" asked the prince.\n\n"Go," said the slaves.\n\n"Because," said the King.'
    chars = find_characters([text])
    assert {c.name for c in chars.characters} == {"Prince", "Slaves", "King"}
    assert who(text, chars) == [("Prince", "said"), ("Slaves", "said"), ("King", "said")]


def test_adjectives_before_a_name_and_one_of_a_group():
    chars = CharacterList([Character("Minister", gender=MALE), Character("Town Councillors", group=True)])
    text = '"Mercy!" thought the old Minister.\n\n"Of myself," said each of the Town Councillors.'
    assert who(text, chars) == [("Minister", "said"), ("Town Councillors", "said")]


def test_a_question_between_two_lines_of_one_speaker_is_the_others_turn():
    text = '"Come in," said Tom.\n\n"No," said Anna.\n\n"Your cap?"\n\n"No, thank you," said Anna.'
    assert who(text, [TOM, ANNA])[2] == ("Tom", "turns")
