"""Run under `accelerate launch --num_processes 2`: checks diagnostics and mitigations on a real DeepSpeed
engine at one ZeRO stage against a plain single-process copy of the model; the main process writes what
it saw to a JSON file that `test_zero_callbacks.py` asserts on.

Usage: zero_worker.py STAGE OUT_DIR [PERSISTENCE_THRESHOLD]  (ZeRO-3 keeps parameters smaller than the
threshold whole on every rank; 0 partitions all of them)
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch

from plasticity_dist.common.processes import exit_process
from plasticity_dist.engine.launch import build_accelerator, end_distributed, init_world_env
from plasticity_dist.engine.params import (
    full_from_local, full_grad, get_full, get_full_state, has_optimizer_state, set_full,
)
from plasticity_dist.engine.steps import StepRunner
from plasticity_dist.model.gpt import GPT, GPTConfig
from plasticity_dist.study.config import DiagnosticsSection
from plasticity_dist.study.config_files import load_config
from plasticity_dist.study.curriculum import Task
from plasticity_dist.study.mitigation_sections import (ContinualBackpropSection, HareTortoiseSection, L2InitSection,
                                                       ReDoSection, SelfNormalizedResetsSection, ShrinkPerturbSection,
                                                       SpectralRegSection)
from plasticity_dist.train.callbacks.base import Callback, Callbacks, LoopPosition
from plasticity_dist.train.callbacks.diagnostics import Diagnostics, capture_activations
from plasticity_dist.train.callbacks.mitigations import (
    ContinualBackprop, HareTortoise, L2Init, NormalizeProject, ReDo, SelfNormalizedResets, ShrinkPerturb, SpectralReg,
)
from plasticity_dist.train.metrics import MetricsLog, read_metrics

REPO = Path(__file__).resolve().parents[1]
SEQ, MICRO = 16, 2
TASK = Task(index=1, cycle=1, name="en", datasets=(), weights=None, tokens=1, probe_after=False, val_datasets=())


def batch_for(step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.randint(0, 257, (MICRO, SEQ + 1), generator=torch.Generator().manual_seed(1000 * step + rank))
    return rows[:, :-1], rows[:, 1:]


def position(step: int) -> LoopPosition:
    return LoopPosition(TASK, step=step, step_in_task=step, task_steps=1000, tokens=0, lr=1e-3)


def changed_units(after: dict[str, torch.Tensor], before: dict[str, torch.Tensor], matrix: str) -> list[list[int]]:
    """Per block, the MLP units whose weights in `matrix` changed: rows of "up", columns of "down"."""
    unit_dim = 1 if matrix == "up" else 0  # the dimension reduced over
    names = [f"blocks.{i}.mlp.{matrix}.weight" for i in (0, 1)]
    return [torch.nonzero((after[n] != before[n]).any(unit_dim)).flatten().tolist() for n in names]


def units_without_output(weights: dict[str, torch.Tensor]) -> list[list[int]]:
    """Per block, the MLP units whose outgoing weights are all zero."""
    return [torch.nonzero((weights[f"blocks.{i}.mlp.down.weight"] == 0).all(0)).flatten().tolist() for i in (0, 1)]


class GradRecorder(Callback):
    """Keeps every parameter's whole gradient as the optimizer is about to step."""

    name = "grad_recorder"

    def __init__(self, params: dict[str, torch.nn.Parameter]) -> None:
        self.params = params
        self.grads: dict[str, torch.Tensor] = {}

    def before_optimizer_step(self) -> None:
        self.grads = {name: full_grad(param).clone() for name, param in self.params.items()}


