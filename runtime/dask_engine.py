"""Dask behind `runtime.cluster`: a LocalCluster of worker processes, or a running scheduler.

Imported only when [cluster] scheduler is set. Tasks travel as (function, arguments): configs,
run keys and paths, never arrays; workers read the shared file system. Each task runs under
`task_runs.perform`, so it watches the command's process when the workers are this machine's.

- "local": `workers` processes with one thread each (one per GPU on a many-GPU machine); a
  worker pins itself to GPU <its index> (CUDA_VISIBLE_DEVICES, unless already set, as a batch
  scheduler does), and exits `DEATH_SECONDS` after it has lost its scheduler.
- an address (tcp://host:8786): the cluster's own workers (SLURM / PBS with dask-jobqueue,
  Kubernetes); its scheduler's settings decide how often a dead worker's task is retried.
A task whose worker died is retried `retries` times (a LocalCluster's `allowed-failures`), then
reported as failed like a task that raised.
"""
from __future__ import annotations

import logging
import os
import time

from . import tasks as task_runs

DEATH_SECONDS = 10
CONNECT_SECONDS = 30  # how long a running scheduler may take to answer


def _plugin():
    from distributed.diagnostics.plugin import WorkerPlugin

    class PinGPU(WorkerPlugin):
        """A LocalCluster worker's GPU: its index, unless the environment already chose one;
        applied to every worker, restarted ones too, before their first task."""

        def setup(self, worker) -> None:
            if "CUDA_VISIBLE_DEVICES" not in os.environ and str(worker.name).isdigit():
                os.environ["CUDA_VISIBLE_DEVICES"] = str(worker.name)

    return PinGPU()


def connect(cfg):
    """(client, cluster or None) for [cluster] scheduler."""
    import dask
    from distributed import Client, LocalCluster

    if cfg.cluster.scheduler != "local":
        try:
            return Client(cfg.cluster.scheduler, timeout=f"{CONNECT_SECONDS}s"), None
        except (OSError, TimeoutError) as err:
            raise ValueError(f"{cfg.source}: no Dask scheduler answered at cluster.scheduler = "
                             f"{cfg.cluster.scheduler!r} within {CONNECT_SECONDS} s ({type(err).__name__}: "
                             f"{err}); "
                             "start it, fix the address, or run on this machine (scheduler = '')") from None
    cores = os.cpu_count() or 1
    if cfg.cluster.workers > cores:
        raise ValueError(f"{cfg.source}: cluster.workers = {cfg.cluster.workers}, but this machine has "
                         f"{cores} "
                         "cores; a LocalCluster runs at most one worker process per core")
    # the workers' statistical profiler samples the task's thread every 10 ms: measured 10-20%
    # slower tasks on 2 cores, so it is off (LocalCluster workers inherit this process's config)
    dask.config.set({"distributed.scheduler.allowed-failures": cfg.cluster.retries,
                     "distributed.worker.profile.enabled": False})
    local = LocalCluster(n_workers=cfg.cluster.workers, threads_per_worker=1, processes=True,
                         dashboard_address=None, silence_logs=logging.ERROR, death_timeout=DEATH_SECONDS)
    client = Client(local)
    client.register_plugin(_plugin())
    return client, local


def task_memory(cfg) -> int | None:
    """Bytes one task may hold on a running cluster: the smallest of its workers' memory limit
    shared by that worker's threads (each thread runs a task); None when a worker sets no limit
    or no worker has joined yet."""
    client, _ = connect(cfg)
    try:
        workers = client.scheduler_info()["workers"].values()
        shares = [int(w.get("memory_limit") or 0) // max(1, int(w.get("nthreads") or 1)) for w in workers]
        return min(shares) if shares and all(shares) else None
    finally:
        client.close()


def run(cfg, tasks: list, environment: dict | None) -> list:
    """Every task on the cluster, as many at a time as the workers have threads (a task goes to
    the first worker free, not to a queue decided up front); an Outcome per task, in the order
    they finish."""
    from distributed import as_completed

    client, local = connect(cfg)
    parent = os.getpid() if local is not None else None
    started = time.perf_counter()
    waiting = list(tasks)
    futures: dict = {}

    def submit():
        task = waiting.pop(0)
        future = client.submit(task_runs.perform, task, parent, environment,
                               key=f"{task.label}-{time.time_ns()}",
                               pure=False, retries=cfg.cluster.retries if local is None else 0)
        futures[future] = task
        return future

    try:
        slots = max(1, sum(client.nthreads().values()))
        running = as_completed([submit() for _ in range(min(slots, len(waiting)))])
        outcomes = []
        for future in running:
            outcomes.append(task_runs.outcome(futures[future], future, started))
            task_runs.report(outcomes[-1], len(tasks) - len(outcomes))
            if waiting:
                running.add(submit())
        return outcomes
    finally:
        client.close()
        if local is not None:
            local.close()
