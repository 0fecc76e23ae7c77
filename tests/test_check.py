"""The take checks: the corpus of verdicts, each rule, the normaliser, Whisper on tiny models, a missing Whisper."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiobook import check
from audiobook import manifest as mf
from audiobook.books import Book, Chapter
from audiobook.check import (
    CPU_MODEL,
    GPU_MODEL,
    VOICE_MIN_SAMPLES,
    Transcriber,
    VoiceStats,
    find_loop,
    judge,
    marked_diff,
    resolve_verify_model,
    verify_enabled,
    whisper_language,
    words_for_compare,
)
from audiobook.check.rules import RULES, align, same_name, sounds_alike

CORPUS = json.loads((Path(__file__).parent / "data" / "check_corpus.json").read_text(encoding="utf-8"))["cases"]


def _verdict(case):
    return judge(case["text"], case["heard"], case["lang"], case.get("segments", ()), case.get("respellings"))


# ---- the corpus ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
def test_corpus_case(case):
    """Each case through the function the render uses; a known miss is asserted as what it is."""
    v = _verdict(case)
    if case["verdict"] == "pass" or case.get("known") == "miss":
        assert v.passed, f"{case['id']}: flagged ({v.reason})"
    else:
        assert v.rule == case["rule"], f"{case['id']}: {v.rule or 'passed'} ({v.reason}), expected {case['rule']}"
        assert v.reason and "\n" not in v.reason


def test_corpus_covers_the_languages_and_meets_the_targets():
    langs = Counter(c["lang"] for c in CORPUS)
    assert len(CORPUS) >= 80 and set(langs) >= {"en", "de", "fr", "ru", "zh", "ja"}
    good = [c for c in CORPUS if c["verdict"] == "pass"]
    bad = [c for c in CORPUS if c["verdict"] == "fail"]
    false_flags = [c["id"] for c in good if not _verdict(c).passed]
    misses = [c for c in bad if _verdict(c).passed]
    assert not false_flags
    assert not [c["id"] for c in misses if c["kind"] != "meaning"]  # every structural failure is caught
    meaning = [c for c in bad if c["kind"] == "meaning"]
    missed_meaning = [c for c in misses if c["kind"] == "meaning"]
    assert len(missed_meaning) * 5 <= 2 * len(meaning)  # at most 2 in 5 one-word changes of meaning pass
    decided = {c["rule"] for c in bad if c.get("known") != "miss"}
    assert decided == set(RULES)  # every rule decides at least one case


# ---- the normaliser --------------------------------------------------------------------------------


def test_one_normaliser_on_both_sides():
    # Whisper's English normaliser: spelling table, contractions, numbers as digits.
    assert words_for_compare("The colour of it; he can't go, twenty-one.") == ["the", "color", "of", "it", "he", "can",
                                                                               "not", "go", "21"]
    assert words_for_compare("Kapitel IV, 10 000 Männer", "de") == ["kapitel", "4", "10000", "männer"]
    assert words_for_compare("dix mille hommes", "fr") == ["10000", "hommes"]
    assert words_for_compare("Ёлка", "ru") == ["елка"]
    assert words_for_compare("這裡沒有燈", "zh") == list("这里没有灯")
    assert words_for_compare("私", "ja") == list("わたし")
    assert words_for_compare("I went to Chapter V", "en")[:1] == ["i"]  # English "I" stays a word


def test_names_compounds_and_respellings_in_the_alignment():
    assert same_name("hermione", "hermoine") and not same_name("prussians", "russians")  # one inside the other
    ops = align(["to", "day"], ["today"])
    assert [(o.op, o.ref, o.hyp) for o in ops] == [("=", ("to", "day"), ("today",))]
    # Spelling similarity only for words the book writes with a capital inside a sentence.
    assert judge("They met Hermione that evening.", "They met Hermoine that evening.", max_wer=0.1).passed
    assert judge("They were quiet that evening.", "They were quite that evening.", max_wer=0.1).rule == "wer"
    text, heard = "Qwen spoke softly to the keeper.", "Chwen spoke softly to the keeper."
    assert judge(text, heard, respellings={"Qwen": "chwen"}, max_wer=0.1).passed
    assert judge(text, heard, max_wer=0.1).rule == "wer"


def test_short_texts_pass_one_substitution_that_sounds_alike():
    assert sounds_alike("prologue", "prolog") and not sounds_alike("epilogue", "chapter")
    assert judge("Prologue", "Prolog.").passed
    assert judge("Epilogue", "Chapter.").rule == "wer"
    assert judge("Dramatis Personae", "Dramatis Persona.").passed
    assert judge("Part the Second", "Part the Secant").rule == "number"  # a number is never let through


# ---- each rule ------------------------------------------------------------------------------------------


def test_word_error_rate_and_threshold():
    text = "one two three four five six seven eight nine ten"
    assert judge(text, text).wer == 0.0
    v = judge("the storm came in from the west", "the storm came in from the east")
    assert v.wer == pytest.approx(1 / 7, abs=1e-4) and v.passed
    assert judge("the storm came in from the west", "the storm came in from the east", max_wer=0.1).rule == "wer"
    assert judge("the storm came in", "").rule == "skip"  # a whole sentence not heard


def test_loops_are_found_unless_the_text_repeats_too():
    text = "He counted the stairs as he went up to the lamp."
    v = judge(text, "He counted the stairs as he went up to the lamp to the lamp to the lamp to the lamp")
    assert v.rule == "loop" and "'to the lamp' x4" in v.reason
    assert judge("Knock knock knock, who is there?", "knock knock knock who is there").passed
    assert find_loop("no no no no no".split(), "no".split()) == "'no' x5"


def test_speech_after_the_last_word_needs_segment_times():
    text = "The bells rang at noon."
    one = [{"start": 0.0, "end": 2.0, "text": "The bells rang at noon."}]
    assert judge(text, text, segments=one).passed
    more = one + [{"start": 2.0, "end": 3.4, "text": "uh"}]
    assert judge(text, text + " uh", segments=more).passed  # 1.4 s: under the limit
    more = one + [{"start": 2.0, "end": 3.8, "text": "and then the"}]
    v = judge(text, text + " and then the", segments=more)
    assert v.rule == "tail" and v.reason.startswith("1.8 s of speech after the last word")


def test_the_diff_marks_what_the_rule_is_about():
    text = "The bells rang over the harbour at noon. Nobody knew why."
    v = judge(text, "Nobody knew why.")
    assert v.rule == "skip" and v.span == ("ref", 0, 8)
    marks = marked_diff(text, v.transcript, "en", span=v.span)
    assert [w for w, k in marks if k == "flagged"] == ["the", "bells", "rang", "over", "the", "harbor", "at", "noon"]
    assert marked_diff("the storm came in", "the storm went in") == [
        ("the", None), ("storm", None), ("came", "missing"), ("went", "heard"), ("in", None)]


# ---- voice -----------------------------------------------------------------------------------------


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_voice_outlier_against_the_books_own_takes():
    rng = np.random.default_rng(0)
    centre = _unit(rng.normal(size=64))
    stats = VoiceStats(floor=0.3)
    takes = [_unit(centre + 0.03 * rng.normal(size=64)) for _ in range(2 * VOICE_MIN_SAMPLES)]
    for i, e in enumerate(takes):
        sim = stats.similarity(e)
        if i < VOICE_MIN_SAMPLES:
            assert sim is None  # a built-in speaker: nothing to compare with yet
        else:
            assert sim > 0.9 and stats.problem(sim) == ""
        stats.add(e, sim)
    # A drifted take is far below the book's spread but above the floor.
    drifted = _unit(centre + 0.12 * rng.normal(size=64))
    sim = stats.similarity(drifted)
    assert 0.3 < sim < 0.9
    assert "drifts" in stats.problem(sim)
    # Another voice entirely falls below the floor.
    other = _unit(rng.normal(size=64))
    assert "another voice" in stats.problem(stats.similarity(other))


def test_voice_against_a_reference_clip():
    ref = _unit(np.arange(1, 33))
    stats = VoiceStats(floor=0.5, reference=ref, fixed=True)
    assert stats.similarity(ref) == pytest.approx(1.0)
    assert stats.problem(stats.similarity(-ref)).startswith("sounds like another voice")


# ---- settings -> model ------------------------------------------------------------------------------


def test_verify_modes_and_model_defaults(tmp_path):
    assert verify_enabled("on", "cpu") and not verify_enabled("auto", "cpu") and verify_enabled("auto", "cuda:0")
    assert not verify_enabled("off", "cuda:0")
    assert resolve_verify_model("auto", "cuda:0", None) == GPU_MODEL
    assert resolve_verify_model("auto", "cpu", str(tmp_path)) == CPU_MODEL
    local = tmp_path / "whisper-small"
    local.mkdir()
    (local / "config.json").write_text("{}")
    assert resolve_verify_model("auto", "cpu", str(tmp_path)) == str(local)
    assert resolve_verify_model("openai/whisper-small", "cuda", str(tmp_path)) == str(local)
    assert whisper_language("English") == "en" and whisper_language("auto") is None


def test_missing_whisper_is_one_sentence(tmp_path, monkeypatch, no_network):
    import huggingface_hub.constants
    import huggingface_hub.utils

    # The hub library read HF_HUB_OFFLINE when it was imported; its constant is what it consults now.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    try:
        with pytest.raises(check.AudiobookError) as e:
            Transcriber("openai/whisper-nonexistent-check")
    finally:
        huggingface_hub.utils.reset_sessions()  # a session made offline stays offline: later tests get a new one
    assert "verify setting off" in str(e.value) and "\n" not in str(e.value)
    assert no_network == []  # offline: refused without trying the hub


# ---- the real models -------------------------------------------------------------------------------


def test_tiny_whisper_loads_like_a_released_one(tiny_models_dir):
    folder = tiny_models_dir / "whisper-large-v3-turbo"
    for name in ("config.json", "generation_config.json", "tokenizer.json", "preprocessor_config.json"):
        assert (folder / name).is_file()
    gen = json.loads((folder / "generation_config.json").read_text())
    assert "<|en|>" in gen["lang_to_id"] and "transcribe" in gen["task_to_id"]
    t = Transcriber(str(folder))
    rng = np.random.default_rng(1)
    out = t.transcribe([0.1 * rng.normal(size=24000).astype(np.float32), np.zeros(12000, np.float32)], 24000, "en",
                       ["the storm came", "in"])
    assert len(out) == 2 and all(isinstance(h.text, str) for h in out)
    assert out[0].text  # noise, but words, with Whisper's segment times
    assert all(s.end >= s.start >= 0 for h in out for s in h.segments)
    # The token limit follows the reference's own token count: twice it, plus room for timestamps.
    assert t.token_limit(["word"]) < t.token_limit(["word " * 40]) <= check.whisper.MAX_TARGET_TOKENS
    assert isinstance(t.detect_language([0.1 * rng.normal(size=16000).astype(np.float32)], 16000), str)


def test_speaker_encoder_loads_alone_from_a_base_checkpoint(tiny_models_dir):
    folder = check.base_checkpoint_on_disk("1.7B", str(tiny_models_dir))
    assert folder is not None and folder.name.endswith("-Base")
    enc = check.SpeakerEncoder.from_checkpoint(folder)
    rng = np.random.default_rng(2)
    a, b = enc.embed([0.1 * rng.normal(size=24000).astype(np.float32)] * 2, 24000)
    assert a.shape == b.shape and check.cosine(a, b) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_render_with_the_check_scores_every_chunk_retries_and_lists_suspects(tmp_path, tiny_models_dir):
    """Tiny Whisper hears noise: every take fails, is taken again, the best is kept as suspect."""
    import backend

    be = backend.Backend(root=tmp_path, models_dir=str(tiny_models_dir))
    be.save_settings(device="cpu", max_new_tokens=100, batch_size=4, chunk_chars=80, verify="on", max_retries=1,
                     engine="qwen_tts", make_m4b=False)
    clip = tmp_path / "ref.wav"
    sf.write(str(clip), 0.1 * np.random.default_rng(3).normal(size=24000).astype(np.float32), 24000)
    from audiobook.tts import Narrator

    narrator = Narrator(kind="clone", ref_audio=str(clip), x_vector_only=True)
    book = Book("Checked", [Chapter("One", "The storm came in from the west. The light did not go out."),
                            Chapter("Two", "He counted one hundred and twelve stairs.")], language="en")
    logged: list[str] = []
    result = be.render(book, narrator, out_dir=tmp_path / "out", on_progress=lambda p: logged.append(p.message))
    m = mf.load_manifest(tmp_path / "out")
    states = list(m.chunks.values())
    assert states and all(s.wer is not None and s.transcript is not None for s in states)
    assert all(s.rule in check.RULES and s.segments is not None for s in states)
    # The voice is judged on takes of 3 s or more only (a speaker embedding of a short take is noise).
    for s in states:
        judged = s.voice_similarity is not None
        assert judged == (s.duration_s >= check.MIN_VOICE_S), (s.duration_s, s.voice_similarity)
        assert not judged or -1.0 <= s.voice_similarity <= 1.0
    assert all(s.attempts == 2 for s in states)  # every take failed once and was taken again
    assert all(s.status == mf.SUSPECT and s.error for s in states)
    assert {r.id for r in result.suspect} == {s.id for s in states}
    assert any("taking them again with another seed" in line for line in "\n".join(logged).splitlines())
    assert len(result.chapter_files) == 2  # suspects are kept and assembled


def test_render_with_verify_on_and_no_whisper_on_disk_says_so_and_calls_no_hub(tmp_path, tiny_models_dir, monkeypatch):
    """The hub would serve the checkpoint, but nothing is downloaded unasked: one sentence, no request."""
    import backend
    from tests.hub_server import LocalHub

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    for folder in tiny_models_dir.iterdir():
        if folder.is_dir() and not folder.name.startswith("whisper"):
            (models_dir / folder.name).symlink_to(folder)
    hub = LocalHub()
    hub.add_folder(CPU_MODEL, tiny_models_dir / "whisper-small")
    hub.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        check.unload_models()
        be = backend.Backend(root=tmp_path, models_dir=str(models_dir))
        be.save_settings(device="cpu", max_new_tokens=64, batch_size=2, chunk_chars=80, verify="on",
                         engine="qwen_tts", make_m4b=False)
        book = Book("Unchecked", [Chapter("One", "The storm came in from the west.")], language="en")
        with pytest.raises(check.AudiobookError) as e:
            be.render(book, _clone(tmp_path), out_dir=tmp_path / "out")
        assert "whisper-small" in str(e.value) and "--download" in str(e.value) and "\n" not in str(e.value)
        assert hub.requests == []
    finally:
        hub.stop()


def _clone(tmp_path):
    from audiobook.tts import Narrator

    clip = tmp_path / "ref.wav"
    sf.write(str(clip), 0.1 * np.random.default_rng(3).normal(size=24000).astype(np.float32), 24000)
    return Narrator(kind="clone", ref_audio=str(clip), x_vector_only=True)


class HeardAs:
    """Stands in for Whisper: hears each take as the given text, and detects one language."""

    def __init__(self, texts, language="de"):
        self.texts, self.language, self.detected, self.calls = list(texts), language, 0, []

    def detect_language(self, wavs, sr):
        self.detected += 1
        return self.language

    def transcribe(self, wavs, sr, language=None, texts=None):
        self.calls.append((language, list(texts)))
        seg = check.Segment(0.0, 1.0, "")
        return [check.Heard(t, (check.Segment(0.0, 1.0, t),) if t else (seg,)) for t in self.texts[:len(wavs)]]


def test_the_checker_compares_with_the_book_text_and_the_dictionary(monkeypatch):
    from audiobook.settings import Settings
    from audiobook.tts import Narrator

    heard = HeardAs(["In 1851 Qwen climbed 112 stairs.", "In 1851 chwen climbed 112 stairs."])
    monkeypatch.setattr(check.TakeChecker, "transcriber", property(lambda self: heard))
    checker = check.TakeChecker(Settings(verify="on"), "cpu", Narrator(kind="preset", speaker="ryan"), "en")
    checker.respellings = {"Qwen": "chwen"}
    checker._voice_ready = True  # no speaker encoder: transcripts only
    spoken = "In eighteen fifty-one chwen climbed one hundred and twelve stairs."
    wavs = [np.zeros(16000, np.float32)] * 2
    out = checker.check([spoken, spoken], wavs, 16000, book_texts=["In 1851 Qwen climbed 112 stairs."] * 2)
    assert [c.reason for c in out] == ["", ""] and all(c.wer == 0.0 for c in out)
    assert heard.calls == [("en", ["In 1851 Qwen climbed 112 stairs."] * 2)]  # the book text sizes the token limit
    assert out[0].segments[0].text == "In 1851 Qwen climbed 112 stairs."
    assert all(c.voice_similarity is None for c in out)
    # A year said wrong fails by its rule, whatever the error rate.
    heard.texts = ["In 1815 Qwen climbed 112 stairs."]
    bad = checker.check([spoken], wavs[:1], 16000, book_texts=["In 1851 Qwen climbed 112 stairs."])[0]
    assert (bad.rule, bad.reason) == ("number", "said 1815 for 1851") and bad.span == ("ref", 1, 2)


def test_the_language_of_a_book_without_one_is_detected_once(monkeypatch):
    from audiobook.settings import Settings
    from audiobook.tts import Narrator

    heard = HeardAs(["Es kamen 10.000 Menschen."] * 2, language="de")
    monkeypatch.setattr(check.TakeChecker, "transcriber", property(lambda self: heard))
    checker = check.TakeChecker(Settings(verify="on"), "cpu", Narrator(kind="preset", speaker="ryan"), "auto",
                                note=lambda line: None)
    checker._voice_ready = True
    for _ in range(2):
        out = checker.check(["Es kamen zehntausend Menschen."], [np.zeros(16000, np.float32)], 16000,
                            book_texts=["Es kamen 10 000 Menschen."])
        assert out[0].reason == ""
    assert heard.detected == 1 and [lang for lang, _ in heard.calls] == ["de", "de"]
