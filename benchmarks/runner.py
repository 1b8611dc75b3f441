"""The sweep: plan runs, skip finished ones, run each method, measure, store one row.

Reference rows (not papers): ``baseline`` (the task's baseline architecture,
trained from scratch; its checkpoint is what pruning and QAT start from),
``student`` (the student architecture trained alone, the fair comparison for
distillation) and ``teacher`` (the teacher architecture; its row for seed s is
the teacher that distillation at seed s learns from).

Latency: every model is timed in deploy form (``deploy.py``: BN folded, the faster
memory format, TorchScript-frozen; int8 as converted or frozen), side by side with
the deploy-form baseline, so speedups compare deployable models. The row records
the path timed for both, the sample counts and the allocator of the process. A model with
unstructured-sparse linear layers is also timed on torch's CSR kernels next to its dense deploy form
(``sparse_kernel.py``; ``extra_json["sparse_kernel"]``).
"""
from __future__ import annotations

import json
import platform
import random
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mcbench.benchmarks import allocator, archs, deploy, deployed, fingerprint, measure, sparse_kernel
from mcbench.benchmarks.cache import CheckpointCache
from mcbench.benchmarks.data import Splits
from mcbench.benchmarks.errors import McbenchError
from mcbench.benchmarks.record import ResultRow, config_hash, run_id
from mcbench.benchmarks.store import Claim, Owner, ResultStore
from mcbench.benchmarks.tasks import RECALL_AT, Recipe, Task, get_task
from mcbench.benchmarks.train import (DATA_FREE_SELECTION_RULE, SELECTION_RULE, TrainData, accuracy_pct,
                                      check_numerics, train)
from mcbench.methods.protocols import Compressed, CostLedger, DataWithheld, Method, MethodContext, TrainReport
from mcbench.methods.registry import REGISTRY

REFERENCES = ("baseline", "student", "teacher")
LATENCY_BATCHES = (1, 64)


@dataclass
class SweepConfig:
    task: str = "fmnist"
    budget: str = "default"
    methods: list[str] = field(default_factory=lambda: default_methods())
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    threads: int = 2
    db: Path = Path("runs/mcbench.sqlite")
    cache_dir: Path = Path("cache/checkpoints")
    data_dir: Path | None = None
    device: str = "cpu"
    dataset_label: str | None = None   # overrides the label, e.g. "digits (fallback: ...)"
    overrides: dict[str, dict] = field(default_factory=dict)  # per-method config overrides
    force: bool = False                # rerun planned rows that are already stored (each replaced when done)
    setting: str = ""                  # paper setting the rows belong to ("" = shared leaderboard)


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


@contextmanager
def isolated_rng(device: torch.device):
    """Run a block under its own random state; restore torch (CPU and ``device``), NumPy and Python RNGs after."""
    py_state, np_state = random.getstate(), np.random.get_state()
    cuda = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


REPO_ROOT = Path(__file__).resolve().parents[1]
# generated outputs: changing them never makes a row "dirty" (rerunning the main job rewrites them)
GENERATED_PATHS = ("results", "runs", "build", "README.md")


def git_commit(root: Path | None = None) -> str:
    """``HEAD`` (12 hex digits), plus ``-dirty`` when code differs from it: modified, staged or untracked
    files, except generated outputs (``GENERATED_PATHS``) and git-ignored files. ``unknown`` outside git."""
    root = root or REPO_ROOT
    excludes = [f":(top,exclude){p}" for p in GENERATED_PATHS]

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=root, timeout=10)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode != 0:
            return "unknown"
        status = git("status", "--porcelain", "--untracked-files=all", "--", ":(top)", *excludes)
        dirty = status.returncode != 0 or bool(status.stdout.strip())
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def environment(threads: int) -> dict:
    return {
        "torch_version": torch.__version__, "python": platform.python_version(), "cpu_model": measure.cpu_model(),
        "cpu_threads": threads, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "quantized_engines": list(torch.backends.quantized.supported_engines), "git_commit": git_commit(),
        "platform": platform.platform(), "allocator": allocator.describe(),
    }


TIERS = ("main", "extended", "all")


def extended_tier() -> dict[str, str]:
    """Registry keys whose catalog record puts them in the extended tier, with the record's reason."""
    from mcbench.catalog.loader import load_with_problems

    catalog, _problems = load_with_problems()   # a broken record is `mcbench catalog validate`'s business
    return {p.key: p.tier_reason or "" for p in catalog.papers.values() if p.leaderboard_tier == "extended"}


