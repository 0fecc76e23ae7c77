"""Rendering with a cast on the tiny models: every chunk is generated with its speaker's voice."""

import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

import backend as backend_module
from audiobook import manifest as mf
from audiobook.books import load_book
from audiobook.books.cast import Cast, CastMember, load_cast
from audiobook.dialogue import NARRATOR
from audiobook.errors import AudiobookError
from audiobook.render import plan_book
from audiobook.settings import SETTINGS_FILE
from audiobook.tts import CLONE, PRESET, Narrator
from tests.tone import tone_clip

MARKUP_BOOK = """Chapter 1: The Gate

The night was dark and the gate was shut.

[voice: Alice]
Who goes there at this hour of the night?

[voice: Bob]
[style: whispering]
Only me, and I have brought the lamp.

[voice: narrator]
The wind blew over the hill, and the lamp went out.
"""
LINES = {  # what each speaker says, as the manifest should record it
    "Who goes there at this hour of the night?": "Alice",
    "Only me, and I have brought the lamp.": "Bob",
    "The night was dark and the gate was shut.": NARRATOR,
    "The wind blew over the hill, and the lamp went out.": NARRATOR,
    "Chapter one: The Gate": NARRATOR,  # the spoken title
}



class Calls:
    """What the loaded qwen_tts models were asked to generate: (job, text, voice) per text."""

    def __init__(self, tts):
        self.items: list[tuple[str, str, object]] = []
        self.calls: list[list[object]] = []

        def on_load(job, source):
            model = tts.loaded.model
            if job == CLONE:
                real = model.generate_voice_clone

                def clone(**kw):
                    self.calls.append([p.ref_spk_embedding for p in kw["voice_clone_prompt"]])
                    self.items += [(CLONE, t, p) for t, p in zip(kw["text"], kw["voice_clone_prompt"])]
                    return real(**kw)

                model.generate_voice_clone = clone
            elif job == PRESET:
                real = model.generate_custom_voice

                def preset(**kw):
                    speakers = kw["speaker"] if isinstance(kw["speaker"], list) else [kw["speaker"]] * len(kw["text"])
                    instructs = kw["instruct"] if isinstance(kw["instruct"], list) else [kw["instruct"]] * len(kw["text"])
                    self.calls.append(list(zip(speakers, instructs)))
                    self.items += [(PRESET, t, (s, i)) for t, s, i in zip(kw["text"], speakers, instructs)]
                    return real(**kw)

                model.generate_custom_voice = preset

        tts.unload()
        tts.on_load = on_load


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fast", "qwen_tts"])
def test_a_markup_book_renders_each_speaker_with_their_voice(cast_backend, tmp_path, engine):
    b = cast_backend
    b.apply_settings(b.settings.updated(engine=engine))
    path = tmp_path / "gate.txt"
    path.write_text(MARKUP_BOOK, encoding="utf-8")
    calls = Calls(b.tts)
    cast = Cast([CastMember("Alice", voice="Alice voice"), CastMember("Bob", voice="vivian")])
    try:
        result = b.render(path, "Storyteller", out_dir=tmp_path / "out", cast=cast)
    finally:
        b.tts.on_load = None
    assert len(result.chapter_files) == 1 and result.chapter_files[0].is_file()

    m = mf.load_manifest(tmp_path / "out")
    speakers = {s.text: s.speaker for s in m.chunks.values()}
    assert speakers == LINES
    voices = {s.speaker: s.voice for s in m.chunks.values()}
    assert voices == {NARRATOR: "Storyteller", "Alice": "Alice voice", "Bob": "vivian"}
    assert [s.style for s in m.chunks.values() if s.speaker == "Bob"] == ["whispering"]
    refs = m.chapters[0].chunks
    assert [r.turn_end for r in refs] == [False, True, True, True, False]

    # The model was called with each chunk's own voice: the clone prompt of its voice, or its built-in speaker.
    narrator_prompt = b.clone_prompt_for(b.narrator_for("Storyteller"))
    alice_prompt = b.clone_prompt_for(b.narrator_for("Alice voice"))
    assert not torch.equal(narrator_prompt.ref_spk_embedding, alice_prompt.ref_spk_embedding)
    generated = {}
    for job, text, voice in calls.items:
        generated[text] = (job, voice)
    assert set(generated) == set(LINES)
    for text, speaker in LINES.items():
        job, voice = generated[text]
        if speaker == "Bob":
            assert (job, voice) == (PRESET, ("vivian", "whispering"))
        else:
            expected = alice_prompt if speaker == "Alice" else narrator_prompt
            assert job == CLONE and torch.equal(voice.ref_spk_embedding, expected.ref_spk_embedding), text
    clone_calls = [c for c in calls.calls if c and isinstance(c[0], torch.Tensor)]
    mixed = any(len({tuple(e.flatten().tolist()) for e in c}) > 1 for c in clone_calls)
    # The fast engine's slots each hold their own prompt; qwen_tts's own loop takes one voice a call.
    assert mixed == (engine == "fast")

    rows = b.speaker_rows(tmp_path / "out")
    assert [r[:3] for r in rows] == [[NARRATOR, "Storyteller", 3], ["Alice", "Alice voice", 1], ["Bob", "vivian", 1]]
    saved = json.loads((tmp_path / "out" / "cast.json").read_text())
    assert {c["name"]: (c["lines"], c["voice"]) for c in saved["characters"]} == {"Alice": (1, "Alice voice"), "Bob": (1, "vivian")}


