"""What the mitigations' forward hooks count as a training forward (their mechanics on real DeepSpeed engines
are in test_zero_callbacks.py)."""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from plasticity_dist.train.callbacks.mitigations import in_training_forward


def test_training_forward_excludes_evaluation_and_activation_checkpointing_recomputation():
    linear = torch.nn.Linear(4, 4)
    seen: list[bool] = []
    linear.register_forward_pre_hook(lambda module, args: seen.append(in_training_forward()))
    inputs = torch.randn(2, 4, requires_grad=True)
    with torch.no_grad():
        linear(inputs)
    checkpoint(linear, inputs, use_reentrant=False).sum().backward()  # the forward, then its recomputation
    assert seen == [False, True, False]