def default_methods(warn: Callable[[str], None] | None = None, tier: str = "main") -> list[str]:
    """The default sweep: the references and every usable registered method of ``tier``.

    ``tier``: "main" (the README's main job: every method whose catalog record does not put it in the
    extended tier), "extended" (only those) or "all". Methods that cannot run (a module that fails to
    import, an unfinished ``mcbench new-method`` scaffold) are left out, each named in one ``warn``
    line, so one half-written file never aborts the sweep of the others.
    """
    if tier not in TIERS:
        raise McbenchError(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}")
    skipped = REGISTRY.unusable()
    for key, why in skipped.items():
        if warn is not None:
            warn(f"left out of the default sweep: {key} ({why})")
    keys = [k for k in REGISTRY.keys() if k not in skipped]
    if tier != "all":
        extended = extended_tier()
        if tier == "main" and warn is not None:
            for key in keys:
                if key in extended:
                    warn(f"left out of the main tier: {key} (extended tier: {extended[key]}; `--tier all` runs it)")
        keys = [k for k in keys if (k in extended) == (tier == "extended")]
    return list(REFERENCES) + keys


def check_plan(cfg: SweepConfig) -> None:
    """Everything about a sweep that can be wrong before any work, each failing in one line.

    Unknown or unusable methods (explicitly requested), config overrides for a method that is not in
    this run or for a reference row, overrides that are not a mapping, unknown options and values
    outside a method's declared ranges (``Method.Config``, checked with pydantic).
    """
    unusable = REGISTRY.unusable()
    for m in cfg.methods:
        if m in REFERENCES:
            continue
        REGISTRY.get(m)  # unknown key: UnknownMethodError naming the closest keys
        if m in unusable:
            raise McbenchError(f"method {m!r} cannot run: {unusable[m]}; finish it or leave it out of --methods")
    if not isinstance(cfg.overrides, dict):
        raise McbenchError(f"--config must map method keys to option mappings, got {type(cfg.overrides).__name__}")
    for m, options in cfg.overrides.items():
        if m not in cfg.methods:
            hint = " (known method; add it to --methods)" if m in REGISTRY else ""
            raise McbenchError(f"--config sets options for {m!r}, which is not in this run{hint}; "
                               f"methods in the run: {', '.join(cfg.methods)}")
        if m in REFERENCES:
            raise McbenchError(f"--config sets options for {m!r}, a reference row, which takes no options")
        if not isinstance(options, dict):
            raise McbenchError(f"--config for {m!r} must be a mapping of options, got {options!r}")
        REGISTRY.create(m, **options)  # ValueError naming method, option, value and rule


def method_family(method: str) -> str:
    return "reference" if method in REFERENCES else REGISTRY.get(method).family


def plan(cfg: SweepConfig, task: Task, dataset_label: str, data_fingerprint: str = "") -> list[RunSpec]:
    """Every (method, seed) with its full config and stable ids. Unknown keys fail here, before any work.

    Sweeps call it through ``Harness.plan``, which passes the fingerprint of the loaded data; the
    empty default exists for unit tests that build a spec by hand.

    The config holds everything that determines a row: method config, task, recipe, the data's
    fingerprint, the code's fingerprint (harness + method module), the device and the thread count.
    """
    recipe = task.recipe(cfg.budget)
    specs = []
    for m in cfg.methods:
        extra: dict = {}
        if m in REFERENCES:
            method_cfg, module = {}, None
        else:
            method = REGISTRY.create(m, **cfg.overrides.get(m, {}))
            method_cfg = method.config_dict()
            module = REGISTRY.get(m).module
            if method.arch_roles:   # task variants the method builds are part of its identity
                extra["archs"] = {r: asdict(task.arch(r)) for r in method.arch_roles}
            if method.data_free:
                extra["data_free"] = True
        config = {"method": m, "method_config": method_cfg, "task": task.describe(), "dataset": dataset_label,
                  "recipe": asdict(recipe), "budget": cfg.budget, "device": cfg.device, "cpu_threads": cfg.threads,
                  "data_fingerprint": data_fingerprint, "code_fingerprint": fingerprint.row_fingerprint(module), **extra}
        if cfg.setting:  # keeps shared-leaderboard hashes unchanged
            config["setting"] = cfg.setting
        h = config_hash(config)
        for seed in cfg.seeds:
            specs.append(RunSpec(m, seed, config, h, run_id(m, task.name, cfg.budget, seed, h)))
    return specs


