"""Plasticity diagnostics: why a network stops learning, measured while it trains.

On a fixed held-out batch (the first rows of the tasks' validation splits), per transformer block and in
total: the dormant-unit ratio of the MLP hidden units (ReDo's score), the srank and effective rank of the
features and their norm, attention entropy; from the weights: parameter norm, update-to-weight ratio,
gradient norm and distance from the initial weights. `Diagnostics` logs them to metrics.jsonl (event
`diagnostics`, totals under their names, block i under `<name>_l<i>`) every `every_steps` and at every
task end. Weights and gradients are gathered whole (collective under ZeRO) only for the measured step.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from plasticity_dist.data.loader import iter_eval_batches
from plasticity_dist.engine.params import full_grad, get_full
from plasticity_dist.engine.steps import StepRunner
from plasticity_dist.model.gpt import GPT
from plasticity_dist.study.config import DiagnosticsSection, ExperimentConfig
from plasticity_dist.study.errors import ConfigError
from plasticity_dist.train.callbacks.base import Callback, LoopPosition, RunContext
from plasticity_dist.train.callbacks.diagnostic_measures import (
    attention_entropy, dormant_scores, duplicate_ratio, effective_rank, feature_moments, gradient_scores,
    moment_drift, saturated_ratio, srank, top_hessian_eigenvalue, weight_spectrum,
)
from plasticity_dist.train.metrics import MetricsLog, task_record

LAYER_NAME = re.compile(r"^blocks\.(\d+)\.")
MLP_UP_WEIGHT = re.compile(r"^blocks\.\d+\.mlp\.up\.weight$")


@dataclass
class Activations:
    """What one forward of the diagnostic batch shows, per block (lists) and at the output."""

    unit_scores: list[torch.Tensor] = field(default_factory=list)  # ReDo score per MLP hidden unit
    saturated: list[float] = field(default_factory=list)  # share of MLP units in GELU's flat region
    duplicated: list[float] = field(default_factory=list)  # share of MLP units duplicating another
    input_moments: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # block inputs (LN inputs)
    block_features: list[torch.Tensor] = field(default_factory=list)  # (tokens, d_model) after each block
    attn_entropy: list[float] = field(default_factory=list)
    final_features: torch.Tensor | None = None  # (tokens, d_model) after the final LayerNorm


@dataclass(frozen=True)
class UnitMeasures:
    """The MLP-unit measures a capture takes beside ReDo's scores (None: not this time)."""

    saturation_share: float | None = None
    duplicate_threshold: float | None = None


@contextmanager
def _hooks(handles: list[torch.utils.hooks.RemovableHandle]) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture_activations(step_runner: StepRunner, inputs: torch.Tensor, record: bool = True,
                        units_only: bool = False, units: UnitMeasures = UnitMeasures()) -> Activations:
    """Forward `inputs` through the engine in eval mode. Collective under ZeRO-3: every rank calls it; only
    ranks with `record` keep anything, and with `units_only` only the MLP units' measures."""
    model: GPT = step_runner.engine.module
    seen = Activations()
    handles = []

    def on_hidden(hidden: torch.Tensor) -> None:
        seen.unit_scores.append(dormant_scores(hidden))
        if units.duplicate_threshold is not None:
            seen.duplicated.append(duplicate_ratio(hidden, units.duplicate_threshold))

    if record:
        for block in model.blocks:
            handles.append(block.mlp.down.register_forward_pre_hook(lambda m, args: on_hidden(args[0])))
            if units.saturation_share is not None:
                handles.append(block.mlp.up.register_forward_hook(
                    lambda m, args, out: seen.saturated.append(saturated_ratio(out, units.saturation_share))))
            if not units_only:
                handles += [
                    block.register_forward_pre_hook(lambda m, args: seen.input_moments.append(feature_moments(args[0]))),
                    block.attn.qkv.register_forward_hook(
                        lambda m, args, out, n_head=block.attn.n_head: seen.attn_entropy.append(_qkv_entropy(out, n_head))),
                    block.register_forward_hook(lambda m, args, out: seen.block_features.append(out.detach().flatten(0, 1))),
                ]
        if not units_only:
            handles.append(model.ln_out.register_forward_hook(
                lambda m, args, out: setattr(seen, "final_features", out.detach().flatten(0, 1))))
    with _hooks(handles), torch.no_grad():
        was_training = step_runner.engine.training
        step_runner.engine.eval()
        step_runner.engine(inputs.to(step_runner.device))
        step_runner.engine.train(was_training)
    return seen


