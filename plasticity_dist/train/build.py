"""The model a run trains: its preset's shape, from random weights or from another run's checkpoint."""

from __future__ import annotations

from plasticity_dist.engine.checkpoint import load_consolidated_weights
from plasticity_dist.model.gpt import GPT
from plasticity_dist.model.presets import get_preset
from plasticity_dist.study.config import ModelSection


def build_model(model: ModelSection, vocab_size: int, seq_len: int, load_init: bool = True) -> GPT:
    """The GPT of a run's `model` section: its preset's shape, random weights from the current seed or, with
    `model.init_from` and `load_init`, that checkpoint's consolidated weights (only read)."""
    gpt = get_preset(model.preset).build(vocab_size, seq_len)
    gpt.activation_checkpointing = model.activation_checkpointing
    if model.init_from and load_init:
        gpt.load_state_dict(load_consolidated_weights(model.init_from, list(gpt.state_dict())))
    return gpt