class Harness:
    """Runs one task/budget: owns the data, the checkpoint cache and the store."""

    def __init__(self, cfg: SweepConfig, splits: Splits | None = None, log: Callable[[str], None] = print,
                 task: Task | None = None):
        self.cfg = cfg
        self.task = task if task is not None else get_task(cfg.task)  # a paper setting passes its own Task
        if self.task.kind not in ("classification", "retrieval"):
            raise ValueError(f"task {self.task.name} is a {self.task.kind} task; the sweep measures classification "
                             "(top-1) and retrieval (Recall@K on held-out classes) only")
        self.recipe: Recipe = self.task.recipe(cfg.budget)
        check_numerics(self.recipe.precision, self.recipe.memory_format, cfg.device)
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
        self.data_fingerprint = fingerprint.tensors_fingerprint({  # the exact tensors trained, selected and scored on
            "x_train": x, "y_train": y, "x_val": self.splits.x_val, "y_val": self.splits.y_val,
            "x_test": self.splits.x_test, "y_test": self.splits.y_test})
        self.stage_code_fingerprint = fingerprint.stage_fingerprint()
        self.cache = CheckpointCache(cfg.cache_dir)
        self.matmul_gflops = measure.matmul_gflops()
        self.git_commit, self.cpu_model = git_commit(), measure.cpu_model()  # provenance, read once per sweep
        self.allocator = allocator.describe()
        self._baseline_forms: dict[int, deploy.DeployForm] = {}

    # ------------------------------------------------------------------ models
    def _arch(self, role: str) -> archs.ArchSpec:
        return self.task.arch(role)

    def build(self, role: str) -> nn.Module:
        return archs.build(self._arch(role), self.task.in_chans, self.splits.num_classes, self.task.input_size)

    def numerics(self, method: Method | None = None) -> tuple[str, str]:
        """(precision, memory_format) a run trains with: the recipe's, narrowed by what ``method`` allows."""
        precision, fmt = self.recipe.precision, self.recipe.memory_format
        if method is not None and not method.train_autocast:
            precision = "fp32"
        if method is not None and not method.train_channels_last:
            fmt = "contiguous"
        return precision, fmt

    def train_fn(self, seed: int, ledger: CostLedger | None = None, data_free: bool = False,
                 method: Method | None = None):
        """The ``TrainFn`` methods receive: records each call in ``ledger``; data-free refuses real data;
        trains with ``numerics(method)``."""
        precision, fmt = self.numerics(method)

        def fn(model: nn.Module, *, epochs: int, stage: str = "train", **kw) -> TrainReport:
            if data_free:  # no real training data, and no real data selects the epoch
                kw.update(allow_real_train=False, select_on_val=False)
            report = train(model, self.data, self.recipe, epochs=epochs, seed=seed, device=self.device,
                           precision=precision, memory_format=fmt, **kw)
            if ledger is not None:
                n = len(kw["inputs"]) if kw.get("inputs") is not None else len(self.data.y_train)
                ledger.add(stage, seconds=report.seconds, epochs=report.samples_seen / max(1, n),
                           samples=report.samples_seen)
            return report
        return fn

    def plan(self, cfg: SweepConfig | None = None) -> list[RunSpec]:
        """``plan`` for this harness's task, data and code (``cfg`` defaults to the harness's own)."""
        return plan(cfg or self.cfg, self.task, self.dataset_label, self.data_fingerprint)

    def stage_identity(self, role: str, seed: int) -> dict:
        """Everything that determines a cached baseline/teacher/student checkpoint."""
        return {"role": role, "task": self.task.name, "dataset": self.dataset_label, "arch": asdict(self._arch(role)),
                "recipe": asdict(self.recipe), "seed": seed, "torch": torch.__version__.split("+")[0],
                "device": self.device.type, "threads": self.cfg.threads, "data_fingerprint": self.data_fingerprint,
                "code_fingerprint": self.stage_code_fingerprint}

    def trained(self, role: str, seed: int) -> tuple[nn.Module, TrainReport | None]:
        """The trained baseline/teacher/student for ``seed``, from the cache or trained now and cached.

        Runs under its own random state, seeded from ``seed``: the caller's RNG streams (torch,
        NumPy, Python) are the same afterwards whether the model was loaded or trained, so a row
        never depends on the cache state.
        """
        identity = self.stage_identity(role, seed)
        with isolated_rng(self.device), self.cache.lock(identity):   # another process training it: wait, then load
            set_seed(seed)
            model = self.build(role)
            info = self.cache.load(identity, model)
            if info is not None:
                return model.to(self.device).eval(), TrainReport(**info)
            self.log(f"  training {role} (seed {seed}, {self.recipe.epochs_scratch} epochs)")
            report = self.train_fn(seed)(model, epochs=self.recipe.epochs_scratch)
            self.cache.save(identity, model, asdict(report))
            # Return what a cache hit returns: a fresh build loaded from the file. The trained object carries
            # state no checkpoint holds (its last step's .grad tensors), and a method that deep-copies it would
            # otherwise see a different model than it gets from the cache (VNQ's row moved by one test image).
            model = self.build(role)
            self.cache.load(identity, model)
            return model.to(self.device).eval(), report

    def baseline_init_state(self, seed: int) -> dict[str, torch.Tensor]:
        """The initial weights the trained baseline of ``seed`` started from (global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)   # as in ``trained`` on a cache miss: set_seed, then build
            return self.build("baseline").state_dict()

    def context(self, seed: int, method: Method | None = None) -> MethodContext:
        """What ``method`` may use for ``seed``; its costs go to the returned context's ledger.

        A data-free method (``method.data_free``) gets no real data: train_fn needs explicit
        inputs, and calibration batches, validation scores and the trained student raise.
        """
        data_free = bool(method is not None and method.data_free)
        ledger = CostLedger()
        upstream_seen: set[str] = set()
        allowed = Task.ROLES + (tuple(method.arch_roles) if method is not None else tuple(self.task.variants))

        def upstream(role: str, seed_: int, name: str) -> nn.Module:
            model, report = self.trained(role, seed_)
            if name not in upstream_seen and report is not None:
                upstream_seen.add(name)
                ledger.add_report(name, report, upstream=True)
            return model

        def withheld(what: str):
            def fn(*_a, **_k):
                raise DataWithheld(f"{method.key if method else 'method'} is data-free: the harness withholds {what}")
            return fn

        def calib(n: int | None = None) -> list[torch.Tensor]:
            k = self.recipe.calibration_batches if n is None else int(n)
            if k < 1:
                raise ValueError(f"calibration_batches: n must be >= 1, got {n}")
            b = self.recipe.batch_size
            return [self.data.x_train[i * b:(i + 1) * b] for i in range(k) if i * b < len(self.data.x_train)]

        def evaluate(model: nn.Module) -> float:
            dev = next((p.device for p in model.parameters()), torch.device("cpu"))
            return accuracy_pct(model, self.data.x_val, self.data.y_val, device=dev)

        def build_arch(role: str) -> nn.Module:
            if role not in allowed:
                raise ValueError(f"architecture {role!r} is not declared: a method lists the task variants it builds "
                                 f"in arch_roles (declared: {', '.join(allowed)})")
            return self.build(role)

        def labelled_subset(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            if int(n) < 1:
                raise ValueError(f"labelled_subset: n must be >= 1, got {n}")
            return self.data.x_train[:int(n)], self.data.y_train[:int(n)]

        def load_trained(role: str) -> nn.Module:
            build_arch(role)   # the same check: only declared roles
            return upstream(role, seed, role)

        return MethodContext(
            num_classes=self.splits.num_classes, in_chans=self.task.in_chans, input_size=self.task.input_size,
            epochs_scratch=self.recipe.epochs_scratch, epochs_finetune=self.recipe.epochs_finetune,
            train_fn=self.train_fn(seed, ledger, data_free, method), build_student=lambda: self.build("student"),
            build_baseline=lambda: self.build("baseline"),
            load_baseline=lambda: upstream("baseline", seed, "baseline"),
            load_teacher=lambda: upstream("teacher", seed, "teacher"),
            calibration_batches=withheld("calibration batches") if data_free else calib,
            device=self.device, seed=seed,
            load_student=withheld("the student trained on real data") if data_free
            else lambda: upstream("student", seed, "student"),
            baseline_init_state=lambda: self.baseline_init_state(seed),
            load_baselines=lambda seeds: [upstream("baseline", s, f"baseline_seed{s}") for s in seeds],
            evaluate=withheld("validation scores") if data_free else evaluate,
            build_arch=build_arch, arch_roles=allowed, data_free=data_free, ledger=ledger,
            load_trained=withheld("models trained on real data") if data_free else load_trained,
            labelled_subset=withheld("labelled training images") if data_free else labelled_subset,
        )

    # ------------------------------------------------------------------ latency
    def _latency_baseline(self) -> nn.Module:
        """The baseline architecture the speedups are relative to (untrained weights: latency does not
        depend on their values); built under its own RNG state so it never shifts a row's random stream."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return self.build("baseline").eval()

    def _check_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        """Validation images the deploy form must reproduce (never the test split)."""
        x = self.data.x_val[:batch].cpu()
        return (x,) if len(x) == batch else ()

    def _baseline_form(self, batch: int, example: torch.Tensor) -> deploy.DeployForm:
        if batch not in self._baseline_forms:
            base = self._latency_baseline()
            self._baseline_forms[batch] = deploy.deploy(base, example, check_inputs=self._check_inputs(batch))
        return self._baseline_forms[batch]

    def _timed_side_by_side(self, make_form, other_form) -> dict:
        """Per batch size: (stats, other's stats, form, other form), the forms made by ``make_form(batch, example)``
        and ``other_form(batch, example)`` on one random example and timed side by side on the CPU."""
        r = self.recipe
        runs = {1: r.latency_runs, 64: r.latency_runs_b64}
        out = {}
        for batch in LATENCY_BATCHES:
            example = torch.randn(batch, self.task.in_chans, *self.task.input_size)
            form, other = make_form(batch, example), other_form(batch, example)
            stats, other_stats = measure.latency_pair_cpu(form.module, other.module, example, r.latency_warmup,
                                                          runs[batch])
            out[batch] = (stats, other_stats, form, other)
        return out

    def deploy_latency(self, model: nn.Module, quantized: bool):
        """Per batch size: (model stats, baseline stats, model form, baseline form), both in deploy form and
        timed side by side; plus the candidates dropped on the way (reasons), for ``extra_json``."""
        out = self._timed_side_by_side(
            lambda batch, x: deploy.deploy(model, x, check_inputs=self._check_inputs(batch), quantized=quantized),
            self._baseline_form)
        dropped = {f"deploy_dropped_b{batch}": form.dropped for batch, (_, _, form, _) in out.items() if form.dropped}
        return out, dropped

    def sparse_latency(self, model: nn.Module, dense: dict) -> dict:
        """Unstructured zeros on torch's CSR kernels (``sparse_kernel.py``), each batch size timed side by side
        with the model's dense deploy form (``dense``: ``deploy_latency``'s output); {} when no Linear layer
        is sparse enough. Goes to ``extra_json["sparse_kernel"]``."""
        layers = sparse_kernel.sparse_linears(model)
        if not layers:
            return {}
        out: dict = {"linear_csr_density": layers, "max_density": sparse_kernel.MAX_DENSITY}
        convs = sparse_kernel.sparse_convs(model)
        if convs:
            out["conv_dense_density"] = convs
            out["conv_note"] = sparse_kernel.CONV_NOTE
        timed = self._timed_side_by_side(
            lambda batch, x: sparse_kernel.deploy_sparse(model, x, check_inputs=self._check_inputs(batch)),
            lambda batch, _x: dense[batch][2])
        for batch, (stats, dense_stats, form, dense_form) in timed.items():
            out[f"b{batch}"] = dict(latency_ms_p50_cpu=stats.p50_ms, dense_latency_ms_p50_cpu=dense_stats.p50_ms,
                                    speedup_vs_dense=dense_stats.p50_ms / stats.p50_ms, samples=stats.n,
                                    path=form.path, dense_path=dense_form.path, dropped=form.dropped)
        return out

    # ------------------------------------------------------------------ one run
    def compress(self, spec: RunSpec) -> Compressed:
        return self._compress(spec)[0]

    def _compress(self, spec: RunSpec) -> tuple[Compressed, CostLedger, bool]:
        """The method's output, the cost ledger of the run, and whether it ran data-free."""
        if spec.method in REFERENCES:
            model, report = self.trained(spec.method, spec.seed)
            ledger = CostLedger()
            if report is not None:
                ledger.add_report(spec.method, report)   # a reference's own training is its cost
            return Compressed(model, real=True, note="reference: trained from scratch", train_report=report), ledger, False
        method = REGISTRY.create(spec.method, **self.cfg.overrides.get(spec.method, {}))
        ctx = self.context(spec.seed, method)
        return method.apply(ctx), ctx.ledger, method.data_free

    def _method(self, key: str) -> Method | None:
        return None if key in REFERENCES else REGISTRY.create(key, **self.cfg.overrides.get(key, {}))

    def run(self, spec: RunSpec) -> ResultRow:
        """Run one (method, seed) and measure it; its control rows, if any, are dropped (see ``run_with_controls``)."""
        return self.run_with_controls(spec)[-1]

    def run_with_controls(self, spec: RunSpec) -> list[ResultRow]:
        """The rows of one (method, seed), latency included: ``score_with_controls`` then ``finish`` each."""
        return [self.finish(s) for s in self.score_with_controls(spec)]

    def score_with_controls(self, spec: RunSpec) -> list[Scored]:
        """Everything of one (method, seed)'s rows except latency: one per control model first, then the method's.

        A control row has method ``<key>:<control>``, the parent's family and config hash, and
        ``control_of`` = the parent's run id; storing the parent last means a stored parent implies
        stored controls. The parent's ``wall_time_s`` and cost ledger include training its controls;
        a control row's ledger holds its own training only. Latency is left to ``finish``, so a
        parallel sweep can time every model afterwards on a quiet machine (``parallel.py``).
        """
        t0 = time.perf_counter()
        set_seed(spec.seed)
        out, ledger, data_free = self._compress(spec)
        family = method_family(spec.method)
        scored = []
        for kind, ctrl in out.controls.items():
            name = f"{spec.method}:{kind}"
            trained_s = ctrl.train_report.seconds if ctrl.train_report else 0.0  # its wall time: training + measuring
            own_ledger = CostLedger()
            if ctrl.train_report is not None:
                own_ledger.add_report(f"control:{kind}", ctrl.train_report)
            scored.append(self.score(spec, ctrl, time.perf_counter() - trained_s, own_ledger, data_free, method=name,
                                     family=family, row_id=run_id(name, self.task.name, self.cfg.budget, spec.seed,
                                                                  spec.config_hash),
                                     control_of=spec.run_id, control_kind=kind))
        scored.append(self.score(spec, out, t0, ledger, data_free, method=spec.method, family=family, row_id=spec.run_id))
        return scored

    def measure(self, spec: RunSpec, out: Compressed, t0: float, ledger: CostLedger, data_free: bool, *, method: str,
                family: str, row_id: str, control_of: str = "", control_kind: str = "") -> ResultRow:
        """Score and time ``out`` in one go (``score`` then ``finish``)."""
        return self.finish(self.score(spec, out, t0, ledger, data_free, method=method, family=family, row_id=row_id,
                                      control_of=control_of, control_kind=control_kind))

    def score(self, spec: RunSpec, out: Compressed, t0: float, ledger: CostLedger, data_free: bool, *, method: str,
              family: str, row_id: str, control_of: str = "", control_kind: str = "") -> Scored:
        """Score ``out`` on the test split and measure everything but latency; ``t0`` is when its wall time started."""
        phases: dict[str, float] = {}
        clock = _PhaseClock(phases)
        own, up = ledger.totals(), ledger.totals(upstream=True)
        model = out.model
        eval_device = torch.device("cpu") if out.quant_engine else self.device  # int8 kernels are CPU-only
        model = model.to(eval_device)
        with clock("test_eval"):
            recall = self._recall_at_k(model, eval_device)
            # a retrieval task's test split holds only classes the classifier never had: no top-1 there
            test_acc = (float("nan") if recall else
                        accuracy_pct(model, self.splits.x_test, self.splits.y_test, device=eval_device))
            # The row's validation score is of the model it scores on test, measured here: a method's own report
            # holds its training's best-epoch score, which is of another model wherever the method transformed it
            # after training (int8 conversion, weight sharing, surgery), and on another device's numerics.
            val = accuracy_pct(model, self.splits.x_val, self.splits.y_val, device=eval_device)
            report = (replace(out.train_report, val_top1_acc_pct=val) if out.train_report
                      else TrainReport(best_epoch=-1, val_top1_acc_pct=val, epochs_run=0))
        model_cpu = model.cpu().eval()
        with clock("encode"):
            enc = (deployed.measure_encoded(out.encoded, model_cpu, self.splits.x_test, self.splits.y_test, test_acc,
                                            spec.method) if out.encoded is not None else None)
            ops = deployed.average_ops(out.count_ops, model_cpu, self.splits.x_test) if out.count_ops else {}
        with clock("count"):
            baseline = self._latency_baseline()
            params, nonzero = measure.count_params(model_cpu)
            disk, gz = measure.serialized_bytes(model_cpu)
            ex1 = torch.randn(1, self.task.in_chans, *self.task.input_size)
            flops = measure.count_flops(out.macs_model or model_cpu, ex1)
            base_flops = measure.count_flops(baseline, ex1)
        macs = measure.macs_from_flops(flops)
        phases["train"] = own["seconds"]
        precision, fmt = self.numerics(self._method(spec.method))
        fields = dict(
            run_id=row_id, method=method, family=family, task=self.task.name,
            dataset=self.dataset_label, budget=self.cfg.budget, seed=spec.seed, config_hash=spec.config_hash,
            config_json=json.dumps(spec.config, sort_keys=True),
            code_fingerprint=spec.config["code_fingerprint"], data_fingerprint=spec.config["data_fingerprint"],
            top1_acc_pct=test_acc, val_top1_acc_pct=report.val_top1_acc_pct, selected_epoch=report.best_epoch,
            selection_rule=DATA_FREE_SELECTION_RULE if data_free else SELECTION_RULE,
            params_count=params, params_nonzero=nonzero, bits_per_weight_effective=out.bits_per_weight,
            size_bytes_theoretical=measure.theoretical_bytes(model_cpu, out.bits_per_weight),
            size_bytes_disk=disk, size_bytes_gzip=gz,
            macs=macs, flops=flops, macs_ratio_vs_baseline=measure.macs_from_flops(base_flops) / max(1, macs),
            allocator=self.allocator,
            compression_real=out.real, compression_note=out.note, quant_engine=out.quant_engine,
            train_gflops_per_s=report.gflops_per_s, matmul_gflops_per_s=self.matmul_gflops,
            git_commit=self.git_commit, torch_version=torch.__version__, cpu_model=self.cpu_model,
            device=str(self.device), peak_mem_bytes=measure.peak_mem_bytes(),
            data_free=data_free, train_seconds_total=own["seconds"], train_epochs_total=own["epochs"],
            train_samples_total=int(own["samples"]), upstream_train_seconds=up["seconds"],
            upstream_train_samples=int(up["samples"]), ledger_json=json.dumps(ledger.to_list(), sort_keys=True),
            setting=self.cfg.setting, storage_real=out.storage_real, compute_real=out.compute_real,
            size_bytes_encoded=enc.size_bytes if enc else None, encoded_top1_acc_pct=enc.top1_acc_pct if enc else None,
            encoded_format=enc.format if enc else "", ops_json=json.dumps(ops, sort_keys=True),
            control_of=control_of, control_kind=control_kind,
            train_precision=precision, train_memory_format=fmt,
            recall_at_1_pct=recall.get(1) if recall else None,
            recall_at_k_pct_json=json.dumps({str(k): v for k, v in recall.items()}, sort_keys=True),
        )
        return Scored(fields=fields, extra=dict(out.extra), model=model_cpu, quantized=bool(out.quant_engine),
                      seconds=time.perf_counter() - t0, phase_seconds=phases)

    def _recall_at_k(self, model: nn.Module, device: torch.device) -> dict[int, float]:
        """Recall@K (%) of the model's embedding on the test split for a retrieval task ({} otherwise):
        the held-out classes, every test item a query against all the others (``measure.recall_at_k_pct``)."""
        if self.task.kind != "retrieval":
            return {}
        emb = measure.embeddings(model, self.splits.x_test, device=device)
        return {k: measure.recall_at_k_pct(emb, self.splits.y_test, k) for k in RECALL_AT if k < len(emb)}

    def finish(self, scored: Scored) -> ResultRow:
        """Time a scored model in deploy form next to the deploy-form baseline (CPU; CUDA too where present)
        and complete its row. The only step of a row that needs a quiet machine."""
        t0 = time.perf_counter()
        model_cpu, phases = scored.model, dict(scored.phase_seconds)
        torch.set_num_threads(self.cfg.threads)
        with _PhaseClock(phases)("latency_cpu"):
            lat, dropped = self.deploy_latency(model_cpu, quantized=scored.quantized)
        (lat1, base1, form1, bform1), (lat64, base64, form64, bform64) = lat[1], lat[64]
        r = self.recipe
        cuda: dict = {}
        if torch.cuda.is_available():
            with _PhaseClock(phases)("latency_cuda"):
                cuda = self.cuda_latency(model_cpu, scored.quantized)
        sparse: dict = {}
        if not scored.quantized:   # int8 weights are packed for their own kernels
            with _PhaseClock(phases)("latency_cpu_sparse"):
                sparse = self.sparse_latency(model_cpu, lat)
        extra = {**scored.extra, **dropped, "phase_seconds": {k: round(v, 3) for k, v in phases.items()}}
        if sparse:
            extra["sparse_kernel"] = sparse
        if scored.quantized and torch.cuda.is_available():
            extra["cuda_latency"] = "not measured: int8 kernels are CPU-only; the CPU figures are this model's"
        return ResultRow(
            **scored.fields, cpu_threads=torch.get_num_threads(),
            latency_ms_p50_cpu_b1=lat1.p50_ms, latency_ms_p90_cpu_b1=lat1.p90_ms,
            latency_ms_mean_cpu_b1=lat1.mean_ms, latency_ms_std_cpu_b1=lat1.std_ms,
            latency_ms_p50_cpu_b64=lat64.p50_ms, latency_ms_p90_cpu_b64=lat64.p90_ms,
            latency_ms_mean_cpu_b64=lat64.mean_ms, latency_ms_std_cpu_b64=lat64.std_ms,
            baseline_latency_ms_p50_cpu_b1=base1.p50_ms, baseline_latency_ms_p50_cpu_b64=base64.p50_ms,
            speedup_cpu_b1=base1.p50_ms / lat1.p50_ms, speedup_cpu_b64=base64.p50_ms / lat64.p50_ms,
            latency_samples_cpu_b1=lat1.n, latency_samples_cpu_b64=lat64.n,
            latency_path_cpu_b1=form1.path, latency_path_cpu_b64=form64.path,
            baseline_latency_path_cpu_b1=bform1.path, baseline_latency_path_cpu_b64=bform64.path,
            timestamp_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            wall_time_s=scored.seconds + time.perf_counter() - t0,
            latency_ms_p50_cuda_b1=cuda.get("p50_b1"), latency_ms_p50_cuda_b64=cuda.get("p50_b64"),
            peak_gpu_mem_bytes=cuda.get("peak_mem_bytes"),
            gpu_name=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
            extra_json=json.dumps(extra, sort_keys=True, default=float),
        )

    def cuda_latency(self, model: nn.Module, quantized: bool) -> dict:
        """CUDA p50 at batch 1 and 64 (CUDA events, synchronised, after warm-up) and the peak GPU memory of
        the batch-64 calls; empty for int8 models (CPU-only kernels). The model is moved back to the CPU."""
        if quantized:
            return {}
        r = self.recipe
        shape = (self.task.in_chans, *self.task.input_size)
        torch.cuda.reset_peak_memory_stats()
        p1 = measure.latency_cuda(model, torch.randn(1, *shape), r.latency_warmup, r.latency_runs).p50_ms
        p64 = measure.latency_cuda(model, torch.randn(64, *shape), r.latency_warmup, r.latency_runs_b64).p50_ms
        peak = int(torch.cuda.max_memory_allocated())
        model.cpu()
        return {"p50_b1": p1, "p50_b64": p64, "peak_mem_bytes": peak}


