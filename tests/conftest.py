"""Shared pytest fixtures."""

import pytest


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    """A folder holding all five tiny random Qwen3-TTS checkpoints, built once a session."""
    import torch

    from audiobook.tiny import build_tiny_models

    # The machine is shared: keep torch to at most two threads.
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = tmp_path_factory.mktemp("tiny-models")
    build_tiny_models(out)
    return out
