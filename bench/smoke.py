"""Every named benchmark on tiny inputs, one after another in this one process (`make bench-smoke`).

    .venv/bin/python bench/smoke.py splits extract heads ...

Each runs as `bench/<name>.py --smoke` would from the command line (its `__main__` block, its
output discarded), so an API change that breaks one fails here; it measures nothing. One
process pays the imports (TensorFlow, the project) once instead of once a benchmark. Prints each
benchmark's name before it runs and its seconds after; the first failure ends the run (its
traceback, or its exit code).
"""
from __future__ import annotations

import contextlib
import io
import runpy
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(name: str) -> bool:
    """Run bench/<name>.py --smoke as its own `__main__`; False when it exits non-zero (an
    exception propagates)."""
    path = HERE / f"{name}.py"
    if not path.is_file():
        print(f"bench/smoke.py: no benchmark {path} (names: the files of bench/ without .py)")
        return False
    argv, sys.argv = sys.argv, [str(path), "--smoke"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as stop:
        if stop.code not in (None, 0):
            print(f"bench/{name}.py --smoke exited with {stop.code}")
            return False
    finally:
        sys.argv = argv
    return True


def main(names: list[str]) -> int:
    total = time.perf_counter()
    for name in names:
        print(f"== bench/{name}.py --smoke", flush=True)
        start = time.perf_counter()
        if not run(name):
            return 1
        print(f"   {time.perf_counter() - start:.1f} s", flush=True)
    print(f"{len(names)} benchmarks on tiny inputs: {time.perf_counter() - total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