@dataclass
class Scored:
    """A row measured up to its latency: the row's other fields, and the CPU model ``Harness.finish`` times."""

    fields: dict
    extra: dict
    model: nn.Module
    quantized: bool
    seconds: float                       # wall time so far (compress + score)
    phase_seconds: dict[str, float]      # where that time went (train, test_eval, encode, count)


class _PhaseClock:
    """``with clock("name"):`` adds the block's seconds to ``phases[name]``."""

    def __init__(self, phases: dict[str, float]):
        self.phases = phases

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - t0


WAIT_POLL_S = 2.0  # how often a sweep looks again at rows another sweep is running


def run_sweep(cfg: SweepConfig, *, splits: Splits | None = None, log: Callable[[str], None] = print,
              on_start: Callable[[int], None] | None = None, on_done: Callable[[RunSpec, ResultRow | None], None] | None = None,
              task: Task | None = None, cluster=None,
              on_computed: Callable[[RunSpec, str], None] | None = None) -> list[ResultRow]:
    """Run every planned (method, seed) that the store does not hold yet; return the new rows.

    Serial by default, in this process. With ``cluster`` (``parallel.connect``) the rows this sweep
    claims are computed on Dask workers and timed afterwards in this process (``parallel.py``);
    ``on_computed(spec, worker)`` is called as each finishes its compute part.

    Each row is claimed in the store before it runs (see ``store``), so concurrent sweeps on one store
    share the work: a row claimed by another live sweep is waited for, not rerun, and ``on_done`` gets
    ``None`` for it. With ``force`` a row counts as done once it was computed after this sweep began,
    by this sweep or a concurrent one. A claim whose owner died is taken over.
    """
    check_plan(cfg)  # before opening the store, loading data or training anything
    torch.set_num_threads(cfg.threads)
    owner, fresh_after = Owner.current(), (time.time() if cfg.force else None)
    new_rows: list[ResultRow] = []
    with ResultStore(cfg.db) as store, store.heartbeats(owner):  # opened first: a bad store fails before any work
        harness = Harness(cfg, splits=splits, log=log, task=task)
        specs = harness.plan()
        pending = [s for s in specs if not store.is_done(s.run_id, fresh_after)]
        log(f"{harness.splits.summary()}; {len(specs) - len(pending)} of {len(specs)} runs already stored, "
            f"{len(pending)} to run")
        if on_start:
            on_start(len(pending))
        reported: set[str] = set()
        while pending:
            busy: list[tuple[RunSpec, Claim]] = []
            mine: list[RunSpec] = []   # claimed for the Dask workers
            for spec in pending:
                state, held = store.claim(spec.run_id, owner, fresh_after, log=log)
                if state == "busy":
                    busy.append((spec, held))
                elif state == "done":  # finished by another sweep meanwhile
                    if on_done:
                        on_done(spec, None)
                elif cluster is not None:
                    mine.append(spec)
                else:
                    new_rows.extend(_run_claimed(harness, store, owner, spec))
                    if on_done:
                        on_done(spec, new_rows[-1])
            if mine:
                from mcbench.benchmarks.parallel import run_parallel

                new_rows.extend(run_parallel(cfg, harness, store, owner, mine, cluster, splits=splits, task=task,
                                             log=log, on_computed=on_computed, on_done=on_done))
            if busy and {s.run_id for s, _ in busy} != reported:
                reported = {s.run_id for s, _ in busy}
                log(f"waiting for {len(busy)} run(s) another sweep is running: "
                    + "; ".join(f"{s.method} seed {s.seed} by {c.describe()}" for s, c in busy))
            pending = [s for s, _ in busy]
            if pending:
                time.sleep(WAIT_POLL_S)
    return new_rows


def _run_claimed(harness: Harness, store: ResultStore, owner: Owner, spec: RunSpec) -> list[ResultRow]:
    """Run a row we hold the claim for; store it and drop the claim together, or drop the claim on failure.

    Its control rows (if any) are stored first, so a stored parent row implies stored controls;
    the parent row is last in the returned list.
    """
    started = time.time()
    try:
        rows = harness.run_with_controls(spec)
    except BaseException:
        store.release(spec.run_id, owner)
        raise
    for row in rows:
        store.insert(row, owner=owner, started_unix=started)
    return rows


__all__ = ["SweepConfig", "RunSpec", "Harness", "plan", "run_sweep", "REFERENCES", "environment", "check_plan",
           "default_methods"]
