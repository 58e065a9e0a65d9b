"""What a run turns on when it has a CUDA GPU: the `null` ("on CUDA") settings resolved, fused attention
kernels enforced for our shapes, and the GPU's dense bf16 peak for MFU. Nothing here changes a CPU run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plasticity_dist.model.gpt import GPTConfig
from plasticity_dist.study.config import GPU_PEAK_TFLOPS
from plasticity_dist.study.errors import ConfigError

def on_cuda(setting: bool | None) -> bool:
    """A `bool | None` config setting: None means "on when a CUDA GPU is present"."""
    return torch.cuda.is_available() if setting is None else setting


def detected_peak_tflops() -> float | None:
    """The dense bf16 peak of this process's GPU, from its name (e.g. 'NVIDIA H200'); None without a GPU
    or for a GPU not in GPU_PEAK_TFLOPS."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name().lower()
    return next((peak for gpu, peak in GPU_PEAK_TFLOPS.items() if gpu in name), None)


def enabled_attention_kernels() -> tuple[str, ...]:
    """The SDPA kernels PyTorch may pick for CUDA tensors now, in our names."""
    flags = {"flash": torch.backends.cuda.flash_sdp_enabled(), "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
             "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
             "math": torch.backends.cuda.math_sdp_enabled()}
    return tuple(name for name, enabled in flags.items() if enabled)


def require_fused_attention(model: GPTConfig, micro_batch: int, dtype: torch.dtype, device: torch.device) -> None:
    """Allow only the flash and cuDNN SDPA kernels (process-wide), then run one causal attention forward and
    backward at the run's shapes: if neither kernel takes them, fail now with the shapes, not silently slow.

    Flags are global so that torch.compile'd graphs see them too. On a CPU device nothing is changed.
    """
    if device.type != "cuda":
        raise ConfigError("model.flash_attention=true needs a CUDA GPU; set it to null (on CUDA only) or false")
    torch.backends.cuda.enable_math_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    torch.backends.cuda.enable_flash_sdp(True)
    torch.backends.cuda.enable_cudnn_sdp(True)
    head_dim = model.d_model // model.n_head
    shape = (micro_batch, model.n_head, model.block_size, head_dim)
    q, k, v = (torch.randn(shape, dtype=dtype, device=device, requires_grad=True) for _ in range(3))
    try:
        F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
    except RuntimeError as error:
        raise ConfigError(
            f"model.flash_attention: neither the flash nor the cuDNN attention kernel runs (batch, heads, seq, "
            f"head_dim)={shape} in {dtype} on {torch.cuda.get_device_name(device)} ({error}); "
            "set model.flash_attention=false to allow the slower kernels") from None
