"""Which float precision a device computes in: bf16 autocast where it pays, fp32 elsewhere."""

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")


def native_bf16(device: str) -> bool:
    """Whether `device` computes bf16 in hardware: a CUDA GPU that supports it, or a CPU with AVX-512
    BF16 or AMX (oneDNN's bf16 kernels); elsewhere bf16 is emulated, slower than fp32."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:  # oneDNN's own check, a private operator: a torch without it is taken as without bf16
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(precision: str, device: str) -> torch.dtype | None:
    """Inference (CLIP's embeddings): bf16 where asked, or by default ("auto") on CUDA; None: fp32."""
    check_precision(precision)
    if precision == "bf16" or (precision == "auto" and torch.device(device).type == "cuda"):
        return torch.bfloat16
    return None


def training_dtype(precision: str, device: str) -> torch.dtype | None:
    """Training: bf16 autocast where asked, or by default ("auto") where the device computes bf16 in
    hardware (weights, optimizer and BatchNorm stay fp32); None: fp32."""
    check_precision(precision)
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None