def test_styles_are_refused_on_the_small_models(tmp_path):
    path = tmp_path / "gate.txt"
    path.write_text(MARKUP_BOOK, encoding="utf-8")
    book = load_book(path)
    from audiobook.settings import Settings

    with pytest.raises(AudiobookError, match=r"^The 0\.6B models cannot follow a style instruction.*'whispering'.*1\.7B"):
        plan_book(book, Narrator(kind=PRESET, speaker="ryan"), Settings(model_size="0.6B"), tmp_path / "out")
    # without styles, the same book plans on 0.6B
    plain = replace(book, chapters=[replace(c, spans=[replace(s, style="") for s in c.spans]) for c in book.chapters])
    assert plan_book(plain, Narrator(kind=PRESET, speaker="ryan"), Settings(model_size="0.6B"), tmp_path / "out").chunks


def test_an_unknown_voice_in_the_cast_gives_a_sentence(cast_backend, tmp_path):
    path = tmp_path / "gate.txt"
    path.write_text(MARKUP_BOOK, encoding="utf-8")
    with pytest.raises(AudiobookError, match="Alice.*'Nobody'.*neither a saved voice nor a built-in speaker"):
        cast_backend.render(path, "Storyteller", out_dir=tmp_path / "out", cast=Cast([CastMember("Alice", voice="Nobody")]))


QUOTES_BOOK = """Chapter 1

"Hold fast," said Alice. The storm went on all night.

"Who is there?" someone asked.
"""


