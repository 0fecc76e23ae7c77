"""The read-along book: an EPUB 3 whose media overlays play the narration sentence by sentence.

``output/<book>/<title> (read-along).epub`` is built from a finished render and its sentence
timings (``timings.py``); nothing is rendered again. For an EPUB source it is the source
book itself (its pages, styles and images) with each sentence wrapped in a span with an
id (``fragments.py``), a SMIL overlay per page that has narrated sentences, and the
chapters' audio inside (AAC in MP4, or the chapter MP3s as they are). For any other source
it is a clean EPUB 3 made from the book's chapters, cover and metadata, with the same
overlays. The package carries ``media:duration`` for the book and each overlay and the
narrator as ``media:narrator``; it passes epubcheck.
"""

from __future__ import annotations

import html
import json
import logging
import posixpath
import shutil
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from . import manifest as mf
from .errors import AudiobookError
from .files import atomic_output, disk_error, ffmpeg_write, safe_filename
from .fragments import Pages
from .timings import ChapterTimings, book_timings

log = logging.getLogger(__name__)

SOURCE_EPUB = "source.epub"  # the source EPUB kept beside the manifest, for read-along builds later
BOOK_FILE = "book.json"  # what the render read (render.BOOK_FILE)
AUDIO_BITRATE = "64k"
MIN_CLIP_S = 0.01  # a sentence timed shorter than this shares its neighbour's clip
OPF_NS = "http://www.idpf.org/2007/opf"
DC_NS = "http://purl.org/dc/elements/1.1/"
ACTIVE_CLASS = "-epub-media-overlay-active"
_CONTAINER = ('<?xml version="1.0" encoding="UTF-8"?>\n<container version="1.0" '
              'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
              '<rootfile full-path="{opf}" media-type="application/oebps-package+xml"/></rootfiles></container>\n')


@dataclass(frozen=True)
class ReadAlong:
    """What :func:`build_readalong` wrote."""

    path: Path
    chapters: int  # chapters with narration in it
    sentences: int  # text fragments, each with its clip
    unplaced: int  # sentences whose text was not found in the pages (their time went to a neighbour)
    from_source: bool  # True: the source EPUB's own pages; False: a clean EPUB from the chapters

    def summary(self) -> str:
        """One line for the log and the command line."""
        kind = "the source EPUB's own pages" if self.from_source else "a new EPUB 3 made from the chapters"
        missed = (f"; {self.unplaced} sentences were not found in the text and share a neighbour's clip"
                  if self.unplaced else "")
        return (f"Read-along EPUB written: {self.path.name} ({kind}, {self.chapters} chapters, "
                f"{self.sentences} sentences highlighted as they are read{missed}).")


def readalong_path(out_dir: Path, title: str) -> Path:
    return Path(out_dir) / f"{safe_filename(title or 'book')} (read-along).epub"


def keep_source(book_path: str | Path, out_dir: str | Path) -> Path | None:
    """Keep a copy of an EPUB source beside the render, so the read-along can use its pages later."""
    book_path, out_dir = Path(book_path), Path(out_dir)
    if book_path.suffix.lower() != ".epub" or not book_path.is_file():
        return None
    target = out_dir / SOURCE_EPUB
    if target.is_file() and target.stat().st_size == book_path.stat().st_size and target.read_bytes() == book_path.read_bytes():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(target) as tmp:
            shutil.copyfile(book_path, tmp)
    except OSError as e:
        raise disk_error(target, e) from None
    return target


def build_readalong(out_dir: str | Path, source: str | Path | None = None) -> ReadAlong:
    """Build ``<title> (read-along).epub`` in the render folder ``out_dir`` from its chapters and timings.

    ``source`` is the book's EPUB (default: the copy kept beside the render, if any); without
    one, or when it is an EPUB 2, the read-along is a clean EPUB 3 made from the chapters.
    Raises AudiobookError when there is no render there or no chapter is assembled.
    """
    from .books import Book

    out_dir = Path(out_dir)
    manifest = mf.load_manifest(out_dir)
    if manifest is None:
        raise AudiobookError(f"{out_dir} holds no render (no {mf.MANIFEST_FILE}); render the book first.")
    book_json = out_dir / BOOK_FILE
    if not book_json.is_file():
        raise AudiobookError(f"{out_dir} has no {BOOK_FILE}; render the book again (nothing is re-rendered) to write it.")
    book = Book.from_dict(json.loads(book_json.read_text(encoding="utf-8")))
    timings = book_timings(out_dir, manifest)
    if not timings:
        raise AudiobookError(f"No chapter of '{book.title}' is assembled yet, so there is nothing to read along; "
                             "render it first.")
    source = Path(source) if source else (out_dir / SOURCE_EPUB if (out_dir / SOURCE_EPUB).is_file() else None)
    if source is not None and not source.is_file():
        raise AudiobookError(f"The source book {source} is not there.")
    narrator = _narrator_name(manifest)
    target = readalong_path(out_dir, book.title)
    with tempfile.TemporaryDirectory(prefix=".readalong-", dir=out_dir) as work:
        work = Path(work)
        epub = _SourceEpub.open(source) if source is not None else None
        if epub is None:
            epub = _CleanEpub(book)
        audio = {n: _audio_for_epub(out_dir / t.file, work, n) for n, t in timings.items()}
        placed, unplaced = epub.mark_sentences(timings)
        files, sentences = epub.files(timings, placed, audio, narrator)
        try:
            with atomic_output(target) as tmp:
                _write_zip(tmp, files)
        except OSError as e:
            raise disk_error(target, e) from None
    return ReadAlong(target, len(timings), sentences, unplaced, isinstance(epub, _SourceEpub))


