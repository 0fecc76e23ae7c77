"""Reading books: corpus EPUBs, generated EPUB/PDF fixtures, txt/md/json, edits, bad input."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from audiobook import books
from audiobook.books import Book, Chapter, describe_book, load_book, save_book_json
from audiobook.errors import AudiobookError

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared EPUB corpus is not at {CORPUS}")


# ---------------------------------------------------------------- fixtures (generated, never binary)


def make_epub(path: Path, chapters: list[tuple[str, str]], *, version: int = 3, title="Generated Book",
              author="Ann Author", language="en", cover: bytes | None = b"\x89PNG\r\n\x1a\nfakepng",
              extra_front: str | None = None, one_file: bool = False, dc: dict | None = None) -> Path:
    """Write an EPUB with ebooklib: chapters as (title, xhtml body), optional copyright page."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("id-123")
    book.set_title(title)
    book.set_language(language)
    book.add_author(author)
    for name, value in (dc or {}).items():
        book.add_metadata("DC", name, value)
    if cover:
        book.set_cover("cover.png", cover)
    items, toc = [], []
    if extra_front:
        front = epub.EpubHtml(title="Copyright", file_name="copyright.xhtml", lang=language)
        front.content = f"<html><body>{extra_front}</body></html>"
        book.add_item(front)
        items.append(front)
    if one_file:
        doc = epub.EpubHtml(title="All", file_name="all.xhtml", lang=language)
        doc.content = "<html><body>" + "".join(
            f'<section id="c{i}"><h2>{t}</h2>{body}</section>' for i, (t, body) in enumerate(chapters)) + "</body></html>"
        book.add_item(doc)
        items.append(doc)
        toc = [epub.Link(f"all.xhtml#c{i}", t, f"c{i}") for i, (t, _) in enumerate(chapters)]
    else:
        for i, (t, body) in enumerate(chapters):
            doc = epub.EpubHtml(title=t, file_name=f"ch{i}.xhtml", lang=language)
            doc.content = f"<html><body><h1>{t}</h1>{body}</body></html>"
            book.add_item(doc)
            items.append(doc)
            toc.append(epub.Link(f"ch{i}.xhtml", t, f"ch{i}"))
    book.toc = toc
    book.add_item(epub.EpubNcx())
    if version == 3:
        book.add_item(epub.EpubNav())
        book.spine = ["nav"] + items
    else:
        book.spine = items
    # Manifest order deliberately differs from the spine: the spine decides.
    book.items.reverse()
    epub.write_epub(str(path), book, {"epub3_pages": False})
    return path


def make_pdf(path: Path, chapters: list[tuple[str, list[str]]], *, outline: bool = True, header="The Generated Book",
             title="PDF Book", author="Pat Writer") -> Path:
    """Write a text PDF with reportlab: a running header, page-number footers, optional bookmarks."""
    from reportlab.lib.pagesizes import A5
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A5)
    c.setTitle(title)
    c.setAuthor(author)
    width, height = A5
    page = 1

    def finish_page():
        nonlocal page
        c.setFont("Helvetica", 9)
        c.drawString(40, height - 30, header)
        c.drawCentredString(width / 2, 25, str(page))
        c.showPage()
        page += 1

    for n, (chapter_title, lines) in enumerate(chapters):
        c.setFont("Helvetica-Bold", 14)
        c.drawString(40, height - 70, chapter_title)
        if outline:
            c.bookmarkPage(f"ch{n}")
            c.addOutlineEntry(chapter_title, f"ch{n}", level=0)
        y = height - 100
        c.setFont("Helvetica", 10)
        for line in lines:
            if y < 60:
                finish_page()
                c.setFont("Helvetica", 10)
                y = height - 70
            c.drawString(40, y, line)
            y -= 14
        finish_page()
    c.save()
    return path


def fake_chapter_lines(n: int, word: str) -> list[str]:
    line = f"The {word} walked along the quiet road and thought about the long day ahead of"
    return [line] * n + ["her, and then it was done."]


# ---------------------------------------------------------------- corpus EPUBs


@needs_corpus
def test_corpus_childrens_literature_chapters_come_from_nav_inside_one_file():
    book = load_book(CORPUS / "childrens-literature.epub")
    titles = [c.title for c in book.chapters]
    assert len(titles) == 18
    assert titles[:4] == ["SECTION IV FAIRY STORIES—MODERN FANTASTIC TALES", "BIBLIOGRAPHY", "INTRODUCTORY", "190 A FOUR-LEAVED CLOVER"]
    assert titles[-1] == "204 THE KING OF THE GOLDEN RIVER OR THE BLACK BROTHERS"
    assert book.title == "Children's Literature" and "Charles Madison Curry" in book.author
    assert book.language == "en" and book.cover_mime == "image/png" and book.cover.startswith(b"\x89PNG")
    nightingale = book.chapters[titles.index("194 THE NIGHTINGALE")]
    assert nightingale.words > 3000 and "Emperor" in nightingale.text
    all_text = "\n".join(c.text for c in book.chapters)
    assert "THE CONTENTS" not in all_text  # the nav document is not read
    assert "\n\n169\n\n" not in all_text and "\n\n170\n\n" not in all_text  # page-break numbers are not read


