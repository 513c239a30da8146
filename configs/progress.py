"""A dependency-free progress bar on stderr for anything longer than a few seconds."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str, unit: str = "it"):
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0
        self.start = self.shown = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.shown < 0.5 and self.done < self.total:
            return
        self.shown = now
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        print(f"\r{self.desc}: {self.done}/{self.total} {self.unit} "
              f"[{elapsed:.0f}s, {rate:.1f} {self.unit}/s, eta {eta:.0f}s]", end="", file=sys.stderr)
        if self.done >= self.total:
            print(file=sys.stderr)
