"""The result row: one measured run of one method on one task, budget and seed.

Every field name carries its unit. ``theoretical`` figures (MACs, bit-width
bytes) are kept apart from ``measured`` ones (latency, bytes on disk).
Stored at full precision; rounding happens only on display.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

SCHEMA_VERSION = 4  # 2: store carries claims + computations tables, rollback journal, user_version;
#   rows carry code_fingerprint, data_fingerprint; thread count and device in the config hash
#   3: peak_gpu_mem_bytes, train_precision, train_memory_format
#   4: recall_at_1_pct, recall_at_k_pct_json (retrieval tasks)


@dataclass
class ResultRow:
    # --- identity -------------------------------------------------------------
    run_id: str                      # sha1 of (method, task, budget, seed, config_hash)
    method: str                      # registry key == BibTeX key; "baseline" / "teacher" for references;
                                     # "<key>:<control>" for a method's control model
    family: str
    task: str
    dataset: str                     # what data was really used, e.g. "fashion-mnist" or "digits (fallback)"
    budget: str
    seed: int
    config_hash: str                 # hash of config_json: method config, task, recipe, device, cpu_threads, fingerprints
    config_json: str
    code_fingerprint: str            # hash of the harness, shared method code and the method's module (fingerprint.py)
    data_fingerprint: str            # hash of the train subset, val and test tensors actually used
    # --- accuracy (selection on validation only) ----------------------------------
    top1_acc_pct: float              # test split, model chosen by selection_rule
    val_top1_acc_pct: float
    selected_epoch: int
    selection_rule: str
    # --- size -----------------------------------------------------------------------
    params_count: int
    params_nonzero: int
    bits_per_weight_effective: float  # theoretical: storage bits per parameter of the deployable model
    size_bytes_theoretical: int       # theoretical: params x bit-width / 8 (+ scales)
    size_bytes_disk: int              # measured: torch.save of the deployable model
    size_bytes_gzip: int              # measured: gzip -9 of that file
    # --- compute (theoretical, torch.utils.flop_counter, MACs = FLOPs / 2) ----------
    macs: int
    flops: int
    macs_ratio_vs_baseline: float     # baseline MACs / method MACs
    # --- latency (measured) ---------------------------------------------------------
    cpu_threads: int
    latency_ms_p50_cpu_b1: float
    latency_ms_p90_cpu_b1: float
    latency_ms_mean_cpu_b1: float
    latency_ms_std_cpu_b1: float
    latency_ms_p50_cpu_b64: float
    latency_ms_p90_cpu_b64: float
    latency_ms_mean_cpu_b64: float
    latency_ms_std_cpu_b64: float
    baseline_latency_ms_p50_cpu_b1: float   # the task baseline, measured side by side in this run
    baseline_latency_ms_p50_cpu_b64: float
    speedup_cpu_b1: float                   # baseline p50 / method p50 (measured, both in deploy form)
    speedup_cpu_b64: float
    latency_samples_cpu_b1: int             # timed calls behind each p50 (one call = one sample)
    latency_samples_cpu_b64: int
    latency_path_cpu_b1: str                # the deploy form timed, e.g. "fp32 bn-folded channels_last jit-frozen"
    latency_path_cpu_b64: str
    baseline_latency_path_cpu_b1: str       # the deploy form of the baseline it was timed against
    baseline_latency_path_cpu_b64: str
    allocator: str                          # malloc of the measuring process: "jemalloc", "glibc (tunables: ...)", ...
    # --- real or simulated ------------------------------------------------------------
    compression_real: bool            # True: int8 kernels / removed channels; False: masks, fake-quant
    compression_note: str
    quant_engine: str                 # torch.backends.quantized.engine used, "" if none
    # --- training throughput ----------------------------------------------------------
    train_gflops_per_s: float         # achieved training FLOP/s (flop_counter FLOPs x 3 per sample / time)
    matmul_gflops_per_s: float        # a plain fp32 matmul measured in the same run
    # --- provenance -------------------------------------------------------------------
    git_commit: str
    torch_version: str
    cpu_model: str
    device: str
    timestamp_utc: str
    wall_time_s: float
    peak_mem_bytes: int
    # --- optional CUDA latency (None without a GPU) -----------------------------------
    latency_ms_p50_cuda_b1: float | None = None
    latency_ms_p50_cuda_b64: float | None = None
    gpu_name: str = ""
    peak_gpu_mem_bytes: int | None = None    # torch.cuda.max_memory_allocated over the batch-64 timing calls
    schema_version: int = SCHEMA_VERSION
    extra_json: str = "{}"            # method-specific measured extras (e.g. achieved sparsity)
    # --- cost ledger (measured; upstream = cached teacher/baseline training this run builds on) -----
    data_free: bool = False           # True: the method got no real training data (synthesised inputs only)
    train_seconds_total: float = 0.0  # this run's training/synthesis/search stages, validation excluded
    train_epochs_total: float = 0.0   # passes over each stage's own inputs, summed over stages
    train_samples_total: int = 0      # samples processed (forward+backward), summed over stages
    upstream_train_seconds: float = 0.0  # training of the cached models it used (teacher, baseline), once each
    upstream_train_samples: int = 0
    ledger_json: str = "[]"           # the stages: [{stage, seconds, epochs, samples, upstream}, ...]
    setting: str = ""                 # paper setting, e.g. "hinton2015distilling/cpu"; "" = shared leaderboard
    # --- real or simulated per aspect (compression_real kept for compatibility) -----
    storage_real: bool | None = None  # the stored form is really small (int8 tensors, an encoded file measured)
    compute_real: bool | None = None  # the deployed kernels really do less work
    # --- the method's encoded deployable format (None if it has none) ------------------
    size_bytes_encoded: int | None = None     # measured: bytes of the encoded file written to disk
    encoded_top1_acc_pct: float | None = None  # the model decoded from that file, test split (must equal top1)
    encoded_format: str = ""
    ops_json: str = "{}"              # per-sample operation counts the FLOP counter cannot see (method's count_ops)
    # --- controls (a method's control models, trained under the same recipe) -------------
    control_of: str = ""              # run_id of the parent row; "" for a method's own row
    control_kind: str = ""            # e.g. "l1", "random-init"; the row's method is "<key>:<kind>"
    # --- training numerics (part of the recipe, hence of the config hash; see train.py) ---------
    train_precision: str = ""         # "fp32", or "bf16-autocast" / "fp16-autocast" where recipe and method allow
    train_memory_format: str = ""     # "contiguous" or "channels_last" (model and batches during training)
    # --- retrieval tasks (kind "retrieval"; None / "{}" on classification) -----------------------
    recall_at_1_pct: float | None = None   # test split (held-out classes): Recall@1 of the embedding, %
    recall_at_k_pct_json: str = "{}"       # {"1": %, "2": %, "4": %, "8": %} (tasks.RECALL_AT)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ResultRow))


def config_hash(config: dict) -> str:
    """Stable short hash of a JSON-serialisable config."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def run_id(method: str, task: str, budget: str, seed: int, cfg_hash: str) -> str:
    return hashlib.sha1(f"{method}|{task}|{budget}|{seed}|{cfg_hash}".encode()).hexdigest()[:16]
