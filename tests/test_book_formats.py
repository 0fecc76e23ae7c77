"""Book formats beyond EPUB/PDF/text, OCR of scanned pages and cleaned print PDFs.

Every test book is made here by real tools from one known text: docx, odt, fb2, html and
rtf by pandoc, mobi/azw3/htmlz by Calibre's ebook-convert, scanned pages drawn with Pillow
at 200 dpi, a print-like PDF with reportlab. ``make setup-test`` installs pandoc, Calibre
and Tesseract.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from audiobook.books import BOOK_EXTENSIONS, OWN_EXTENSIONS, load_book
from audiobook.errors import AudiobookError

KNOWN_MD = """---
title: The Known Book
author: Ann Author
lang: en
date: 1999
cover-image: cover.png
---

# The First Chapter

It was a bright cold day in April, and the clocks were striking thirteen.[^1]

The second paragraph of the first chapter is here.

# The Second Chapter

A *lighthouse* stood at the end of the pier.

## A Section

Inside the second chapter, a section.

# The Third Chapter

The end came quietly.

[^1]: A note about the clocks.
"""
TITLES = ["The First Chapter", "The Second Chapter", "The Third Chapter"]
COVER_SIZE = (60, 90)
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf"


def need(program: str, target: str) -> str:
    exe = shutil.which(program)
    if exe is None:
        pytest.fail(f"{program} is not installed; run `make {target}` (make test installs it).")
    return exe


@pytest.fixture(scope="module")
def known_books(tmp_path_factory) -> Path:
    """The known text as md, epub, docx, odt, fb2, html, rtf (pandoc) and mobi, azw3 (Calibre)."""
    folder = tmp_path_factory.mktemp("known")
    pandoc = need("pandoc", "pandoc")
    Image.new("RGB", COVER_SIZE, (200, 30, 30)).save(folder / "cover.png")
    (folder / "book.md").write_text(KNOWN_MD, "utf-8")
    for ext in ("epub", "docx", "odt", "fb2", "html"):
        subprocess.run([pandoc, "-s", "book.md", "-o", f"book.{ext}"], cwd=folder, check=True, timeout=120)
    # Word and other RTF writers put the title and author in an info group; pandoc's template takes it as a header.
    subprocess.run([pandoc, "-s", "book.md", "-t", "rtf", "-o", "book.rtf",
                    "-V", r"header-includes={\info{\title The Known Book}{\author Ann Author}}"], cwd=folder, check=True, timeout=120)
    convert = need("ebook-convert", "calibre")
    for ext in ("mobi", "azw3"):
        subprocess.run([convert, "book.epub", f"book.{ext}"], cwd=folder, check=True, timeout=300, capture_output=True)
    return folder


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def word_accuracy(reference: str, read: str) -> float:
    """The share of the reference's words that come back, in order."""
    ref, got = words(reference), words(read)
    matcher = difflib.SequenceMatcher(None, ref, got, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(ref)


# ---------------------------------------------------------------- one reader per format


@pytest.mark.parametrize("ext,reader,language,cover", [
    ("docx", "Word (docx)", "en", False),
    ("odt", "OpenDocument (odt)", "en", False),
    ("fb2", "FictionBook (fb2)", "en", True),
    ("html", "HTML", "en", False),
    ("rtf", "RTF", "", False),
    ("mobi", "Kindle (mobi/azw3)", "en", True),
    ("azw3", "Kindle (mobi/azw3)", "en", True),
])
def test_each_reader_chapters_text_metadata_cover(known_books, ext, reader, language, cover):
    book = load_book(known_books / f"book.{ext}")
    assert [c.title for c in book.chapters] == TITLES  # the title page is not a chapter; the section stays inside
    first, second, third = (c.text for c in book.chapters)
    assert first.startswith("It was a bright cold day in April, and the clocks were striking thirteen.")
    assert "thirteen.1" not in first and "[1]" not in first  # the footnote marker is not read
    assert "The second paragraph of the first chapter is here." in first
    assert second.split("\n\n") == ["A lighthouse stood at the end of the pier.", "A Section", "Inside the second chapter, a section."]
    assert third.startswith("The end came quietly.")
    assert (book.title, book.author, book.language) == ("The Known Book", "Ann Author", language)
    assert book.report.reader == reader
    if cover:
        with Image.open(io.BytesIO(book.cover)) as picture:
            assert picture.size == COVER_SIZE
        assert book.cover_mime.startswith("image/")
    else:
        assert book.cover is None


def test_fb2_year_and_poem_lines(tmp_path):
    fb2 = tmp_path / "poem.fb2"
    fb2.write_text("""<?xml version="1.0" encoding="utf-8"?>
<FictionBook xmlns="http://www.gribuser.ru/xml/fictionbook/2.0" xmlns:l="http://www.w3.org/1999/xlink">
<description><title-info><genre>poetry</genre><author><first-name>Ivan</first-name><last-name>Poet</last-name></author>
<book-title>Verses</book-title><date>1901</date><lang>ru</lang></title-info></description>
<body><section><title><p>Part One</p></title>
<section><title><p>Chapter 1</p><p>Snow</p></title><poem><stanza><v>The snow falls soft,</v><v>the night is long.</v></stanza></poem></section>
<section><title><p>Chapter 2</p><p>Spring</p></title><p>The river wakes.<a l:href="#n1" type="note">1</a></p></section>
</section></body><body name="notes"><section id="n1"><p>A note.</p></section></body></FictionBook>""", "utf-8")
    book = load_book(fb2)
    assert [c.title for c in book.chapters] == ["Chapter 1: Snow", "Chapter 2: Spring"]
    assert book.chapters[0].text == "The snow falls soft,\nthe night is long."
    assert book.chapters[1].text == "The river wakes."
    assert (book.year, book.language, book.genre, book.author) == ("1901", "ru", "poetry", "Ivan Poet")


def test_rtf_headings_from_word_style_sheet_and_info_group(tmp_path):
    rtf = tmp_path / "word.rtf"  # the shape Word writes: heading styles in the style sheet, paragraphs naming them
    rtf.write_bytes(rb"""{\rtf1\ansi\ansicpg1252\deff0\deflang1031{\fonttbl{\f0 Times New Roman;}}
{\stylesheet{\s0\ql Normal;}{\s1\ql\outlinelevel0\b\fs32 heading 1;}{\s2\ql\outlinelevel1\b\fs28 heading 2;}}
{\info{\title Die Geschichte}{\author Hans M\'fcller}}
\pard\plain\s1\b\fs32 Erstes Kapitel\par
\pard\plain\s0 Es war einmal ein K\'f6nig.\par
\pard\plain\s2\b Ein Abschnitt\par
\pard\plain\s0 Mehr Text hier.\par
\pard\plain\s1\b\fs32 Zweites Kapitel\par
\pard\plain\s0 Das Ende.\par
}""")
    book = load_book(rtf)
    assert [(c.title, c.text) for c in book.chapters] == [
        ("Erstes Kapitel", "Es war einmal ein K\u00f6nig.\n\nEin Abschnitt\n\nMehr Text hier."), ("Zweites Kapitel", "Das Ende.")]
    assert (book.title, book.author, book.language) == ("Die Geschichte", "Hans M\u00fcller", "de")


def test_html_book_title_over_h2_chapters_without_the_gutenberg_licence(tmp_path):
    page = tmp_path / "emma.htm"
    page.write_text("""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Emma | Project Gutenberg</title>
<meta name="author" content="Jane Austen"></head><body>
<section class="pg-boilerplate" id="pg-header"><p>The Project Gutenberg eBook of Emma. This eBook is for the use of anyone.</p></section>
<h1>Emma</h1><p>by Jane Austen</p>
<h2>Chapter I</h2><p>Emma Woodhouse, handsome, clever, and rich&nbsp;&mdash; had lived nearly twenty-one years.</p>
<h2>Chapter II</h2><p>Mr. Weston was a native of Highbury.</p>
<section class="pg-boilerplate" id="pg-footer"><p>END OF THE PROJECT GUTENBERG EBOOK. Updated editions will replace the previous one.</p></section>
</body></html>""", "utf-8")
    book = load_book(page)
    assert [c.title for c in book.chapters] == ["Chapter I", "Chapter II"]  # "by Jane Austen" is the title page
    assert book.chapters[0].text.startswith("Emma Woodhouse, handsome, clever, and rich \u2014 had")
    assert "Gutenberg" not in " ".join(c.text for c in book.chapters)
    assert (book.title, book.author, book.language) == ("Emma", "Jane Austen", "en")


def test_book_extensions_come_from_the_readers():
    for ext in (".mobi", ".azw3", ".fb2", ".docx", ".odt", ".html", ".htm", ".xhtml", ".rtf", ".epub", ".pdf"):
        assert ext in OWN_EXTENSIONS and ext in BOOK_EXTENSIONS
    assert (".lit" in BOOK_EXTENSIONS) == (shutil.which("ebook-convert") is not None)


# ---------------------------------------------------------------- Calibre and DRM


def test_other_calibre_formats_convert_when_calibre_is_installed(known_books, tmp_path, monkeypatch):
    convert = need("ebook-convert", "calibre")
    plain = tmp_path / "plain.md"
    plain.write_text(re.sub(r"\[\^1\]:.*|\[\^1\]", "", KNOWN_MD), "utf-8")
    shutil.copy(known_books / "cover.png", tmp_path / "cover.png")
    subprocess.run(["pandoc", "-s", "plain.md", "-o", "plain.html"], cwd=tmp_path, check=True, timeout=120)
    subprocess.run([convert, "plain.html", "plain.htmlz"], cwd=tmp_path, check=True, timeout=300, capture_output=True)
    book = load_book(tmp_path / "plain.htmlz")
    assert [c.title for c in book.chapters] == TITLES
    assert (book.title, book.author) == ("The Known Book", "Ann Author")
    assert book.report.converted_by == "Calibre (ebook-convert)"

    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))  # a machine without Calibre
    with pytest.raises(AudiobookError) as err:
        load_book(tmp_path / "plain.htmlz")
    message = str(err.value)
    assert "Calibre" in message and "calibre package" in message
    assert ".txt, .md, .epub, .pdf, .mobi, .azw3, .fb2, .docx, .odt, .html, .rtf or .json" in message


