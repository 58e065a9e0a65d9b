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
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from plasticity_dist.callbacks import Callback, LoopPosition, RunContext
from plasticity_dist.config import ConfigError, DiagnosticsSection, ExperimentConfig
from plasticity_dist.data.loader import iter_eval_batches
from plasticity_dist.engine_params import full_grad, get_full
from plasticity_dist.metrics import MetricsLog
from plasticity_dist.model import GPT
from plasticity_dist.steps import StepRunner

LAYER_NAME = re.compile(r"^blocks\.(\d+)\.")


def dormant_scores(hidden: torch.Tensor) -> torch.Tensor:
    """ReDo's score per unit (last dim): its mean |activation| over the batch over the layer's mean of that."""
    mean_abs = hidden.detach().float().abs().flatten(0, -2).mean(0)
    return mean_abs / mean_abs.mean().clamp_min(torch.finfo(torch.float32).tiny)


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


@dataclass
class Activations:
    """What one forward of the diagnostic batch shows, per block (lists) and at the output."""

    unit_scores: list[torch.Tensor] = field(default_factory=list)  # ReDo score per MLP hidden unit
    block_features: list[torch.Tensor] = field(default_factory=list)  # (tokens, d_model) after each block
    attn_entropy: list[float] = field(default_factory=list)
    final_features: torch.Tensor | None = None  # (tokens, d_model) after the final LayerNorm


@contextmanager
def _hooks(handles: list[torch.utils.hooks.RemovableHandle]) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture_activations(step_runner: StepRunner, inputs: torch.Tensor, record: bool = True,
                        units_only: bool = False) -> Activations:
    """Forward `inputs` through the engine in eval mode. Collective under ZeRO-3: every rank calls it; only
    ranks with `record` keep anything, and with `units_only` only the MLP units' dormancy scores."""
    model: GPT = step_runner.engine.module
    seen = Activations()
    handles = []
    if record:
        for block in model.blocks:
            handles.append(block.mlp.down.register_forward_pre_hook(
                lambda m, args: seen.unit_scores.append(dormant_scores(args[0]))))
            if not units_only:
                handles += [
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

    def on_step_start(self, at: LoopPosition) -> None:
        self.measuring = at.step % self.section.every_steps == 0 or at.is_task_end
        if self.measuring:
            self.weights_before = self._gather_weights()

    def before_optimizer_step(self) -> None:
        if not self.measuring:
            return
        self.grad_sq = defaultdict(float)
        for name, param in self.params.items():
            grad = full_grad(param)
            if grad is not None:
                self.grad_sq[layer_of(name)] += grad.float().pow(2).sum().item()

    def after_optimizer_step(self, at: LoopPosition) -> None:
        if not self.measuring:
            return
        weights = self._gather_weights()
        activations = capture_activations(self.step_runner, self.batch, record=self.is_main)
        if self.is_main:
            record = {"event": "diagnostics", "time": time.time(), "task": at.task.name, "task_index": at.task.index,
                      "cycle": at.task.cycle, "step": at.step, "tokens": at.tokens, "task_end": at.is_task_end}
            record.update(self._weight_measures(weights))
            record.update(self._activation_measures(activations))
            self.metrics.write(record)
        self.weights_before = {}

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
