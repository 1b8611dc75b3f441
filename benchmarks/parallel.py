"""Parallel sweeps on Dask: workers train and score, the driver alone times and stores.

``mcbench run --workers N`` starts a local Dask cluster of N worker processes (one task at a time each,
``--threads`` torch threads per task); ``--scheduler ADDRESS`` uses a cluster that is already running.
Workers of a remote cluster need this mcbench installed, the data (``--data-dir``) and the checkpoint
cache (``--cache-dir``) on a filesystem they share with the driver.

The sweep as a task graph
    *Stage tasks* train the reference checkpoints the plan contains (``baseline``, ``teacher``,
    ``student``; one task per role and seed) into the shared checkpoint cache. Every *row task* of
    seed s depends on the stage tasks of seed s, so methods find their baseline/teacher trained and no
    two workers train the same checkpoint. Checkpoints outside the graph (task variants, other seeds'
    baselines) are guarded by the cache's file lock (``CheckpointCache.lock``): a second worker waits
    and loads, it never trains the same checkpoint again.
Row tasks run ``Harness.score_with_controls``: training, compression, test accuracy, sizes, MACs,
    everything but latency. Their results (the rows so far and the CPU models) stay on the worker.
The serial measurement phase
    When every row task has finished (no other work on the cluster), the driver asks the worker holding
    each run's models to time them in deploy form side by side with the deploy-form baseline
    (``Harness.finish``, exactly as a serial sweep does), one run at a time, and stores the rows it gets
    back. (Models are not shipped to the driver: torch 2.14 cannot pickle converted int8 modules.) Parallelism therefore never changes a latency figure; the price is
    that rows reach the store only in this phase, so a sweep killed before it recomputes its unstored
    rows on resubmission (trained checkpoints stay in the cache and are reused).
Faults
    A worker that dies mid-task (killed, out of memory) is replaced by its nanny and the scheduler runs
    its tasks again elsewhere (up to ``distributed.scheduler.allowed-failures`` times). Rows are written
    by the driver only, once each, under the store's claims, so a retried task never duplicates a row.
Identity
    Run ids are planned by the driver before anything runs and do not depend on the number of workers;
    a worker trains with the sweep's thread count, so a row's accuracy is the same as in a serial sweep
    with that thread count (tested bit for bit).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Callable

import dask
import distributed
import torch
from distributed import WorkerPlugin

from mcbench.benchmarks import allocator
from mcbench.benchmarks.errors import McbenchError
from mcbench.benchmarks.record import ResultRow
from mcbench.benchmarks.runner import REFERENCES, Harness, RunSpec, Scored, SweepConfig
from mcbench.benchmarks.store import Owner, ResultStore

LOG_TOPIC = "mcbench"          # workers' log lines reach the driver as Dask events on this topic
PLUGIN_NAME = "mcbench-harness"
ALLOCATOR_ENV = ("LD_PRELOAD", "GLIBC_TUNABLES", allocator.GUARD_ENV)


class HarnessPlugin(WorkerPlugin):
    """Builds one ``Harness`` per worker process (data loaded once per worker, not once per task)."""

    name = PLUGIN_NAME

    def __init__(self, cfg: SweepConfig, splits=None, task=None):
        self.cfg, self.splits, self.task = cfg, splits, task
        self.harness: Harness | None = None

    def setup(self, worker) -> None:
        torch.set_num_threads(self.cfg.threads)

        def log(msg: str) -> None:
            worker.log_event(LOG_TOPIC, f"[{worker.name}] {msg.strip()}")

        self.harness = Harness(self.cfg, splits=self.splits, log=log, task=self.task)

    def teardown(self, worker) -> None:
        self.harness = None


def _worker_harness() -> tuple[Harness, str]:
    worker = distributed.get_worker()
    harness = worker.plugins[PLUGIN_NAME].harness
    torch.set_num_threads(harness.cfg.threads)
    return harness, str(worker.name)


def _stage_task(role: str, seed: int) -> str:
    """Train (or find cached) the reference checkpoint ``role`` of ``seed``; returns the worker's name."""
    harness, name = _worker_harness()
    harness.trained(role, seed)
    return name


def _row_task(spec: RunSpec, *_stages: str) -> list[Scored]:
    """Everything of a row but latency; the result (models included) stays in this worker's memory."""
    harness, _ = _worker_harness()
    return harness.score_with_controls(spec)


def _finish_task(scored: list[Scored]) -> list[ResultRow]:
    """Time the scored models in deploy form (run by the worker holding them, one at a time in the cluster)."""
    harness, _ = _worker_harness()
    return [harness.finish(s) for s in scored]