def test_drm_kindle_book_gets_the_epub_drm_sentence(known_books, tmp_path):
    raw = bytearray((known_books / "book.azw3").read_bytes())
    (record0,) = struct.unpack(">I", raw[78:82])
    raw[record0 + 12:record0 + 14] = struct.pack(">H", 2)  # the MOBI header's encryption type: Amazon DRM
    locked = tmp_path / "locked.azw3"
    locked.write_bytes(bytes(raw))
    with pytest.raises(AudiobookError) as kindle:
        load_book(locked)

    epub = tmp_path / "locked.epub"
    with zipfile.ZipFile(known_books / "book.epub") as src, zipfile.ZipFile(epub, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("META-INF/rights.xml", "<rights/>")
    with pytest.raises(AudiobookError) as epub_err:
        load_book(epub)
    assert str(kindle.value).replace("locked.azw3", "X") == str(epub_err.value).replace("locked.epub", "X")


# ---------------------------------------------------------------- OCR of scanned pages

PROSE = [
    "The harbour town woke slowly that morning. Fishermen carried their nets down to the water, and the baker "
    "opened his shutters to let the smell of warm bread drift along the street.",
    "Margaret had lived above the chandler's shop for eleven years. She knew every creak of the stairs and every "
    "voice that passed beneath her window, but she had never seen the tall stranger who now stood at the corner, "
    "reading a letter with great care.",
    "He folded the paper twice and put it into his coat. Then he looked up at the old clock on the customs house, "
    "as if the hour mattered more than anything he had read.",
    "By noon the whole town was talking about him. Some said he was a surveyor sent by the railway company; others "
    "were certain he had come to buy the empty warehouse by the quay.",
    "Margaret did not join in the guessing. She went about her work, mending sails and writing out accounts, and "
    "only once did she stop to watch him walk past with his hands behind his back.",
    "In the evening a storm came in from the west. The boats were pulled high on the shingle, the lamps were lit "
    "early, and the stranger knocked at her door to ask for a room.",
]
SCANNED_PAGES = [("Chapter 1", PROSE[0:3]), (None, PROSE[3:5]), ("Chapter 2", PROSE[5:6] + PROSE[0:2])]
RUNNING_HEAD = "THE HARBOUR TOWN"


def draw_page(heading: str | None, paragraphs: list[str], number: int | None, dpi: int = 200,
              head: str | None = RUNNING_HEAD) -> Image.Image:
    """One A5 page of text drawn as a grey image at ``dpi``, like a scanner makes it."""
    width, height = int(5.8 * dpi), int(8.3 * dpi)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    body, small, bold = (ImageFont.truetype(f, int(size * dpi / 72)) for f, size in ((FONT, 11), (FONT, 9), (BOLD, 14)))
    margin, y = int(0.6 * dpi), int(0.8 * dpi)
    if head:
        draw.text((margin, int(0.35 * dpi)), head, font=small, fill=0)
    if heading:
        draw.text((margin, y), heading, font=bold, fill=0)
        y += int(0.45 * dpi)
    for paragraph in paragraphs:
        line = ""
        for word in paragraph.split() + [None]:
            if word is None or draw.textlength(f"{line} {word}".strip(), font=body) > width - 2 * margin:
                draw.text((margin, y), line, font=body, fill=0)
                y += int(15 * dpi / 72)
                line = word or ""
            else:
                line = f"{line} {word}".strip()
        y += int(6 * dpi / 72)
    if number is not None:
        draw.text((width // 2, height - int(0.4 * dpi)), str(number), font=small, fill=0)
    return page


@pytest.fixture(scope="module")
def scanned_pdf(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scan") / "scanned.pdf"
    pages = [draw_page(h, ps, n) for n, (h, ps) in enumerate(SCANNED_PAGES, 1)]
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=200)
    return path


def test_scanned_pdf_is_read_by_ocr_then_from_the_cache(scanned_pdf, tmp_path, monkeypatch):
    need("tesseract", "tesseract")
    monkeypatch.setenv("AUDIOBOOK_OCR_CACHE", str(tmp_path / "ocr-cache"))
    heard = []
    start = time.perf_counter()
    book = load_book(scanned_pdf, on_progress=lambda done, total, what: heard.append((done, total, what)))
    first_s = time.perf_counter() - start
    assert [c.title for c in book.chapters] == ["Chapter 1", "Chapter 2"]
    text = "\n\n".join(c.text for c in book.chapters)
    reference = " ".join(p for _, ps in SCANNED_PAGES for p in ps)
    accuracy = word_accuracy(reference, text)
    assert accuracy >= 0.98, (accuracy, text)
    assert RUNNING_HEAD not in text
    assert book.chapters[1].text.split("\n\n")[0] == PROSE[5]  # Tesseract's paragraphs are kept
    report = book.report
    assert (report.pages, report.ocr_pages, report.ocr_cached, report.ocr_language) == (3, 3, 0, "eng")
    assert report.running_lines >= 3
    assert heard[-1][:2] == (3, 3) and "OCR" in heard[-1][2]
    print(f"OCR: {accuracy:.1%} of words right, {3 / first_s * 60:.1f} pages per minute")

    start = time.perf_counter()
    again = load_book(scanned_pdf)
    assert again.report.ocr_cached == 3
    assert [c.text for c in again.chapters] == [c.text for c in book.chapters]
    assert time.perf_counter() - start < max(1.0, first_s / 5)


def test_a_scan_stored_as_an_inline_image_is_read_too(tmp_path, monkeypatch):
    from reportlab.lib.pagesizes import A5
    from reportlab.pdfgen import canvas

    need("tesseract", "tesseract")
    monkeypatch.setenv("AUDIOBOOK_OCR_CACHE", str(tmp_path / "ocr-cache"))
    path = tmp_path / "inline.pdf"
    c = canvas.Canvas(str(path), pagesize=A5)
    c.drawInlineImage(draw_page(None, PROSE[1:2], None, head=None), 0, 0, *A5)  # BI ... EI in the page's own stream
    c.showPage()
    c.save()
    assert b"BI" in path.read_bytes() or b"/XObject" not in path.read_bytes()
    book = load_book(path)
    assert book.report.ocr_pages == 1
    assert word_accuracy(PROSE[1], book.chapters[0].text) >= 0.98


def test_book_command_reports_the_reader_ocr_and_cleaning_with_a_progress_bar(scanned_pdf, tmp_path):
    need("tesseract", "tesseract")
    env = {**os.environ, "AUDIOBOOK_OCR_CACHE": str(tmp_path / "ocr-cache")}
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "backend.py", "book", str(scanned_pdf)], cwd=root, capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Read by:  PDF" in done.stdout and "Pages:    3, 3 read by OCR (eng)" in done.stdout
    assert re.search(r"Cleaned:  [1-9]\d* running-head/footer/page-number lines removed", done.stdout)
    assert "Warning:  The book does not say its language" in done.stdout
    assert "OCR: 100%" in done.stderr and "3/3" in done.stderr  # the progress bar

    done = subprocess.run([sys.executable, "backend.py", "book", str(scanned_pdf)], cwd=root, capture_output=True,
                          text=True, timeout=600, env={**env, "AUDIOBOOK_OCR_CACHE": str(tmp_path / "empty"),
                                                       "PATH": str(tmp_path / "no-programs-here")})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: scanned.pdf is scanned: Reading scanned pages needs Tesseract OCR, which is not installed; install "
        "Debian's tesseract-ocr package with its English pack (sudo apt-get install tesseract-ocr tesseract-ocr-eng, "
        "or make setup).")


def test_ocr_in_a_language_without_its_pack_reads_english_and_names_the_pack(scanned_pdf, tmp_path, monkeypatch):
    need("tesseract", "tesseract")
    monkeypatch.setenv("AUDIOBOOK_OCR_CACHE", str(tmp_path / "ocr-cache"))
    book = load_book(scanned_pdf, language="de")  # the book does not say its language; the narration's is German
    if "deu" in subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True).stdout.split():
        assert book.report.ocr_language == "deu"
    else:
        assert book.report.ocr_language == "eng"
        assert any("install Debian's tesseract-ocr-deu package" in w for w in book.report.warnings)
    assert not any("does not say its language" in w for w in book.report.warnings)


