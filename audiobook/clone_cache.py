"""The clone-prompt cache: a voice's clone prompt (reference codes and speaker embedding) kept beside its clip.

Making the prompt takes a model call; the cache file is keyed by what it was made from (the
clip's bytes, its text, the mode and the checkpoint), so a changed clip or model makes a new one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .errors import AudiobookError
from .files import atomic_write_bytes

log = logging.getLogger(__name__)


def file_sha1(path: str | os.PathLike) -> str:
    """Hex SHA-1 of a file's bytes, read in blocks (reference clips are hashed for cache keys)."""
    import hashlib

    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# A voice's clone prompt (reference codes and speaker embedding) takes a model call to make;
# it is kept beside the clip, keyed by what it was made from.

PROMPT_FORMAT = 1


def clone_prompt_key(ref_audio: str | os.PathLike, ref_text: str, x_vector_only: bool, source: str) -> dict[str, Any]:
    """What a cached clone prompt depends on: the clip's bytes, its text, the mode and the checkpoint."""
    import hashlib

    return {
        "format": PROMPT_FORMAT,
        "reference_sha1": file_sha1(ref_audio),
        "text_sha1": hashlib.sha1(ref_text.encode("utf-8")).hexdigest(),
        "x_vector_only": bool(x_vector_only),
        "checkpoint": source,
    }


def load_clone_prompt(path: Path, key: dict[str, Any]):
    """The cached prompt at ``path`` when it was made from the same clip, text and checkpoint, else None."""
    import torch
    from qwen_tts.inference.qwen3_tts_model import VoiceClonePromptItem

    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain values only
    except Exception as e:
        log.warning("Ignoring unreadable clone prompt cache %s: %s", path, e)
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    return VoiceClonePromptItem(
        ref_code=data["ref_code"], ref_spk_embedding=data["ref_spk_embedding"],
        x_vector_only_mode=bool(data["x_vector_only_mode"]), icl_mode=bool(data["icl_mode"]),
        ref_text=data["ref_text"],
    )


def save_clone_prompt(path: Path, key: dict[str, Any], prompt) -> None:
    """Store a prompt's tensors (on the CPU) with the key that makes it valid; written atomically."""
    import io

    import torch

    data = {
        "key": key,
        "ref_code": None if prompt.ref_code is None else prompt.ref_code.detach().cpu(),
        "ref_spk_embedding": prompt.ref_spk_embedding.detach().cpu(),
        "x_vector_only_mode": bool(prompt.x_vector_only_mode),
        "icl_mode": bool(prompt.icl_mode),
        "ref_text": prompt.ref_text,
    }
    buf = io.BytesIO()
    torch.save(data, buf)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except (OSError, AudiobookError) as e:
        log.warning("Could not cache the clone prompt at %s: %s", path, e)
