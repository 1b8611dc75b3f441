"""The sweep: plan runs, skip finished ones, run each method, measure, store one row.

Reference rows (not papers): ``baseline`` (the task's baseline architecture,
trained from scratch; its checkpoint is what pruning and QAT start from) and
``student`` (the student architecture trained alone, the fair comparison for
distillation).
"""
from __future__ import annotations

import json
import platform
import random
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mcbench.benchmarks import archs, measure
from mcbench.benchmarks.cache import CheckpointCache
from mcbench.benchmarks.data import Splits
from mcbench.benchmarks.record import ResultRow, config_hash, run_id
from mcbench.benchmarks.store import ResultStore
from mcbench.benchmarks.tasks import Recipe, Task, get_task
from mcbench.benchmarks.train import SELECTION_RULE, TrainData, accuracy_pct, train
from mcbench.methods.protocols import Compressed, MethodContext, TrainReport
from mcbench.methods.registry import REGISTRY

REFERENCES = ("baseline", "student")
TEACHER_SEED = 0


@dataclass
class SweepConfig:
    task: str = "fmnist"
    budget: str = "default"
    methods: list[str] = field(default_factory=lambda: list(REFERENCES) + REGISTRY.keys())
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    threads: int = 2
    db: Path = Path("runs/mcbench.sqlite")
    cache_dir: Path = Path("cache/checkpoints")
    data_dir: Path | None = None
    device: str = "cpu"
    dataset_label: str | None = None   # overrides the label, e.g. "digits (fallback: ...)"
    overrides: dict[str, dict] = field(default_factory=dict)  # per-method config overrides
    force: bool = False                # rerun planned rows that are already stored (each replaced when done)


@dataclass
class RunSpec:
    method: str
    seed: int
    config: dict
    config_hash: str
    run_id: str


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def environment(threads: int) -> dict:
    return {
        "torch_version": torch.__version__, "python": platform.python_version(), "cpu_model": measure.cpu_model(),
        "cpu_threads": threads, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "quantized_engines": list(torch.backends.quantized.supported_engines), "git_commit": git_commit(),
        "platform": platform.platform(),
    }


def method_family(method: str) -> str:
    return "reference" if method in REFERENCES else REGISTRY.get(method).family


def plan(cfg: SweepConfig, task: Task, dataset_label: str) -> list[RunSpec]:
    """Every (method, seed) with its full config and stable ids. Unknown keys fail here, before any work."""
    recipe = task.recipe(cfg.budget)
    specs = []
    for m in cfg.methods:
        if m in REFERENCES:
            method_cfg = {}
        else:
            method_cfg = REGISTRY.create(m, **cfg.overrides.get(m, {})).config_dict()
        config = {"method": m, "method_config": method_cfg, "task": task.describe(), "dataset": dataset_label,
                  "recipe": asdict(recipe), "budget": cfg.budget, "device": cfg.device}
        h = config_hash(config)
        for seed in cfg.seeds:
            specs.append(RunSpec(m, seed, config, h, run_id(m, task.name, cfg.budget, seed, h)))
    return specs