def test_missing_tesseract_names_the_package(scanned_pdf, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOBOOK_OCR_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    with pytest.raises(AudiobookError, match="install Debian's tesseract-ocr package"):
        load_book(scanned_pdf)


def test_epub_pages_that_are_only_images_are_read_by_ocr(tmp_path, monkeypatch):
    from ebooklib import epub

    need("tesseract", "tesseract")
    monkeypatch.setenv("AUDIOBOOK_OCR_CACHE", str(tmp_path / "ocr-cache"))
    book = epub.EpubBook()
    book.set_identifier("scan-1")
    book.set_title("Scanned Stories")
    book.set_language("en")
    pictures = {"p1.png": draw_page(None, PROSE[0:2], None, head=None),
                "p2.png": draw_page(None, PROSE[3:4], None, head=None),
                "art.png": Image.effect_noise((600, 800), 80)}  # an illustration: no words
    docs, toc = [], []
    for i, (title, names) in enumerate([("Morning", ["p1.png", "art.png"]), ("Noon", ["p2.png"])]):
        doc = epub.EpubHtml(title=title, file_name=f"page{i}.xhtml", lang="en")
        doc.content = "<html><body>" + "".join(f'<div><img src="images/{n}" alt=""/></div>' for n in names) + "</body></html>"
        book.add_item(doc)
        docs.append(doc)
        toc.append(epub.Link(f"page{i}.xhtml", title, f"p{i}"))
    for name, picture in pictures.items():
        data = io.BytesIO()
        picture.save(data, format="PNG")
        book.add_item(epub.EpubImage(uid=name, file_name=f"images/{name}", media_type="image/png", content=data.getvalue()))
    book.toc = toc
    book.add_item(epub.EpubNcx())
    book.spine = docs
    epub.write_epub(str(tmp_path / "scanned.epub"), book)

    read = load_book(tmp_path / "scanned.epub")
    assert [c.title for c in read.chapters] == ["Morning", "Noon"]
    assert word_accuracy(" ".join(PROSE[0:2]), read.chapters[0].text) >= 0.98
    assert len(words(read.chapters[0].text)) <= len(words(" ".join(PROSE[0:2]))) + 2  # nothing made up from the noise
    assert word_accuracy(PROSE[3], read.chapters[1].text) >= 0.98
    assert read.report.ocr_pages == 2


# ---------------------------------------------------------------- a PDF made like a printed book


def test_print_like_pdf_loses_heads_page_numbers_hyphens_and_note_markers(tmp_path):
    from reportlab.lib.pagesizes import A5
    from reportlab.pdfgen import canvas

    path = tmp_path / "printed.pdf"
    c = canvas.Canvas(str(path), pagesize=A5)
    c.setTitle("The Printed Book")
    width, height = A5
    # Lines as set by a typesetter: words broken at the line end, a raised footnote marker after "harbour".
    line_b = "lamp above the {} harbour while the town slept far be-"
    line_c = "low, and the {} ships of the {} passed safely through the dark."
    colours = ["red", "blue", "green", "grey", "white", "black", "brown", "gold"]
    places = ["north", "south", "east", "west", "river", "island", "harbour"]
    chapters = [("Chapter 1", 4), ("Chapter 2", 3)]
    page = 1
    for title, n_pages in chapters:
        for k in range(n_pages):
            if k > 0:  # no head on a chapter's opening page; then the book's title on left pages, the chapter's on right
                c.setFont("Times-Italic", 9)
                c.drawString(40, height - 30, "The Printed Book" if page % 2 == 0 else title)
            c.setFont("Times-Roman", 9)
            c.drawCentredString(width / 2, 25, str(page))
            y = height - 70
            if k == 0:
                c.setFont("Times-Bold", 14)
                c.drawString(40, y, title)
                y -= 30
            for g in range(8):
                c.setFont("Times-Roman", 10)
                c.drawString(40, y, f"The keeper climbed the {places[page - 1]} tower every evening and lit the {colours[g]}")
                text = c.beginText(40, y - 13)
                text.setFont("Times-Roman", 10)
                text.textOut(line_b.format(places[page - 1]).split(" while")[0])
                text.setRise(4)
                text.setFont("Times-Roman", 6)
                text.textOut("12")
                text.setRise(0)
                text.setFont("Times-Roman", 10)
                text.textOut(" while" + line_b.split(" while")[1])
                c.drawText(text)
                c.drawString(40, y - 26, line_c.format(colours[g], places[page - 1]))
                y -= 52
                if y < 80:
                    break
            c.showPage()
            page += 1
    c.save()

    book = load_book(path)
    assert [ch.title for ch in book.chapters] == ["Chapter 1", "Chapter 2"]
    text = " ".join(ch.text for ch in book.chapters)
    assert "The Printed Book" not in text and "be-" not in text and "be- low" not in text
    assert "far below, and the red ships" in text
    assert "harbour while" in text and "harbour12" not in text and " 12 " not in text
    assert not re.search(r"\b\d+\b", text)  # no page number and no marker is read
    assert text.count("The keeper climbed the") == text.count("far below") == 7 * 8
    report = book.report
    assert report.running_lines == 7 + 5  # a number on every page, a head on all but the chapters' opening pages
    assert report.hyphens_joined == text.count("far below")
    assert report.note_marks == text.count("harbour while")