def _narrator_name(manifest) -> str:
    n = (manifest.source or {}).get("narrator") or {}
    name = n.get("name") or n.get("speaker") or "Narrator"
    return str(name).strip().title() if name == n.get("speaker") else str(name).strip()


# ---- audio inside the EPUB -------------------------------------------------------------------


def _audio_for_epub(path: Path, work: Path, number: int) -> tuple[Path, str]:
    """The chapter's audio in a format every EPUB reader plays: MP3 as it is, else AAC in MP4."""
    if not path.is_file():
        raise AudiobookError(f"The audio of chapter {number} ({path.name}) is gone; assemble the chapter again.")
    if path.suffix.lower() == ".mp3":
        return path, "audio/mpeg"
    out = work / f"{number:03d}.m4a"
    ffmpeg_write(["-i", str(path), "-vn", "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-f", "ipod", str(out)], path.name)
    return out, "audio/mp4"


# ---- overlays ----------------------------------------------------------------------------------


def clock(seconds: float) -> str:
    """``H:MM:SS.mmm``, the clock value of ``media:duration``."""
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h}:{m:02d}:{s:02d}.{ms:03d}"


@dataclass
class _Clip:
    page_href: str  # the page, relative to the package document
    fragment: str
    audio_href: str
    begin: float
    end: float


def _clips(timings: dict[int, ChapterTimings], placed: dict[int, list[tuple[str, str] | None]],
           audio_hrefs: dict[int, str]) -> list[_Clip]:
    """A clip per placed sentence; an unplaced sentence's time goes to the placed one before it
    (or after it, at a chapter's start), so each chapter's clips run from 0 to its end."""
    clips: list[_Clip] = []
    for n, t in sorted(timings.items()):
        own: list[_Clip] = []
        pending_start: float | None = None
        for s, where in zip(t.sentences, placed.get(n, [])):
            if where is None:
                if own:
                    own[-1].end = s.end
                elif pending_start is None:
                    pending_start = s.start
                continue
            begin = pending_start if pending_start is not None else s.start
            if own and s.end - max(begin, own[-1].end) < MIN_CLIP_S:
                own[-1].end = s.end  # too short to be heard on its own: its time goes to the sentence before
                continue
            pending_start = None
            own.append(_Clip(where[0], where[1], audio_hrefs[n], begin, s.end))
        if own:
            own[0].begin = 0.0
            own[-1].end = t.duration
            for a, b in zip(own, own[1:]):
                a.end = min(a.end, b.begin)
        clips += own
    return clips


def _smil(page_href_from_smil: str, clips: list[_Clip], audio_rel) -> str:
    pars = "\n".join(
        f'    <par id="p{i}"><text src="{_attr(page_href_from_smil)}#{_attr(c.fragment)}"/>'
        f'<audio src="{_attr(audio_rel(c.audio_href))}" clipBegin="{c.begin:.3f}s" clipEnd="{c.end:.3f}s"/></par>'
        for i, c in enumerate(clips, 1))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<smil xmlns="http://www.w3.org/ns/SMIL" xmlns:epub="http://www.idpf.org/2007/ops" version="3.0">\n'
            f'  <body>\n{pars}\n  </body>\n</smil>\n')


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _overlay_files(opf_dir: str, clips: list[_Clip]):
    """SMIL files (one per page with clips), manifest items, and metadata for them."""
    by_page: dict[str, list[_Clip]] = {}
    for c in clips:
        by_page.setdefault(c.page_href, []).append(c)
    files: dict[str, bytes] = {}
    items: list[tuple[str, str, str]] = []  # (id, href, media type)
    overlay_of: dict[str, str] = {}  # page href -> smil item id
    durations: list[tuple[str, float]] = []
    for k, (page, own) in enumerate(by_page.items(), 1):
        smil_href = f"smil/overlay-{k:03d}.smil"
        rel_page = posixpath.relpath(page, posixpath.dirname(smil_href))
        text = _smil(quote(rel_page), own, lambda a: quote(posixpath.relpath(a, "smil")))
        files[posixpath.join(opf_dir, smil_href)] = text.encode("utf-8")
        item_id = f"ra-overlay-{k:03d}"
        items.append((item_id, smil_href, "application/smil+xml"))
        overlay_of[page] = item_id
        durations.append((item_id, round(sum(round(c.end - c.begin, 3) for c in own), 3)))
    return files, items, overlay_of, durations