def test_cli_book_and_cast_commands_show_spans_and_cast(tmp_path, capsys, monkeypatch):
    path = tmp_path / "storm.txt"
    path.write_text(QUOTES_BOOK, encoding="utf-8")
    b = backend_module.Backend(root=tmp_path, settings_path=tmp_path / SETTINGS_FILE)
    monkeypatch.setattr(backend_module, "Backend", lambda models_dir=None: b)
    assert backend_module.main(["book", str(path), "--json", str(tmp_path / "storm.json")]) == 0
    assert "Cast: Alice (1), dialogue (1)" in capsys.readouterr().out
    data = json.loads((tmp_path / "storm.json").read_text())
    assert [(c["name"], c["lines"]) for c in data["cast"]] == [("Alice", 1), ("dialogue", 1)]
    spans = data["chapters"][0]["spans"]
    assert "".join(s["text"] for s in spans) == data["chapters"][0]["text"]
    assert [(s["text"], s["speaker"]) for s in spans if s["speaker"] != NARRATOR] == [
        ('"Hold fast,"', "Alice"), ('"Who is there?"', "dialogue")]

    assert backend_module.main(["cast", str(path), "--json", str(tmp_path / "cast.json")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["Alice", "1", "-", "(narrator)"] and '"Hold fast,"' in out
    assert Cast.from_dict(json.loads((tmp_path / "cast.json").read_text())).names() == ["Alice", "dialogue"]

    b.save_settings(llm_url="http://127.0.0.1:9/v1", llm_model="m", llm_timeout_s=5)
    assert backend_module.main(["cast", str(path), "--llm"]) == 2
    assert capsys.readouterr().err.startswith("Error: Could not reach the language model at http://127.0.0.1:9/v1/chat/completions")


@pytest.mark.slow
def test_cli_render_with_a_cast_file_and_a_dialogue_voice(cast_backend, tmp_path, capsys, monkeypatch):
    path = tmp_path / "storm.txt"
    path.write_text(QUOTES_BOOK, encoding="utf-8")
    cast_file = tmp_path / "cast.json"
    cast_file.write_text(json.dumps({"characters": [{"name": "Alice", "voice": "Alice voice"}]}))
    monkeypatch.setattr(backend_module, "Backend", lambda models_dir=None: cast_backend)
    cast_backend.apply_settings(cast_backend.settings.updated(engine="fast"))
    args = ["render", str(path), "--voice", "Storyteller", "--cast", str(cast_file), "--dialogue", "vivian",
            "--output", str(tmp_path / "out")]
    assert backend_module.main(args) in (0, 1)  # 1: a tiny model's take may be suspect
    m = mf.load_manifest(tmp_path / "out")
    said = {s.text: (s.speaker, s.voice) for s in m.chunks.values()}
    assert said['"Hold fast,"'] == ("Alice", "Alice voice")
    assert said['"Who is there?"'] == ("dialogue", "vivian")
    assert said["someone asked."] == (NARRATOR, "Storyteller")


def test_map_a_voice_and_hear_a_line(cast_backend, tmp_path):
    b = cast_backend
    path = tmp_path / "storm.txt"
    path.write_text(QUOTES_BOOK, encoding="utf-8")
    book, _ = b.label_book(load_book(path))
    mapped = b.map_voice(book, "Alice", "Alice voice")
    assert mapped.cast.voice_of("Alice") == "Alice voice" and book.cast.voice_of("Alice") == ""
    assert load_cast(b.cast_path(mapped)).voice_of("Alice") == "Alice voice"
    with pytest.raises(AudiobookError, match="'Nobody' is neither a saved voice nor a built-in speaker"):
        b.map_voice(book, "Alice", "Nobody")
    wav = b.hear_line(mapped, "Alice")
    assert sf.info(str(wav)).frames > 0
    with pytest.raises(AudiobookError, match="Pick a voice for dialogue first"):
        b.hear_line(mapped, "dialogue")


def test_edit_a_span_recounts_and_saves_the_cast(cast_backend, tmp_path):
    b = cast_backend
    path = tmp_path / "storm.txt"
    path.write_text(QUOTES_BOOK, encoding="utf-8")
    book = b.edit_span(load_book(path), 0, 2, speaker="Keeper", style="gruff")  # labels the book first
    spans = book.chapters[0].spans
    assert (spans[2].text, spans[2].speaker, spans[2].style) == ('"Who is there?"', "Keeper", "gruff")
    assert {m.name: m.lines for m in book.cast.members} == {"Alice": 1, "Keeper": 1}
    assert load_cast(b.cast_path(book)).names() == ["Alice", "Keeper"]


@pytest.mark.slow
def test_the_voice_check_judges_each_line_against_its_own_voice(cast_backend, tmp_path, monkeypatch):
    from audiobook.check import TakeChecker, cosine

    # The tiny speaker encoder's random weights hear every clip alike, so a line judged against the
    # wrong voice would score the same; a stand-in that tells clips apart makes the two voices differ.
    encoder = FirstSamples()
    monkeypatch.setattr(TakeChecker, "_speaker_encoder", lambda self: encoder)
    monkeypatch.setattr("audiobook.check.MIN_VOICE_S", 0.0)  # the tiny model's takes are short: judge them all
    b = cast_backend
    b.apply_settings(b.settings.updated(verify="on", engine="qwen_tts", max_retries=0))
    path = tmp_path / "gate.txt"
    path.write_text(MARKUP_BOOK, encoding="utf-8")
    try:
        b.render(path, "Storyteller", out_dir=tmp_path / "out", cast=Cast([CastMember("Alice", voice="Alice voice")]))
    finally:
        b.apply_settings(b.settings.updated(verify="off"))

    def embed(wav_path):
        wav, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
        return encoder.embed([wav.mean(axis=1)], sr)[0]

    clips = {name: embed(b.get_voice(name).reference_path) for name in ("Storyteller", "Alice voice")}
    m = mf.load_manifest(tmp_path / "out")
    for st in m.chunks.values():
        take = embed(tmp_path / "out" / st.file)
        own = cosine(take, clips[st.voice])
        other = cosine(take, clips[next(v for v in clips if v != st.voice)])
        assert abs(own - other) > 4e-3  # the two references score this take apart
        assert st.voice_similarity == pytest.approx(own, abs=2e-3), (st.speaker, st.voice)
    assert {s.voice for s in m.chunks.values()} == {"Storyteller", "Alice voice"}


class FirstSamples:
    """Stands in for the speaker encoder (whose tiny random weights hear every clip alike): a take's first samples."""

    def embed(self, wavs, sr):
        return [np.asarray(w, dtype=np.float64).ravel()[:256] for w in wavs]


def test_cast_voices_get_profiles_of_their_own(tmp_path):
    from audiobook.check import TakeCheck, TakeChecker, VoiceStats, cosine
    from audiobook.settings import Settings

    narrator_clip, alice_clip = tone_clip(tmp_path / "n.wav", 1), tone_clip(tmp_path / "a.wav", 2)
    narrator = Narrator(kind=CLONE, ref_audio=str(narrator_clip), name="Storyteller")
    alice = Narrator(kind=CLONE, ref_audio=str(alice_clip), name="Alice voice")
    bob = Narrator(kind=PRESET, speaker="vivian", name="vivian")
    checker = TakeChecker(Settings(), "cpu", narrator, "en")
    checker._voice_ready, checker._encoder = True, FirstSamples()
    checker.voice = VoiceStats(0.3, FirstSamples().embed([sf.read(str(narrator_clip))[0]], 24000)[0], fixed=True)
    assert checker._profile(None) is checker.voice and checker._profile(narrator) is checker.voice
    own = checker._profile(alice)
    assert own is not checker.voice and own.fixed
    alice_wav = sf.read(str(alice_clip))[0]
    assert own.similarity(FirstSamples().embed([alice_wav], 24000)[0]) == pytest.approx(1.0)
    assert checker.voice.similarity(FirstSamples().embed([alice_wav], 24000)[0]) < 0.9
    built_in = checker._profile(bob)  # no clip: learns from its own accepted takes
    assert not built_in.fixed
    checker.accepted(TakeCheck(0.0, "", None, "", np.ones(256)), bob)
    assert built_in._count == 1 and checker.voice._count == 0


@pytest.mark.slow
def test_review_lists_speakers_and_a_cast_line_is_fixed_in_its_own_voice(cast_backend, tmp_path):
    b = cast_backend
    b.apply_settings(b.settings.updated(engine="fast", verify="off"))
    path = tmp_path / "gate.txt"
    path.write_text(MARKUP_BOOK, encoding="utf-8")
    out = tmp_path / "out"
    b.render(path, "Storyteller", out_dir=out, cast=Cast([CastMember("Alice", voice="Alice voice"), CastMember("Bob", voice="vivian")]))
    rows = b.review(out)
    assert {r.text: (r.speaker, r.voice) for r in rows}["Who goes there at this hour of the night?"] == ("Alice", "Alice voice")
    alice = next(r for r in rows if r.speaker == "Alice")
    b.fix_chunk(out, alice.id, text="Who goes there, so late at night?", reroll=True)
    m = mf.load_manifest(out)
    fixed = [s for s in m.chunks.values() if s.text == "Who goes there, so late at night?"]
    assert len(fixed) == 1 and (fixed[0].speaker, fixed[0].voice, fixed[0].status) == ("Alice", "Alice voice", mf.DONE)
    assert fixed[0].attempts == 1 and alice.id not in {r.id for ch in m.chapters for r in ch.chunks}
