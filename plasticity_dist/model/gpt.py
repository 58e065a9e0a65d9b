"""Decoder-only GPT (pre-norm, tied embeddings); the size presets are data, in presets.py.

Weight init follows GPT-2: every Linear and Embedding ~ N(0, 0.02); the two residual output projections
(attention `proj`, MLP `down`) use std 0.02 / sqrt(2 * n_layer) so the residual stream's variance does
not grow with depth. LayerNorms start at weight 1. Linear layers carry no bias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

INIT_STD = 0.02  # of every Linear and Embedding weight (GPT-2)
VOCAB_MULTIPLE = 64  # embedding rows are padded to a multiple of this (aligned matmuls, as nanoGPT's 50304)

@dataclass(frozen=True)
class GPTConfig:
    """Shape of one GPT; `vocab_size` and `block_size` come from the data, the rest from a preset."""

    n_layer: int
    d_model: int
    n_head: int
    vocab_size: int
    block_size: int

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the token embedding and the output layer: `vocab_size` rounded up to VOCAB_MULTIPLE. The
        padding ids never occur in data; the loss learns to give them no probability."""
        return -(-self.vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        q, k, v = (t.view(batch, seq, self.n_head, width // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(batch, seq, width))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, 4 * config.d_model, bias=False)
        self.down = nn.Linear(4 * config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model, bias=False)
        self.attn = CausalSelfAttention(config)
        self.ln_mlp = nn.LayerNorm(config.d_model, bias=False)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x))
        return x + self.mlp(self.ln_mlp(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.block_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_out = nn.LayerNorm(config.d_model, bias=False)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied input/output embedding
        self.activation_checkpointing = False  # in training, recompute each block's activations in backward
        self.apply(self._init_weights)
        residual_std = INIT_STD / math.sqrt(2 * config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, std=residual_std)
            nn.init.normal_(block.mlp.down.weight, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=INIT_STD)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of shape (batch, seq, padded vocab); or, given `targets`, the mean cross-entropy loss."""
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(positions)
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
        logits = self.lm_head(self.ln_out(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1).long())

    def block_linears(self) -> dict[str, nn.Linear]:
        """The blocks' linear layers by parameter-name prefix (attention qkv and proj, MLP up and down)."""
        return {f"blocks.{name}": module for name, module in self.blocks.named_modules()
                if isinstance(module, nn.Linear)}

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; non-embedding excludes the token and position embeddings (lm_head is tied)."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.tok_emb.weight.numel() + self.pos_emb.weight.numel()
        return total

    def flops_per_token(self, output_layer: bool = False) -> int:
        """Training FLOPs per token (PaLM appendix B): 6N plus the attention score and value matmuls; with
        `output_layer`, also the tied output layer's matmul (6 x padded vocabulary x width), which N leaves out."""
        c = self.config
        output = 6 * c.padded_vocab_size * c.d_model if output_layer else 0
        return 6 * self.num_params() + 12 * c.n_layer * c.d_model * c.block_size + output
