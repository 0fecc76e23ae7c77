"""What a reader did with a file: the reader used, pages read by OCR, lines removed, warnings.

Every reader returns its ``Book`` with a ``ReadReport`` (``Book.report``); ``backend.py book``
prints it and the page shows its warnings. ``OnProgress`` is how a slow reader (OCR) tells
the page and the command line how far it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

# on_progress(done, total, what): ``done`` of ``total`` steps, ``what`` a short sentence.
OnProgress = Callable[[int, int, str], None]


@dataclass
class ReadReport:
    reader: str = ""  # "EPUB", "PDF", "Word (docx)", ...
    pages: int = 0  # pages of a PDF (0 for formats without pages)
    ocr_pages: int = 0  # pages (or images) read by OCR
    ocr_cached: int = 0  # of those, pages whose OCR came from the cache
    ocr_language: str = ""  # the Tesseract language used
    running_lines: int = 0  # running heads, footers and page numbers removed
    hyphens_joined: int = 0  # words hyphenated at a line end made whole
    note_marks: int = 0  # footnote markers dropped
    converted_by: str = ""  # "Calibre (ebook-convert)" when the file was converted first
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as lines of text for a person."""
        out = [f"Read by:  {self.reader}" + (f", converted by {self.converted_by}" if self.converted_by else "")]
        if self.pages:
            ocr = ""
            if self.ocr_pages:
                ocr = f", {self.ocr_pages} read by OCR ({self.ocr_language}"
                ocr += f"; {self.ocr_cached} from the cache)" if self.ocr_cached else ")"
            out.append(f"Pages:    {self.pages}{ocr}")
        elif self.ocr_pages:
            out.append(f"OCR:      {self.ocr_pages} image pages ({self.ocr_language})")
        if self.pages or self.running_lines or self.hyphens_joined or self.note_marks:
            out.append(f"Cleaned:  {self.running_lines} running-head/footer/page-number lines removed, "
                       f"{self.hyphens_joined} line-end hyphens joined, {self.note_marks} footnote markers dropped")
        out += [f"Warning:  {w}" for w in self.warnings]
        return out
