"""Where stages run their tasks: processes on this machine, or a Dask cluster ([cluster]).

    results = cluster.run(cfg, tasks, n_jobs)   # tasks: [Task(label, fn, args)]

One module owns the choice: `scheduler = ""` runs the tasks in joblib processes on this machine
(n_jobs of them), `"local"` in a `distributed.LocalCluster` of `workers` processes, an address
(tcp://host:8786) on a running cluster's workers. Either way a task's exception is reported
with its label while the other tasks go on; once all have ended, `run` raises a ValueError
naming every failed task (the command exits non-zero, and a rerun redoes only what is missing,
since every task writes its output atomically). A line is printed per finished task.

Workers die with their command: a task started by this machine's command watches the
command's process and ends its own when the command is gone (`tasks.watch_parent`).
"""
from __future__ import annotations

import os
import time
import warnings
from concurrent.futures import Future, as_completed
from typing import Any

from .tasks import Outcome, Task, outcome, perform, report


def _in_this_process(tasks: list[Task], environment: dict | None) -> list[Outcome]:
    """The tasks one after the other in this process's main thread, so that Ctrl-C stops the
    one running at once (a worker thread would be waited for, and every queued task with it)."""
    started, outcomes = time.perf_counter(), []
    for task in tasks:
        future = Future()
        try:
            future.set_result(perform(task, None, environment))
        except Exception as err:  # noqa: BLE001 (as an executor does: reported once all have ended)
            future.set_exception(err)
        outcomes.append(outcome(task, future, started))
        report(outcomes[-1], len(tasks) - len(outcomes))
    return outcomes


def _local(tasks: list[Task], n_jobs: int, environment: dict | None) -> list[Outcome]:
    """Processes on this machine (loky, joblib's), or this process when n_jobs is 1."""
    if n_jobs == 1 or len(tasks) == 1:
        return _in_this_process(tasks, environment)
    from joblib.externals.loky import get_reusable_executor
    executor = get_reusable_executor(max_workers=min(n_jobs, len(tasks)))
    started = time.perf_counter()
    futures = {executor.submit(perform, task, os.getpid(), environment): task for task in tasks}
    outcomes = []
    with warnings.catch_warnings():
        # loky replaces a worker whose memory grew by more than 300 MB over a task (its leak
        # check; a TensorFlow stack grows that much) and warns; the task has finished by then
        warnings.filterwarnings("ignore", message="A worker stopped while some jobs", category=UserWarning)
        for future in as_completed(futures):
            outcomes.append(outcome(futures[future], future, started))
            report(outcomes[-1], len(tasks) - len(outcomes))
    return outcomes


def run(cfg, tasks: list[Task], n_jobs: int = 1, environment: dict | None = None) -> list[Any]:
    """Run `tasks` where [cluster] says; their values in task order. ValueError naming every
    failed task once all have ended. `environment`: variables set in the worker before a task."""
    if not tasks:
        return []
    if cfg.cluster.scheduler:
        from . import dask_engine
        outcomes = dask_engine.run(cfg, tasks, environment)
    else:
        outcomes = _local(tasks, n_jobs, environment)
    failed = [o for o in outcomes if o.error]
    if failed:
        lines = "\n".join(f"  {o.label}: {o.error}" for o in failed)
        raise ValueError(f"{len(failed)} of {len(tasks)} task(s) failed (a rerun redoes only "
                         f"these):\n{lines}")
    by_label = {o.label: o.value for o in outcomes}
    return [by_label[task.label] for task in tasks]


def running_cluster(cfg) -> bool:
    """[cluster] scheduler is an address: tasks run on another cluster's workers, not this machine."""
    return cfg.cluster.scheduler not in ("", "local")


def task_memory(cfg) -> int | None:
    """Bytes one task may hold on a running cluster ([cluster] scheduler an address): its
    smallest worker's memory limit per thread; None on this machine, or when a worker has no limit."""
    if not running_cluster(cfg):
        return None
    from . import dask_engine
    return dask_engine.task_memory(cfg)


def threads_per_task(cfg, n_jobs: int) -> int:
    """Threads each task may use (0: leave TensorFlow's default): this machine's cores shared by
    the n_jobs processes, or by a LocalCluster's workers; a remote worker's own."""
    cores = os.cpu_count() or 1
    if cfg.cluster.scheduler == "local":
        return max(1, cores // cfg.cluster.workers)
    if cfg.cluster.scheduler or n_jobs == 1:
        return 0
    return max(1, cores // n_jobs)
