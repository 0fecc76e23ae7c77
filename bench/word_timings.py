"""What Whisper's word times cost: the same takes transcribed with and without them, rounds interleaved.

    python bench/word_timings.py [--rounds 5] [--takes 8] [--seconds 6] [--whisper DIR]

Without ``--whisper`` it builds the tiny random Whisper (``audiobook/tiny.py``): its decoder
stops early on noise and has 2 layers, so the ratio says little about a real checkpoint,
where the extra cross-attention pass and dynamic time warping per token come on top of a
much longer decode. Prints wall and CPU seconds per round for both and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--takes", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--whisper", help="a Whisper checkpoint folder (default: the tiny random one)")
    args = ap.parse_args()

    import torch

    from audiobook.check.whisper import Transcriber
    from audiobook.tiny_whisper import build_tiny_whisper

    torch.set_num_threads(1)
    source = args.whisper
    if not source:
        source = str(build_tiny_whisper(Path(tempfile.mkdtemp(prefix="tiny-whisper-")))["whisper-small"])
    t = Transcriber(source)
    rng = np.random.default_rng(0)
    sr = 24000
    takes = [(0.2 * np.sin(np.arange(int(args.seconds * sr)) * 2 * np.pi * (150 + 40 * k) / sr)
              * (1 + 0.5 * rng.standard_normal(int(args.seconds * sr)))).astype(np.float32) for k in range(args.takes)]
    texts = ["The boats came in at dawn and the nets were full of silver fish."] * args.takes
    t.transcribe(takes[:1], sr, "en", texts[:1], words=True)  # warm up
    rows = {False: [], True: []}
    for r in range(args.rounds):
        for words in ((False, True) if r % 2 == 0 else (True, False)):  # interleaved, order alternating
            w0, c0 = time.perf_counter(), time.process_time()
            t.transcribe(takes, sr, "en", texts, words=words)
            rows[words].append((time.perf_counter() - w0, time.process_time() - c0))
            print(f"round {r + 1} word times {'on ' if words else 'off'}: wall {rows[words][-1][0]:.2f}s, "
                  f"CPU {rows[words][-1][1]:.2f}s", flush=True)
    off_w, on_w = (statistics.median(w for w, _ in rows[k]) for k in (False, True))
    off_c, on_c = (statistics.median(c for _, c in rows[k]) for k in (False, True))
    print(f"median over {args.rounds} rounds of {args.takes} takes of {args.seconds:g}s: off wall {off_w:.2f}s "
          f"CPU {off_c:.2f}s; on wall {on_w:.2f}s CPU {on_c:.2f}s; word times cost x{on_w / off_w:.2f} wall, "
          f"x{on_c / off_c:.2f} CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
