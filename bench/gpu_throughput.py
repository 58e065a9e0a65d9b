"""The full trainer (one process, DeepSpeed ZeRO-1, bf16 on CUDA) against a bare PyTorch loop on the same model and
batch shape, per preset (106M and 314M at seq 2048 by default): tokens/s, MFU and peak memory of both and their
ratio (target on GPU >= 0.95); the probe's tokens/s on the trainer run's last checkpoint; and a resume check (a
run stopped by SIGUSR1 halfway and rerun against the uninterrupted one: equal losses on CPU fp32, within
RESUME_TOLERANCE_GPU on GPU bf16).

Trainer and probe run as `python -m plasticity_dist.cli` processes (with model.compile=true on CUDA); their
figures are the medians of the step records of their metrics.jsonl after `--warmup` steps, and the trainer's also
the tokens over the span of its timed steps' record times. The bare loop runs in a process of its own: fp32 weights
under torch.autocast(bf16), fused AdamW, torch.compile and flash attention on CUDA (fp32 on CPU), timed with
torch.cuda.synchronize over `--steps` steps after `--warmup`. MFU = GPT.flops_per_token() x tokens/s over the GPU's
dense bf16 peak. Every process shares one TORCHINDUCTOR_CACHE_DIR, so the probe and the resumed run reuse compiled
graphs. Each phase that fails is reported and the others go on; `--json-out` is rewritten after every phase.

Defaults on CUDA: --presets 106M 314M --seq-len 2048 --micro-batch 106M=16,314M=8 --warmup 10 --steps 20;
on CPU: --presets 100K --seq-len 64 --micro-batch 4 --warmup 3 --steps 6. Exits 1 when a phase failed or the
resume check missed its tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from plasticity_dist.engine.gpu import detected_peak_tflops
from plasticity_dist.engine.preemption import REQUEUE_EXIT_CODE

REPO = Path(__file__).resolve().parent.parent
ON_GPU = torch.cuda.is_available()
RESUME_TOLERANCE_GPU = 1e-2  # max |loss difference| after the stop, bf16 on GPU (non-deterministic kernels)
# Defaults by device: on CUDA issue 17's sizes (micro-batches far inside an H200's 141 GB at seq 2048); on CPU a
# smoke run of the same phases in under a minute (what `make bench` runs).
DEFAULTS = {"cuda": {"presets": ["106M", "314M"], "seq_len": 2048, "micro_batch": {"106M": 16, "314M": 8, "*": 8},
                     "warmup": 10, "steps": 20},
            "cpu": {"presets": ["100K"], "seq_len": 64, "micro_batch": {"*": 4}, "warmup": 3, "steps": 6}}


def flops_per_token(preset: str, vocab_size: int, seq_len: int) -> int:
    from plasticity_dist.model.gpt import GPT
    from plasticity_dist.model.presets import get_preset

    with torch.device("meta"):  # shapes only
        return GPT(get_preset(preset).gpt_config(vocab_size, seq_len)).flops_per_token()


def mfu(tokens_per_s: float | None, flops: int, tflops: float | None) -> float | None:
    return flops * tokens_per_s / (tflops * 1e12) if tokens_per_s and tflops else None


def environment(work: Path) -> dict[str, str]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           "TORCHINDUCTOR_CACHE_DIR": os.environ.get("TORCHINDUCTOR_CACHE_DIR", str(work / "inductor-cache")),
           "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))}
    if not ON_GPU:
        env["OMP_NUM_THREADS"] = "1"  # as bench/probe_overhead.py: each process one thread, the loader worker another
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "plasticity_dist.cli", *args]


class PhaseFailed(RuntimeError):
    pass


RUNNING: set[subprocess.Popen] = set()  # killed with their groups when this bench is told to stop (SIGTERM)


def start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """`command` in a process group of its own (its loader workers and compile workers too), output to `log`."""
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    RUNNING.add(process)
    return process


def stop_running(signum: int, frame: Any) -> None:
    """On SIGTERM (`timeout` around the bench): end the processes it started, which a group signal misses."""
    for process in RUNNING:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    sys.exit(128 + signum)


def finish(process: subprocess.Popen, log: Path, timeout: float, ok: tuple[int, ...] = (0,)) -> int:
    """Wait for `process`; its exit code, or PhaseFailed with the log's tail (its group killed after `timeout`)."""
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        code = f"nothing: killed after {timeout:.0f} s"
    RUNNING.discard(process)
    if code not in ok:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise PhaseFailed(f"{log.stem} exited {code} (log {log}):\n{tail}")
    return code