def _qkv_entropy(qkv: torch.Tensor, n_head: int) -> float:
    batch, seq, width = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    q, k, _ = (t.view(batch, seq, n_head, width // n_head).transpose(1, 2) for t in qkv.detach().split(width, dim=2))
    return attention_entropy(q, k)


def heldout_batch(datasets: list[str], seq_len: int, size: int) -> torch.Tensor:
    """`size` input sequences taken in turn from the first rows of each dataset's validation split."""
    val_dirs = [Path(dataset) / "val" for dataset in dict.fromkeys(datasets)]
    missing = [str(path) for path in val_dirs if not path.is_dir()]
    if missing:
        raise ConfigError(f"diagnostics need validation splits for their held-out batch; {missing[0]} does not "
                          f"exist (preprocess with --val-tokens, or set diagnostics.enabled=false)")
    per_dataset = [
        iter(torch.cat([inputs for inputs, _ in iter_eval_batches(path, seq_len=seq_len, batch_size=size,
                                                                  max_tokens=size * seq_len)]))
        for path in val_dirs
    ]
    rows = [row for row in itertools.chain.from_iterable(itertools.zip_longest(*per_dataset)) if row is not None]
    return torch.stack(rows[:size])


def run_heldout_batch(context: RunContext) -> torch.Tensor:
    """The run's held-out batch (from its tasks' validation splits), made once for every callback using it."""
    config = context.config
    datasets = [dataset for task in context.tasks for dataset in task.datasets]
    return context.shared("heldout_batch", lambda: heldout_batch(datasets, config.data.seq_len,
                                                                 config.diagnostics.batch_size))


def layer_of(name: str) -> int | None:
    match = LAYER_NAME.match(name)
    return int(match.group(1)) if match else None


class Diagnostics(Callback):
    """Measures and logs the diagnostics at every `every_steps` step and at every task's last step."""

    name = "diagnostics"
    priority = 10  # first: they measure the trained weights before a mitigation changes them

    def __init__(self, section: DiagnosticsSection, step_runner: StepRunner, batch: torch.Tensor,
                 initial_weights: dict[str, torch.Tensor], metrics: MetricsLog, is_main: bool) -> None:
        self.section = section
        self.step_runner = step_runner
        self.batch = batch
        self.initial_weights = initial_weights
        self.metrics = metrics
        self.is_main = is_main
        self.params = dict(step_runner.engine.module.named_parameters())
        self.measuring = False  # this step is measured
        self.weights_before: dict[str, torch.Tensor] = {}
        self.grad_sq: dict[int | None, float] = {}
        self.unit_grad_norms: dict[int, torch.Tensor] = {}  # per block: each MLP unit's incoming-weight gradient norm
        self.task_start_moments: list[tuple[torch.Tensor, torch.Tensor]] = []  # block inputs when the task began

    @classmethod
    def from_context(cls, context: RunContext) -> Diagnostics | None:
        section = context.config.diagnostics
        if not section.enabled:
            return None
        return cls(section, context.step_runner, run_heldout_batch(context), context.initial_weights,
                   context.metrics, context.is_main)

    @classmethod
    def wants_initial_weights(cls, config: ExperimentConfig, is_main: bool) -> bool:
        return config.diagnostics.enabled and is_main  # distances from the start, written by the main process

    def on_task_start(self, at: LoopPosition) -> None:
        """The block inputs' moments before the task's first step: what `input_drift` is measured against."""
        seen = capture_activations(self.step_runner, self.batch, record=self.is_main)
        self.task_start_moments = seen.input_moments

    def on_step_start(self, at: LoopPosition) -> None:
        self.measuring = at.step % self.section.every_steps == 0 or at.is_task_end
        if self.measuring:
            self.weights_before = self._gather_weights()

    def before_optimizer_step(self) -> None:
        if not self.measuring:
            return
        self.grad_sq = defaultdict(float)
        self.unit_grad_norms = {}
        for name, param in self.params.items():
            grad = full_grad(param)
            if grad is not None:
                self.grad_sq[layer_of(name)] += grad.float().pow(2).sum().item()
                if MLP_UP_WEIGHT.match(name):  # (units, d_model): a unit's row is what reaches its input
                    self.unit_grad_norms[layer_of(name)] = grad.float().norm(dim=1)

    def after_optimizer_step(self, at: LoopPosition) -> None:
        if not self.measuring:
            return
        weights = self._gather_weights()
        units = UnitMeasures(self.section.saturation_share,
                             self.section.duplicate_threshold if at.is_task_end else None)
        activations = capture_activations(self.step_runner, self.batch, record=self.is_main, units=units)
        if self.is_main:
            record = task_record("diagnostics", at.task, step=at.step, tokens=at.tokens, task_end=at.is_task_end)
            record.update(self._weight_measures(weights))
            record.update(self._activation_measures(activations))
            record.update(self._unit_measures(activations))
            if at.is_task_end:  # the costlier measures, once a task
                record.update(self._spectra(weights))
                if self.section.curvature:
                    record["hessian_top_eig"] = self._curvature(weights)
            self.metrics.write(record)
        self.weights_before = {}

    def _unit_measures(self, seen: Activations) -> dict[str, float]:
        """GELU saturation, gradient dormancy, the block inputs' drift since the task began and (at task ends)
        duplicate units: per block and over the blocks."""
        threshold = self.section.dormant_threshold
        per_block = {
            "saturated_ratio": seen.saturated,
            "duplicate_ratio": seen.duplicated,
            "grad_dormant_ratio": [(gradient_scores(norms) <= threshold).float().mean().item()
                                   for _, norms in sorted(self.unit_grad_norms.items())],
            "input_drift": [moment_drift(now, start) for now, start in zip(seen.input_moments,
                                                                           self.task_start_moments)],
        }
        measures = {}
        for key, values in per_block.items():
            if values:
                measures[key] = sum(values) / len(values)
                measures.update({f"{key}_l{layer}": value for layer, value in enumerate(values)})
        return measures

    def _spectra(self, weights: dict[str, torch.Tensor]) -> dict[str, float]:
        """Spectral norm and stable rank of every linear layer of the blocks (`<key>_l<i>_<layer>`), the block's
        largest spectral norm and mean stable rank (`<key>_l<i>`), and the same over every block."""
        measures: dict[str, float] = {}
        blocks: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for name in self.step_runner.engine.module.block_linears():
            weight, layer, module = weights[f"{name}.weight"], layer_of(name), name.rsplit(".", 1)[1]
            norm, rank = weight_spectrum(weight)
            measures[f"spectral_norm_l{layer}_{module}"], measures[f"stable_rank_l{layer}_{module}"] = norm, rank
            blocks[layer].append((norm, rank))
        for layer, values in sorted(blocks.items()):
            measures[f"spectral_norm_l{layer}"] = max(norm for norm, _ in values)
            measures[f"stable_rank_l{layer}"] = sum(rank for _, rank in values) / len(values)
        every = [value for values in blocks.values() for value in values]
        measures["spectral_norm"] = max(norm for norm, _ in every)
        measures["stable_rank"] = sum(rank for _, rank in every) / len(every)
        return measures

    def _curvature(self, weights: dict[str, torch.Tensor]) -> float:
        """The training loss's top Hessian eigenvalue on the held-out batch, on a float32 copy of the model in this
        process. The weights a task ends with are the ones the next task starts from, and the batch is fixed:
        this is the curvature the next task meets at its start."""
        model = GPT(self.step_runner.engine.module.config).to(self.step_runner.device)
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(weights[name])
        inputs = self.batch.to(self.step_runner.device)
        with sdpa_kernel(SDPBackend.MATH):  # the fused kernels have no second derivative
            loss = model(inputs[:, :-1], inputs[:, 1:])
            return top_hessian_eigenvalue(loss, list(model.parameters()), self.section.curvature_iterations,
                                          torch.Generator().manual_seed(0))

    def state_dict(self) -> dict[str, Any]:
        return {"task_start_moments": [[mean.tolist(), std.tolist()] for mean, std in self.task_start_moments]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task_start_moments = [(torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64))
                                   for mean, std in state.get("task_start_moments", [])]

    def _gather_weights(self) -> dict[str, torch.Tensor]:
        """Every parameter whole, on the main process (CPU); the gather itself is collective."""
        weights = {}
        for name, param in self.params.items():
            value = get_full(param)
            if self.is_main:
                weights[name] = value.cpu()
        return weights

    def _weight_measures(self, weights: dict[str, torch.Tensor]) -> dict[str, float]:
        squares = {key: defaultdict(float) for key in ("param", "init", "update", "before")}
        for name, value in weights.items():
            layer = layer_of(name)
            squares["param"][layer] += value.pow(2).sum().item()
            squares["init"][layer] += (value - self.initial_weights[name]).pow(2).sum().item()
            if name in self.weights_before:
                squares["update"][layer] += (value - self.weights_before[name]).pow(2).sum().item()
                squares["before"][layer] += self.weights_before[name].pow(2).sum().item()
        measures = {**_root_ratio("param_norm", squares["param"]), **_root_ratio("dist_from_init", squares["init"]),
                    **_root_ratio("grad_norm", self.grad_sq)}
        if self.weights_before:
            measures.update(_root_ratio("update_ratio", squares["update"], squares["before"]))
        return measures

    def _activation_measures(self, seen: Activations) -> dict[str, float]:
        threshold, delta = self.section.dormant_threshold, self.section.srank_delta
        measures: dict[str, float] = {}
        for layer, scores in enumerate(seen.unit_scores):
            measures[f"dormant_ratio_l{layer}"] = (scores <= threshold).float().mean().item()
        for layer, features in enumerate(seen.block_features):
            measures[f"srank_l{layer}"] = float(srank(features, delta))
            measures[f"feature_norm_l{layer}"] = features.float().norm(dim=-1).mean().item()
        for layer, entropy in enumerate(seen.attn_entropy):
            measures[f"attn_entropy_l{layer}"] = entropy
        all_scores = torch.cat(seen.unit_scores)
        measures["dormant_ratio"] = (all_scores <= threshold).float().mean().item()
        measures["srank"] = float(srank(seen.final_features, delta))
        measures["effective_rank"] = effective_rank(seen.final_features)
        measures["feature_norm"] = seen.final_features.float().norm(dim=-1).mean().item()
        measures["attn_entropy"] = sum(seen.attn_entropy) / len(seen.attn_entropy)
        return measures


def _root_ratio(key: str, squares: dict[int | None, float],
                denominators: dict[int | None, float] | None = None) -> dict[str, float]:
    """sqrt(sum of squares [/ sum of denominators]) over every parameter (`key`) and per block (`key_l<i>`);
    the layer `None` holds the parameters outside the blocks (embeddings, final LayerNorm)."""
    def root(numerator: float, denominator: float) -> float:
        return math.sqrt(numerator / denominator) if denominator else math.nan

    def denominator(layer: int | None) -> float:
        return denominators[layer] if denominators is not None else 1.0

    measures = {key: root(sum(squares.values()), sum(map(denominator, squares)) if denominators is not None else 1.0)}
    for layer in sorted(layer for layer in squares if layer is not None):
        measures[f"{key}_l{layer}"] = root(squares[layer], denominator(layer))
    return measures
