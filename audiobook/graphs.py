"""CUDA graphs for the engine's decode step: capture, the first-replay guard, and the session switch.

The engine (``audiobook/engine.py``) captures one decode step per (slot bucket, KV bucket)
and replays it. What is here does not know the model:

- ``record_graph`` captures a block as a graph and, when the capture fails, leaves CUDA as
  it was (allocator, random generator), so the engine can go on eagerly;
- ``capture_stream`` is the one side stream every warm-up and capture on a device runs on;
- ``compare_step`` judges a graph's first replay against the eager step (``GraphCheck``);
- ``turn_graphs_off`` switches graphs off for the process with one logged sentence, which
  ``cuda_graphs_off`` gives back (the doctor and the page show it).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)


# torch.testing's default tolerances by dtype: the logits come out of a model computed in it.
_RTOL = {torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 1.6e-2}
_ATOL = 1e-5


@dataclass(frozen=True)
class GraphCheck:
    """One graph's first replay against the eager step: codes equal, logits within the dtype's tolerance."""

    slots: int
    kv_len: int  # KV positions the step attends over (its KV bucket)
    codes_equal: bool
    logits_close: bool
    max_logit_diff: float

    @property
    def ok(self) -> bool:
        return self.codes_equal and self.logits_close

    def describe(self) -> str:
        return (f"{self.slots} slots, KV length {self.kv_len}: codes {'equal' if self.codes_equal else 'differ'}, "
                f"largest logit difference {self.max_logit_diff:.3g}")


def compare_step(eager, replay, rows: torch.Tensor, dtype: torch.dtype, slots: int = 0, kv_len: int = 0) -> GraphCheck:
    """Judge one step's outputs ``(frame [S, 16], next first code [S], logits [S, V])`` against another's.

    Only ``rows`` (a boolean mask of the slots) count. Codes must be equal; logits within
    torch.testing's default tolerance for ``dtype`` (the model's), NaN counting as different.
    """
    (frame_a, tok_a, logits_a), (frame_b, tok_b, logits_b) = eager, replay
    codes_equal = bool(torch.equal(frame_a[rows], frame_b[rows]) and torch.equal(tok_a[rows], tok_b[rows]))
    a, b = logits_a[rows].float(), logits_b[rows].float()
    close = bool(torch.isclose(b, a, rtol=_RTOL.get(dtype, 1.6e-2), atol=_ATOL).all())
    diff = (a - b).abs().nan_to_num(float("inf"))
    return GraphCheck(slots, kv_len, codes_equal, close, float(diff.max()) if diff.numel() else 0.0)


_graphs_off: str | None = None  # why CUDA graphs went off for this process


def cuda_graphs_off() -> str | None:
    """Why CUDA graphs are off for this session (the sentence that was logged), or None while they are on."""
    return _graphs_off


def turn_graphs_off(reason: str) -> None:
    global _graphs_off
    if _graphs_off is None:
        _graphs_off = reason
        log.warning(reason)


class GraphCaptureError(RuntimeError):
    """A decode step could not be captured as a CUDA graph; the engine's state is dropped."""


_capture_streams: dict[int, Any] = {}


@contextlib.contextmanager
def capture_stream(device: torch.device):
    """Run the block on the one side stream on which every warm-up and capture on ``device`` runs.

    Warm-up and capture share one stream for the whole process: the cuBLAS workspace that a
    stream's first matrix product allocates then comes from the warm-up, outside any graph's
    pool, instead of staying behind in the pool of the first graph. (Off CUDA: no stream.)
    """
    if device.type != "cuda":
        yield
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _capture_streams:
        _capture_streams[index] = torch.cuda.Stream(index)
    stream, current = _capture_streams[index], torch.cuda.current_stream(index)
    stream.wait_stream(current)
    try:
        with torch.cuda.stream(stream):
            yield
    finally:
        current.wait_stream(stream)


def record_graph(body: Callable[[], None], device: torch.device):
    """Capture ``body`` on the current stream as a CUDA graph, and on failure leave CUDA as it was.

    ``torch.cuda.graph`` ends a capture in its ``__exit__`` before it leaves the capture
    stream, so when ending the capture raises (as it does after an operation the capture
    rejected), the stream stays current and the allocator keeps routing into the graph's
    pool. Here the capture always ends, the allocator and the random generator are put
    back, and the first error is raised. Each graph gets a pool of its own (never shared:
    a pool whose graphs are all gone cannot take another capture), and cached memory,
    including the pools of graphs already dropped, goes back to the driver first.
    """
    index = device.index if device.index is not None else torch.cuda.current_device()
    generator = torch.cuda.default_generators[index]
    before = generator.clone_state()
    pool = torch.cuda.graph_pool_handle()
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    # Another thread may touch CUDA meanwhile (the page's status line asks for free memory, a
    # clone prompt's speaker encoder runs outside the engine): only this thread's calls count.
    graph.capture_begin(pool, capture_error_mode="thread_local")
    failure: BaseException | None = None
    try:
        body()
    except BaseException as e:  # noqa: BLE001 - the capture must end whatever happened
        failure = e
    try:
        graph.capture_end()
    except Exception as e:
        # cudaStreamEndCapture failed: torch skipped the allocator's and the generator's epilogue.
        with contextlib.suppress(Exception):
            torch._C._cuda_endAllocateToPool(index, pool)
        with contextlib.suppress(Exception):
            torch._C._cuda_releasePool(index, pool)
        with contextlib.suppress(Exception):
            generator.graphsafe_set_state(before)
        failure = failure or e
    if failure is not None:
        raise failure
    return graph