class Harness:
    """Runs one task/budget: owns the data, the checkpoint cache and the store."""

    def __init__(self, cfg: SweepConfig, splits: Splits | None = None, log: Callable[[str], None] = print):
        self.cfg = cfg
        self.task = get_task(cfg.task)
        self.recipe: Recipe = self.task.recipe(cfg.budget)
        self.log = log
        self.device = torch.device(cfg.device)
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda requested but CUDA is not available")
        self.splits = splits if splits is not None else self.task.loader(cfg.data_dir)
        self.dataset_label = cfg.dataset_label or self.splits.label
        sub = self.recipe.train_subset
        x, y = self.splits.x_train, self.splits.y_train
        if sub is not None and sub < len(y):
            x, y = x[:sub], y[:sub]  # loader order is already a fixed shuffle
        self.data = TrainData(x, y, self.splits.x_val, self.splits.y_val)
        self.cache = CheckpointCache(cfg.cache_dir)
        self.matmul_gflops = measure.matmul_gflops()
        self.git_commit, self.cpu_model = git_commit(), measure.cpu_model()  # provenance, read once per sweep

    # ------------------------------------------------------------------ models
    def _arch(self, role: str) -> archs.ArchSpec:
        return {"baseline": self.task.baseline, "teacher": self.task.teacher, "student": self.task.student}[role]

    def build(self, role: str) -> nn.Module:
        return archs.build(self._arch(role), self.task.in_chans, self.splits.num_classes, self.task.input_size)

    def train_fn(self, seed: int):
        def fn(model: nn.Module, *, epochs: int, **kw) -> TrainReport:
            return train(model, self.data, self.recipe, epochs=epochs, seed=seed, device=self.device, **kw)
        return fn

    def trained(self, role: str, seed: int) -> tuple[nn.Module, TrainReport | None]:
        """The trained baseline/teacher/student for ``seed``, from the cache or trained now and cached."""
        identity = {"role": role, "task": self.task.name, "dataset": self.dataset_label, "arch": asdict(self._arch(role)),
                    "recipe": asdict(self.recipe), "seed": seed, "torch": torch.__version__.split("+")[0]}
        model = self.build(role)
        info = self.cache.load(identity, model)
        if info is not None:
            return model.to(self.device).eval(), TrainReport(**info)
        set_seed(seed)
        model = self.build(role)
        self.log(f"  training {role} (seed {seed}, {self.recipe.epochs_scratch} epochs)")
        report = self.train_fn(seed)(model, epochs=self.recipe.epochs_scratch)
        self.cache.save(identity, model, asdict(report))
        return model.eval(), report

    def context(self, seed: int) -> MethodContext:
        calib = lambda: [self.data.x_train[i * self.recipe.batch_size:(i + 1) * self.recipe.batch_size]  # noqa: E731
                         for i in range(self.recipe.calibration_batches)]
        return MethodContext(
            num_classes=self.splits.num_classes, in_chans=self.task.in_chans, input_size=self.task.input_size,
            epochs_scratch=self.recipe.epochs_scratch, epochs_finetune=self.recipe.epochs_finetune,
            train_fn=self.train_fn(seed), build_student=lambda: self.build("student"),
            build_baseline=lambda: self.build("baseline"),
            load_baseline=lambda: self.trained("baseline", seed)[0],
            load_teacher=lambda: self.trained("teacher", TEACHER_SEED)[0],
            calibration_batches=calib, device=self.device, seed=seed,
        )

    # ------------------------------------------------------------------ one run
    def compress(self, spec: RunSpec) -> Compressed:
        if spec.method in REFERENCES:
            model, report = self.trained(spec.method, spec.seed)
            return Compressed(model, real=True, note="reference: trained from scratch", train_report=report)
        method = REGISTRY.create(spec.method, **self.cfg.overrides.get(spec.method, {}))
        return method.apply(self.context(spec.seed))

    def run(self, spec: RunSpec) -> ResultRow:
        t0 = time.perf_counter()
        set_seed(spec.seed)
        out = self.compress(spec)
        model = out.model
        eval_device = torch.device("cpu") if out.quant_engine else self.device  # int8 kernels are CPU-only
        model = model.to(eval_device)
        test_acc = accuracy_pct(model, self.splits.x_test, self.splits.y_test, device=eval_device)
        report = out.train_report or TrainReport(best_epoch=-1, val_top1_acc_pct=accuracy_pct(
            model, self.splits.x_val, self.splits.y_val, device=eval_device), epochs_run=0)
        model_cpu = model.cpu().eval()
        baseline = self.build("baseline").eval()
        params, nonzero = measure.count_params(model_cpu)
        disk, gz = measure.serialized_bytes(model_cpu)
        ex1 = torch.randn(1, self.task.in_chans, *self.task.input_size)
        flops = measure.count_flops(out.macs_model or model_cpu, ex1)
        base_flops = measure.count_flops(baseline, ex1)
        torch.set_num_threads(self.cfg.threads)
        r = self.recipe
        lat1, base1 = measure.latency_pair_cpu(model_cpu, baseline, ex1, r.latency_warmup, r.latency_runs)
        ex64 = torch.randn(64, self.task.in_chans, *self.task.input_size)
        lat64, base64 = measure.latency_pair_cpu(model_cpu, baseline, ex64, r.latency_warmup, max(5, r.latency_runs // 5))
        cuda1 = cuda64 = None
        if torch.cuda.is_available() and not out.quant_engine:
            cuda1 = measure.latency_cuda(model_cpu, ex1, r.latency_warmup, r.latency_runs).p50_ms
            cuda64 = measure.latency_cuda(model_cpu, ex64, r.latency_warmup, r.latency_runs).p50_ms
            model_cpu.cpu()
        macs = measure.macs_from_flops(flops)
        row = ResultRow(
            run_id=spec.run_id, method=spec.method, family=method_family(spec.method), task=self.task.name,
            dataset=self.dataset_label, budget=self.cfg.budget, seed=spec.seed, config_hash=spec.config_hash,
            config_json=json.dumps(spec.config, sort_keys=True),
            top1_acc_pct=test_acc, val_top1_acc_pct=report.val_top1_acc_pct, selected_epoch=report.best_epoch,
            selection_rule=SELECTION_RULE,
            params_count=params, params_nonzero=nonzero, bits_per_weight_effective=out.bits_per_weight,
            size_bytes_theoretical=measure.theoretical_bytes(model_cpu, out.bits_per_weight),
            size_bytes_disk=disk, size_bytes_gzip=gz,
            macs=macs, flops=flops, macs_ratio_vs_baseline=measure.macs_from_flops(base_flops) / max(1, macs),
            cpu_threads=torch.get_num_threads(),
            latency_ms_p50_cpu_b1=lat1.p50_ms, latency_ms_p90_cpu_b1=lat1.p90_ms,
            latency_ms_mean_cpu_b1=lat1.mean_ms, latency_ms_std_cpu_b1=lat1.std_ms,
            latency_ms_p50_cpu_b64=lat64.p50_ms, latency_ms_p90_cpu_b64=lat64.p90_ms,
            latency_ms_mean_cpu_b64=lat64.mean_ms, latency_ms_std_cpu_b64=lat64.std_ms,
            baseline_latency_ms_p50_cpu_b1=base1.p50_ms, baseline_latency_ms_p50_cpu_b64=base64.p50_ms,
            speedup_cpu_b1=base1.p50_ms / lat1.p50_ms, speedup_cpu_b64=base64.p50_ms / lat64.p50_ms,
            compression_real=out.real, compression_note=out.note, quant_engine=out.quant_engine,
            train_gflops_per_s=report.gflops_per_s, matmul_gflops_per_s=self.matmul_gflops,
            git_commit=self.git_commit, torch_version=torch.__version__, cpu_model=self.cpu_model,
            device=str(self.device), timestamp_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            wall_time_s=time.perf_counter() - t0, peak_mem_bytes=measure.peak_mem_bytes(),
            latency_ms_p50_cuda_b1=cuda1, latency_ms_p50_cuda_b64=cuda64,
            gpu_name=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
            extra_json=json.dumps(out.extra, sort_keys=True, default=float),
        )
        return row


def run_sweep(cfg: SweepConfig, *, splits: Splits | None = None, log: Callable[[str], None] = print,
              on_start: Callable[[int], None] | None = None, on_done: Callable[[RunSpec, ResultRow | None], None] | None = None
              ) -> list[ResultRow]:
    """Run every planned (method, seed) that the store does not hold yet; return the new rows."""
    torch.set_num_threads(cfg.threads)
    harness = Harness(cfg, splits=splits, log=log)
    specs = plan(cfg, harness.task, harness.dataset_label)
    new_rows: list[ResultRow] = []
    with ResultStore(cfg.db) as store:
        todo = [s for s in specs if cfg.force or not store.has(s.run_id)]
        log(f"{harness.splits.summary()}; {len(specs) - len(todo)} of {len(specs)} runs already stored, {len(todo)} to run")
        if on_start:
            on_start(len(todo))
        for spec in todo:
            row = harness.run(spec)
            store.insert(row, replace=cfg.force)
            new_rows.append(row)
            if on_done:
                on_done(spec, row)
    return new_rows


__all__ = ["SweepConfig", "RunSpec", "Harness", "plan", "run_sweep", "REFERENCES", "environment"]
