"""The manifest: stable chunk ids, carrying work over, adopting files, damaged records."""

import json
from dataclasses import replace

import numpy as np
import pytest

from audiobook import manifest as mf
from audiobook.books import Book, Chapter
from audiobook.errors import AudiobookError
from audiobook.render import RenderOptions, plan_book
from audiobook.settings import Settings
from audiobook.text import Chunk
from audiobook.tts import GenerationOptions, Narrator

RYAN = Narrator(kind="preset", speaker="ryan")
OPTS = GenerationOptions()


def key(narrator=RYAN, opts=OPTS, size="1.7B", language="en"):
    return mf.RenderKey.make(narrator, opts, size, language)


def chunks_of(*chapters):
    out = []
    for ci, texts in enumerate(chapters):
        out += [Chunk(ci, i, t, chapter_end=i == len(texts) - 1) for i, t in enumerate(texts)]
    return out


def plan(tmp_path, chapters, k=None, previous=None, redo=()):
    titles = [f"Chapter {i + 1}" for i in range(len(chapters))]
    return mf.plan_manifest({"title": "B"}, titles, chunks_of(*chapters), k or key(), tmp_path, previous, redo)


def finish(tmp_path, m, ids=None):
    """Pretend a render made every chunk in ``ids`` (default: all)."""
    for i in ids or list(m.chunks):
        st = m.chunks[i]
        st.file = mf.write_chunk_audio(tmp_path, i, np.full(2400, 0.1, dtype=np.float32))
        st.status, st.duration_s, st.attempts = mf.DONE, 0.1, 1
    mf.save_manifest(m, tmp_path)
    return m


def test_chunk_id_depends_on_text_voice_options_model_and_language():
    base = mf.chunk_id("Hello.", key().digest())
    assert base == mf.chunk_id("Hello.", key().digest())  # stable
    assert len(base) == mf.ID_LENGTH
    others = [
        mf.chunk_id("Hello!", key().digest()),
        mf.chunk_id("Hello.", key(narrator=Narrator(kind="preset", speaker="vivian")).digest()),
        mf.chunk_id("Hello.", key(narrator=replace(RYAN, instruct="Whisper.")).digest()),
        mf.chunk_id("Hello.", key(opts=replace(OPTS, temperature=0.5)).digest()),
        mf.chunk_id("Hello.", key(opts=replace(OPTS, seed=7)).digest()),
        mf.chunk_id("Hello.", key(opts=replace(OPTS, max_new_tokens=1024)).digest()),
        mf.chunk_id("Hello.", key(size="0.6B").digest()),
        mf.chunk_id("Hello.", key(language="de").digest()),
    ]
    assert len(set(others + [base])) == len(others) + 1


def test_clone_identity_hashes_the_reference_clip(tmp_path):
    clip = tmp_path / "ref.wav"
    clip.write_bytes(b"one")
    a = key(narrator=Narrator(kind="clone", ref_audio=str(clip), ref_text="Hi.")).digest()
    clip.write_bytes(b"two")
    b = key(narrator=Narrator(kind="clone", ref_audio=str(clip), ref_text="Hi.")).digest()
    assert a != b
    assert key(narrator=Narrator(kind="clone", ref_audio=str(clip), ref_text="Hi.")).checkpoint.endswith("-Base")


def test_pauses_do_not_change_chunk_ids(tmp_path):
    book = Book("B", [Chapter("One", "First sentence here. Second one there.")])
    a = plan_book(book, RYAN, Settings(), tmp_path / "a")
    b = plan_book(book, RYAN, Settings(pause_chunk_ms=900, pause_chapter_ms=100, loudness_lufs=-20.0), tmp_path / "b")
    assert a.ordered_ids() == b.ordered_ids()
    c = plan_book(book, RYAN, Settings(model_size="0.6B"), tmp_path / "c")
    assert not set(a.ordered_ids()) & set(c.ordered_ids())


