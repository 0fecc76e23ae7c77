"""qwen_tts's import banners stay out of our output; everything else still shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from audiobook import quiet

ROOT = Path(__file__).resolve().parent.parent

BANNERS = ("flash-attn", "SoX could not be found", "sox.sourceforge.net", "sox: not found", "********")


def test_importing_qwen_tts_prints_no_banner_but_our_own_lines_still_show(tmp_path):
    script = (
        "import sys, audiobook\n"
        "print('ours before', flush=True)\n"
        "from qwen_tts import Qwen3TTSModel\n"
        "print('ours after', flush=True)\n"
        "print('our warning', file=sys.stderr, flush=True)\n"
    )
    # An empty PATH: no SoX program for the sox package's check to find, on any machine.
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PATH": str(tmp_path), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ours", "before", "ours", "after"]
    assert done.stderr.strip() == "our warning"


def test_without_the_filter_the_banners_do_reach_the_output(tmp_path):
    """The test above could not pass by accident: without ``quiet`` the same import is noisy."""
    script = ("import sys, audiobook\n"
              "sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != '_QuietFinder']\n"
              "import qwen_tts\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PATH": str(tmp_path), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "flash-attn" in done.stdout and "SoX could not be found" in done.stderr


def test_only_the_banner_lines_are_dropped():
    text = ("\n********\nWarning: flash-attn is not installed. Will only run the manual PyTorch version.\n********\n \n"
            "/bin/sh: 1: sox: not found\nSoX could not be found!\n\n    If you do not have SoX, proceed here:\n"
            "     - - - http://sox.sourceforge.net/ - - -\n\n    If you do (or think that you should) have SoX, "
            "double-check your\n    path variables.\n    \nA real warning from another thread\n")
    assert quiet.pass_on(text) == "A real warning from another thread\n"
