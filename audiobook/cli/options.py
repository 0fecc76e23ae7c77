"""What the command line's options mean: chapter lists, the narrator, this run's workers."""

from __future__ import annotations

from audiobook.errors import AudiobookError
from audiobook.tts import PRESET, Narrator


def parse_chapters(text: str) -> list[int]:
    """'1,3-5' -> [1, 3, 4, 5]; AudiobookError on anything else."""
    out: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        try:
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise AudiobookError(f"'{part}' is not a chapter number or range; write chapters like 1,3-5.") from None
        if first < 1 or last < first:
            raise AudiobookError(f"'{part}' is not a chapter range; chapters count from 1, like 1,3-5.")
        out += [n for n in range(first, last + 1) if n not in out]
    if not out:
        raise AudiobookError("No chapters given; write chapters like 1,3-5.")
    return out



def narrator_from_args(args, backend) -> Narrator:
    """The narrator of `--voice`, `--ref-audio`/`--ref-text` or `--speaker`/`--instruct` (a sentence when none)."""
    if getattr(args, "voice", None):
        return backend.narrator_for(args.voice)
    if getattr(args, "ref_audio", None):
        from audiobook.clips import load_clip

        load_clip(args.ref_audio)  # a missing or unreadable clip is a sentence before any model loads
        return Narrator(kind="clone", ref_audio=str(args.ref_audio), ref_text=args.ref_text or "",
                        x_vector_only=not args.ref_text)
    if getattr(args, "ref_text", None):
        raise AudiobookError("--ref-text is the transcript of a clip; give the clip with --ref-audio too.")
    speaker = getattr(args, "speaker", None)
    if not speaker:
        names = ", ".join(backend.speakers())
        raise AudiobookError("Choose who narrates: --voice NAME (a saved voice, see `backend.py voices`), "
                             f"--speaker NAME (a built-in speaker: {names}), or --ref-audio CLIP --ref-text WORDS.")
    return Narrator(kind=PRESET, speaker=speaker, instruct=getattr(args, "instruct", "") or "")



def apply_worker_args(backend, args) -> None:
    """``--workers`` and ``--ray-address`` for this run only (not saved)."""
    workers, address = getattr(args, "workers", None), getattr(args, "ray_address", None)
    if workers is not None or address is not None:
        backend.apply_settings(backend.settings.updated(
            workers=backend.settings.workers if workers is None else workers,
            ray_address=backend.settings.ray_address if address is None else address))

