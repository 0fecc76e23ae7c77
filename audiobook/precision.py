"""The ``dtype`` setting: which number formats this machine runs, and the sentence when it cannot.

- ``float32``: everywhere; the CPU's default and the reference.
- ``bfloat16``: on GPUs of compute capability 8 and later, and on CPUs with bfloat16
  instructions (AVX512-BF16 or AMX on x86, as oneDNN reports them); elsewhere torch would
  emulate it, slower than float32, so it is refused.
- ``float16``: on GPUs; on a CPU torch has few kernels for it, so it is refused there.
- ``int8``: the CPU user's fastest path: the decode step's matrix products read int8
  weights with one scale per output row (``aten._weight_int8pack_mm``); the model loads in
  float32 and everything else (prompts, audio decoding) runs in float32.
"""

from __future__ import annotations

from .errors import AudiobookError

CPU_DTYPES = ("float32", "bfloat16", "int8")  # what the doctor measures on a CPU, where the machine runs it


def cpu_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions torch uses (oneDNN's check)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - no oneDNN: no fast bfloat16
        return False


def int8_kernels() -> bool:
    """Whether this torch has the weight-only int8 matrix product on the CPU."""
    import torch

    if not hasattr(torch.ops.aten, "_weight_int8pack_mm"):
        return False
    try:
        w = torch.ones(8, 32, dtype=torch.int8)
        torch.ops.aten._weight_int8pack_mm(torch.ones(1, 32), w, torch.ones(8))
        return True
    except Exception:  # noqa: BLE001 - any failure means: not on this machine
        return False


def dtype_problem(name: str, device: str) -> str | None:
    """Why ``name`` cannot run on ``device`` ("cpu" or "cuda:N"), as a sentence; None when it can."""
    if device.startswith("cuda"):
        if name == "int8":
            return "The dtype 'int8' is for running on a CPU; on a GPU choose bfloat16, float16 or auto."
        return None
    if name == "bfloat16" and not cpu_bf16():
        return ("This CPU has no bfloat16 instructions (AVX512-BF16 or AMX), so bfloat16 would run slower "
                "than float32; choose float32, int8 or auto.")
    if name == "float16":
        return "The dtype 'float16' is for GPUs; on a CPU choose float32, bfloat16 or int8."
    if name == "int8" and not int8_kernels():
        return ("This version of torch has no int8 weight kernel for the CPU (aten._weight_int8pack_mm); "
                "choose float32 or auto.")
    return None


def check_dtype(name: str, device: str) -> None:
    """Raise AudiobookError with the sentence when ``name`` cannot run on ``device``."""
    problem = dtype_problem(name, device)
    if problem:
        raise AudiobookError(problem)


def cpu_choices() -> list[str]:
    """The dtypes this CPU runs, in the order the doctor measures them."""
    return [d for d in CPU_DTYPES if dtype_problem(d, "cpu") is None]