@dataclass
class Cluster:
    """A Dask client, and the local cluster it owns (None when it joined an existing scheduler)."""

    client: object
    local: object | None = None

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def close(self) -> None:
        self.client.close()
        if self.local is not None:
            self.local.close()


def connect(workers: int = 0, scheduler: str | None = None) -> Cluster:
    """A local cluster of ``workers`` processes (one task each at a time), or the cluster at ``scheduler``."""
    if scheduler:
        try:
            return Cluster(distributed.Client(scheduler, timeout="20s"))
        except (OSError, TimeoutError) as e:
            raise McbenchError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    if workers < 1:
        raise McbenchError(f"--workers must be >= 1 for a local Dask cluster, got {workers}")
    # no work stealing: a finished row's models stay on the worker that computed them (int8 modules do not pickle);
    # workers run with this process's allocator (allocator.py), not Dask's MALLOC_TRIM_THRESHOLD_/OMP settings,
    # which changed batch-64 latency several-fold
    dask.config.set({"distributed.scheduler.work-stealing": False,
                     "distributed.nanny.pre-spawn-environ": {k: os.environ[k] for k in ALLOCATOR_ENV if k in os.environ}})
    local = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                     dashboard_address=None, silence_logs=logging.ERROR)
    return Cluster(distributed.Client(local), local)


def run_parallel(cfg: SweepConfig, harness: Harness, store: ResultStore, owner: Owner, specs: list[RunSpec],
                 cluster: Cluster, *, splits=None, task=None, log: Callable[[str], None] = print,
                 on_computed: Callable[[RunSpec, str], None] | None = None,
                 on_done: Callable[[RunSpec, ResultRow], None] | None = None) -> list[ResultRow]:
    """Compute ``specs`` (already claimed by ``owner``) on ``cluster``, then time and store them serially.

    Returns the stored rows (controls first, each spec's own row last). The first failed row task is
    re-raised after the rows that did finish were timed and stored; the claims of unfinished rows are
    released.
    """
    client, started = cluster.client, time.time()
    client.subscribe_topic(LOG_TOPIC, lambda event: log(event[1]))
    client.register_plugin(HarnessPlugin(cfg, splits=splits, task=task), name=PLUGIN_NAME)
    seeds = sorted({s.seed for s in specs})
    roles = [r for r in REFERENCES if r in {s.method for s in specs}]
    stages = {(r, seed): client.submit(_stage_task, r, seed, pure=False, priority=10,
                                       key=f"stage-{r}-s{seed}-{os.getpid()}-{id(specs):x}")
              for r in roles for seed in seeds}
    futures = {client.submit(_row_task, spec, *[stages[(r, spec.seed)] for r in roles], pure=False,
                             key=f"row-{spec.method}-s{spec.seed}-{spec.run_id}"): spec for spec in specs}
    log(f"{len(stages)} reference trainings and {len(futures)} runs on {cluster.workers} Dask worker(s); "
        "latency is timed afterwards, one model at a time")
    computed: dict[str, object] = {}
    failure: BaseException | None = None
    for fut in distributed.as_completed(list(futures)):
        spec = futures[fut]
        if fut.status == "error":   # a method's error: keep the finished rows, re-raise below
            failure = failure or fut.exception()
            log(f"  {spec.method} seed {spec.seed} failed: {type(failure).__name__}: {fut.exception()}")
            continue
        computed[spec.run_id] = fut
        if on_computed:
            on_computed(spec, _holder_name(client, fut))
    for fut in stages.values():
        fut.release()
    log(f"serial measurement phase: timing {len(computed)} run(s) in deploy form, one at a time")
    stored: list[ResultRow] = []
    for spec in specs:   # plan order, so the store's order is the serial sweep's
        fut = computed.pop(spec.run_id, None)
        if fut is None:
            store.release(spec.run_id, owner)
            continue
        # on the worker that holds the models (pickling int8 modules is not supported by torch): nothing
        # else runs in the cluster meanwhile; a task lost with its worker is recomputed first
        holders = list(client.who_has([fut]).get(fut.key, ()))
        rows = client.submit(_finish_task, fut, workers=holders or None, allow_other_workers=True, pure=False,
                             key=f"finish-{spec.run_id}-{os.getpid()}").result()
        fut.release()
        for row in rows:
            store.insert(row, owner=owner, started_unix=started)
        stored.extend(rows)
        if on_done:
            on_done(spec, rows[-1])
    if failure is not None:
        raise failure
    return stored


def _holder_name(client, fut) -> str:
    addrs = client.who_has([fut]).get(fut.key, ())
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return ", ".join(str(workers.get(a, {}).get("name", a)) for a in addrs) or "?"


__all__ = ["Cluster", "connect", "run_parallel", "HarnessPlugin"]
