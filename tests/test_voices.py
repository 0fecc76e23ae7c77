"""The voice library: names, clip checks, design/clone/preset previews, the prompt cache, sharing, the CLI."""

import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import backend as backend_module
from audiobook import clips, files, previews, voices
from audiobook.errors import AudiobookError
from audiobook.settings import SETTINGS_FILE
from audiobook.tts import CLONE, DESIGN, PRESET, GenerationOptions
from audiobook.files import SAMPLE_RATE
from audiobook.voices import Voice, VoiceLibrary

BOOK = "Chapter 1: Dawn\n\nThe sun rose over the hills. A bird sang.\n\nChapter 2: Dusk\n\nThe sun set. All was quiet.\n"


# ---- test clips: synthetic speech-like tones, or espeak-ng speech; never recordings of people ----


def speech_like(seconds: float, level: float = 0.3, seed: int = 0) -> np.ndarray:
    """Syllable-like harmonic bursts with short gaps and a longer pause every two seconds."""
    rng = np.random.default_rng(seed)
    out, total = [], 0
    target = int(seconds * SAMPLE_RATE)
    since_pause = 0.0
    while total < target:
        dur = rng.uniform(0.12, 0.25)
        t = np.arange(int(dur * SAMPLE_RATE)) / SAMPLE_RATE
        f0 = rng.uniform(100, 220)
        burst = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
        burst *= np.hanning(len(t)) * level / 1.8
        gap = 0.45 if since_pause > 2.0 else rng.uniform(0.03, 0.08)
        since_pause = 0.0 if gap > 0.4 else since_pause + dur + gap
        out += [burst, np.zeros(int(gap * SAMPLE_RATE))]
        total += len(t) + int(gap * SAMPLE_RATE)
    return np.concatenate(out)[:target].astype(np.float32)