def run_logged(command: list[str], log: Path, env: dict[str, str], timeout: float) -> None:
    finish(start(command, log, env), log, timeout)


def step_records(metrics: Path) -> list[dict[str, Any]]:
    lines = metrics.read_text().split("\n")[:-1] if metrics.is_file() else []  # a line being written is left out
    return [record for record in map(json.loads, lines) if record["event"] == "step"]


def median_of(records: list[dict[str, Any]], key: str) -> float | None:
    values = [record[key] for record in records if record.get(key) is not None]
    return statistics.median(values) if values else None


def timed_figures(metrics: Path, warmup: int, tokens_per_step: int) -> dict[str, Any]:
    """Medians of the step records after `warmup` steps, and tokens/s over the span of their record times."""
    records = step_records(metrics)
    timed = [record for record in records if record["step"] > warmup]
    if not timed:
        raise PhaseFailed(f"{metrics}: no step records after the {warmup} warm-up steps")
    span_s = timed[-1]["time"] - records[warmup - 1]["time"] if warmup else None
    peaks = [record["peak_memory_bytes"] for record in records if record.get("peak_memory_bytes")]
    return {"steps_timed": len(timed), "tokens_per_s": median_of(timed, "tokens_per_s"),
            "tokens_per_s_span": len(timed) * tokens_per_step / span_s if span_s else None,
            "mfu_logged": median_of(timed, "mfu"), "peak_memory_bytes": max(peaks) if peaks else None}