@needs_corpus
def test_corpus_wasteland_poetry_keeps_lines_and_drops_note_markers():
    book = load_book(CORPUS / "wasteland.epub")
    assert [c.title for c in book.chapters] == [
        "The Waste Land", "I. THE BURIAL OF THE DEAD", "II. A GAME OF CHESS", "III. THE FIRE SERMON",
        "IV. DEATH BY WATER", "V. WHAT THE THUNDER SAID", 'NOTES ON "THE WASTE LAND"']
    burial = book.chapters[1].text
    assert burial.startswith("April is the cruellest month, breeding\nLilacs out of the dead land, mixing")
    assert "Son of man,\n" in burial and "*" not in burial  # the noteref marker is gone, the words stay
    assert "Hofgarten,\nAnd" in burial  # the line number "10" is not read
    assert "Nam Sibyllam" in book.chapters[0].text  # the epigraph is the author's
    assert book.chapters[-1].words > 1000
    assert book.author == "T.S. Eliot" and book.cover_mime == "image/jpeg"


@needs_corpus
def test_corpus_georgia_skips_the_non_linear_cover():
    book = load_book(CORPUS / "georgia-pls-ssml.epub")
    assert [c.title for c in book.chapters] == [
        "GEORGIA", "Climate and Soils", "Minerals", "Agriculture", "Manufactures", "Population",
        "Government", "Education", "Finance", "History"]
    assert book.chapters[0].text.startswith("GEORGIA, a southern state")
    assert not book.chapters[1].text.startswith("Climate and Soils")  # the heading is the spoken title
    assert book.title == "Georgia" and book.language == "en" and book.cover


@needs_corpus
def test_corpus_internallinks_spine_items_and_japanese():
    book = load_book(CORPUS / "internallinks.epub")
    titles = [c.title for c in book.chapters]
    assert titles == [
        "EPUBリーダの数式サポート―iBooks3.0のMathML表示がかなり進化",
        "EPUBのベストプラクティス linear 属性の設定方法",
        "EPUBのベストプラクティス EPUB2用の目次NCXの出力はまだ必要か？",
        "EPUBのベストプラクティス カバー画像の登録方法",
        "注釈一覧",
    ]  # the list of figures and tables (図表一覧) is navigation, not body
    assert book.language == "ja" and book.cover
    assert book.chapters[0].text.startswith("10月の主要EPUBリーダ")
    assert "[1]" not in book.chapters[0].text


# ---------------------------------------------------------------- generated EPUBs


@pytest.mark.parametrize("version", [2, 3])
def test_generated_epub_spine_order_titles_metadata(tmp_path, version):
    path = make_epub(tmp_path / "b.epub", [
        ("Chapter One", "<p>First words.</p><p>Second paragraph.</p>"),
        ("Chapter Two", '<p>Text with a note<a epub:type="noteref" href="#n1"><sup>1</sup></a> here.</p>'
                        '<aside epub:type="footnote" id="n1"><p>The note itself.</p></aside><p>After.</p>'),
        ("Chapter Three", "<p>The end.</p>"),
    ], version=version, extra_front="<p>Copyright © 2020 Someone. All rights reserved. ISBN 978-0-00-000000-0.</p>")
    book = load_book(path)
    assert [c.title for c in book.chapters] == ["Chapter One", "Chapter Two", "Chapter Three"]
    assert book.chapters[0].text == "First words.\n\nSecond paragraph."
    assert book.chapters[1].text == "Text with a note here.\n\nAfter.\n\nThe note itself."
    assert (book.title, book.author, book.language) == ("Generated Book", "Ann Author", "en")
    assert book.cover == b"\x89PNG\r\n\x1a\nfakepng" and book.cover_mime == "image/png"


def test_generated_epub_many_chapters_in_one_file(tmp_path):
    path = make_epub(tmp_path / "one.epub", [(f"Part {i}", f"<p>Body of part {i}.</p>") for i in range(1, 5)], one_file=True)
    book = load_book(path)
    assert [(c.title, c.text) for c in book.chapters] == [(f"Part {i}", f"Body of part {i}.") for i in range(1, 5)]