def write(path: Path, wav: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    sf.write(str(path), wav, sr, subtype="PCM_16" if np.abs(wav).max() <= 1 else "FLOAT")
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run([files.ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def spoken_clip(tmp_path_factory) -> Path:
    """About six seconds of synthetic speech from espeak-ng (a tone sequence where it is missing)."""
    out = tmp_path_factory.mktemp("clips") / "spoken.wav"
    exe = shutil.which("espeak-ng")
    if exe:
        text = "The lighthouse keeper climbed one hundred and twelve stairs, and then he lit the lamp for the ships."
        subprocess.run([exe, "-s", "140", "-w", str(out), text], check=True)
    else:
        write(out, speech_like(6.0))
    return out


# ---- the backend on tiny checkpoints ---------------------------------------------------------


@pytest.fixture(scope="module")
def models_dir(request, tmp_path_factory) -> Path:
    try:
        return Path(request.getfixturevalue("tiny_models_dir"))
    except pytest.FixtureLookupError:
        from audiobook.tiny import build_tiny_models

        out = tmp_path_factory.mktemp("models")
        build_tiny_models(out)
        return out


class Spy:
    """Records which models load and which clone prompts are made."""

    def __init__(self, tts):
        self.loads: list[tuple[str, str]] = []
        self.prompts: list[tuple] = []
        tts.on_load = lambda job, source: self.loads.append((job, source))
        real = tts.clone_prompt

        def clone_prompt(ref_audio, ref_text="", x_vector_only=False):
            self.prompts.append((ref_audio, ref_text, x_vector_only))
            return real(ref_audio, ref_text, x_vector_only)

        tts.clone_prompt = clone_prompt

    def jobs(self) -> list[str]:
        return [job for job, _ in self.loads]


@pytest.fixture(scope="module")
def shared_backend(models_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    b = backend_module.Backend(root=root, settings_path=root / SETTINGS_FILE, models_dir=str(models_dir))
    # small and plain: the voice, not the render loop, is under test here
    b.apply_settings(b.settings.updated(device="cpu", max_new_tokens=128, batch_size=5, max_retries=0, make_m4b=False))
    return b


@pytest.fixture
def bk(shared_backend, tmp_path):
    """The shared backend with an empty voice library and the 1.7B models."""
    b = shared_backend
    b.apply_settings(b.settings.updated(voices_dir=str(tmp_path / "voices"), model_size="1.7B"))
    b.spy = Spy(b.tts)
    yield b
    b.tts.on_load = None
    del b.tts.clone_prompt


@pytest.fixture
def book(tmp_path) -> Path:
    p = tmp_path / "book.txt"
    p.write_text(BOOK, encoding="utf-8")
    return p


# ---- names -------------------------------------------------------------------------------


def test_slugs_are_safe_and_readable(tmp_path):
    assert voices.voice_slug("  Ólafur’s   voice 🎙 ") == "Ólafur’s voice 🎙"
    assert voices.voice_slug("CON") == "_CON" and voices.voice_slug("nul.txt") == "_nul.txt"
    assert voices.voice_slug("a/b\\c:d") == "a_b_c_d"
    lib = VoiceLibrary(tmp_path / "voices")
    for name in ("../../escape", "..\\..\\escape", "/etc/passwd", ".hidden", "C:\\x"):
        folder = lib.folder(name)
        assert folder.parent == lib.root and not folder.name.startswith(".")


@pytest.mark.parametrize(
    "name, words",
    [("", "Give the voice a name"), ("   ", "Give the voice a name"), ("..", "letter or digit"),
     ("???", "letter or digit"), ("x" * 81, "at most 80 characters")],
)
def test_bad_names_are_refused_with_a_sentence(tmp_path, name, words):
    lib = VoiceLibrary(tmp_path)
    with pytest.raises(AudiobookError, match=words):
        lib.save(Voice(name=name, kind="preset", speaker="ryan"))
    assert not any(tmp_path.iterdir())


def test_duplicate_names_ask_before_overwriting(tmp_path):
    lib = VoiceLibrary(tmp_path)
    lib.save(Voice(name="Anna", kind="preset", speaker="ryan"))
    for same in ("Anna", "anna", " ANNA "):
        with pytest.raises(AudiobookError, match="'Anna' already exists; confirm to overwrite"):
            lib.save(Voice(name=same, kind="preset", speaker="eric"))
    lib.save(Voice(name="Anna", kind="preset", speaker="eric"), overwrite=True)
    assert [(v.name, v.speaker) for v in lib.list()] == [("Anna", "eric")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Anna"]  # no staging leftovers


def test_rename_and_delete(tmp_path):
    lib = VoiceLibrary(tmp_path)
    lib.save(Voice(name="Anna", kind="cloned", reference_text="hi"), reference=speech_like(4))
    lib.save(Voice(name="Bob", kind="preset", speaker="ryan"))
    (tmp_path / "Anna" / "clone_prompt-1.7B.pt").write_bytes(b"cache")
    with pytest.raises(AudiobookError, match="'Bob' already exists"):
        lib.rename("Anna", "bob")
    v = lib.rename("Anna", "Anne Marie")
    assert v.folder == tmp_path / "Anne Marie" and (v.folder / "clone_prompt-1.7B.pt").exists()
    assert lib.get("anne marie").reference_text == "hi"
    assert lib.rename("Anne Marie", "ANNE MARIE").name == "ANNE MARIE"  # case-only rename
    lib.delete("ANNE MARIE")
    assert lib.names() == ["Bob"]
    with pytest.raises(AudiobookError, match="There is no voice called 'Anna'. Saved voices: Bob."):
        lib.get("Anna")


# ---- clips --------------------------------------------------------------------------------


def test_every_bad_clip_gets_a_clear_sentence(tmp_path, spoken_clip):
    write(tmp_path / "silent.wav", np.zeros(SAMPLE_RATE * 5, dtype=np.float32))
    loud = np.clip(speech_like(6, level=1.0) * 4, -1, 1)
    write(tmp_path / "clipped.wav", loud)
    write(tmp_path / "short.wav", np.concatenate([np.zeros(SAMPLE_RATE), speech_like(1.5), np.zeros(SAMPLE_RATE * 2)]))
    (tmp_path / "notes.mp3").write_text("these are my notes, not a song\n" * 20)
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=16x16:d=1", "-frames:v", "1", str(tmp_path / "picture.png"))
    ffmpeg("-i", str(spoken_clip), str(tmp_path / "whole.m4a"))
    (tmp_path / "broken.m4a").write_bytes((tmp_path / "whole.m4a").read_bytes()[:300])
    (tmp_path / "empty.wav").write_bytes(b"")
    cases = {
        "silent.wav": "is silent",
        "clipped.wav": "is clipped",
        "short.wav": r"too short: 1\.\d s of sound; a voice needs at least 3 s",
        "notes.mp3": "is not audio",
        "picture.png": "has no sound in it",
        "broken.m4a": "is damaged",
        "empty.wav": "is empty",
        "missing.wav": "could not be found",
    }
    for name, words in cases.items():
        with pytest.raises(AudiobookError, match=words) as err:
            clips.prepare_clip(tmp_path / name, has_transcript=True)
        assert str(err.value).endswith(".") and "\n" not in str(err.value), name


@pytest.mark.parametrize("ext", [".mp3", ".flac", ".m4a", ".ogg", ".wav", ".webm", ".opus"])
def test_every_format_decodes_to_mono_24k(tmp_path, spoken_clip, ext):
    ref, sr = sf.read(str(spoken_clip))
    stereo = tmp_path / f"clip{ext}"
    rate = "48000" if ext in (".webm", ".opus") else "44100"  # Opus (a browser's recording) runs at 48 kHz
    ffmpeg("-i", str(spoken_clip), "-ac", "2", "-ar", rate, str(stereo))
    wav = clips.load_clip(stereo)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) / SAMPLE_RATE - len(ref) / sr) < 0.1  # codec padding only
    clip = clips.prepare_clip(stereo, has_transcript=True)
    assert clips.MIN_CLIP_S <= clip.duration_s <= len(ref) / sr + 0.1
    assert abs(np.abs(clip.wav).max() - clips.TARGET_PEAK) < 0.01


def test_silence_is_trimmed_and_quiet_clips_raised(tmp_path):
    body = speech_like(4, level=0.005)  # 96000 samples: 6 s when read at 16 kHz
    write(tmp_path / "padded.wav", np.concatenate([np.zeros(2 * 16000), body, np.zeros(16000)]), sr=16000)
    clip = clips.prepare_clip(tmp_path / "padded.wav", has_transcript=True)
    assert 1.8 <= clip.start_s <= 2.0
    assert 5.7 <= clip.duration_s <= 6.3
    assert any("very quiet" in w for w in clip.warnings)


def test_long_clip_without_transcript_uses_the_best_window(tmp_path):
    # 10 s of near-silence hum, then 20 s of speech: the window must come from the speech
    hum = 0.002 * np.sin(2 * np.pi * 50 * np.arange(10 * SAMPLE_RATE) / SAMPLE_RATE)
    wav = np.concatenate([speech_like(2, seed=1), hum, speech_like(20, seed=2)]).astype(np.float32)
    write(tmp_path / "long.wav", wav)
    clip = clips.prepare_clip(tmp_path / "long.wav", has_transcript=False)
    assert clips.BEST_MIN_S <= clip.duration_s <= clips.BEST_MAX_S + 0.01
    assert clip.start_s >= 12.0
    assert any("is used" in w for w in clip.warnings)
    with pytest.raises(AudiobookError, match="too long to match its transcript"):
        clips.prepare_clip(tmp_path / "long.wav", has_transcript=True)
    write(tmp_path / "bit_long.wav", speech_like(17))
    clip = clips.prepare_clip(tmp_path / "bit_long.wav", has_transcript=True)
    assert clip.duration_s > 16 and any("clones best" in w for w in clip.warnings)


# ---- design, clone, preset with the tiny checkpoints ---------------------------------------


def test_design_save_then_render_clones_the_saved_clip_with_the_base_model(bk, book, tmp_path):
    bk.tts.unload()  # another test may have left a model resident: the preview must load VoiceDesign itself
    first = bk.preview_design("a warm, elderly storyteller", "en", seed=7)
    assert bk.spy.jobs() == [DESIGN]
    assert bk.spy.loads[0][1].endswith("Qwen3-TTS-12Hz-1.7B-VoiceDesign")
    assert first.voice.seed == 7 and first.voice.reference_text == previews.DEFAULT_REFERENCE_TEXT
    assert first.wav_path.is_file() and sf.info(str(first.wav_path)).samplerate == SAMPLE_RATE
    again = bk.preview_design("a warm, elderly storyteller", "en")
    assert again.voice.seed != 7
    voice = bk.save_voice(first, "Storyteller", notes="for the sea stories")
    assert voice.kind == "designed" and voice.model == "Qwen3-TTS-12Hz-1.7B-VoiceDesign"
    stored = json.loads((voice.folder / "voice.json").read_text())
    assert stored["description"] == "a warm, elderly storyteller" and stored["notes"] == "for the sea stories"
    saved, sr = sf.read(str(voice.folder / "reference.wav"), dtype="float32")
    assert sr == SAMPLE_RATE and np.allclose(saved, first.reference, atol=1 / 32768)

    bk.spy.loads.clear()
    result = bk.render(book, "storyteller", out_dir=tmp_path / "out")
    assert len(result.chapter_files) == 2
    jobs = bk.spy.jobs()
    assert jobs == [CLONE], jobs  # only the Base model narrates a designed voice
    assert bk.spy.loads[0][1].endswith("Qwen3-TTS-12Hz-1.7B-Base")
    assert len(bk.spy.prompts) == 1  # once per render, not per batch
    ref_audio, ref_text, x_vector_only = bk.spy.prompts[0]
    assert ref_text == previews.DEFAULT_REFERENCE_TEXT and not x_vector_only
    wav, sr = ref_audio
    assert sr == SAMPLE_RATE and np.allclose(wav, saved, atol=1e-4)


def test_clone_prompt_cache_is_reused_and_rebuilt_when_the_reference_changes(bk, book, tmp_path, spoken_clip):
    preview = bk.preview_clone(spoken_clip, "The lighthouse keeper climbed the stairs.")
    voice = bk.save_voice(preview, "Keeper")
    bk.spy.prompts.clear()
    bk.render(book, "Keeper", out_dir=tmp_path / "r1")
    cache = voice.folder / "clone_prompt-1.7B.pt"
    assert len(bk.spy.prompts) == 1 and cache.is_file()
    bk.render(book, "Keeper", out_dir=tmp_path / "r2")
    assert len(bk.spy.prompts) == 1  # loaded from the cache
    first = bk.clone_prompt_for(bk.narrator_for("Keeper"))
    assert first.icl_mode and first.ref_text == "The lighthouse keeper climbed the stairs."

    write(voice.folder / "reference.wav", speech_like(5, seed=3))  # the clip changes
    bk.clone_prompt_for(bk.narrator_for("Keeper"))
    assert len(bk.spy.prompts) == 2
    data = json.loads((voice.folder / "voice.json").read_text())
    data["reference_text"] = "Different words."
    (voice.folder / "voice.json").write_text(json.dumps(data))
    prompt = bk.clone_prompt_for(bk.narrator_for("Keeper"))  # the text changes
    assert len(bk.spy.prompts) == 3 and prompt.ref_text == "Different words."
    cache.write_bytes(b"not a torch file")  # a damaged cache is rebuilt, not fatal
    bk.clone_prompt_for(bk.narrator_for("Keeper"))
    assert len(bk.spy.prompts) == 4

    bk.apply_settings(bk.settings.updated(model_size="0.6B"))  # another size has its own cache
    bk.clone_prompt_for(bk.narrator_for("Keeper"))
    assert (voice.folder / "clone_prompt-0.6B.pt").is_file() and len(bk.spy.prompts) == 5


def test_clone_without_transcript_is_x_vector_only_and_says_so(bk, spoken_clip):
    preview = bk.preview_clone(spoken_clip)
    assert any("x-vector only" in w and "weaker" in w for w in preview.warnings)
    assert bk.spy.prompts[-1][2] is True
    voice = bk.save_voice(preview, "Keeper plain")
    narrator = bk.narrator_for(voice.name)
    assert narrator.kind == "clone" and narrator.x_vector_only and narrator.ref_text == ""
    prompt = bk.clone_prompt_for(narrator)
    assert prompt.x_vector_only_mode and prompt.ref_code is None


def test_preset_with_and_without_instruct(bk, book, tmp_path, monkeypatch):
    speakers = bk.speakers()
    assert speakers and bk.supports_instruct()
    plain = bk.save_voice(bk.preview_preset(speakers[0]), "Plain")
    styled = bk.save_voice(bk.preview_preset(speakers[1], "slow and solemn"), "Solemn")
    assert (plain.speaker, plain.instruct, styled.instruct) == (speakers[0], "", "slow and solemn")
    assert styled.preview_path is not None and styled.reference_path is None
    assert bk.narrator_for("Solemn").instruct == "slow and solemn"
    bk.spy.loads.clear()
    asked = []  # (speaker, instruction) of every model call the render makes
    real_preset = bk.tts.preset

    def recording_preset(texts, speaker, instruct, *args, **kwargs):
        # One speaker and instruction per text (a list), or one for the whole call.
        pairs = zip(speaker, instruct) if isinstance(speaker, list) else [(speaker, instruct)]
        asked.extend(pairs)
        return real_preset(texts, speaker, instruct, *args, **kwargs)

    monkeypatch.setattr(bk.tts, "preset", recording_preset)
    bk.render(book, "Solemn", out_dir=tmp_path / "out")
    assert asked and set(asked) == {(speakers[1], "slow and solemn")}  # the saved voice's speaker and style
    assert set(bk.spy.jobs()) <= {PRESET} and bk.tts.loaded.job == PRESET and not bk.spy.prompts

    bk.apply_settings(bk.settings.updated(model_size="0.6B"))
    assert not bk.supports_instruct()
    with pytest.raises(AudiobookError, match="0.6B built-in speakers cannot follow a style instruction"):
        bk.preview_preset(speakers[0], "whispering")
    with pytest.raises(AudiobookError, match="cannot follow a style instruction"):
        bk.render(book, "Solemn", out_dir=tmp_path / "out2")
    with pytest.raises(AudiobookError, match="cannot follow a style instruction"):  # e.g. render --speaker --instruct
        bk.tts.preset(["Hello."], speakers[0], "whispering", "en", GenerationOptions(max_new_tokens=64))
    small = bk.preview_preset(speakers[0])
    assert small.voice.model == "Qwen3-TTS-12Hz-0.6B-CustomVoice" and small.audio.size
    with pytest.raises(AudiobookError, match="no built-in speaker called 'nobody'"):
        bk.preview_preset("nobody")


# ---- sharing -------------------------------------------------------------------------------


def test_export_import_round_trip(tmp_path):
    lib = VoiceLibrary(tmp_path / "voices")
    ref = speech_like(4)
    original = lib.save(Voice(name="Ünïcode Voice", kind="designed", description="bright", reference_text="Hello."),
                        reference=ref, preview=ref[:1000])
    (original.folder / "clone_prompt-1.7B.pt").write_bytes(b"cache")
    zpath = lib.export_zip("Ünïcode Voice", tmp_path / "shared")
    assert zpath.name == "Ünïcode Voice.zip"
    with zipfile.ZipFile(zpath) as zf:
        assert sorted(zf.namelist()) == sorted(f"Ünïcode Voice/{m}" for m in ("voice.json", "reference.wav", "preview.wav"))
    other = VoiceLibrary(tmp_path / "elsewhere")
    imported = other.import_zip(zpath)
    assert imported == original and imported.folder.parent == other.root
    a, _ = sf.read(str(original.folder / "reference.wav"))
    b, _ = sf.read(str(imported.folder / "reference.wav"))
    assert np.array_equal(a, b) and imported.preview_path is not None
    with pytest.raises(AudiobookError, match="already exists"):
        other.import_zip(zpath)
    assert other.import_zip(zpath, name="Copy").name == "Copy"
    assert other.import_zip(zpath, overwrite=True).name == "Ünïcode Voice"


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_bad_imports_are_refused(tmp_path):
    lib = VoiceLibrary(tmp_path / "voices")
    good_json = json.dumps({"name": "X", "kind": "designed", "reference_text": "Hi."}).encode()
    buf = io.BytesIO()
    sf.write(buf, speech_like(3), SAMPLE_RATE, format="WAV")
    wav = buf.getvalue()
    cases = {
        "traversal": ({"../../evil/voice.json": good_json, "x/reference.wav": wav}, "unsafe path"),
        "absolute": ({"/tmp/voice.json": good_json}, "unsafe path"),
        "no record": ({"x/reference.wav": wav}, "has no voice.json"),
        "no clip": ({"x/voice.json": good_json}, "has no reference.wav"),
        "bad json": ({"x/voice.json": b"{nope"}, "not valid JSON"),
        "bad kind": ({"x/voice.json": json.dumps({"name": "X", "kind": "robot"}).encode()}, "'kind' must be one of"),
        "bad clip": ({"x/voice.json": good_json, "x/reference.wav": b"RIFFjunk"}, "not a readable wav"),
        "huge": ({"x/voice.json": b" " * (300 * 1024)}, "larger than a voice file can be"),
        "two voices": ({"a/voice.json": good_json, "b/voice.json": good_json}, "more than one voice"),
    }
    for label, (members, words) in cases.items():
        with pytest.raises(AudiobookError, match=words):
            lib.import_zip(_zip(tmp_path / f"{label}.zip", members))
    (tmp_path / "plain.zip").write_text("not a zip")
    with pytest.raises(AudiobookError, match="not a voice archive"):
        lib.import_zip(tmp_path / "plain.zip")
    assert not (tmp_path / "evil").exists() and lib.list() == []
    # a cache or stray file inside the zip is ignored, never extracted
    ok = lib.import_zip(_zip(tmp_path / "ok.zip", {"x/voice.json": good_json, "x/reference.wav": wav,
                                                    "x/clone_prompt-1.7B.pt": b"pickle!"}))
    assert sorted(p.name for p in ok.folder.iterdir()) == ["reference.wav", "voice.json"]


# ---- the command line -----------------------------------------------------------------------


def test_cli_creates_lists_and_renders_with_voices(bk, book, tmp_path, spoken_clip, monkeypatch, capsys):
    monkeypatch.setattr(backend_module, "Backend", lambda models_dir=None: bk)
    speaker = bk.speakers()[0]
    assert backend_module.main(["voice", "preset", "Reader", "--speaker", speaker, "--instruct", "calm"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert Path(out[-1]).is_file() and out[-1].endswith("preview.wav")
    assert backend_module.main(["voice", "clone", "Keeper", "--audio", str(spoken_clip)]) == 0
    captured = capsys.readouterr()
    assert "x-vector only" in captured.err and Path(captured.out.strip().splitlines()[-1]).is_file()
    assert backend_module.main(["voice", "design", "Teller", "--description", "an old sailor", "--seed", "3"]) == 0
    capsys.readouterr()
    assert backend_module.main(["voice", "design", "teller", "--description", "again"]) == 2
    assert "already exists; add --overwrite" in capsys.readouterr().err
    assert backend_module.main(["voices"]) == 0
    listing = capsys.readouterr().out
    assert "Keeper\tcloned" in listing and "Reader\tpreset" in listing and "Teller\tdesigned" in listing
    bk.spy.loads.clear()
    assert backend_module.main(["render", str(book), "--voice", "Teller", "--output", str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out").glob("0* - *.wav"))) == 2
    assert bk.spy.jobs() == [CLONE] and bk.spy.prompts[-1][1] == previews.DEFAULT_REFERENCE_TEXT
    assert backend_module.main(["voice", "clone", "Bad", "--audio", str(tmp_path / "nope.wav")]) == 2
    assert "could not be found" in capsys.readouterr().err
