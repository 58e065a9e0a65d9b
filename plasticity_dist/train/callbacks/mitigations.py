"""Remedies for plasticity loss, each a callback that works on the engine's parameters under ZeRO 1/2/3 and
without ZeRO.

- `ShrinkPerturb`: at every task boundary, theta <- shrink * theta + noise_std * eps (Ash & Adams 2020).
- `L2Init`: `weight * ||theta - theta_0||^2` added to the loss (Kumar et al. 2023), computed inside each
  module's forward, where ZeRO-3 has gathered its parameters.
- `ReDo`: every R steps, units of the MLP hidden layers whose dormancy score on the held-out batch is at
  most tau are reset (Sokar et al. 2023).
- `ContinualBackprop`: a running contribution utility per MLP unit; each step a fraction rho of the
  mature units is replaced, lowest utility first (Dohare et al. 2024).
- `NormalizeProject`: after every optimizer step, each linear weight of the blocks is scaled back to its
  initial norm (Lyle et al. 2024).
- `SpectralReg`: `weight * sum (sigma_1(W) - 1)^2` over the blocks' linear weights added to the loss
  (Lewandowski et al.), computed inside each layer's forward like L2 Init's penalty.
- `SelfNormalizedResets`: an MLP unit is reset when its gap since it last fired is improbably long at its
  running firing rate (Farias & Jozefiak 2025).
- `HareTortoise`: an exponential moving average of the weights (the tortoise) follows the network trained (the
  hare), which is reset to it every R steps (Lee et al. 2024).
A reset unit gets fresh incoming weights from the initial distribution, zero outgoing weights and zero
Adam moments. Random draws come from generators seeded by (seed, step, layer): every rank draws the same
values, and a resumed run draws what the uninterrupted one did. LR re-warming is a schedule
(`optimizer.schedule=rewarm_cosine`, in `train/lr_schedule.py`).
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

from plasticity_dist.engine.params import (
    ADAM_STATE_KEYS, full_from_local, get_full, get_full_state, get_local, has_optimizer_state, set_full,
    set_full_state,
)
from plasticity_dist.engine.steps import StepRunner
from plasticity_dist.model.gpt import INIT_STD, MLP
from plasticity_dist.study.config import ExperimentConfig
from plasticity_dist.study.mitigation_sections import (ContinualBackpropSection, HareTortoiseSection, L2InitSection,
                                                       ReDoSection, SelfNormalizedResetsSection, ShrinkPerturbSection,
                                                       SpectralRegSection)
from plasticity_dist.train.callbacks.base import Callback, LoopPosition, RunContext
from plasticity_dist.train.callbacks.diagnostics import capture_activations, run_heldout_batch


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded from `parts`: the same on every rank and in every attempt of a run."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def in_training_forward() -> bool:
    """Whether a forward hook sees a training micro-batch: gradients on (not evaluation or diagnostics) and not
    activation checkpointing's recomputation inside the backward, which would count the micro-batch twice."""
    return torch.is_grad_enabled() and torch._C._current_graph_task_id() == -1


def reset_units(step_runner: StepRunner, mlp: MLP, units: torch.Tensor, generator: torch.Generator) -> None:
    """Re-initialise the hidden units `units` (bool mask) of `mlp`: incoming weights drawn afresh, outgoing
    weights zero, and their Adam moments zero. Collective: every rank passes the same mask."""
    up, down = mlp.up.weight, mlp.down.weight
    fresh = torch.randn((mlp.down.in_features, mlp.up.in_features), generator=generator) * INIT_STD
    incoming, outgoing = get_full(up), get_full(down)
    units = units.to(incoming.device)
    incoming[units] = fresh.to(incoming.device)[units]
    outgoing[:, units] = 0.0
    set_full(up, incoming)
    set_full(down, outgoing)
    engine = step_runner.engine
    if not has_optimizer_state(engine):
        return
    for key in ADAM_STATE_KEYS:
        state = get_full_state(engine, up, key)
        state[units] = 0.0
        set_full_state(engine, up, key, state)
        state = get_full_state(engine, down, key)
        state[:, units] = 0.0
        set_full_state(engine, down, key, state)


class ShrinkPerturb(Callback):
    name = "shrink_perturb"
    priority = 20

    def __init__(self, section: ShrinkPerturbSection, step_runner: StepRunner, seed: int) -> None:
        self.section = section
        self.params = dict(step_runner.engine.module.named_parameters())
        self.seed = seed

    @classmethod
    def from_context(cls, context: RunContext) -> ShrinkPerturb | None:
        section = context.config.mitigations.shrink_perturb
        return cls(section, context.step_runner, context.config.seed) if section.enabled else None

    def on_task_start(self, at: LoopPosition) -> None:
        if at.task.index == 0:
            return
        generator = seeded_generator(self.seed, at.step, -1)
        for param in self.params.values():
            value = get_full(param)
            noise = torch.randn(value.shape, generator=generator).to(value.device)
            set_full(param, self.section.shrink * value + self.section.noise_std * noise)


