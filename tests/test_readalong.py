"""The read-along EPUB 3: sentence fragments, media overlays, epubcheck."""

import posixpath
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import unquote

import pytest
from lxml import etree

from audiobook.books import load_book
from audiobook.errors import AudiobookError
from audiobook.files import SAMPLE_RATE, ffmpeg_command
from audiobook.fragments import Pages
from audiobook.readalong import build_readalong, clock
from audiobook.render import RenderOptions, RenderResult, render_events
from audiobook.settings import Settings
from audiobook.timings import load_timings
from audiobook.tts import Narrator

sys.path.insert(0, str(Path(__file__).parent))
from test_timings import PausingTTS  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
EPUBCHECK = Path("/usr/share/java/epubcheck.jar")
OPF = "{http://www.idpf.org/2007/opf}"
SMIL = "{http://www.w3.org/ns/SMIL}"
RYAN = Narrator(kind="preset", speaker="ryan")


def corpus(name: str) -> Path:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"the shared EPUB corpus is not here ({CORPUS})")
    return path


def epubcheck_errors(path: Path) -> list[str]:
    if not EPUBCHECK.is_file():
        pytest.fail("epubcheck is not installed; `make epubcheck` installs Debian's package.")
    # A short run: the quick compiler alone and the serial collector halve the JVM's CPU time.
    run = subprocess.run(["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-jar", str(EPUBCHECK), str(path)],
                         capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert "Messages:" in out, out
    return [line for line in out.splitlines() if line.startswith(("ERROR", "FATAL"))]


def check_overlays(epub: Path, out_dir: Path) -> dict:
    """Every sentence fragment has exactly one clip; each chapter's clips are in order, do not overlap,
    and the last ends within 0.5 s of the chapter's audio; the durations add up."""
    timings = load_timings(out_dir)
    with zipfile.ZipFile(epub) as zf:
        names = zf.namelist()
        assert names[0] == "mimetype" and zf.getinfo("mimetype").compress_type == zipfile.ZIP_STORED
        container = etree.fromstring(zf.read("META-INF/container.xml"))
        opf_path = next(e for e in container.iter() if str(e.tag).endswith("rootfile")).get("full-path")
        opf_dir = posixpath.dirname(opf_path)
        opf = etree.fromstring(zf.read(opf_path))
        items = {i.get("id"): i for i in opf.iter(f"{OPF}item")}
        metas = [(m.get("property"), m.get("refines"), m.text) for m in opf.iter(f"{OPF}meta")]
        assert ("media:narrator", None, "Ryan") in metas
        fragments, clips_of_audio, seen_pages = {}, {}, set()
        overlay_durations = 0.0
        for item in items.values():
            if item.get("media-type") != "application/smil+xml":
                continue
            smil_path = posixpath.join(opf_dir, unquote(item.get("href")))
            smil = etree.fromstring(zf.read(smil_path))
            total = 0.0
            for par in smil.iter(f"{SMIL}par"):
                text, audio = par.find(f"{SMIL}text"), par.find(f"{SMIL}audio")
                page, _, frag = unquote(text.get("src")).partition("#")
                page = posixpath.normpath(posixpath.join(posixpath.dirname(smil_path), page))
                fragments[(page, frag)] = fragments.get((page, frag), 0) + 1
                seen_pages.add(page)
                a, b = float(audio.get("clipBegin").rstrip("s")), float(audio.get("clipEnd").rstrip("s"))
                src = posixpath.normpath(posixpath.join(posixpath.dirname(smil_path), unquote(audio.get("src"))))
                clips_of_audio.setdefault(src, []).append((a, b))
                total += b - a
            own = next(v for p, r, v in metas if p == "media:duration" and r == f"#{item.get('id')}")
            assert own == clock(total)
            overlay_durations += round(total, 3)
        assert next(v for p, r, v in metas if p == "media:duration" and r is None) == clock(overlay_durations)
        assert fragments and set(fragments.values()) == {1}  # exactly one clip per fragment
        for page in seen_pages:  # ... and every sentence span in the pages has its clip
            ids = set(re.findall(r'<span id="(ra-[^"]+)"', zf.read(page).decode("utf-8")))
            assert ids == {f for p, f in fragments if p == page}
        assert len(clips_of_audio) == len(timings)
        for src, clips in clips_of_audio.items():
            n = int(re.search(r"chapter-(\d+)", src).group(1))
            assert all(a < b for a, b in clips)
            assert all(x[1] <= y[0] + 1e-9 for x, y in zip(clips, clips[1:]))  # in order, no overlap
            duration = _audio_seconds(zf.read(src), src)
            assert abs(duration - timings[n].duration) < 0.1
            assert abs(clips[-1][1] - duration) <= 0.5
    return {"fragments": len(fragments), "pages": seen_pages}


def _audio_seconds(data: bytes, name: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:  # MP4 is read from a file, not a pipe
        path = Path(tmp) / posixpath.basename(name)
        path.write_bytes(data)
        run = subprocess.run(ffmpeg_command(["-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"]),
                             capture_output=True, check=True)
    return len(run.stdout) / 4 / SAMPLE_RATE


def fake_render(book_path: Path, out: Path, **options):
    s = Settings(device="cpu", max_new_tokens=2000, chunk_chars=300, make_m4b=False, verify="off",
                 duration_outlier_factor=20.0)
    result = RenderResult(out_dir=out)
    list(render_events(load_book(book_path), RYAN, s, out, PausingTTS(0.004), result, options=RenderOptions(**options)))
    return result


# ---- on the tiny models, through the command line ---------------------------------------------


def test_tiny_render_of_a_multi_chapter_epub_and_a_txt_book_makes_valid_read_along_epubs(tmp_path, tiny_models_dir):
    import json

    from test_render import backend_for

    small = dict(device="cpu", batch_size=6, max_new_tokens=64, chunk_chars=400, verify="off", make_m4b=False,
                 duration_outlier_factor=20.0, runaway_margin_s=0.0)
    (tmp_path / "user_settings.json").write_text(json.dumps(small))
    src = corpus("wasteland.epub")  # many chapters in one XHTML file; two short ones are rendered
    out = tmp_path / "wl"
    done = _cli("render", str(src), "--speaker", "ryan", "--chapters", "1,5", "--readalong", "--output", str(out),
                "--models-dir", str(tiny_models_dir), root=tmp_path)
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: the render listed suspect takes (random weights)
    epub = out / "The Waste Land (read-along).epub"
    assert "Read-along EPUB written" in done.stdout and str(epub) in done.stdout
    assert epubcheck_errors(epub) == []
    found = check_overlays(epub, out)
    assert found["pages"] == {"EPUB/wasteland-content.xhtml"} and found["fragments"] >= 5
    with zipfile.ZipFile(epub) as zf, zipfile.ZipFile(src) as original:
        assert {"EPUB/wasteland-cover.jpg", "EPUB/wasteland.css"} <= set(zf.namelist())  # the book's own files
        assert zf.read("EPUB/wasteland.css") == original.read("EPUB/wasteland.css")
    before = epub.stat().st_mtime_ns
    again = _cli("readalong", str(out), root=tmp_path)  # later, from the finished render: nothing is rendered
    assert again.returncode == 0 and "the source EPUB's own pages" in again.stdout, again.stderr[-2000:]
    assert epub.stat().st_mtime_ns != before and not list((out / "chunks").glob("*.tmp*"))

    be = backend_for(tmp_path, tiny_models_dir, **{**small, "make_readalong": True})
    txt = tmp_path / "story.txt"
    txt.write_text("The Story\n\nChapter 1\n\nIt was a dark night. The year was 1851, and it rained.\n\n"
                   "Chapter 2\n\n\"Hello,\" she said. Then she went home.\n", encoding="utf-8")
    result = be.render(txt, RYAN, out_dir=tmp_path / "txt")
    epub = tmp_path / "txt" / "story (read-along).epub"
    assert epub in result.book_files
    assert epubcheck_errors(epub) == []
    check_overlays(epub, tmp_path / "txt")


def _cli(*args, root: Path):
    import os

    env = {**os.environ, "AUDIOBOOK_ROOT": str(root)}
    return subprocess.run([sys.executable, "backend.py", *args], cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True, timeout=600, env=env)


# ---- fast renders (a narrator that pauses between sentences) -----------------------------------


def test_epub_read_along_keeps_the_book_and_marks_its_sentences(tmp_path):
    src = corpus("childrens-literature.epub")  # many chapters in one XHTML file
    fake_render(src, tmp_path, chapters=(1, 2, 3))
    made = build_readalong(tmp_path, src)
    assert made.from_source and made.chapters == 3 and made.sentences > 50
    assert epubcheck_errors(made.path) == []
    found = check_overlays(made.path, tmp_path)
    assert found["pages"] == {"EPUB/s04.xhtml"}
    with zipfile.ZipFile(made.path) as zf:
        page = zf.read("EPUB/s04.xhtml").decode("utf-8")
    assert '<p><span id="ra-c3-s2">The difficulties of classification are very apparent here' in page


def test_read_along_needs_an_assembled_render(tmp_path):
    with pytest.raises(AudiobookError, match="holds no render"):
        build_readalong(tmp_path)


def test_pages_wrap_sentences_across_inline_markup_and_keep_existing_ids():
    page = ('<html xmlns="http://www.w3.org/1999/xhtml"><head><title>t</title></head><body>'
            '<p id="ra-c1-s1">Intro.</p>'
            '<p>First <em>bold</em> sentence. <a href="#x">Second</a> one here.</p>'
            '<p>A sentence that crosses</p><p>two paragraphs.</p></body></html>')
    tree = etree.fromstring(page).getroottree()
    pages = Pages([tree])
    placed = pages.place([["Intro.", "First bold sentence.", "Second one here.", "A sentence that crosses two paragraphs."]])[0]
    ids = [pages.mark(a, b, f"ra-c1-s{k}")[1] for k, (a, b) in enumerate(placed, 1)]
    assert ids[0] == "ra-c1-s1-2"  # the page already had that id
    pages.wrap_all()
    out = etree.tostring(tree, encoding="unicode")
    assert '<span id="ra-c1-s2">First <em>bold</em> sentence.</span>' in out
    assert '<span id="ra-c1-s3"><a href="#x">Second</a> one here.</span>' in out
    assert '<p><span id="ra-c1-s4">A sentence that crosses</span></p><p>two paragraphs.</p>' in out