def test_drm_epub_is_refused(tmp_path):
    path = make_epub(tmp_path / "drm.epub", [("One", "<p>Secret.</p>")])
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("META-INF/encryption.xml",
                    '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" xmlns:enc="http://www.w3.org/2001/04/xmlenc#">'
                    '<enc:EncryptedData><enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
                    '<enc:CipherData><enc:CipherReference URI="EPUB/ch0.xhtml"/></enc:CipherData></enc:EncryptedData></encryption>')
    with pytest.raises(AudiobookError, match="DRM"):
        load_book(path)


def test_truncated_and_fake_epubs_are_refused(tmp_path):
    good = make_epub(tmp_path / "good.epub", [("One", "<p>Words.</p>" * 50)])
    truncated = tmp_path / "truncated.epub"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(AudiobookError, match="zip|damaged"):
        load_book(truncated)
    fake = tmp_path / "fake.epub"
    fake.write_text("this is not a zip at all")
    with pytest.raises(AudiobookError, match="not a zip"):
        load_book(fake)


# ---------------------------------------------------------------- pdf


def test_pdf_with_outline_headers_footers_and_hyphenation(tmp_path):
    chapters = [
        ("The Arrival", fake_chapter_lines(40, "traveller") + ["A word split at the line end: un-", "believable, she said."]),
        ("The Departure", fake_chapter_lines(10, "sailor")),
    ]
    book = load_book(make_pdf(tmp_path / "b.pdf", chapters))
    assert [c.title for c in book.chapters] == ["The Arrival", "The Departure"]
    text = "\n".join(c.text for c in book.chapters)
    assert "The Generated Book" not in text  # running header
    assert "unbelievable" in text
    for n in range(1, 6):
        assert f"\n\n{n}\n\n" not in f"\n\n{text}\n\n" and not text.endswith(f" {n}")
    assert book.chapters[1].text.startswith("The sailor walked")
    assert (book.title, book.author) == ("PDF Book", "Pat Writer")


def test_pdf_without_outline_uses_heading_lines(tmp_path):
    chapters = [("Chapter 1", fake_chapter_lines(5, "cat")), ("Chapter 2", fake_chapter_lines(5, "dog"))]
    book = load_book(make_pdf(tmp_path / "b.pdf", chapters, outline=False))
    assert [c.title for c in book.chapters] == ["Chapter 1", "Chapter 2"]
    assert "dog" in book.chapters[1].text and "dog" not in book.chapters[0].text


def test_scanned_pdf_without_text_asks_for_ocr(tmp_path):
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(tmp_path / "scan.pdf"))
    c.rect(50, 50, 200, 200, fill=1)
    c.showPage()
    c.save()
    with pytest.raises(AudiobookError, match="OCR"):
        load_book(tmp_path / "scan.pdf")


# ---------------------------------------------------------------- txt, md


def test_txt_headings_of_many_kinds(tmp_path):
    path = tmp_path / "novel.txt"
    path.write_text(
        "Contents\n\nChapter 1\n\nCHAPTER XII\n\n"  # a contents list is not made into chapters
        "Chapter 1\n\nIt was a dark night.\nThe wind\nblew.\n\n2001\n\nA line that is a number stays.\n\n"
        "PART ONE\n\n"
        "CHAPTER XII.\n\nThe Return\n\nHe came back.\n\n"
        "# Epilogue\n\nAll was well.\n", encoding="utf-8")
    book = load_book(path)
    assert [c.title for c in book.chapters] == ["Opening", "Chapter 1", "PART ONE", "CHAPTER XII. The Return", "Epilogue"]
    assert book.chapters[0].text == "Contents"
    assert book.chapters[1].text == "It was a dark night. The wind blew.\n\n2001\n\nA line that is a number stays."
    assert book.chapters[2].text == "PART ONE"
    assert book.title == "novel"