class ForwardPenalty(Callback):
    """A loss term summed from parts computed inside modules' forwards, where ZeRO-3 has gathered their
    parameters; only training forwards (with gradients) count, and `loss_term` hands the sum over once."""

    def __init__(self) -> None:
        self.penalty: torch.Tensor | None = None

    def _add(self, term: torch.Tensor) -> None:
        self.penalty = term if self.penalty is None else self.penalty + term

    def loss_term(self) -> torch.Tensor | None:
        penalty, self.penalty = self.penalty, None
        return penalty


class L2Init(ForwardPenalty):
    """Adds `weight * sum ||p - p_0||^2` over every parameter to each training micro-batch's loss."""

    name = "l2_init"
    priority = 21

    def __init__(self, section: L2InitSection, step_runner: StepRunner, initial_weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.weight = section.weight
        model = step_runner.engine.module
        names = {id(param): name for name, param in model.named_parameters()}
        owned: set[int] = set()
        for module in model.modules():
            own = [(param, initial_weights[names[id(param)]].to(step_runner.device))
                   for param in module.parameters(recurse=False) if id(param) not in owned]
            owned.update(id(param) for param, _ in own)
            if own:
                module.register_forward_pre_hook(lambda module, args, own=own: self._add_penalty(own))

    @classmethod
    def from_context(cls, context: RunContext) -> L2Init | None:
        section = context.config.mitigations.l2_init
        return cls(section, context.step_runner, context.initial_weights) if section.enabled else None

    @classmethod
    def wants_initial_weights(cls, config: ExperimentConfig, is_main: bool) -> bool:
        return config.mitigations.l2_init.enabled

    def _add_penalty(self, own: list[tuple[torch.nn.Parameter, torch.Tensor]]) -> None:
        if in_training_forward():
            self._add(self.weight * sum((param - initial).pow(2).sum() for param, initial in own))


class ReDo(Callback):
    name = "redo"
    priority = 23

    def __init__(self, section: ReDoSection, step_runner: StepRunner, batch: torch.Tensor, seed: int) -> None:
        self.section = section
        self.step_runner = step_runner
        self.batch = batch
        self.seed = seed

    @classmethod
    def from_context(cls, context: RunContext) -> ReDo | None:
        section = context.config.mitigations.redo
        if not section.enabled:
            return None
        return cls(section, context.step_runner, run_heldout_batch(context), context.config.seed)

    def after_optimizer_step(self, at: LoopPosition) -> None:
        if at.step % self.section.every_steps:
            return
        scores = capture_activations(self.step_runner, self.batch, units_only=True).unit_scores
        for layer, block in enumerate(self.step_runner.engine.module.blocks):
            score = self.step_runner.accelerator.reduce(scores[layer], reduction="mean")  # one decision on every rank
            dormant = score <= self.section.threshold
            if dormant.any():
                reset_units(self.step_runner, block.mlp, dormant.cpu(), seeded_generator(self.seed, at.step, layer))


class ContinualBackprop(Callback):
    """Contribution utility of unit i: running average of mean|h_i| * sum_k |W_down[k, i]| over steps."""

    name = "cbp"
    priority = 24

    def __init__(self, section: ContinualBackpropSection, step_runner: StepRunner, seed: int) -> None:
        self.section = section
        self.step_runner = step_runner
        self.seed = seed
        blocks = step_runner.engine.module.blocks
        units = blocks[0].mlp.down.in_features
        self.utility = torch.zeros(len(blocks), units)
        self.age = torch.zeros(len(blocks), units, dtype=torch.long)
        self.owed = torch.zeros(len(blocks), dtype=torch.float64)  # replacements due, fractional
        self.contribution = torch.zeros(len(blocks), units, device=step_runner.device)  # summed over this step's forwards
        self.forwards = 0
        for layer, block in enumerate(blocks):
            block.mlp.down.register_forward_pre_hook(lambda module, args, layer=layer: self._observe(layer, module, args[0]))

    @classmethod
    def from_context(cls, context: RunContext) -> ContinualBackprop | None:
        section = context.config.mitigations.cbp
        return cls(section, context.step_runner, context.config.seed) if section.enabled else None

    def _observe(self, layer: int, down: torch.nn.Linear, hidden: torch.Tensor) -> None:
        if not in_training_forward():
            return
        with torch.no_grad():
            activity = hidden.float().abs().flatten(0, -2).mean(0)
            self.contribution[layer] += activity * down.weight.float().abs().sum(0)
        self.forwards += layer == 0

    def after_optimizer_step(self, at: LoopPosition) -> None:
        contribution = self.contribution / max(1, self.forwards)
        contribution = self.step_runner.accelerator.reduce(contribution, reduction="mean").cpu()
        self.contribution.zero_()
        self.forwards = 0
        decay = self.section.decay
        self.utility = decay * self.utility + (1 - decay) * contribution
        self.age += 1
        for layer, block in enumerate(self.step_runner.engine.module.blocks):
            mature = self.age[layer] > self.section.maturity
            self.owed[layer] += self.section.replacement_rate * mature.sum().item()
            count = min(int(self.owed[layer].item()), int(mature.sum().item()))
            if count == 0:
                continue
            self.owed[layer] -= count
            utility = torch.where(mature, self.utility[layer], torch.inf)
            units = torch.zeros_like(mature)
            units[utility.argsort(stable=True)[:count]] = True
            reset_units(self.step_runner, block.mlp, units, seeded_generator(self.seed, at.step, layer))
            self.utility[layer][units] = 0.0
            self.age[layer][units] = 0

    def state_dict(self) -> dict[str, list]:
        return {"utility": self.utility.tolist(), "age": self.age.tolist(), "owed": self.owed.tolist()}

    def load_state_dict(self, state: dict[str, list]) -> None:
        if state:
            self.utility = torch.tensor(state["utility"], dtype=torch.float32)
            self.age = torch.tensor(state["age"], dtype=torch.long)
            self.owed = torch.tensor(state["owed"], dtype=torch.float64)


class NormalizeProject(Callback):
    """After every optimizer step, W <- W * ||W_0|| / ||W|| for each linear weight of the blocks."""

    name = "nap"
    priority = 30  # after the resets: the weights a step ends with are at their initial norms

    def __init__(self, step_runner: StepRunner, initial_weights: dict[str, torch.Tensor]) -> None:
        self.weights = {name: linear.weight for name, linear in step_runner.engine.module.block_linears().items()}
        self.target_norms = {name: initial_weights[f"{name}.weight"].float().norm() for name in self.weights}

    @classmethod
    def from_context(cls, context: RunContext) -> NormalizeProject | None:
        enabled = context.config.mitigations.nap.enabled
        return cls(context.step_runner, context.initial_weights) if enabled else None

    @classmethod
    def wants_initial_weights(cls, config: ExperimentConfig, is_main: bool) -> bool:
        return config.mitigations.nap.enabled

    def after_optimizer_step(self, at: LoopPosition) -> None:
        for name, weight in self.weights.items():
            value = get_full(weight)
            set_full(weight, value * (self.target_norms[name].to(value.device) / value.norm()))


class SpectralReg(ForwardPenalty):
    """Adds `weight * (sigma_1 - 1)^2` for each linear layer of the blocks to each training micro-batch's loss.

    sigma_1 = u^T W v with u, v from power iteration (no gradient through them: at convergence u v^T is
    sigma_1's gradient), started each time from a vector seeded by (seed, layer), so it needs no state."""

    name = "spectral_reg"
    priority = 22

    def __init__(self, section: SpectralRegSection, step_runner: StepRunner, seed: int) -> None:
        super().__init__()
        self.weight = section.weight
        self.iterations = section.power_iterations
        for index, linear in enumerate(step_runner.engine.module.block_linears().values()):
            start = torch.randn(linear.in_features, generator=seeded_generator(seed, index, -2), dtype=torch.float64)
            start = F.normalize(start, dim=0).float().to(step_runner.device)
            linear.register_forward_pre_hook(lambda module, args, start=start: self._add_penalty(module, start))

    @classmethod
    def from_context(cls, context: RunContext) -> SpectralReg | None:
        section = context.config.mitigations.spectral_reg
        return cls(section, context.step_runner, context.config.seed) if section.enabled else None

    def _add_penalty(self, linear: torch.nn.Linear, start: torch.Tensor) -> None:
        if not in_training_forward():
            return
        weight = linear.weight.float()
        with torch.no_grad():
            right = start
            for _ in range(self.iterations):
                left = F.normalize(weight @ right, dim=0)
                right = F.normalize(weight.T @ left, dim=0)
        top_singular_value = left @ weight @ right
        self._add(self.weight * (top_singular_value - 1.0).pow(2))


class SelfNormalizedResets(Callback):
    """Per MLP unit: its firing rate (share of training tokens where its GELU input is > 0, a running mean
    over its first 1/(1 - decay) steps since a reset, then an exponential one) and its gap, the tokens since
    the last step in which it fired. After each step, a unit whose gap has a chance (1 - rate)^gap below the
    threshold at its rate before the step is reset, and its counters start afresh (a unit that has not fired
    since its last reset has no rate yet and is left alone)."""

    name = "snr"
    priority = 25

    def __init__(self, section: SelfNormalizedResetsSection, step_runner: StepRunner, seed: int) -> None:
        self.section = section
        self.step_runner = step_runner
        self.seed = seed
        blocks = step_runner.engine.module.blocks
        units = blocks[0].mlp.down.in_features
        self.rate = torch.zeros(len(blocks), units, dtype=torch.float64)
        self.gap = torch.zeros(len(blocks), units, dtype=torch.float64)  # tokens
        self.observed = torch.zeros(len(blocks), units, dtype=torch.long)  # steps since the unit's last reset
        self.fires = torch.zeros(len(blocks), units + 1, device=step_runner.device)  # this step's; last: tokens
        for layer, block in enumerate(blocks):
            block.mlp.down.register_forward_pre_hook(lambda module, args, layer=layer: self._observe(layer, args[0]))

    @classmethod
    def from_context(cls, context: RunContext) -> SelfNormalizedResets | None:
        section = context.config.mitigations.snr
        return cls(section, context.step_runner, context.config.seed) if section.enabled else None

    def _observe(self, layer: int, hidden: torch.Tensor) -> None:
        if not in_training_forward():
            return
        with torch.no_grad():
            fired = (hidden.flatten(0, -2) > 0).float()
            self.fires[layer, :-1] += fired.sum(0)
            self.fires[layer, -1] += fired.shape[0]

    def after_optimizer_step(self, at: LoopPosition) -> None:
        counts = self.step_runner.accelerator.reduce(self.fires, reduction="sum").double().cpu()
        self.fires.zero_()
        fires, tokens = counts[:, :-1], counts[:, -1:]
        self.gap = torch.where(fires > 0, 0.0, self.gap + tokens)
        chance_log = self.gap * torch.log1p(-self.rate.clamp(max=1 - 1e-12))  # log (1 - rate)^gap
        self.observed += 1
        step_weight = torch.clamp(1.0 / self.observed.double(), min=1 - self.section.decay)
        self.rate += step_weight * (fires / tokens.clamp(min=1) - self.rate)
        stale = chance_log < math.log(self.section.threshold)
        for layer, block in enumerate(self.step_runner.engine.module.blocks):
            if stale[layer].any():
                reset_units(self.step_runner, block.mlp, stale[layer], seeded_generator(self.seed, at.step, layer, -3))
        self.rate[stale] = 0.0
        self.gap[stale] = 0.0
        self.observed[stale] = 0

    def state_dict(self) -> dict[str, list]:
        return {"rate": self.rate.tolist(), "gap": self.gap.tolist(), "observed": self.observed.tolist()}

    def load_state_dict(self, state: dict[str, list]) -> None:
        if state:
            self.rate = torch.tensor(state["rate"], dtype=torch.float64)
            self.gap = torch.tensor(state["gap"], dtype=torch.float64)
            self.observed = torch.tensor(state["observed"], dtype=torch.long)


class HareTortoise(Callback):
    """After every optimizer step the tortoise moves towards the weights, tortoise <- decay * tortoise +
    (1 - decay) * weights (starting from the weights training starts from), and every `every_steps` steps the
    weights are set to it; Adam's moments are kept. Each rank keeps the tortoise of its share of the fp32 master
    weights only (`get_local`) and saves it in a file of its own in every checkpoint."""

    name = "hare_tortoise"
    priority = 35  # after every mitigation that changes the weights: its average follows the weights a step ends with

    def __init__(self, section: HareTortoiseSection, step_runner: StepRunner) -> None:
        self.section = section
        self.params = dict(step_runner.engine.module.named_parameters())
        self.tortoise = {name: get_local(param).clone() for name, param in self.params.items()}

    @classmethod
    def from_context(cls, context: RunContext) -> HareTortoise | None:
        section = context.config.mitigations.hare_tortoise
        return cls(section, context.step_runner) if section.enabled else None

    def after_optimizer_step(self, at: LoopPosition) -> None:
        for name, param in self.params.items():
            self.tortoise[name].lerp_(get_local(param), 1.0 - self.section.decay)
        if at.step % self.section.every_steps == 0:
            for name, param in self.params.items():
                set_full(param, full_from_local(param, self.tortoise[name]))

    def rank_tensors(self) -> dict[str, torch.Tensor]:
        return self.tortoise

    def load_rank_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """The saved tortoise, or (a checkpoint saved without this mitigation) the weights resumed from."""
        local = {name: get_local(param) for name, param in self.params.items()}
        self.tortoise = {name: (tensors[name] if tensors else value).to(value.device).clone()
                         for name, value in local.items()}