def test_save_and_load_round_trip(tmp_path):
    m = finish(tmp_path, plan(tmp_path, [["A one.", "A two."], ["B one."]]), ids=None)
    m.chunks[m.ordered_ids()[0]].error = "note"
    mf.save_manifest(m, tmp_path)
    back = mf.load_manifest(tmp_path)
    assert back.to_dict() == m.to_dict()
    assert not list(tmp_path.glob(".manifest.json.*"))  # no temp file left behind


def test_missing_manifest_is_none(tmp_path):
    assert mf.load_manifest(tmp_path) is None


def test_replan_keeps_done_and_edit_resets_only_changed_chunks(tmp_path):
    m = finish(tmp_path, plan(tmp_path, [["A one.", "A two."], ["B one.", "B two."]]))
    again = plan(tmp_path, [["A one.", "A two."], ["B one.", "B two."]], previous=mf.load_manifest(tmp_path))
    assert again.count(mf.DONE) == 4
    edited = plan(tmp_path, [["A one.", "A two."], ["B one.", "B two, changed."]], previous=m)
    pending = [s.text for s in edited.chunks.values() if s.status == mf.PENDING]
    assert pending == ["B two, changed."]
    assert edited.count(mf.DONE) == 3


def test_voice_change_makes_everything_pending(tmp_path):
    m = finish(tmp_path, plan(tmp_path, [["A one.", "A two."]]))
    other = plan(tmp_path, [["A one.", "A two."]], k=key(narrator=Narrator(kind="preset", speaker="vivian")), previous=m)
    assert other.count(mf.PENDING) == 2


def test_repeated_text_is_one_chunk(tmp_path):
    m = plan(tmp_path, [["Same.", "Other."], ["Same."]])
    assert len(m.chunks) == 2
    assert m.chapters[0].chunks[0].id == m.chapters[1].chunks[0].id


def test_files_on_disk_are_adopted_without_a_manifest(tmp_path):
    m = finish(tmp_path, plan(tmp_path, [["A one.", "A two."], ["B one."]]))
    mf.manifest_path(tmp_path).unlink()
    rebuilt = plan(tmp_path, [["A one.", "A two."], ["B one."]])
    assert rebuilt.count(mf.DONE) == 3
    assert {s.file for s in rebuilt.chunks.values()} == {s.file for s in m.chunks.values()}
    assert all(s.duration_s == pytest.approx(0.1) for s in rebuilt.chunks.values())


def test_done_chunk_whose_file_vanished_is_pending(tmp_path):
    m = finish(tmp_path, plan(tmp_path, [["A one.", "A two."]]))
    first = m.ordered_ids()[0]
    (tmp_path / m.chunks[first].file).unlink()
    again = plan(tmp_path, [["A one.", "A two."]], previous=m)
    assert again.chunks[first].status == mf.PENDING


def test_failed_and_suspect_states_are_carried(tmp_path):
    m = finish(tmp_path, plan(tmp_path, [["A one.", "A two."]]))
    a, b = m.ordered_ids()
    m.chunks[a].status, m.chunks[a].error = mf.SUSPECT, "too long"
    m.chunks[b] = mf.ChunkState(b, "A two.", mf.FAILED, attempts=3, error="out of memory")
    again = plan(tmp_path, [["A one.", "A two."]], previous=m)
    assert (again.chunks[a].status, again.chunks[a].error) == (mf.SUSPECT, "too long")
    assert (again.chunks[b].status, again.chunks[b].attempts) == (mf.FAILED, 3)