def test_txt_part_of_sentence_is_not_a_heading(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("Part of the plan was simple.\n\nChapter two of her life began.\nIt went on and on.\n")
    assert len(load_book(path).chapters) == 1


def test_markdown_book(tmp_path):
    path = tmp_path / "m.md"
    path.write_text("# My Book\n\n## First\n\nSome *emphasis* and a [link](http://x).\n\n![img](a.png)\n\n"
                    "### A subheading\n\nMore.\n\n## Second\n\nLast words.\n")
    book = load_book(path)
    assert book.title == "My Book"
    assert [c.title for c in book.chapters] == ["First", "Second"]
    assert book.chapters[0].text == "Some emphasis and a link.\n\nA subheading\n\nMore."


# ---------------------------------------------------------------- json and edits


def test_json_round_trip_after_edits(tmp_path):
    book = Book("T", [Chapter("A", "a text"), Chapter("B", "b text"), Chapter("C", "c text"), Chapter("D", "d")],
                author="Au", language="en", cover=b"\x00\x01img", cover_mime="image/png", year="1911", genre="Fiction")
    edited = books.rename_chapter(book, 0, "Alpha")
    edited = books.merge_chapters(edited, [1, 2])
    edited = books.reorder_chapters(edited, [2, 0, 1])
    edited = books.drop_chapters(edited, [0])
    edited = books.set_chapter_text(edited, 1, "new\n\ntext")
    assert [c.title for c in edited.chapters] == ["Alpha", "B"]
    assert edited.chapters[1].text == "new\n\ntext"
    assert books.merge_chapters(book, [1, 2]).chapters[1].text == "b text\n\nC\n\nc text"
    assert book.chapters[0].title == "A"  # edits never change their argument
    saved = save_book_json(edited, tmp_path / "book.json")
    assert load_book(saved) == edited


def test_edit_errors_are_sentences():
    book = Book("T", [Chapter("A", "a")])
    for call in (lambda: books.rename_chapter(book, 3, "x"), lambda: books.drop_chapters(book, [0]),
                 lambda: books.reorder_chapters(book, [0, 0]), lambda: books.merge_chapters(book, [0])):
        with pytest.raises(AudiobookError):
            call()


# ---------------------------------------------------------------- bad input and size


@pytest.mark.parametrize("name,content,match", [
    ("empty.txt", b"", "empty"),
    ("blank.txt", b"  \n\n ", "empty"),
    ("binary.txt", bytes(range(256)) * 20, "binary"),
    ("book.xyz", b"PK", "Cannot read '.xyz' files; use .txt, .md, .epub, .pdf, .mobi, .azw3, .fb2, .docx, .odt, .html, .rtf or .json"),
    ("book.docx", b"PK", "damaged or not a Word document"),
    ("irm.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "DRMEncryptedDataSpace".encode("utf-16-le"), "protected by DRM; only DRM-free"),
    ("locked.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 64, "protected by a password or is an old Word"),
    ("book.odt", b"PK", "not a valid OpenDocument"),
    ("book.fb2", b"<html><body>no</body></html>", "not a FictionBook"),
    ("book.rtf", b"plain words", "not an RTF document"),
    ("book.mobi", b"x" * 100, "not a Kindle"),
    ("bad.json", b"{not json", "not valid JSON"),
    ("list.json", b"[1, 2]", "not a book"),
    ("nochapters.json", json.dumps({"chapters": [{"title": "x"}]}).encode(), "no \"text\""),
    ("junk.pdf", b"%PDF-1.4 garbage", "PDF"),
])
def test_bad_input_gets_one_sentence(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudiobookError, match=match) as err:
        load_book(path)
    assert str(err.value).endswith(".") and "\n" not in str(err.value)


def test_missing_file():
    with pytest.raises(AudiobookError, match="no file"):
        load_book("/nonexistent/book.epub")


def test_large_txt_reads_every_chapter_and_paragraph(tmp_path):
    """A 5 MB, 60-chapter book read whole (how long it takes: bench/timings.py)."""
    paragraph = ("It was the best of times, it was the worst of times, it was the age of wisdom. " * 5).strip()
    block = "\n\n".join(paragraph for _ in range(200))
    path = tmp_path / "big.txt"
    with path.open("w") as f:
        for i in range(60):  # about 5 MB, 60 chapters
            f.write(f"\n\nChapter {i + 1}\n\n{block}")
    book = load_book(path)
    assert [c.title for c in book.chapters] == [f"Chapter {i + 1}" for i in range(60)]
    assert all(c.text.count(paragraph) == 200 for c in book.chapters)


@pytest.mark.slow
def test_fifty_megabyte_txt_reads(tmp_path):
    line = "Words and more words in a long long line of a very large book. " * 4
    path = tmp_path / "huge.txt"
    with path.open("w") as f:
        for i in range(200):
            f.write(f"\n\nChapter {i + 1}\n\n" + "\n\n".join([line] * 1000))
    assert path.stat().st_size > 50_000_000
    book = load_book(path)
    assert len(book.chapters) == 200 and all(c.text.count(line.strip()) == 1000 for c in book.chapters)


def test_describe_book_lists_chapters_and_chunks():
    book = Book("Title", [Chapter("One", "Hello there. " * 60), Chapter("Two", "Bye.")], author="Me", language="en")
    out = describe_book(book, 200)
    assert "Title:    Title" in out and "Author:   Me" in out and "Cover:    no" in out
    assert "   1      120       5  One" in out and "   2        1       2  Two" in out
    assert "[1] One   <title>" in describe_book(book, 200, show_chunks=True)


def test_epub_year_and_genre_reach_the_book(tmp_path):
    path = make_epub(tmp_path / "dated.epub", [("One", "<p>Some words here.</p>")],
                     dc={"date": "1911-05-02", "subject": "Fairy tales"})
    read = load_book(path)
    assert (read.year, read.genre) == ("1911", "Fairy tales")
