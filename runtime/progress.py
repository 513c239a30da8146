"""Progress bars on stderr (tqdm) for anything longer than a few seconds."""
from __future__ import annotations

import sys

from tqdm import tqdm


def bar(total: int, desc: str, unit: str = "it") -> tqdm:
    """A bar of `total` units, redrawn at most twice a second; `.update(n)` as work is done,
    `.close()` at the end."""
    return tqdm(total=total, desc=desc, unit=unit, mininterval=0.5, file=sys.stderr, dynamic_ncols=True)
