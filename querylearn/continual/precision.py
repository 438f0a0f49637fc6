"""Which floating-point precision trains a run: ``precision = "fp32" | "bf16" | "auto"``.

bf16 autocast pays only where the hardware computes bf16 natively: CUDA devices that report bf16
support, and CPUs with AVX512-BF16 or AMX-BF16. Elsewhere torch emulates it; on a 2-core Zen 3 without
AVX512-BF16 its convolutions ran at 3.5 GFLOP/s against 88 in fp32 (25x slower; measured for issue 14).
``auto`` picks bf16 only on native hardware (bf16 and fp32 gave equal quality on ML-100K over 3 seeds,
docs/benchmarks-train.md "bf16 vs fp32"), fp32 otherwise; the choice and its reason go to ``run.json``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    requested: str
    used: str  # "fp32" | "bf16"
    reason: str


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where it does not exist, e.g. macOS)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def native_bf16(device: torch.device, cpuinfo: str | None = None) -> tuple[bool, str]:
    """Whether ``device`` computes bf16 natively, and why (one phrase)."""
    if device.type == "cuda":
        ok = bool(torch.cuda.is_bf16_supported())
        return ok, f"CUDA device {'supports' if ok else 'does not support'} bf16"
    if device.type == "cpu":
        found = sorted(set(BF16_CPU_FLAGS) & cpu_flags(cpuinfo))
        if found:
            return True, f"CPU has {', '.join(found)}"
        return False, f"CPU has none of {', '.join(BF16_CPU_FLAGS)}"
    return False, f"no native-bf16 check for device type {device.type!r}"


def resolve_precision(requested: str, device: torch.device, cpuinfo: str | None = None) -> PrecisionChoice:
    """The precision a run uses. ``auto``: bf16 on native hardware, else fp32. ``bf16`` without native
    support still runs in bf16 (as asked) but warns with the measured cost."""
    if requested == "fp32":
        return PrecisionChoice(requested, "fp32", "asked for fp32")
    native, why = native_bf16(device, cpuinfo)
    if requested == "auto":
        return PrecisionChoice(requested, "bf16" if native else "fp32", f"auto: {why}")
    if not native:
        warnings.warn(
            f"precision = 'bf16' on {device} without native bf16 ({why}): torch emulates it, which "
            "made convolutions 25x slower than fp32 on a CPU without AVX512-BF16; use 'auto' or 'fp32'",
            stacklevel=2,
        )
    return PrecisionChoice(requested, "bf16", f"asked for bf16; {why}")
