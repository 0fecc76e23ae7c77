"""The read-along player of the Review tab: a chapter's audio beside its text, the sentence being read highlighted.

Clicking a sentence seeks to it. Sentences of flagged chunks (suspect or failed) are marked,
with the reason on hover, so a problem is found by ear and by eye at once. Words are
highlighted too where Whisper timed them and they line up with the sentence's words.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import quote

from audiobook.errors import AudiobookError

# One set of listeners on the component: media events do not bubble, so they are caught on the way down.
PLAYER_JS = """
const sync = (audio) => {
  const t = audio.currentTime;
  let current = null;
  element.querySelectorAll('[data-start]').forEach((el) => {
    const on = t >= parseFloat(el.dataset.start) && t < parseFloat(el.dataset.end);
    el.classList.toggle('ra-active', on);
    if (on && el.classList.contains('ra-s')) current = el;
  });
  if (current && current.id !== element.dataset.current) {
    element.dataset.current = current.id;
    current.scrollIntoView({block: 'nearest'});
  }
};
['timeupdate', 'seeked', 'loadedmetadata'].forEach((name) =>
  element.addEventListener(name, (e) => { if (e.target.tagName === 'AUDIO') sync(e.target); }, true));
element.addEventListener('click', (e) => {
  const s = e.target.closest('.ra-s, .ra-w');
  const audio = element.querySelector('audio');
  if (!s || !audio) return;
  audio.currentTime = parseFloat(s.dataset.start) + 0.001;
  audio.play().catch(() => {});
});
"""

PLAYER_CSS = """
.readalong audio { width: 100%; }
.readalong .ra-text { max-height: 24em; overflow-y: auto; line-height: 1.6; padding: 0.5em; }
.readalong .ra-s { cursor: pointer; border-radius: 3px; }
.readalong .ra-s:hover { background: rgba(128, 128, 128, 0.15); }
.readalong .ra-s.ra-active { background: #ffe58a; color: #111; }
.readalong .ra-w.ra-active { text-decoration: underline; text-decoration-thickness: 2px; }
.readalong .ra-flagged { text-decoration: underline wavy #d33; }
.readalong .ra-s.ra-flagged.ra-active { background: #ffb3a7; }
.readalong h4 { margin: 0.5em 0; }
"""


def readalong_html(backend, folder: Path, chapter: int, serve) -> str:
    """The player of chapter ``chapter`` (from 1) of the render in ``folder``; ``serve`` hands out the audio."""
    from audiobook import manifest as mf
    from audiobook.review import load_render
    from audiobook.timings import book_timings

    m = load_render(folder)
    if not 1 <= chapter <= len(m.chapters):
        raise AudiobookError(f"There is no chapter {chapter}; this book has chapters 1 to {len(m.chapters)}.")
    timings = book_timings(folder, m).get(chapter)
    if timings is None:
        raise AudiobookError(f"Chapter {chapter} is not assembled yet, so there is nothing to read along; render it first.")
    url = "/gradio_api/file=" + quote(serve(folder / timings.file))
    refs = m.chapters[chapter - 1].chunks
    parts = [f'<div class="readalong" data-chapter="{chapter}"><style>{PLAYER_CSS}</style>',
             f'<audio controls preload="auto" src="{html.escape(url)}"></audio><div class="ra-text"><p>']
    open_title = False
    for k, s in enumerate(timings.sentences, 1):
        ref = refs[s.chunk] if s.chunk < len(refs) else None
        state = m.chunks.get(ref.id) if ref is not None else None
        classes = ["ra-s"]
        title = ""
        if state is not None and state.status in mf.FLAGGED:
            classes.append("ra-flagged")
            title = f' title="{html.escape(state.status + (": " + state.error if state.error else ""))}"'
        if s.title and not open_title:
            parts.append("</p><h4>")
            open_title = True
        elif not s.title and open_title:
            parts.append("</h4><p>")
            open_title = False
        parts.append(f'<span class="{" ".join(classes)}" id="ra-s-{k}" data-chunk="{s.chunk}" '
                     f'data-start="{s.start:.3f}" data-end="{s.end:.3f}"{title}>{_words_html(s)}</span> ')
        if ref is not None and ref.paragraph_end and not s.title and _last_of_chunk(timings.sentences, k - 1):
            parts.append("</p><p>")
    parts.append("</h4>" if open_title else "</p>")
    parts.append("</div></div>")
    return "".join(parts)


def _last_of_chunk(sentences, i: int) -> bool:
    return i + 1 >= len(sentences) or sentences[i + 1].chunk != sentences[i].chunk


def _words_html(s) -> str:
    """The sentence's text; each word in its own span where Whisper's words line up with it one to one."""
    words = s.text.split()
    if not s.words or len(s.words) != len(words):
        return html.escape(s.text)
    return " ".join(f'<span class="ra-w" data-start="{w.start:.3f}" data-end="{w.end:.3f}">{html.escape(text)}</span>'
                    for text, w in zip(words, s.words))