def make_data(work: Path, lang: str, tokens: int, seq_len: int, val_tokens: int, env: dict[str, str], timeout: float) -> None:
    """Synthetic shards of `lang` with at least `tokens` training tokens (rounded to whole rows) and a val split."""
    out = work / "data" / lang
    shutil.rmtree(out, ignore_errors=True)  # preprocess would resume a dataset of another size
    rows = -(-tokens // seq_len) + 2
    run_logged(cli("preprocess", "--source", f"synthetic:{lang}", "--out", str(out), "--tokens", str(rows * (seq_len + 1)),
                   "--seq-len", str(seq_len), "--val-tokens", str(2 * val_tokens), "--workers", str(min(8, os.cpu_count() or 1))),
               work / f"preprocess-{lang}.log", env, timeout)


def train_command(args: argparse.Namespace, work: Path, preset: str, micro: int, run_dir: Path,
                  compile_model: bool) -> list[str]:
    """The trainer run of one preset: one task of warmup + steps optimizer steps, accumulation 2, nothing optional;
    its config holds the probe settings `plasticity-dist probe` reads."""
    tokens_per_step = 2 * micro * args.seq_len
    total_steps = args.warmup + args.steps
    val_tokens = micro * args.seq_len
    return cli("train", "--config", str(REPO / "configs/continual-tiny.yaml"), f"run_dir={run_dir}",
               f"model.preset={preset}", f"data.root={work / 'data'}", f"data.seq_len={args.seq_len}",
               f"data.micro_batch_size={micro}", f"data.global_batch_size={2 * micro}", f"data.val_tokens={val_tokens}",
               f"data.num_workers={args.num_workers}", "curriculum.tasks=[{name: en}]",
               f"curriculum.task_tokens={total_steps * tokens_per_step}", "curriculum.cycles=1", "log_every=1",
               "launch.zero_stage=1", "checkpoint.every_steps=0", "probe.enabled=false", "probe.dataset=vi",
               f"probe.tokens={total_steps * tokens_per_step}", "probe.eval_points=2", f"probe.eval_tokens={val_tokens}",
               "forgetting.enabled=false", "diagnostics.enabled=false", "early_warning.enabled=false",
               f"model.compile={str(compile_model).lower()}", f"launch.precision={'bf16' if ON_GPU else 'fp32'}")


def latest_checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()


def bare_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """The plain PyTorch recipe on the trainer run's model and batch shape, in this process: fp32 weights,
    autocast bf16, fused AdamW, torch.compile, flash or cuDNN attention only (as the trainer on CUDA); fp32 on CPU."""
    from contextlib import nullcontext

    from plasticity_dist.study.config_files import load_config
    from plasticity_dist.data.loader import iter_eval_batches
    from plasticity_dist.engine.gpu import require_fused_attention
    from plasticity_dist.model.gpt import GPT
    from plasticity_dist.model.presets import get_preset
    from plasticity_dist.engine.steps import adamw_param_groups

    config = load_config(spec["config"])
    data, opt = config.data, config.optimizer
    device = torch.device("cuda" if ON_GPU else "cpu")
    accum = data.global_batch_size // data.micro_batch_size
    torch.manual_seed(config.seed)
    torch.set_float32_matmul_precision("high")
    batches = [(x.to(device), y.to(device)) for x, y in iter_eval_batches(
        spec["dataset"], seq_len=data.seq_len, batch_size=data.micro_batch_size, max_tokens=8 * data.micro_batch_size * data.seq_len)]
    batches = [batch for batch in batches if len(batch[0]) == data.micro_batch_size]
    model = GPT(get_preset(config.model.preset).gpt_config(spec["vocab_size"], data.seq_len)).to(device)
    if ON_GPU:  # the kernels the trainer allows (model.flash_attention), checked at these shapes as it does
        require_fused_attention(model.config, data.micro_batch_size, torch.bfloat16, device)
    optimizer = torch.optim.AdamW(adamw_param_groups(model, opt.weight_decay), lr=opt.lr, betas=tuple(opt.betas),
                                  eps=opt.eps, **({"fused": True} if ON_GPU else {}))
    forward = torch.compile(model) if ON_GPU else model
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if ON_GPU else nullcontext
    sync = torch.cuda.synchronize if ON_GPU else (lambda: None)
    if ON_GPU:
        torch.cuda.reset_peak_memory_stats()

    def step(index: int) -> None:
        for micro in range(accum):
            inputs, targets = batches[(index * accum + micro) % len(batches)]
            with autocast():
                loss = forward(inputs, targets) / accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    started = time.perf_counter()
    for index in range(spec["warmup"]):
        step(index)
    sync()
    warmed = time.perf_counter()
    for index in range(spec["steps"]):
        step(spec["warmup"] + index)
    sync()
    elapsed = time.perf_counter() - warmed
    return {"tokens_per_s": spec["steps"] * data.global_batch_size * data.seq_len / elapsed, "timed_s": elapsed,
            "warmup_s": warmed - started, "peak_memory_bytes": torch.cuda.max_memory_allocated() if ON_GPU else None}


class Bench:
    """The phases of one bench run and the figures they leave in `results` (written to --json-out after each)."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work, self.env = args, work, environment(work)
        self.deadline = time.monotonic() + args.budget
        self.tflops = detected_peak_tflops()  # the trainer's MFU (launch.peak_tflops null) uses the same
        self.compile = {preset: ON_GPU and args.compile for preset in args.presets}  # off after a failed compiled run
        self.results: dict[str, Any] = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if ON_GPU else "cpu", "peak_tflops": self.tflops,
            "settings": {key: value for key, value in vars(args).items() if key != "json_out"},
            "presets": {}, "resume": None, "phases": [],
        }

    def timeout(self) -> float:
        """Seconds the next process may take: --timeout, within what is left of --budget."""
        left = self.deadline - time.monotonic()
        if left < 10:
            raise PhaseFailed("skipped: the bench's --budget is spent")
        return min(self.args.timeout, left)

    def micro(self, preset: str) -> int:
        return self.args.micro_batch.get(preset, self.args.micro_batch["*"])

    def phase(self, name: str, work, *args: Any) -> Any:
        """Run one phase, print and record its seconds; a failure is printed and recorded, then the bench goes on."""
        started = time.perf_counter()
        try:
            value, error = work(*args), None
        except Exception as failure:  # noqa: BLE001  (one phase's failure must not cost the others' figures)
            value, error = None, f"{type(failure).__name__}: {failure}"
        seconds = time.perf_counter() - started
        self.results["phases"].append({"phase": name, "seconds": round(seconds, 1), "error": error})
        print(f"time_{name}: {seconds:.1f} s" + (f" FAILED: {error}" if error else ""), flush=True)
        self.save()
        return value

    def save(self) -> None:
        if self.args.json_out:
            Path(self.args.json_out).write_text(json.dumps(self.results, indent=2) + "\n")

    def prepare_data(self) -> None:
        largest = max(2 * self.micro(preset) for preset in self.args.presets) * self.args.seq_len
        tokens = (self.args.warmup + self.args.steps) * largest
        for lang in ("en", "vi"):  # the probe trains on vi as many tokens as the run on en
            make_data(self.work, lang, tokens, self.args.seq_len, largest // 2, self.env, self.timeout())

    def train(self, preset: str) -> dict[str, Any]:
        run_dir = self.work / f"run-{preset}"
        micro = self.micro(preset)
        command = train_command(self.args, self.work, preset, micro, run_dir, self.compile[preset])
        shutil.rmtree(run_dir, ignore_errors=True)  # a run left in --work by an earlier bench would be resumed
        try:
            run_logged(command, self.work / f"train-{preset}.log", self.env, self.timeout())
        except PhaseFailed as failure:
            if not self.compile[preset] or "budget" in str(failure):
                raise
            print(f"trainer_{preset} failed with model.compile=true; again without:\n{failure}", flush=True)
            self.compile[preset] = False
            shutil.rmtree(run_dir)
            command = train_command(self.args, self.work, preset, micro, run_dir, compile_model=False)
            run_logged(command, self.work / f"train-{preset}-eager.log", self.env, self.timeout())
        flops = flops_per_token(preset, self.vocab_size(), self.args.seq_len)
        figures = timed_figures(run_dir / "metrics.jsonl", self.args.warmup, 2 * micro * self.args.seq_len)
        figures["mfu"] = mfu(figures["tokens_per_s"], flops, self.tflops)
        return {"micro_batch": micro, "global_batch": 2 * micro, "compiled": self.compile[preset],
                "flops_per_token": flops, **figures}

    def vocab_size(self) -> int:
        return json.loads((self.work / "data" / "en" / "manifest.json").read_text())["vocab_size"]

    def bare(self, preset: str) -> dict[str, Any]:
        spec = {"config": str(self.work / f"run-{preset}" / "config.yaml"), "dataset": str(self.work / "data" / "en"),
                "vocab_size": self.vocab_size(), "warmup": self.args.warmup, "steps": self.args.steps}
        log = self.work / f"bare-{preset}.log"
        run_logged([sys.executable, __file__, "--bare-loop", json.dumps(spec)], log, self.env, self.timeout())
        figures = json.loads(log.read_text().strip().splitlines()[-1])
        figures["mfu"] = mfu(figures["tokens_per_s"], flops_per_token(preset, spec["vocab_size"], self.args.seq_len), self.tflops)
        return figures

    def probe(self, preset: str) -> dict[str, Any]:
        checkpoint = latest_checkpoint(self.work / f"run-{preset}")
        run_logged(cli("probe", "--checkpoint", str(checkpoint)), self.work / f"probe-{preset}.log", self.env, self.timeout())
        metrics = checkpoint.parent.parent / "probes" / checkpoint.name / "metrics.jsonl"
        figures = timed_figures(metrics, self.args.warmup, 2 * self.micro(preset) * self.args.seq_len)
        return {key: figures[key] for key in ("steps_timed", "tokens_per_s", "mfu_logged", "peak_memory_bytes")}

    def resume(self, preset: str) -> dict[str, Any]:
        """The preset's run again, stopped with SIGUSR1 once it logged step K = half its steps, then rerun (it resumes
        from the stop's checkpoint); its losses after the checkpoint against the uninterrupted (timed) run's."""
        run_dir = self.work / f"resume-{preset}"
        command = train_command(self.args, self.work, preset, self.micro(preset), run_dir, self.compile[preset])
        stop_after = (self.args.warmup + self.args.steps) // 2
        metrics, log = run_dir / "metrics.jsonl", self.work / f"resume-{preset}-stopped.log"
        shutil.rmtree(run_dir, ignore_errors=True)
        process = start(command, log, self.env)
        deadline = time.monotonic() + self.timeout()
        while not any(record["step"] >= stop_after for record in step_records(metrics)):
            if process.poll() is not None or time.monotonic() > deadline:
                finish(process, log, timeout=0, ok=())
            time.sleep(0.05)
        process.send_signal(signal.SIGUSR1)  # the trainer alone: it checkpoints after its step and exits
        finish(process, log, self.timeout(), ok=(REQUEUE_EXIT_CODE,))
        saved_step = int((run_dir / "preempted").read_text())
        run_logged(command, self.work / f"resume-{preset}-resumed.log", self.env, self.timeout())
        reference = {r["step"]: r["loss"] for r in step_records(self.work / f"run-{preset}" / "metrics.jsonl")}
        resumed = {r["step"]: r["loss"] for r in step_records(metrics)}
        if sorted(resumed) != sorted(reference):
            raise PhaseFailed(f"the resumed run logged steps {sorted(resumed)}, the uninterrupted one {sorted(reference)}")
        after = [step for step in sorted(reference) if step > saved_step]
        if not after:
            raise PhaseFailed(f"the run stopped at its last step ({saved_step}): nothing to compare; raise --steps")
        difference = max(abs(resumed[step] - reference[step]) for step in after)
        tolerance = RESUME_TOLERANCE_GPU if ON_GPU else 0.0
        # the same steps before the stop, run twice from scratch: the run-to-run noise the figure after it sits on
        before = max(abs(resumed[step] - reference[step]) for step in sorted(reference) if step <= saved_step)
        return {"preset": preset, "stopped_at_step": saved_step, "steps_compared": len(after),
                "max_abs_loss_difference": difference, "max_abs_loss_difference_before_stop": before,
                "tolerance": tolerance, "passed": difference <= tolerance}

    def run(self) -> None:
        """Throughput of every preset first, then the probes, then the resume check: what --budget cuts off comes last."""
        self.phase("data", self.prepare_data)
        for preset in self.args.presets:
            figures = self.results["presets"][preset] = {}
            figures["trainer"] = self.phase(f"trainer_{preset}", self.train, preset)
            if (self.work / f"run-{preset}" / "config.yaml").is_file():  # written before the first step
                figures["bare"] = self.phase(f"bare_{preset}", self.bare, preset)
            if figures["trainer"] and figures.get("bare"):
                for kind in ("", "_span"):
                    trainer_tokens_per_s = figures["trainer"][f"tokens_per_s{kind}"]
                    figures[f"ratio{kind}"] = trainer_tokens_per_s / figures["bare"]["tokens_per_s"] \
                        if trainer_tokens_per_s else None
        for preset, figures in self.results["presets"].items():
            if figures["trainer"]:
                figures["probe"] = self.phase(f"probe_{preset}", self.probe, preset)
        resume_preset = self.args.resume_preset or ("106M" if "106M" in self.args.presets else self.args.presets[0])
        if self.args.resume_check and self.results["presets"].get(resume_preset, {}).get("trainer"):
            self.results["resume"] = self.phase(f"resume_{resume_preset}", self.resume, resume_preset)
        self.save()


# (name, part, key, scale, digits) of each printed figure
PRINTED = (("trainer_tokens_per_s", "trainer", "tokens_per_s", 1, 0),
           ("trainer_tokens_per_s_span", "trainer", "tokens_per_s_span", 1, 0),
           ("bare_tokens_per_s", "bare", "tokens_per_s", 1, 0),
           ("ratio_trainer_vs_bare", None, "ratio", 1, 3), ("ratio_span_trainer_vs_bare", None, "ratio_span", 1, 3),
           ("trainer_mfu", "trainer", "mfu", 1, 3), ("trainer_mfu_logged", "trainer", "mfu_logged", 1, 3),
           ("bare_mfu", "bare", "mfu", 1, 3), ("trainer_peak_memory_gib", "trainer", "peak_memory_bytes", 2**30, 2),
           ("bare_peak_memory_gib", "bare", "peak_memory_bytes", 2**30, 2), ("probe_tokens_per_s", "probe", "tokens_per_s", 1, 0))


def print_results(results: dict[str, Any]) -> None:
    """`name: value` lines, as every bench/ script prints."""
    print(f"device: {results['device']}, torch {results['torch']}, {results['date']}, "
          f"peak {results['peak_tflops'] or 'n/a'} TFLOP/s (dense bf16)")
    for preset, figures in results["presets"].items():
        trainer = figures.get("trainer") or {}
        print(f"{preset}: micro-batch {trainer.get('micro_batch', '?')} x 2, seq {results['settings']['seq_len']}, "
              f"compiled {trainer.get('compiled', '?')}")
        for name, part, key, scale, digits in PRINTED:
            value = (figures.get(part) or {} if part else figures).get(key)
            target = " (target >= 0.95 on GPU)" if name.startswith("ratio") else ""
            print(f"{preset}_{name}: " + ("n/a" if value is None else f"{value / scale:,.{digits}f}{target}"))
    resume = results["resume"]
    if resume:
        print(f"resume_{resume['preset']}: stopped at step {resume['stopped_at_step']}, "
              f"max_abs_loss_difference over {resume['steps_compared']} steps after it: {resume['max_abs_loss_difference']:.3g} "
              f"(tolerance {resume['tolerance']:g}: {'passed' if resume['passed'] else 'FAILED'}; "
              f"before the stop, two runs from scratch: {resume['max_abs_loss_difference_before_stop']:.3g})")


def micro_batches(text: str) -> dict[str, int]:
    """`16` (every preset) or `106M=16,314M=8`."""
    if text.isdigit():
        return {"*": int(text)}
    return {preset: int(size) for preset, size in (item.split("=") for item in text.split(","))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+")
    parser.add_argument("--seq-len", type=int)
    parser.add_argument("--micro-batch", type=micro_batches, help="sequences per micro-batch: N, or PRESET=N,... "
                        "(others 8); global batch = 2 x micro")
    parser.add_argument("--warmup", type=int, help="steps left out of every figure (compilation)")
    parser.add_argument("--steps", type=int, help="timed steps after the warm-up")
    parser.add_argument("--num-workers", type=int, default=1, help="the trainer's and probe's DataLoader workers")
    parser.add_argument("--resume-check", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--resume-preset", help="preset of the resume check (default 106M if listed, else the first)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="model.compile=true for the trainer on CUDA (a failed compiled run is redone without)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds each process may take")
    parser.add_argument("--budget", type=float, default=420, help="seconds for the whole bench: a process still "
                        "running then is stopped, and later phases are skipped")
    parser.add_argument("--work", help="folder for data, runs and logs (default: a new temporary folder)")
    parser.add_argument("--json-out", help="write every figure to this JSON file")
    parser.add_argument("--bare-loop", metavar="SPEC", help=argparse.SUPPRESS)  # the baseline's own process
    args = parser.parse_args()
    if args.bare_loop:
        print(json.dumps(bare_loop(json.loads(args.bare_loop))))
        return
    for key, value in DEFAULTS["cuda" if ON_GPU else "cpu"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.micro_batch.setdefault("*", 8)
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the timed span starts at the last warm-up step's record)")
    signal.signal(signal.SIGTERM, stop_running)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-gpu-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work: {work}", flush=True)
    bench = Bench(args, work)
    bench.run()
    print_results(bench.results)
    resume = bench.results["resume"]
    failed = [phase["phase"] for phase in bench.results["phases"] if phase["error"]]
    sys.exit(1 if failed or (resume and not resume["passed"]) else 0)


if __name__ == "__main__":
    main()