def _media_meta(durations: list[tuple[str, float]], narrator: str) -> list[tuple[str, str, str]]:
    """(property, refines, value) metadata for the overlays."""
    total = round(sum(d for _, d in durations), 3)
    out = [("media:duration", "", clock(total)), ("media:narrator", "", narrator), ("media:active-class", "", ACTIVE_CLASS)]
    out += [("media:duration", f"#{i}", clock(d)) for i, d in durations]
    return out


def _write_zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), b"application/epub+zip", compress_type=zipfile.ZIP_STORED)
        for name, data in files.items():
            if name == "mimetype":
                continue
            stored = name.endswith((".m4a", ".mp3", ".png", ".jpg", ".jpeg"))
            zf.writestr(name, data, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)


def _sentences_of(timings: dict[int, ChapterTimings]) -> list[list[str]]:
    return [[s.text for s in t.sentences] for _, t in sorted(timings.items())]


def _serialize(tree) -> bytes:
    from lxml import etree

    return etree.tostring(tree, encoding="utf-8", xml_declaration=True)


# ---- an EPUB 3 source: its own pages --------------------------------------------------------


class _SourceEpub:
    """The source EPUB 3, to be given overlays."""

    def __init__(self, path: Path, zf_files: dict[str, bytes], opf_path: str, opf):
        self.path, self.data, self.opf_path, self.opf = path, zf_files, opf_path, opf
        self.opf_dir = posixpath.dirname(opf_path)
        self.pages: Pages | None = None
        self.page_hrefs: list[str] = []  # relative to the package document
        self.page_items: dict[str, object] = {}

    @classmethod
    def open(cls, path: Path) -> "_SourceEpub | None":
        """The EPUB, or None when it is an EPUB 2 (its read-along is a clean EPUB 3)."""
        from lxml import etree

        try:
            with zipfile.ZipFile(path) as zf:
                data = {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
            container = etree.fromstring(data["META-INF/container.xml"])
            opf_path = unquote(next(e for e in container.iter() if e.tag.endswith("rootfile")).get("full-path"))
            opf = etree.fromstring(data[opf_path]).getroottree()
        except (zipfile.BadZipFile, KeyError, StopIteration, etree.XMLSyntaxError, OSError, AttributeError):
            raise AudiobookError(f"{path.name} cannot be opened as an EPUB, so its read-along cannot be made from it.") from None
        if not str(opf.getroot().get("version", "")).startswith("3"):
            log.info("%s is an EPUB 2: the read-along is a new EPUB 3 made from its text", path.name)
            return None
        return cls(path, data, opf_path, opf)

    def _items(self):
        return {i.get("id"): i for i in self.opf.getroot().iter(f"{{{OPF_NS}}}item")}

    def mark_sentences(self, timings: dict[int, ChapterTimings]):
        from lxml import etree

        items = self._items()
        trees, hrefs = [], []
        for ref in self.opf.getroot().iter(f"{{{OPF_NS}}}itemref"):
            item = items.get(ref.get("idref"))
            if item is None or item.get("media-type") != "application/xhtml+xml":
                continue
            if "nav" in (item.get("properties") or "").split():
                continue
            href = unquote(item.get("href"))
            name = posixpath.normpath(posixpath.join(self.opf_dir, href))
            if name not in self.data:
                continue
            parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
            try:
                trees.append(etree.fromstring(self.data[name], parser).getroottree())
            except etree.XMLSyntaxError:
                continue  # a page that is not well-formed XHTML is left as it is
            hrefs.append(href)
            self.page_items[href] = item
        self.pages, self.page_hrefs = Pages(trees), hrefs
        return _mark(self.pages, hrefs, timings)

    def files(self, timings, placed, audio, narrator) -> dict[str, bytes]:
        from lxml import etree

        out = dict(self.data)
        audio_hrefs = {n: f"audio/chapter-{n:03d}{p.suffix}" for n, (p, _) in audio.items()}
        audio_hrefs = {n: self._free_href(h) for n, h in audio_hrefs.items()}
        for n, (p, _) in audio.items():
            out[posixpath.join(self.opf_dir, audio_hrefs[n])] = p.read_bytes()
        clips = _clips(timings, placed, audio_hrefs)
        changed = self.pages.wrap_all({c.fragment for c in clips})
        for href, page, change in zip(self.page_hrefs, self.pages.pages, changed):
            if change:
                out[posixpath.normpath(posixpath.join(self.opf_dir, href))] = _serialize(page.tree)
        smil_files, smil_items, overlay_of, durations = _overlay_files(self.opf_dir, clips)
        out.update(smil_files)
        root = self.opf.getroot()
        manifest = root.find(f"{{{OPF_NS}}}manifest")
        for item_id, href, media in smil_items + [(f"ra-audio-{n:03d}", audio_hrefs[n], audio[n][1]) for n in sorted(audio)]:
            etree.SubElement(manifest, f"{{{OPF_NS}}}item", {"id": item_id, "href": quote(href), "media-type": media})
        for page, smil_id in overlay_of.items():
            self.page_items[page].set("media-overlay", smil_id)
        metadata = root.find(f"{{{OPF_NS}}}metadata")
        for meta in list(metadata):
            if (meta.get("property") or "").startswith("media:"):
                metadata.remove(meta)  # overlays of an earlier read-along
            elif meta.get("property") == "dcterms:modified":
                meta.text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for prop, refines, value in _media_meta(durations, narrator):
            attrs = {"property": prop, **({"refines": refines} if refines else {})}
            etree.SubElement(metadata, f"{{{OPF_NS}}}meta", attrs).text = value
        out[self.opf_path] = _serialize(self.opf)
        return out, len(clips)

    def _free_href(self, href: str) -> str:
        stem, dot, ext = href.rpartition(".")
        n = 1
        while posixpath.normpath(posixpath.join(self.opf_dir, href)) in self.data:
            n += 1
            href = f"{stem}-{n}.{ext}"
        return href


def _mark(pages: Pages, hrefs: list[str], timings: dict[int, ChapterTimings]):
    """Find and mark every sentence; returns ({chapter: [(page href, id) or None]}, unplaced count)."""
    numbers = sorted(timings)
    found = pages.place(_sentences_of(timings))
    placed: dict[int, list[tuple[str, str] | None]] = {}
    unplaced = 0
    for n, spans in zip(numbers, found):
        row: list[tuple[str, str] | None] = []
        for k, span in enumerate(spans, 1):
            if span is None:
                row.append(None)
                unplaced += 1
                continue
            doc, ident = pages.mark(span[0], span[1], f"ra-c{n}-s{k}")
            row.append((hrefs[doc], ident))
        placed[n] = row
    return placed, unplaced


# ---- any other source: a clean EPUB 3 from the chapters ----------------------------------------


class _CleanEpub:
    """A new EPUB 3 made from the book's chapters, cover and metadata."""

    def __init__(self, book):
        self.book = book
        self.language = book.language or "en"
        self.hrefs = [f"text/chapter-{i:03d}.xhtml" for i in range(1, len(book.chapters) + 1)]
        self.pages: Pages | None = None

    def _page(self, i: int, chapter) -> bytes:
        paras = [p for p in chapter.text.split("\n\n") if p.strip()]
        if paras and " ".join(paras[0].split()) == " ".join(chapter.title.split()):
            paras = paras[1:]  # a chapter that is only its title
        body = "\n".join(f"<p>{'<br/>'.join(html.escape(line.strip()) for line in p.strip().splitlines())}</p>"
                         for p in paras)
        lang = _attr(self.language)
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n'
                f'<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops" lang="{lang}" xml:lang="{lang}">\n'
                f'<head><meta charset="utf-8"/><title>{html.escape(chapter.title)}</title>'
                f'<link rel="stylesheet" type="text/css" href="../css/book.css"/></head>\n'
                f'<body><section epub:type="chapter" id="chapter-{i}"><h1>{html.escape(chapter.title)}</h1>\n{body}\n</section></body></html>\n'
                ).encode("utf-8")

    def mark_sentences(self, timings: dict[int, ChapterTimings]):
        from lxml import etree

        trees = [etree.fromstring(self._page(i, c)).getroottree() for i, c in enumerate(self.book.chapters, 1)]
        self.pages = Pages(trees)
        return _mark(self.pages, self.hrefs, timings)

    def files(self, timings, placed, audio, narrator) -> dict[str, bytes]:
        from .audio import _usable_cover

        book = self.book
        audio_hrefs = {n: f"audio/chapter-{n:03d}{p.suffix}" for n, (p, _) in audio.items()}
        clips = _clips(timings, placed, audio_hrefs)
        self.pages.wrap_all({c.fragment for c in clips})
        out: dict[str, bytes] = {"META-INF/container.xml": _CONTAINER.format(opf="EPUB/package.opf").encode("utf-8")}
        for href, page in zip(self.hrefs, self.pages.pages):
            out[f"EPUB/{href}"] = _serialize(page.tree)
        out["EPUB/css/book.css"] = (b"body { font-family: serif; line-height: 1.5; margin: 0 5%; }\n"
                                    b"h1 { text-align: center; margin: 2em 0 1em; }\n"
                                    b".-epub-media-overlay-active { background-color: #ffe58a; }\n")
        items = [("css", "css/book.css", "text/css", ""), ("nav", "nav.xhtml", "application/xhtml+xml", "nav")]
        items += [(f"chapter-{i:03d}", h, "application/xhtml+xml", "") for i, h in enumerate(self.hrefs, 1)]
        cover, ext, _warning = _usable_cover(book.cover)
        if cover is not None:
            out[f"EPUB/images/cover.{ext}"] = cover
            items.append(("cover-image", f"images/cover.{ext}", "image/jpeg" if ext == "jpg" else "image/png", "cover-image"))
        for n, (p, media) in sorted(audio.items()):
            out[f"EPUB/{audio_hrefs[n]}"] = p.read_bytes()
            items.append((f"ra-audio-{n:03d}", audio_hrefs[n], media, ""))
        smil_files, smil_items, overlay_of, durations = _overlay_files("EPUB", clips)
        out.update(smil_files)
        items += [(i, h, m, "") for i, h, m in smil_items]
        out["EPUB/nav.xhtml"] = self._nav()
        overlay_by_item = {f"chapter-{i:03d}": overlay_of.get(h) for i, h in enumerate(self.hrefs, 1)}
        out["EPUB/package.opf"] = self._opf(items, overlay_by_item, _media_meta(durations, narrator))
        return out, len(clips)

    def _nav(self) -> bytes:
        lang = _attr(self.language)
        links = "\n".join(f'<li><a href="{h}">{html.escape(c.title)}</a></li>' for h, c in zip(self.hrefs, self.book.chapters))
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n'
                f'<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops" lang="{lang}" xml:lang="{lang}">\n'
                f'<head><meta charset="utf-8"/><title>{html.escape(self.book.title)}</title></head>\n'
                f'<body><nav epub:type="toc" id="toc"><h1>{html.escape(self.book.title)}</h1><ol>\n{links}\n</ol></nav></body></html>\n'
                ).encode("utf-8")

    def _opf(self, items, overlay_by_item: dict[str, str | None], media) -> bytes:
        book = self.book
        ident = uuid.uuid5(uuid.NAMESPACE_URL, f"audiobook:{book.title}:{book.author}")
        meta = [f'<dc:identifier id="book-id">urn:uuid:{ident}</dc:identifier>',
                f"<dc:title>{html.escape(book.title or 'Untitled')}</dc:title>",
                f"<dc:language>{html.escape(self.language)}</dc:language>",
                f'<meta property="dcterms:modified">{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}</meta>']
        if book.author:
            meta.append(f"<dc:creator>{html.escape(book.author)}</dc:creator>")
        if book.year:
            meta.append(f"<dc:date>{html.escape(book.year)}</dc:date>")
        if book.genre:
            meta.append(f"<dc:subject>{html.escape(book.genre)}</dc:subject>")
        for prop, refines, value in media:
            at = f' refines="{refines}"' if refines else ""
            meta.append(f'<meta property="{prop}"{at}>{html.escape(value)}</meta>')
        rows = []
        for item_id, href, media_type, props in items:
            extra = f' properties="{props}"' if props else ""
            if overlay_by_item.get(item_id):
                extra += f' media-overlay="{overlay_by_item[item_id]}"'
            rows.append(f'<item id="{item_id}" href="{_attr(quote(href))}" media-type="{media_type}"{extra}/>')
        spine = "\n".join(f'<itemref idref="chapter-{i:03d}"/>' for i in range(1, len(self.hrefs) + 1))
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="book-id">\n'
                '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">\n' + "\n".join(meta) + "\n</metadata>\n"
                "<manifest>\n" + "\n".join(rows) + "\n</manifest>\n"
                f"<spine>\n{spine}\n</spine>\n</package>\n").encode("utf-8")
