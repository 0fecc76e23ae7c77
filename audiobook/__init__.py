"""audiobook: turn a book into narrated chapters and an .m4b with Qwen3-TTS."""

from . import quiet
from .errors import AudiobookError

quiet.install()  # qwen_tts's import banners stay out of our output (see quiet.py)

__all__ = ["AudiobookError"]
