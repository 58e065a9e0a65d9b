"""The `mitigations` section of a config: one switch and its settings per remedy for plasticity loss, all off by
default (train/callbacks/mitigations.py acts on them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from plasticity_dist.study.errors import ConfigError
from plasticity_dist.study.fields import at_least


@dataclass
class ShrinkPerturbSection:
    """At every task boundary: theta <- shrink * theta + noise_std * eps (Ash & Adams 2020)."""

    enabled: bool = False
    shrink: float = field(default=0.4, metadata=at_least(0.0))
    noise_std: float = field(default=1e-3, metadata=at_least(0.0))

    def check(self) -> None:
        if self.shrink > 1.0:
            raise ConfigError(f"mitigations.shrink_perturb.shrink={self.shrink} must be in [0, 1]")


@dataclass
class L2InitSection:
    """`weight * ||theta - theta_0||^2` added to the loss ("L2 Init", Kumar et al. 2023)."""

    enabled: bool = False
    weight: float = field(default=1e-4, metadata=at_least(0.0))


@dataclass
class ReDoSection:
    """Every `every_steps`, reset the MLP units whose ReDo score is at most `threshold` (Sokar et al. 2023)."""

    enabled: bool = False
    every_steps: int = field(default=1000, metadata=at_least(1))
    threshold: float = field(default=0.1, metadata=at_least(0.0))


@dataclass
class ContinualBackpropSection:
    """Continual backprop (Dohare et al. 2024): replace mature, least useful MLP units as training goes."""

    enabled: bool = False
    replacement_rate: float = field(default=1e-4, metadata=at_least(0.0))  # rho: units per eligible unit per step
    maturity: int = field(default=100, metadata=at_least(0))  # steps a unit is protected after (re)initialisation
    decay: float = field(default=0.99, metadata=at_least(0.0))  # of the running contribution utility

    def check(self) -> None:
        if self.decay >= 1.0 or self.replacement_rate > 1.0:
            raise ConfigError(f"mitigations.cbp: decay={self.decay} must be in [0, 1) and replacement_rate="
                              f"{self.replacement_rate} in [0, 1]")


@dataclass
class NormalizeProjectSection:
    """After every optimizer step, each linear weight of the blocks is scaled back to its initial norm
    ("Normalize-and-Project", Lyle et al. 2024; the blocks' LayerNorms do the normalising)."""

    enabled: bool = False


@dataclass
class SpectralRegSection:
    """`weight * sum (sigma_1(W) - 1)^2` over the blocks' linear weights added to the loss (Lewandowski et al.),
    sigma_1 by `power_iterations` steps of power iteration from a fixed start, so a resumed run computes the same."""

    enabled: bool = False
    weight: float = field(default=1e-4, metadata=at_least(0.0))
    power_iterations: int = field(default=20, metadata=at_least(1))


@dataclass
class SelfNormalizedResetsSection:
    """Self-Normalized Resets (Farias & Jozefiak, ICLR 2025): an MLP unit is reset when it has not fired
    (GELU input > 0) for so many tokens that, at its running firing rate, the chance of so long a gap is
    below `threshold`."""

    enabled: bool = False
    threshold: float = field(default=1e-4, metadata=at_least(0.0))
    decay: float = field(default=0.99, metadata=at_least(0.0))  # per step, of the running firing rate

    def check(self) -> None:
        if not 0.0 < self.threshold < 1.0 or self.decay >= 1.0:
            raise ConfigError(f"mitigations.snr: threshold={self.threshold} must be in (0, 1) and decay="
                              f"{self.decay} in [0, 1)")


@dataclass
class HareTortoiseSection:
    """Hare & Tortoise (Lee et al. 2024): the tortoise, an exponential moving average of the weights with `decay`
    per step, follows the network trained (the hare); every `every_steps` steps the hare is reset to it."""

    enabled: bool = False
    decay: float = field(default=0.999, metadata=at_least(0.0))
    every_steps: int = field(default=1000, metadata=at_least(1))

    def check(self) -> None:
        if self.decay >= 1.0:
            raise ConfigError(f"mitigations.hare_tortoise.decay={self.decay} must be in [0, 1)")


@dataclass
class ReplaySection:
    """Each continual task draws `fraction` of its rows, in equal shares, from the languages trained before it
    (by the loader's seeded weighted mix), the rest from its own language (Ibrahim et al. 2024)."""

    enabled: bool = False
    fraction: float = field(default=0.05, metadata=at_least(0.0))

    def check(self) -> None:
        if self.fraction >= 1.0:
            raise ConfigError(f"mitigations.replay.fraction={self.fraction} must be in [0, 1): the share of a "
                              "task's rows replayed from earlier languages")


@dataclass
class MitigationsSection:
    """Remedies for plasticity loss, all off by default. LR re-warming is `optimizer.schedule=rewarm_cosine`."""

    shrink_perturb: ShrinkPerturbSection = field(default_factory=ShrinkPerturbSection)
    l2_init: L2InitSection = field(default_factory=L2InitSection)
    redo: ReDoSection = field(default_factory=ReDoSection)
    cbp: ContinualBackpropSection = field(default_factory=ContinualBackpropSection)
    nap: NormalizeProjectSection = field(default_factory=NormalizeProjectSection)
    spectral_reg: SpectralRegSection = field(default_factory=SpectralRegSection)
    snr: SelfNormalizedResetsSection = field(default_factory=SelfNormalizedResetsSection)
    hare_tortoise: HareTortoiseSection = field(default_factory=HareTortoiseSection)
    replay: ReplaySection = field(default_factory=ReplaySection)
