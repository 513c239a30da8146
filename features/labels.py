"""Label codings: a label file's values as positives, verified negatives and unknowns.

    labels, known = decode(values, coding, where, row_names, class_names)

`values` (n, L) are numbers as read (NaN for an empty cell). A coding names its positive,
negative and unknown value ([dataset] label_coding, `configs.LABEL_CODINGS`):

    0/1      1 positive, 0 negative                      two states: every label known
    -1/1     1 positive, -1 negative
    1/0/-1   1 positive, 0 negative, -1 unknown          CSL's partial_asymmetric_loss
    1/-1/0   1 positive, -1 negative, 0 unknown          Durand'19, HCP-MLR-PL
    1/0/nan  1 positive, 0 negative, NaN (empty) unknown mlcpl
Returns `labels` (n, L) uint8 (1 on positives, 0 elsewhere) and `known` (n, L) bool, or None
when every label is known (two-state data stays what it was). A value the coding does not
have, a NaN where the coding has another unknown (or none), is a ValueError naming the file's
row, column and value.
"""
from __future__ import annotations

import math
import re

import numpy as np

CODINGS = {"0/1": (1, 0, None), "-1/1": (1, -1, None), "1/0/-1": (1, 0, -1), "1/-1/0": (1, -1, 0),
           "1/0/nan": (1, 0, math.nan)}


def three_state(coding: str) -> bool:
    return CODINGS[coding][2] is not None


def decode(values, coding: str, where, row_names, class_names) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels (n, L) uint8, known (n, L) bool or None) of `values` in `coding` (module docstring)."""
    positive, negative, unknown = CODINGS[coding]
    values = np.asarray(values, np.float64)
    missing = np.isnan(values)
    nan_unknown = unknown is not None and math.isnan(unknown)
    if missing.any() and not nan_unknown:
        i, j = np.argwhere(missing)[0]
        other = f"its unknowns are {unknown:g}: the file mixes codings" if unknown is not None else \
            "it has no unknowns (a three-state coding has: 1/0/-1, 1/-1/0, 1/0/nan)"
        raise ValueError(f"{where}: row {_name(row_names, i)!r} label column {_name(class_names, j)!r} is "
                         "empty (NaN, an "
                         f"unknown label), but dataset.label_coding = {coding!r}: {other}")
    allowed = [v for v in (positive, negative, unknown) if v is not None
               and not (nan_unknown and v is unknown)]
    bad = ~missing & ~np.isin(values, allowed)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        hint = "; for unknown labels choose a three-state coding (1/0/-1, 1/-1/0, 1/0/nan)" \
            if unknown is None and values[i, j] in (-1, 0) else ""
        raise ValueError(f"{where}: row {_name(row_names, i)!r} label column {_name(class_names, j)!r} holds "
                         f"{values[i, j]:g}; labels are coded {coding} (dataset.label_coding){hint}")
    known = ~missing if nan_unknown else (values != unknown if unknown is not None else None)
    labels = (values == positive).astype(np.uint8)
    return labels, (None if known is None or known.all() else known)


def from_id_lists(positives: list, negatives: list, where,
                  row_names) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(classes, labels (n, L) uint8, known (n, L) bool) from each row's positive and verified
    negative class ids (OpenImages' label / label_neg); classes sorted; a class both positive
    and negative in a row is a ValueError naming the row and class."""
    classes = sorted({c for row in (*positives, *negatives) for c in row})
    column = {c: j for j, c in enumerate(classes)}
    labels = np.zeros((len(positives), len(classes)), np.uint8)
    known = np.zeros(labels.shape, bool)
    for i, (pos, neg) in enumerate(zip(positives, negatives)):
        both = sorted(set(pos) & set(neg))
        if both:
            raise ValueError(f"{where}: row {_name(row_names, i)!r} lists class {both[0]!r} as positive and "
                             "as "
                             "negative; a verified label has one state")
        labels[i, [column[c] for c in pos]] = 1
        known[i, [column[c] for c in (*pos, *neg)]] = True
    return classes, labels, known


# a cell's tokens: an id in single or double quotes, a bare id, separators, or a stray quote
ID_TOKENS = re.compile(r"""'([^']*)'|"([^"]*)"|([^\s,;'"\[\]]+)|[\s,;\[\]]+|(.)""")


def id_lists(cells, where, column: str, row_names) -> list[list[str]]:
    """Each cell of an id-list column parsed (`parse_ids`); ValueError naming the file, row,
    column and cell that cannot be read."""
    out = []
    for i, cell in enumerate(cells):
        try:
            out.append(parse_ids(cell))
        except ValueError as err:
            raise ValueError(f"{where}: row {_name(row_names, i)!r} column {column!r}: {err}") from None
    return out


def parse_ids(cell) -> list[str]:
    """A cell listing class ids: "['/m/01', '/m/02']" (OpenImages' data.csv), JSON, or ids
    separated by spaces, commas or semicolons, each in single or double quotes or bare, mixed
    in one cell if need be (`['/m/01', /m/02]` is both); empty: none. A quote that does not
    close is a ValueError naming the cell (quote an id holding a quote in the other kind)."""
    text = "" if cell is None or (isinstance(cell, float) and math.isnan(cell)) else str(cell).strip()
    ids = []
    for single, double, bare, stray in ID_TOKENS.findall(text):
        if stray:
            raise ValueError(f"the ids {text!r} hold a {stray} that does not close; quote each id with ' "
                             "or \" (or none), e.g. ['/m/01', '/m/02']")
        ids += [value for value in (single, double, bare) if value]
    return ids


def _name(names, index):
    return names[index] if index < len(names) else index
