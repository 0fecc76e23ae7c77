"""audiobook: turn a book into narrated chapters and an .m4b with Qwen3-TTS."""

from .errors import AudiobookError

__all__ = ["AudiobookError"]
