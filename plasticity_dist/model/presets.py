"""Model size presets as data. A preset's name is its count of non-embedding parameters (within 3%)."""

from __future__ import annotations

from dataclasses import dataclass

from plasticity_dist.model.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class Preset:
    name: str
    n_layer: int
    d_model: int
    n_head: int

    def gpt_config(self, vocab_size: int, block_size: int) -> GPTConfig:
        return GPTConfig(self.n_layer, self.d_model, self.n_head, vocab_size, block_size)

    def build(self, vocab_size: int, block_size: int) -> GPT:
        """A GPT of this shape with random weights from the current seed."""
        return GPT(self.gpt_config(vocab_size, block_size))

    @property
    def nominal_params(self) -> float:
        """The parameter count the name states, e.g. 314e6 for '314M'."""
        scale = {"K": 1e3, "M": 1e6, "B": 1e9}[self.name[-1]]
        return float(self.name[:-1]) * scale


PRESETS: tuple[Preset, ...] = (
    # the control problem's sizes (configs/control.yaml): one block, widths 32 to 64, head width 16
    Preset("12.4K", n_layer=1, d_model=32, n_head=2),
    Preset("28K", n_layer=1, d_model=48, n_head=3),
    Preset("50K", n_layer=1, d_model=64, n_head=4),
    # tiny sizes: tests and the demo
    Preset("100K", n_layer=2, d_model=64, n_head=2),
    Preset("250K", n_layer=4, d_model=72, n_head=3),
    Preset("600K", n_layer=4, d_model=112, n_head=4),
    # the study's sizes
    Preset("5M", n_layer=5, d_model=288, n_head=6),
    Preset("12M", n_layer=9, d_model=336, n_head=6),
    Preset("27M", n_layer=10, d_model=480, n_head=10),
    Preset("53M", n_layer=11, d_model=640, n_head=10),
    Preset("106M", n_layer=13, d_model=832, n_head=13),
    Preset("314M", n_layer=20, d_model=1152, n_head=18),
    # for extrapolating the scaling law
    Preset("1B", n_layer=28, d_model=1728, n_head=27),
)
PRESETS_BY_NAME = {preset.name: preset for preset in PRESETS}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown model preset {name!r}; allowed: {', '.join(PRESETS_BY_NAME)}") from None
