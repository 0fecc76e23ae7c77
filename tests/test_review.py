"""Reviewing and fixing a rendered book from the command line: review, fix --text/--reroll/--accept, sample, --chapters."""

import json
import os
import shutil

import pytest
import soundfile as sf

import backend
from audiobook import cli
from audiobook import manifest as mf
from audiobook.errors import AudiobookError
from audiobook.tts import Narrator

BOOK = """Chapter 1

The first chapter has two short sentences. Here is the second one.

Chapter 2

The second chapter is short. It ends here.
"""


def _stamp(path):
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


@pytest.fixture(scope="module")
def rendered_once(tmp_path_factory, tiny_models_dir):
    """A two-chapter book rendered with the check on (tiny Whisper flags every chunk); m4b written. Once a module."""
    root = tmp_path_factory.mktemp("rendered")
    be = backend.Backend(root=root, models_dir=str(tiny_models_dir))
    be.save_settings(device="cpu", max_new_tokens=80, batch_size=4, chunk_chars=60, verify="on", max_retries=0,
                     engine="qwen_tts")
    book = root / "two.txt"
    book.write_text(BOOK)
    result = be.render(book, Narrator(kind="preset", speaker="ryan"), out_dir=root / "out")
    assert result.complete and result.suspect  # done, with suspects
    return root


@pytest.fixture
def rendered(rendered_once, tmp_path, monkeypatch):
    """A copy of that render (and its project folder) of this test's own; returns its output folder."""
    root = tmp_path / "project"
    shutil.copytree(rendered_once, root)
    monkeypatch.setenv("AUDIOBOOK_ROOT", str(root))
    monkeypatch.chdir(root)
    return root / "out"


@pytest.mark.slow
def test_review_lists_flagged_chunks_and_writes_json(rendered, capsys):
    assert backend.main(["review", str(rendered), "--flagged", "--json", str(rendered.parent / "r.json")]) == 0
    printed = capsys.readouterr().out
    rows = json.loads((rendered.parent / "r.json").read_text())
    m = mf.load_manifest(rendered)
    assert len(rows) == len(m.chunks) and f"{len(rows)} chunks listed, {len(rows)} flagged." in printed
    for r in rows:
        assert set(r) == {"id", "chapter", "index", "text", "status", "wer", "transcript", "voice_similarity",
                          "duration_s", "attempts", "speaker", "voice", "rule", "reason", "book_text"}
        assert r["speaker"] == "narrator"
        assert r["status"] == "suspect" and r["wer"] is not None and r["transcript"] is not None and r["attempts"] == 1
        assert r["id"] in printed
        # Why it is flagged: the rule and its reason, on the chunk's line.
        assert r["rule"] and r["reason"]
        line = next(ln for ln in printed.splitlines() if r["id"] in ln)
        assert line.endswith(f"\t{r['rule']}: {r['reason']}")
    assert [r["chapter"] for r in rows] == sorted(r["chapter"] for r in rows)


@pytest.mark.slow
def test_fix_text_touches_only_that_chunk_its_chapter_and_the_book(rendered, tiny_models_dir, capsys):
    m = mf.load_manifest(rendered)
    target = m.chapters[0].chunks[1].id
    others = {i: _stamp(rendered / s.file) for i, s in m.chunks.items() if i != target}
    ch1, ch2 = rendered / m.chapters[0].file, rendered / m.chapters[1].file
    m4b = rendered / "two.m4b"
    before = {p: os.stat(p).st_mtime_ns for p in (ch1, ch2, m4b)}

    code = backend.main(["fix", str(rendered), target, "--text", "Here is the 2nd one, edited.",
                         "--models-dir", str(tiny_models_dir)])
    assert code == 0, capsys.readouterr().err
    after = mf.load_manifest(rendered)
    new = after.chapters[0].chunks[1].id
    assert new != target and after.chunks[new].text == "Here is the second one, edited."
    assert (rendered / after.chunks[new].file).is_file() and after.chunks[new].wer is not None
    assert target not in after.chunks
    for i, stamp in others.items():
        assert _stamp(rendered / after.chunks[i].file) == stamp  # same inode, mtime and bytes
    assert os.stat(ch1).st_mtime_ns > before[ch1] and os.stat(m4b).st_mtime_ns > before[m4b]
    assert os.stat(ch2).st_mtime_ns == before[ch2]

    # The edit survives a re-plan: rendering the same book again keeps it and generates nothing.
    assert backend.main(["render", str(rendered.parent / "two.txt"), "--speaker", "ryan", "--output", str(rendered),
                         "--models-dir", str(tiny_models_dir)]) == 1
    assert "Rendered 0 chunks" in capsys.readouterr().out
    assert mf.load_manifest(rendered).chapters[0].chunks[1].id == new


