"""Timings of the everyday paths that need no real model, on this machine:

    python bench/quick.py

- ``tiny_build_s`` / ``tiny_rebuild_s``: building the five tiny checkpoints, and a rerun over them;
- ``tiny_batch5_cpu_s``: one x-vector clone call of five texts on the tiny 0.6B Base (CPU time);
- ``resume_plan_1000_s``: loading and re-planning a 1,000-chunk manifest whose audio is on disk;
- ``chunk_1mb_s``: planning the chunks of a megabyte of prose;
- ``read_5mb_txt_s``: reading a 5 MB, 60-chapter text book.

The tests check what these paths produce; how fast they are is measured here, where a
busy machine makes a number slower rather than a test red.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _timed(fn, clock=time.perf_counter):
    start = clock()
    out = fn()
    return clock() - start, out


def tiny_models(tmp: Path) -> dict[str, float]:
    import numpy as np
    import torch
    from qwen_tts import Qwen3TTSModel

    from audiobook.tiny import build_tiny_models

    torch.set_num_threads(1)
    build_s, paths = _timed(lambda: build_tiny_models(tmp))
    rebuild_s, _ = _timed(lambda: build_tiny_models(tmp))
    model = Qwen3TTSModel.from_pretrained(str(paths["Qwen3-TTS-12Hz-0.6B-Base"]), device_map="cpu",
                                          dtype=torch.float32, attn_implementation="sdpa")
    t = np.arange(24000) / 24000
    clip = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    prompt = model.create_voice_clone_prompt(ref_audio=(clip, 24000), x_vector_only_mode=True)
    texts = ["Hello world.", "It was a bright cold day in April.", "Short.", "你好，世界。", "The clocks were striking thirteen."]
    torch.manual_seed(0)
    batch_s, _ = _timed(lambda: model.generate_voice_clone(text=texts, language="English", voice_clone_prompt=prompt,
                                                           max_new_tokens=25), clock=time.process_time)
    return {"tiny_build_s": build_s, "tiny_rebuild_s": rebuild_s, "tiny_batch5_cpu_s": batch_s}


def resume_plan(tmp: Path) -> float:
    import numpy as np

    from audiobook import manifest as mf
    from audiobook.text import Chunk
    from audiobook.tts import GenerationOptions, Narrator

    key = mf.RenderKey.make(Narrator(kind="preset", speaker="ryan"), GenerationOptions(), "1.7B", "en")
    chapters = [[f"Chapter {c} sentence {i} says something a little longer than a title." for i in range(50)]
                for c in range(20)]
    chunks = [Chunk(ci, i, t, chapter_end=i == len(ts) - 1) for ci, ts in enumerate(chapters) for i, t in enumerate(ts)]
    titles = [f"Chapter {i + 1}" for i in range(len(chapters))]
    m = mf.plan_manifest({"title": "B"}, titles, chunks, key, tmp)
    mf.write_chunk_audio(tmp, "one", np.zeros(2400, dtype=np.float32))
    data = (tmp / mf.chunk_file("one")).read_bytes()
    for i, st in m.chunks.items():
        st.file = mf.chunk_file(i)
        (tmp / st.file).write_bytes(data)
        st.status, st.duration_s, st.attempts = mf.DONE, 0.1, 1
    mf.save_manifest(m, tmp)
    took, _ = _timed(lambda: mf.plan_manifest({"title": "B"}, titles, chunks, key, tmp, mf.load_manifest(tmp)))
    return took


def chunk_megabyte() -> float:
    from audiobook.books import Chapter
    from audiobook.text import plan_chunks

    paragraph = ('"Well," said Mr. Brown, "it is 5 miles to the 3rd farm." She laughed; they walked on, '
                 "talking of the harvest and the rain and the long winter that was surely coming. ") * 4
    chapters = [Chapter(f"Chapter {i}", "\n\n".join([paragraph] * 100)) for i in range(16)]
    took, _ = _timed(lambda: plan_chunks(chapters, 500))
    return took


def read_text_book(tmp: Path) -> float:
    from audiobook.books import load_book

    paragraph = ("It was the best of times, it was the worst of times, it was the age of wisdom. " * 5).strip()
    block = "\n\n".join(paragraph for _ in range(200))
    path = tmp / "big.txt"
    with path.open("w") as f:
        for i in range(60):
            f.write(f"\n\nChapter {i + 1}\n\n{block}")
    took, _ = _timed(lambda: load_book(path))
    return took


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-quick-") as tmp:
        tmp = Path(tmp)
        for sub in ("models", "manifest", "books"):
            (tmp / sub).mkdir()
        results = tiny_models(tmp / "models")
        results["resume_plan_1000_s"] = resume_plan(tmp / "manifest")
        results["chunk_1mb_s"] = chunk_megabyte()
        results["read_5mb_txt_s"] = read_text_book(tmp / "books")
    print(json.dumps({k: round(v, 3) for k, v in results.items()}, indent=2))
    return results


if __name__ == "__main__":
    main()