def test_redo_makes_a_chunk_pending_and_removes_its_old_take(tmp_path):
    m = finish(tmp_path, plan(tmp_path, [["A one.", "A two."]]))
    a = m.ordered_ids()[0]
    again = plan(tmp_path, [["A one.", "A two."]], previous=m, redo=[a])
    assert again.chunks[a].status == mf.PENDING and again.chunks[a].attempts == 1
    assert not (tmp_path / mf.chunk_file(a)).exists()
    with pytest.raises(AudiobookError, match="no chunk with id"):
        plan(tmp_path, [["A one."]], previous=m, redo=["0" * 20])


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],  # half-written
    lambda text: "",
    lambda text: "\x00\x00garbage",
    lambda text: json.dumps({"format": "something else"}),
    lambda text: text.replace('"status":"done"', '"status":"finished"', 1),
    lambda text: json.dumps({**json.loads(text), "chunks": {}}),
])
def test_damaged_manifest_is_a_clear_error_with_a_way_out(tmp_path, damage):
    m = finish(tmp_path, plan(tmp_path, [["A one.", "A two."]]))
    path = mf.manifest_path(tmp_path)
    path.write_text(damage(path.read_text()))
    with pytest.raises(AudiobookError, match="damaged.*rebuild"):
        mf.load_manifest(tmp_path)
    book = Book("B", [Chapter("One", "A one. A two.")])
    with pytest.raises(AudiobookError, match="rebuild"):
        plan_book(book, RYAN, Settings(), tmp_path)
    damaged = path.read_bytes()
    aside = mf.set_aside_manifest(tmp_path)
    assert not path.exists() and aside.read_bytes() == damaged  # kept for a look, out of the way
    # The way out works: with the damaged file aside, a new plan adopts both chunks from their files.
    again = plan(tmp_path, [["A one.", "A two."]])
    assert again.count(mf.DONE) == len(m.chunks) == 2
    assert {s.file for s in again.chunks.values()} == {s.file for s in m.chunks.values()}


def test_rebuild_recovers_done_chunks_from_files(tmp_path):
    book = Book("B", [Chapter("One", "First sentence here. Second one there.")])
    m = plan_book(book, RYAN, Settings(chunk_chars=50), tmp_path)
    finish(tmp_path, m)
    mf.manifest_path(tmp_path).write_text("{not json")
    rebuilt = plan_book(book, RYAN, Settings(chunk_chars=50), tmp_path, RenderOptions(rebuild=True))
    assert rebuilt.count(mf.DONE) == len(m.chunks) > 1


def test_resume_of_a_thousand_chunks_reads_no_audio(tmp_path, monkeypatch):
    """Re-planning a 1,000-chunk manifest keeps every chunk and opens none of their audio files.

    Opening the audio is what would make a resume slow on a long book; how long planning takes
    is measured by ``bench/quick.py``."""
    chapters = [[f"Chapter {c} sentence {i} says something a little longer than a title." for i in range(50)]
                for c in range(20)]
    m = plan(tmp_path, chapters)
    mf.write_chunk_audio(tmp_path, "one", np.zeros(2400, dtype=np.float32))
    data = (tmp_path / mf.chunk_file("one")).read_bytes()
    for i, st in m.chunks.items():  # plain writes: the test is about planning, not fsync
        st.file = mf.chunk_file(i)
        (tmp_path / st.file).write_bytes(data)
        st.status, st.duration_s, st.attempts = mf.DONE, 0.1, 1
    mf.save_manifest(m, tmp_path)
    assert len(m.chunks) == 1000
    opened = []
    real_info = mf.sf.info
    monkeypatch.setattr(mf.sf, "info", lambda *a, **kw: opened.append(a) or real_info(*a, **kw))
    loaded = mf.load_manifest(tmp_path)
    again = plan(tmp_path, chapters, previous=loaded)
    assert again.count(mf.DONE) == 1000
    assert again.to_dict()["chunks"] == loaded.to_dict()["chunks"]
    assert opened == []
    # Without the manifest the files are adopted, and then each one is read once.
    mf.manifest_path(tmp_path).unlink()
    assert plan(tmp_path, chapters).count(mf.DONE) == 1000
    assert len(opened) == 1000
