"""Strings from a user's data (row keys, class names, file names) as cells of the files people open:
CSV a spreadsheet reads, Markdown tables.

CSV, the rule (OWASP's for CSV injection): a text cell or column name that starts with `=`, `+`,
`-`, `@`, a tab or a carriage return, which a spreadsheet would run as a formula, is written with
a single quote `'` in front; so is one that starts with `'` itself, so that the rule can be undone
without doubt (`plain` drops one leading quote). Numbers are written as they are. The project's
readers of its own CSVs (a review's labels.csv) undo the rule.
Markdown: `|` and backticks in a table cell are backslash-escaped, so a cell never opens a
column or a code span.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .files import write_text

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def spreadsheet_text(text: str) -> str:
    """One text cell as a spreadsheet shows it as text (module docstring)."""
    return QUOTE + text if text.startswith((*FORMULA_STARTS, QUOTE)) else text


def plain(text: str) -> str:
    """A cell written by `spreadsheet_text` back as it was."""
    return text[1:] if text.startswith(QUOTE) else text


def spreadsheet_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose column names and text cells are `spreadsheet_text` (numbers untouched)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype.kind in "OSU" or pd.api.types.is_string_dtype(out[column]):
            out[column] = [spreadsheet_text(v) if isinstance(v, str) else v for v in out[column]]
    out.columns = [spreadsheet_text(c) if isinstance(c, str) else c for c in out.columns]
    return out


def csv_text(frame: pd.DataFrame, **to_csv) -> str:
    """`frame` as CSV text (pandas' to_csv keywords, index=False by default), spreadsheet-safe."""
    return spreadsheet_frame(frame).to_csv(**{"index": False, **to_csv})


def write_csv(path: str | Path, frame: pd.DataFrame, **to_csv) -> Path:
    """`csv_text` of `frame` written atomically (`write_text`)."""
    return write_text(path, csv_text(frame, **to_csv))


def markdown_cell(text: str) -> str:
    """A Markdown table cell: `|` and backticks escaped, line breaks as spaces."""
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
            .replace("\r", " ").replace("\n", " "))
