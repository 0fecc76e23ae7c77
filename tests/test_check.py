"""The take checks: decisions on given transcripts and embeddings, and the real pipeline on tiny models."""

import json

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
    marked_diff,
    resolve_verify_model,
    score_transcript,
    verify_enabled,
    whisper_language,
    words_for_compare,
)
from audiobook.text import normalize

# ---- normalisation ----------------------------------------------------------------------------


def test_numbers_agree_with_how_the_text_speaks_them():
    spoken = normalize("In 1851 the keeper climbed 112 stairs and paid $5.50 at 10:30.", "en")
    assert "eighteen fifty-one" in spoken
    heard = "In 1851, the keeper climbed 112 stairs and paid $5.50 at 10:30."
    assert words_for_compare(spoken) == words_for_compare(heard)
    assert score_transcript(spoken, heard).wer == 0.0


def test_case_punctuation_apostrophes_and_hyphens_do_not_count():
    assert words_for_compare("\"Don't,\" she said -- WELL-KNOWN!") == ["dont", "she", "said", "well", "known"]
    assert score_transcript("It's twenty-one o'clock.", "its twenty one oclock").wer == 0.0


def test_abbreviations_and_names():
    text = normalize("Dr. Hermione Okonkwo met Mr. Smith.", "en")
    # Whisper writes the abbreviation and spells the name its own way.
    s = score_transcript(text, "Dr. Hermoine Okonkwo met Mr. Smith.")
    assert s.wer == 0.0
    # A different name is a real error.
    assert score_transcript(text, "Doctor Harriet Okonkwo met Mister Smith.").wer == pytest.approx(1 / 6, abs=1e-3)


def test_non_english_text():
    de = normalize("Der Leuchtturm stand 1851 am Rand der Welt.", "de")
    assert score_transcript(de, "Der Leuchtturm stand 1851 am Rand der Welt.", "de").wer == 0.0
    assert score_transcript(de, "Der Leuchtturm stand am Rand.", "de").wer > 0.2
    fr = "L'élève était là, à Noël."
    assert score_transcript(fr, "l'élève était là à noël", "fr").wer == 0.0
    # Chinese compares character by character: one wrong character of ten.
    s = score_transcript("灯塔矗立在世界的边缘。", "灯塔矗立在世界的边源", "zh")
    assert s.wer == pytest.approx(0.1, abs=1e-4)


# ---- error rate, swallowed endings, loops ---------------------------------------------------------


def test_word_error_rate_counts_substitutions_deletions_insertions():
    text = "the storm came in from the west"
    assert score_transcript(text, "the storm came in from the west").wer == 0.0
    assert score_transcript(text, "the storm came in from the east").wer == pytest.approx(1 / 7, abs=1e-4)
    assert score_transcript(text, "the storm came from the west").wer == pytest.approx(1 / 7, abs=1e-4)
    assert score_transcript(text, "oh the storm came in from the west").wer == pytest.approx(1 / 7, abs=1e-4)
    assert score_transcript(text, "").wer == 1.0


def test_swallowed_ending_is_named():
    text = "The light did not go out that night."
    s = score_transcript(text, "The light did not go out")
    assert s.missing_end == ("that", "night")
    assert "swallowed its ending" in s.problem(max_wer=0.9)
    # A word missing in the middle is not an ending.
    assert score_transcript(text, "The light did go out that night.").missing_end == ()


def test_loops_are_found_unless_the_text_repeats_too():
    text = "He counted the stairs as he went up to the lamp."
    heard = "He counted the stairs as he went up to the lamp to the lamp to the lamp to the lamp"
    s = score_transcript(text, heard)
    assert s.loop == "'to the lamp' x4"
    assert s.problem(max_wer=5.0).startswith("repeats itself")
    # The text itself says it three times: saying it three times is no loop.
    said = "Knock knock knock, who is there?"
    assert score_transcript(said, "knock knock knock who is there").loop == ""
    assert find_loop("no no no no no".split(), "no".split()) == "'no' x5"


def test_problem_order_and_threshold():
    text = "one two three four five six seven eight nine ten"
    assert score_transcript(text, text).problem(0.3) == ""
    s = score_transcript(text, "one two three four five six seven eight nine hen")
    assert s.problem(0.3) == "" and "word error rate" in s.problem(0.05)


def test_marked_diff_marks_missing_and_heard_words():
    marks = marked_diff("the storm came in", "the storm went in")
    assert marks == [("the", None), ("storm", None), ("came", "missing"), ("went", "heard"), ("in", None)]


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
    out = t.transcribe([0.1 * rng.normal(size=24000).astype(np.float32), np.zeros(12000, np.float32)], 24000, "en", [3, 3])
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
    assert out[0]  # noise, but words


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
    assert all(s.voice_similarity is not None and -1.0 <= s.voice_similarity <= 1.0 for s in states)
    assert all(s.attempts == 2 for s in states)  # every take failed once and was taken again
    assert all(s.status == mf.SUSPECT and ("word error rate" in s.error or "repeats" in s.error) for s in states)
    assert {r.id for r in result.suspect} == {s.id for s in states}
    assert any("taking them again with another seed" in line for line in "\n".join(logged).splitlines())
    assert len(result.chapter_files) == 2  # suspects are kept and assembled
