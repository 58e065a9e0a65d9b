"""The plasticity diagnostics' measures, as pure functions of activations, gradients and weights.

`diagnostics.py` decides when to measure and what to feed them; each function here has a hand-built case
with a known answer in tests/test_diagnostics.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

GELU_FLAT_BELOW = -3.0  # GELU'(-3) = -0.012 and |GELU(x)| < 0.004 below: a unit here passes almost nothing back
MAX_CORRELATION_TOKENS = 1024  # rows used for unit correlations: the matrix product stays small at any batch


def dormant_scores(hidden: torch.Tensor) -> torch.Tensor:
    """ReDo's score per unit (last dim): its mean |activation| over the batch over the layer's mean of that."""
    mean_abs = hidden.detach().float().abs().flatten(0, -2).mean(0)
    return mean_abs / mean_abs.mean().clamp_min(torch.finfo(torch.float32).tiny)


def gradient_scores(unit_grad_norms: torch.Tensor) -> torch.Tensor:
    """Each unit's gradient norm over the layer's mean of them: gradient-based dormancy (as in DrM and GraMa),
    which does not mis-score a GELU unit that is small but still learning."""
    norms = unit_grad_norms.detach().float()
    return norms / norms.mean().clamp_min(torch.finfo(torch.float32).tiny)


def saturated_ratio(pre_activation: torch.Tensor, share: float) -> float:
    """Share of units (last dim) whose pre-activation lies in GELU's flat region (below GELU_FLAT_BELOW) for at
    least `share` of the inputs."""
    flat = (pre_activation.detach().flatten(0, -2) < GELU_FLAT_BELOW).float().mean(0)
    return (flat >= share).float().mean().item()


def duplicate_ratio(hidden: torch.Tensor, threshold: float) -> float:
    """Share of units (last dim) whose activations correlate above `threshold` with another unit's, over the
    first MAX_CORRELATION_TOKENS inputs; a unit that never varies duplicates nothing."""
    rows = hidden.detach().double().flatten(0, -2)[:MAX_CORRELATION_TOKENS]
    centred = rows - rows.mean(0)
    norms = centred.norm(dim=0)
    varies = norms > 1e-12 * max(norms.max().item(), 1.0)
    unit = centred[:, varies] / norms[varies]
    correlation = unit.T @ unit
    correlation.fill_diagonal_(-1.0)
    duplicated = (correlation > threshold).any(dim=1).sum().item() if len(correlation) else 0
    return duplicated / hidden.shape[-1]


def feature_moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per feature (last dim): mean and standard deviation over every other dim."""
    rows = features.detach().double().flatten(0, -2)
    return rows.mean(0), rows.std(0, correction=0)


def moment_drift(now: tuple[torch.Tensor, torch.Tensor], start: tuple[torch.Tensor, torch.Tensor]) -> float:
    """How far per-feature Gaussians (mean, std) moved since `start`: the 2-Wasserstein distance between them,
    sqrt(mean((μ − μ₀)² + (σ − σ₀)²)), over the start's root-mean-square σ₀ (0: unchanged; 1: a shift as large as
    the features' own spread)."""
    (mean, std), (mean0, std0) = now, start
    distance = ((mean - mean0).pow(2) + (std - std0).pow(2)).mean().sqrt().item()
    scale = std0.pow(2).mean().sqrt().item()
    return distance / scale if scale > 0 else math.nan


def spectral_norm(weight: torch.Tensor) -> float:
    """The largest singular value of a matrix: the root of its Gram matrix's top eigenvalue (the Gram matrix
    over the smaller side, several times faster than an SVD and as exact in float64)."""
    matrix = weight.detach().double()
    gram = matrix.T @ matrix if matrix.shape[0] >= matrix.shape[1] else matrix @ matrix.T
    return torch.linalg.eigvalsh(gram)[-1].clamp_min(0.0).sqrt().item()


def weight_spectrum(weight: torch.Tensor) -> tuple[float, float]:
    """(spectral norm, stable rank ‖W‖_F² / ‖W‖₂²): the stable rank counts the directions that carry the matrix's
    energy (1 for rank one; 0 for a zero matrix)."""
    top = spectral_norm(weight)
    return top, (weight.detach().double().pow(2).sum().item() / top ** 2 if top > 0 else 0.0)


def srank(features: torch.Tensor, delta: float = 0.01) -> int:
    """Smallest k whose k largest singular values hold 1 - delta of their sum (Kumar et al. 2021)."""
    singular = torch.linalg.svdvals(features.detach().double())
    if singular.sum() == 0:
        return 0
    cumulative = singular.cumsum(0) / singular.sum()
    return int(torch.searchsorted(cumulative, torch.tensor(1.0 - delta, dtype=cumulative.dtype)).item()) + 1


def effective_rank(features: torch.Tensor) -> float:
    """exp of the entropy of the normalised singular values (Roy & Vetterli 2007)."""
    singular = torch.linalg.svdvals(features.detach().double())
    if singular.sum() == 0:
        return 0.0
    p = singular / singular.sum()
    return math.exp(-(p * p.clamp_min(1e-300).log()).sum().item())


def attention_entropy(q: torch.Tensor, k: torch.Tensor, query_chunk: int = 256) -> float:
    """Mean entropy (nats) of causal attention rows, for q and k of shape (batch, heads, seq, head_dim)."""
    seq = q.shape[-2]
    total, rows = 0.0, 0
    for start in range(0, seq, query_chunk):
        scores = q[..., start:start + query_chunk, :].float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])
        positions = torch.arange(start, min(start + query_chunk, seq), device=q.device)
        scores = scores.masked_fill(torch.arange(seq, device=q.device) > positions[:, None], float("-inf"))
        log_p = F.log_softmax(scores, dim=-1)
        total += -(log_p.exp() * log_p.nan_to_num(neginf=0.0)).sum().item()
        rows += scores[..., 0].numel()
    return total / rows


def top_hessian_eigenvalue(loss: torch.Tensor, params: Sequence[torch.Tensor], iterations: int,
                           generator: torch.Generator) -> float:
    """The Hessian's eigenvalue of largest magnitude, of `loss` (built with a graph) in `params`: power
    iteration on Hessian-vector products from a seeded random start; the last Rayleigh quotient."""
    grads = torch.autograd.grad(loss, params, create_graph=True)
    vector = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params]
    eigenvalue = 0.0
    for _ in range(iterations):
        norm = math.sqrt(sum(v.pow(2).sum().item() for v in vector))
        vector = [v / norm for v in vector]
        product = torch.autograd.grad(grads, params, grad_outputs=vector, retain_graph=True)
        eigenvalue = sum((h * v).sum().item() for h, v in zip(product, vector))
        vector = [h.detach() for h in product]
    return eigenvalue
