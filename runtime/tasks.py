"""What a task is and how a worker runs and reports it, for `runtime.cluster` (joblib
processes) and `runtime.dask_engine` (Dask workers) alike.

A task is (label, function, arguments); a worker runs it under `perform`, which watches the
command that started it (on this machine) and ends the worker when the command is gone. A
finished future becomes an Outcome (its value, or its exception as text: reported, not
raised), and `report` prints one line per finished task.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, NamedTuple

import artifacts

PARENT_CHECK_SECONDS = 0.5


def local_pool(n_jobs: int) -> ProcessPoolExecutor:
    """Processes for a step's own parallel work on this machine (a report's reading, its figures):
    forked where that is safe (Linux, and no TensorFlow in this process, whose threads a fork
    would copy in the middle of their work), else spawned."""
    safe = sys.platform.startswith("linux") and "tensorflow" not in sys.modules
    return ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("fork" if safe else "spawn"))


class Task(NamedTuple):
    label: str  # what the task makes, for progress and failure lines
    fn: Callable
    args: tuple = ()


class Outcome(NamedTuple):
    label: str
    value: Any  # fn's return value, None on failure
    error: str  # "" on success
    seconds: float


_watched: set[int] = set()


def watch_parent(pid: int | None) -> None:
    """End this process when process `pid` (the command that started the task, on this machine)
    is gone; None: the task runs on another machine's worker."""
    if pid is None or pid == os.getpid() or pid in _watched:
        return
    _watched.add(pid)

    def watch():
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            time.sleep(PARENT_CHECK_SECONDS)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def perform(task: Task, parent: int | None, environment: dict | None = None) -> tuple[Any, float]:
    """Run a task in a worker, watching its command: (value, seconds)."""
    watch_parent(parent)
    artifacts.install_hooks()  # a worker's HDF5 writes report failures as the command's do
    os.environ.update(environment or {})
    start = time.perf_counter()
    return task.fn(*task.args), time.perf_counter() - start


def outcome(task: Task, future, started: float) -> Outcome:
    """A finished future's Outcome: its value, or its exception as text (reported, not raised)."""
    error = future.exception()
    if error is None:
        value, seconds = future.result()
        return Outcome(task.label, value, "", seconds)
    detail = "" if isinstance(error, ValueError) else "".join(traceback.format_exception(error, limit=-3))
    return Outcome(task.label, None, f"{type(error).__name__}: {error}\n{detail}".strip(),
                   time.perf_counter() - started)


def report(result: Outcome, remaining: int) -> None:
    state = "done" if not result.error else "FAILED: " + result.error.splitlines()[0]
    print(f"{result.label}: {state} in {result.seconds:.1f} s; {remaining} task(s) left", flush=True)