@pytest.mark.slow
def test_fix_reroll_and_accept(rendered, tiny_models_dir, capsys):
    m = mf.load_manifest(rendered)
    target = m.chapters[1].chunks[1].id
    seed_before = m.chunks[target].seed
    assert backend.main(["fix", str(rendered), target, "--reroll", "--models-dir", str(tiny_models_dir)]) == 0
    after = mf.load_manifest(rendered).chunks[target]
    assert after.attempts == 2 and after.seed != seed_before
    assert backend.main(["fix", str(rendered), target, "--accept"]) == 0
    assert mf.load_manifest(rendered).chunks[target].status == mf.ACCEPTED
    capsys.readouterr()
    assert backend.main(["review", str(rendered), "--flagged"]) == 0
    listed = capsys.readouterr().out
    still_flagged = [i for i in m.chunks if i != target]  # tiny Whisper flags every other chunk
    assert target not in listed and all(i in listed for i in still_flagged)
    assert f"{len(still_flagged)} chunks listed, {len(still_flagged)} flagged." in listed
    assert backend.main(["fix", str(rendered), "0123456789abcdef0123", "--accept"]) == 2
    assert "There is no chunk 0123456789abcdef0123" in capsys.readouterr().err


@pytest.mark.slow
def test_render_only_some_chapters(tmp_path, tiny_models_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    book = tmp_path / "two.txt"
    book.write_text(BOOK)
    out = tmp_path / "out"
    be = backend.Backend(root=tmp_path, models_dir=str(tiny_models_dir))
    be.apply_settings(be.settings.updated(device="cpu", max_new_tokens=64, chunk_chars=60, verify="off"))
    result = be.render(book, Narrator(kind="preset", speaker="ryan"), out_dir=out, chapters=[2])
    m = mf.load_manifest(out)
    assert [bool(ch.file) for ch in m.chapters] == [False, True] and not result.book_files
    assert all(m.chunks[r.id].status == mf.PENDING for r in m.chapters[0].chunks)
    result = be.render(book, Narrator(kind="preset", speaker="ryan"), out_dir=out, chapters=[1])
    assert result.reused == len(m.chapters[1].chunks) and any(p.suffix == ".m4b" for p in result.book_files)
    with pytest.raises(AudiobookError, match="no chapter 3"):
        be.render(book, Narrator(kind="preset", speaker="ryan"), out_dir=out, chapters=[3])
    with pytest.raises(AudiobookError):
        cli.parse_chapters("2-1")
    assert cli.parse_chapters("1,3-5") == [1, 3, 4, 5]


@pytest.mark.slow
def test_sample_writes_the_start_of_a_chapter(tmp_path, tiny_models_dir, monkeypatch, capsys):
    from audiobook.tts import TTS

    narrated = []  # what the model was asked to say, and how long each take came out
    real_narrate = TTS.narrate

    def recording_narrate(self, narrator, texts, *args, **kwargs):
        wavs = real_narrate(self, narrator, texts, *args, **kwargs)
        narrated.append((narrator.speaker, list(texts), [len(w) for w in wavs]))
        return wavs

    monkeypatch.setattr(TTS, "narrate", recording_narrate)
    monkeypatch.setenv("AUDIOBOOK_ROOT", str(tmp_path))
    (tmp_path / "user_settings.json").write_text(json.dumps({"device": "cpu", "max_new_tokens": 64, "chunk_chars": 60}))
    book = tmp_path / "two.txt"
    book.write_text(BOOK)
    code = backend.main(["sample", str(book), "--speaker", "ryan", "--chapter", "2", "--seconds", "2",
                         "--models-dir", str(tiny_models_dir), "--output", str(tmp_path / "s.wav")])
    assert code == 0
    path = capsys.readouterr().out.strip().splitlines()[-1]
    assert path == str(tmp_path / "s.wav")
    info = sf.info(path)
    assert info.samplerate == 24000
    # Chapter 2's opening words, read by ryan, and no more than about two seconds' worth of text.
    (speaker, texts, lengths), = narrated
    assert speaker == "ryan" and texts and "second chapter is short" in " ".join(texts)
    assert not any("first chapter" in t for t in texts)
    assert "It ends here" not in " ".join(texts[:-1])  # it stops once about 2 s of text is picked
    # The file is those takes in that order with the render's pauses between them (under 2 s each).
    assert sum(lengths) < info.frames <= sum(lengths) + len(texts) * 2 * 24000
    assert backend.main(["sample", str(book), "--speaker", "ryan", "--chapter", "9",
                         "--models-dir", str(tiny_models_dir)]) == 2
    assert "There is no chapter 9" in capsys.readouterr().err
