"""Forward + backward + AdamW step of a preset against a bare nanoGPT-style reference, same process.

CPU default: the 5M preset, seq 256, batch 8, fp32. On a GPU: `--preset 106M --seq-len 2048 --bf16`
also prints tokens/s and MFU (6·N·tokens/s plus attention FLOPs over --peak-tflops).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from plasticity_dist.model.gpt import GPT
from plasticity_dist.model.presets import get_preset


class ReferenceGPT(nn.Module):
    """nanoGPT's structure written out flat (separate q/k/v weights held in one matrix, as nanoGPT does)."""

    def __init__(self, n_layer: int, d_model: int, n_head: int, vocab_size: int, block_size: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(block_size, d_model)
        self.layers = nn.ModuleList(
            nn.ModuleDict({
                "ln_1": nn.LayerNorm(d_model, bias=False),
                "c_attn": nn.Linear(d_model, 3 * d_model, bias=False),
                "c_proj": nn.Linear(d_model, d_model, bias=False),
                "ln_2": nn.LayerNorm(d_model, bias=False),
                "c_fc": nn.Linear(d_model, 4 * d_model, bias=False),
                "mlp_proj": nn.Linear(4 * d_model, d_model, bias=False),
            })
            for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(d_model, bias=False)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        b, t = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for layer in self.layers:
            h = layer["ln_1"](x)
            q, k, v = layer["c_attn"](h).split(x.shape[-1], dim=2)
            q, k, v = (z.view(b, t, self.n_head, -1).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, -1)
            x = x + layer["c_proj"](y)
            x = x + layer["mlp_proj"](F.gelu(layer["c_fc"](layer["ln_2"](x))))
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def seconds_per_step(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor, steps: int, dtype: torch.dtype) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    synchronize = torch.cuda.synchronize if idx.is_cuda else (lambda: None)

    def step() -> None:
        with torch.autocast(idx.device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(idx, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="5M")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the two models this many times")
    parser.add_argument("--vocab-size", type=int, default=257)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU bf16 dense peak (H100/H200: 989)")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    preset = get_preset(args.preset)
    torch.manual_seed(0)
    ours = GPT(preset.gpt_config(args.vocab_size, args.seq_len)).to(device)
    reference = ReferenceGPT(preset.n_layer, preset.d_model, preset.n_head, ours.config.padded_vocab_size,
                             args.seq_len).to(device)
    idx = torch.randint(0, args.vocab_size, (args.batch, args.seq_len), device=device)
    targets = torch.roll(idx, -1, dims=1)

    ours_times, reference_times = [], []
    for _ in range(args.rounds):  # interleave so drift in machine load hits both alike
        reference_times.append(seconds_per_step(reference, idx, targets, args.steps, dtype))
        ours_times.append(seconds_per_step(ours, idx, targets, args.steps, dtype))
    ours_s, reference_s = min(ours_times), min(reference_times)
    tokens_per_s = args.batch * args.seq_len / ours_s
    print(f"preset: {args.preset} (seq {args.seq_len}, batch {args.batch}, {dtype}, {device})")
    print(f"reference_s_per_step: {reference_s:.4f}")
    print(f"plasticity_dist_s_per_step: {ours_s:.4f}")
    print(f"ratio_vs_reference: {ours_s / reference_s:.3f} (target <= 1.05)")
    print(f"tokens_per_s: {tokens_per_s:,.0f}")
    if device.type == "cuda":
        mfu = ours.flops_per_token() * tokens_per_s / (args.peak_tflops * 1e12)
        print(f"mfu: {mfu:.3f}")


if __name__ == "__main__":
    main()
