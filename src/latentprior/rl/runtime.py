"""Where and how torch computes: device choice, thread count, matmul precision, seeds, RNG state."""

from __future__ import annotations

import contextlib
import random
import warnings
from typing import Any, Iterator

import numpy as np
import torch

from latentprior.io import LatentPriorError

__all__ = [
    "resolve_device",
    "fastest_exact_matmul_precision",
    "native_bf16",
    "torch_settings",
    "seed_everything",
    "get_rng_state",
    "set_rng_state",
    "derive_seed",
]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is checked and kept."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LatentPriorError(f"device {device} asked for, but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return device


def _matmul_rel_error(device: torch.device) -> float:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(256, 256, generator=gen)
    b = torch.randn(256, 256, generator=gen)
    exact = a.double() @ b.double()
    approx = (a.to(device) @ b.to(device)).cpu().double()
    return float((approx - exact).norm() / exact.norm())


def fastest_exact_matmul_precision(device: torch.device) -> str:
    """The fastest ``torch.set_float32_matmul_precision`` level whose float32 matmuls stay exact.

    "Exact" means a relative error at float32 round-off level (< 1e-5) on a 256x256 probe. On CPUs
    with AVX512-BF16, oneDNN answers ``"medium"`` with a split-bf16 kernel that measures as accurate
    as float32 (relative error ~3e-7, the float32 one ~2e-7) at about twice the speed: the
    256x256 layers of SAC are matmul-bound, so this is most of its speed on CPU. On GPUs
    ``"high"``/``"medium"`` mean TF32/bf16 (error ~1e-3), which the probe rejects: ``"highest"``.
    """
    previous = torch.get_float32_matmul_precision()
    try:
        for level in ("medium", "high"):
            torch.set_float32_matmul_precision(level)
            if _matmul_rel_error(device) < 1e-5:
                return level
        return "highest"
    finally:
        torch.set_float32_matmul_precision(previous)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU whose oneDNN
    has bf16 kernels (AVX512-BF16 or AMX). Elsewhere a bf16 autocast is emulated, slower than float32
    (measured: SAC on Pendulum 4x slower on an AVX2-only EPYC)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


@contextlib.contextmanager
def torch_settings(threads: int, matmul_precision: str, device: torch.device) -> Iterator[str]:
    """Set torch's intra-op thread count and float32 matmul precision; restore both on exit.

    :param threads: intra-op threads (>= 1). One is fastest on a small shared machine: with a
        second busy core, OpenMP's spinning threads wait on each other (measured: SAC 4x slower
        with 2 threads on a 2-core VM while another process ran).
    :param matmul_precision: ``"highest"``, ``"high"``, ``"medium"``, ``"auto"``
        (:func:`fastest_exact_matmul_precision`) or ``"bf16"`` (like ``"auto"`` here; the learner
        then runs its networks under a bfloat16 autocast).
    :yield: the level in effect (``"bf16"`` passed through).
    """
    if threads < 1:
        raise LatentPriorError(f"torch_threads must be >= 1, got {threads}")
    if matmul_precision not in ("auto", "highest", "high", "medium", "bf16"):
        raise LatentPriorError(f"matmul_precision must be auto, highest, high, medium or bf16; got {matmul_precision!r}")
    if matmul_precision == "bf16" and not native_bf16(device):
        warnings.warn(f"matmul_precision 'bf16': {device} has no native bfloat16 (no AVX512-BF16 or AMX on a CPU), so "
                      "the autocast is emulated and slower than float32; 'auto' is the faster choice here", stacklevel=3)
    old_threads, old_precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    level = fastest_exact_matmul_precision(device) if matmul_precision in ("auto", "bf16") else matmul_precision
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(level)
    try:
        yield "bf16" if matmul_precision == "bf16" else level
    finally:
        torch.set_num_threads(old_threads)
        torch.set_float32_matmul_precision(old_precision)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The global generators' states as ``(tensors, JSON-able values)`` for a checkpoint."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    _, keys, pos, has_gauss, cached = np.random.get_state()
    values = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {"keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
    }
    return tensors, values


def set_rng_state(tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, state, gauss = values["python"]
    random.setstate((version, tuple(state), gauss))
    n = values["numpy"]
    np.random.set_state(("MT19937", np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached"]))


def derive_seed(*keys: int) -> int:
    """A seed in [0, 2**31) derived from integer keys (e.g. ``(seed, purpose, step)``), well mixed."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0] % 2**31)