def main() -> None:
    stage, out = int(sys.argv[1]), Path(sys.argv[2])
    overrides = [f"launch.zero_stage={stage}", f"data.seq_len={SEQ}", f"data.micro_batch_size={MICRO}",
                 f"data.global_batch_size={2 * MICRO}", "optimizer.grad_clip=0"]
    label = f"zero{stage}"
    if len(sys.argv) > 3:
        ds_config = json.loads((REPO / "ds_configs" / f"zero{stage}.json").read_text())
        ds_config["zero_optimization"]["stage3_param_persistence_threshold"] = int(sys.argv[3])
        label += f"-persist{sys.argv[3]}"
        (out / f"{label}.ds.json").write_text(json.dumps(ds_config))
        overrides.append(f"launch.ds_config={out / f'{label}.ds.json'}")
    config = load_config(None, overrides)
    world = init_world_env()
    accelerator = build_accelerator(config, world)
    rank, is_main = world.rank, accelerator.is_main_process
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, d_model=32, n_head=2, vocab_size=257, block_size=SEQ))
    reference = copy.deepcopy(model)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    steps = StepRunner(accelerator, model, config, accum_steps=1)
    params = dict(steps.engine.module.named_parameters())
    seen: dict[str, object] = {"stage": stage, "has_state_before_step": has_optimizer_state(steps.engine)}

    def train(step: int, lr: float, callbacks: Callback = Callback()) -> float:
        return steps.train_step(iter([batch_for(step, rank)]), lr, callbacks)[0]

    def full_weights() -> dict[str, torch.Tensor]:
        return {name: get_full(param).cpu() for name, param in params.items()}

    def reference_loss(weights: dict[str, torch.Tensor], step: int) -> float:
        reference.load_state_dict(weights, strict=False)
        with torch.no_grad():
            return sum(reference(*batch_for(step, r)).item() for r in range(world.world_size)) / world.world_size

    for step in (1, 2):
        train(step, 1e-2)
    seen["has_state_after_step"] = has_optimizer_state(steps.engine)

    # set_full: read back, used by the next forward, and not undone by the next optimizer step
    weights = full_weights()
    changed = {name: value * 1.5 + 0.01 for name, value in weights.items()}
    for name, param in params.items():
        set_full(param, changed[name])
    seen["set_read_back_equal"] = all(torch.equal(get_full(params[n]).cpu(), v) for n, v in changed.items())
    seen["engine_loss_after_set"] = train(3, 0.0)
    seen["reference_loss_after_set"] = reference_loss(changed, 3)
    seen["set_survives_step"] = all(torch.equal(get_full(params[n]).cpu(), v) for n, v in changed.items())

    # shrink-and-perturb with sigma 0 scales every weight by lambda, exactly
    before = full_weights()
    ShrinkPerturb(ShrinkPerturbSection(enabled=True, shrink=0.5, noise_std=0.0), steps, seed=0).on_task_start(position(4))
    seen["shrink_exact"] = all(torch.equal(get_full(params[n]).cpu(), 0.5 * v) for n, v in before.items())
    train(4, 1e-2)

    # ReDo: silence four units of block 0; exactly the units scoring <= tau are reset
    up = get_full(params["blocks.0.mlp.up.weight"])
    up[:4] = 0.0
    set_full(params["blocks.0.mlp.up.weight"], up)
    scores = [s.cpu() for s in capture_activations(steps, batch_for(0, 0)[0]).unit_scores]
    before = full_weights()
    moments = {n: get_full_state(steps.engine, params[n], "exp_avg").cpu() for n in ("blocks.0.mlp.up.weight", "blocks.0.mlp.down.weight")}
    ReDo(ReDoSection(enabled=True, every_steps=1, threshold=0.1), steps, batch_for(0, 0)[0], seed=0).after_optimizer_step(position(5))
    after = full_weights()
    seen["redo"] = {
        "dormant": [torch.nonzero(s <= 0.1).flatten().tolist() for s in scores],
        "up_rows_changed": changed_units(after, before, "up"),
        "down_cols_zero": units_without_output(after),
        "down_cols_changed": changed_units(after, before, "down"),
        "fresh_std": after["blocks.0.mlp.up.weight"][:4].std().item(),
        "others_unchanged": all(torch.equal(after[n], before[n]) for n in before if ".mlp." not in n),
        "moment_rows_zero": (get_full_state(steps.engine, params["blocks.0.mlp.up.weight"], "exp_avg").cpu()[:4] == 0).all().item(),
        "moment_rows_kept": torch.equal(get_full_state(steps.engine, params["blocks.0.mlp.up.weight"], "exp_avg").cpu()[4:], moments["blocks.0.mlp.up.weight"][4:]),
    }

    # CBP: units with zero outgoing weights contribute nothing, so they are the ones replaced
    for layer in (0, 1):
        down = get_full(params[f"blocks.{layer}.mlp.down.weight"])
        down[:, 5:10] = 0.0
        set_full(params[f"blocks.{layer}.mlp.down.weight"], down)
    cbp = ContinualBackprop(ContinualBackpropSection(enabled=True, replacement_rate=5 / 128, maturity=0, decay=0.0), steps, seed=0)
    before = full_weights()
    train(6, 0.0, cbp)
    cbp.after_optimizer_step(position(6))
    after = full_weights()
    utilities = accelerator.gather(cbp.utility.to(steps.device)[None]).cpu()
    seen["cbp"] = {
        "up_rows_changed": changed_units(after, before, "up"),
        "ages_reset": [torch.nonzero(cbp.age[i] == 0).flatten().tolist() for i in (0, 1)],
        "utility_same_on_ranks": all(torch.equal(utilities[0], u) for u in utilities),
        "others_unchanged": all(torch.equal(after[n], before[n]) for n in before if ".mlp." not in n),
    }

    # L2 Init: the gradient is that of the mean cross-entropy plus weight * ||theta - theta_0||^2
    weight = 0.5
    recorder = GradRecorder(params)
    train(7, 0.0, Callbacks([L2Init(L2InitSection(enabled=True, weight=weight), steps, initial), recorder]))
    reference.load_state_dict(full_weights(), strict=False)
    reference.zero_grad()
    cross_entropy = sum(reference(*batch_for(7, r)) for r in range(world.world_size)) / world.world_size
    penalty = weight * sum((p - initial[n]).pow(2).sum() for n, p in reference.named_parameters())
    (cross_entropy + penalty).backward()
    seen["l2_grad_max_diff"] = max((recorder.grads[n].cpu() - p.grad).abs().max().item() for n, p in reference.named_parameters())
    seen["l2_penalty_grad_max"] = max((2 * weight * (p - initial[n])).abs().max().item() for n, p in reference.named_parameters())

    # NaP: each linear weight of the blocks is scaled back to its initial norm; nothing else moves
    linears = [n for n, v in initial.items() if v.ndim == 2 and (".attn." in n or ".mlp." in n)]
    train(20, 1e-2)
    before = full_weights()
    NormalizeProject(steps, initial).after_optimizer_step(position(20))
    after = full_weights()
    seen["nap"] = {
        "norm_off_before": min(abs(before[n].norm() / initial[n].norm() - 1).item() for n in linears),
        "norm_off_after": max(abs(after[n].norm() / initial[n].norm() - 1).item() for n in linears),
        "direction_diff": max((after[n] / after[n].norm() - before[n] / before[n].norm()).abs().max().item() for n in linears),
        "others_unchanged": all(torch.equal(after[n], before[n]) for n in before if n not in linears),
    }

    # spectral regularisation: the gradient is that of the mean cross-entropy plus weight * sum (sigma_1 - 1)^2
    recorder = GradRecorder(params)
    spectral = SpectralReg(SpectralRegSection(enabled=True, weight=weight, power_iterations=300), steps, seed=0)
    train(21, 0.0, Callbacks([spectral, recorder]))
    reference.load_state_dict(full_weights(), strict=False)
    reference.zero_grad()
    cross_entropy = sum(reference(*batch_for(21, r)) for r in range(world.world_size)) / world.world_size
    reference_params = dict(reference.named_parameters())
    penalty = weight * sum((torch.linalg.matrix_norm(reference_params[n], ord=2) - 1).pow(2) for n in linears)
    penalty_grads = torch.autograd.grad(penalty, [reference_params[n] for n in linears], retain_graph=True)
    (cross_entropy + penalty).backward()
    seen["spectral_grad_max_diff"] = max((recorder.grads[n].cpu() - p.grad).abs().max().item() for n, p in reference.named_parameters())
    seen["spectral_penalty_grad_max"] = max(g.abs().max().item() for g in penalty_grads)

    # Self-Normalized Resets: after a step observing every unit, silence four units of block 1; one more step
    # and exactly those whose silence is improbable at their rate are reset
    snr = SelfNormalizedResets(SelfNormalizedResetsSection(enabled=True, threshold=1e-12, decay=0.0), steps, seed=0)
    train(22, 1e-2)
    snr.after_optimizer_step(position(22))
    first_rates, first_resets = snr.rate.clone(), int((snr.observed == 0).sum())
    up = get_full(params["blocks.1.mlp.up.weight"])
    up[:4] = 0.0
    set_full(params["blocks.1.mlp.up.weight"], up)
    before = full_weights()
    train(23, 0.0)
    snr.after_optimizer_step(position(23))
    after = full_weights()
    rates = accelerator.gather(snr.rate.to(steps.device)[None]).cpu()
    seen["snr"] = {
        "tokens_per_step": world.world_size * MICRO * SEQ,
        "resets_after_first_step": first_resets,
        "silenced_rates": first_rates[1, :4].tolist(),
        "up_rows_changed": changed_units(after, before, "up"),
        "down_cols_zero": units_without_output(after),
        "counters_restarted": [torch.nonzero((snr.observed[i] == 0) & (snr.rate[i] == 0) & (snr.gap[i] == 0)).flatten().tolist() for i in (0, 1)],
        "gaps": snr.gap[1, :4].tolist(),
        "rate_same_on_ranks": all(torch.equal(rates[0], r) for r in rates),
        "others_unchanged": all(torch.equal(after[n], before[n]) for n in before if ".mlp." not in n),
    }

    # Hare & Tortoise: the tortoise follows the weights each step ends with; at every third step they are set to it
    hare = HareTortoise(HareTortoiseSection(enabled=True, decay=0.5, every_steps=3), steps)
    tortoise = full_weights()
    kept, moments = [], {}
    for step in (31, 32, 33):
        train(step, 1e-2)
        trained = full_weights()
        moments = {n: get_full_state(steps.engine, params[n], "exp_avg").cpu() for n in ("blocks.0.mlp.up.weight", "blocks.1.mlp.down.weight")}
        hare.after_optimizer_step(position(step))
        tortoise = {n: value.lerp(trained[n], 0.5) for n, value in tortoise.items()}
        kept.append(all(torch.equal(get_full(params[n]).cpu(), v) for n, v in trained.items()))
    share = torch.tensor([sum(value.numel() for value in hare.rank_tensors().values())], device=steps.device)
    restarted = HareTortoise(HareTortoiseSection(enabled=True), steps)
    restarted.load_rank_tensors({})  # a checkpoint without a tortoise: it starts from the weights resumed from
    seen["hare_tortoise"] = {
        "kept_before_reset": kept[:2], "changed_at_reset": not kept[2],
        "reset_to_tortoise": all(torch.equal(get_full(params[n]).cpu(), v) for n, v in tortoise.items()),
        "moments_kept": all(torch.equal(get_full_state(steps.engine, params[n], "exp_avg").cpu(), m) for n, m in moments.items()),
        "shares": accelerator.gather(share).cpu().tolist(), "parameters": len(params),
        "numel": sum(p.numel() for p in reference.parameters()),
        "restart_from_weights": all(torch.equal(full_from_local(params[n], t).cpu(), get_full(params[n]).cpu())
                                    for n, t in restarted.tortoise.items()),
    }

    # diagnostics: one measured step; update_ratio against the weights read here
    metrics_path = out / f"metrics-{label}.jsonl"
    diagnostics = Diagnostics(DiagnosticsSection(every_steps=1, curvature=True, curvature_iterations=5), steps,
                              batch_for(0, 0)[0], initial, MetricsLog(metrics_path, is_main), is_main)
    before = full_weights()
    task_end = LoopPosition(TASK, step=8, step_in_task=1, task_steps=1, tokens=0, lr=1e-3)  # a one-step task
    diagnostics.on_task_start(task_end)
    diagnostics.on_step_start(task_end)
    _, grad_norm = steps.train_step(iter([batch_for(8, rank)]), 1e-2, diagnostics)
    diagnostics.after_optimizer_step(task_end)
    after = full_weights()
    if is_main:
        delta = sum((after[n] - before[n]).pow(2).sum() for n in after).sqrt()
        seen["expected_update_ratio"] = (delta / sum(v.pow(2).sum() for v in before.values()).sqrt()).item()
        seen["expected_dist_from_init"] = sum((after[n] - initial[n]).pow(2).sum() for n in after).sqrt().item()
        seen["engine_grad_norm"] = grad_norm
        seen["expected_spectral_norm"] = max(torch.linalg.svdvals(value.double())[0].item() for name, value in after.items()
                                             if value.ndim == 2 and (".attn." in name or ".mlp." in name))
        seen["diagnostics"] = read_metrics(metrics_path)[-1]
        (out / f"{label}.json").write_text(json.dumps(seen))
    accelerator.wait_for_everyone()
    end_distributed()


if __name__ == "__main__":
    main()
    exit_process(0)
