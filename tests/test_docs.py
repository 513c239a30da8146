"""Every result table in docs/ equals what its committed CSV under docs/results/ says."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from tests.conftest import ROOT

DOCS, RESULTS = ROOT / "docs", ROOT / "docs" / "results"
NUMBER = re.compile(r"-?\d+\.\d+")


def tables(page: str) -> list[list[list[str]]]:
    """The Markdown tables of a docs page, each as rows of cells (header and rule left out)."""
    found, current = [], []
    for line in (DOCS / page).read_text().splitlines() + [""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current:
            found.append(current[2:])
            current = []
    return found


def table_after(page: str, marker: str) -> list[list[str]]:
    """The first table after the line that contains `marker`."""
    text = (DOCS / page).read_text()
    start = text.index(marker)
    before = text[:start].count("\n|---")
    return tables(page)[before]


def check(rows, protocols, expected) -> None:
    assert rows, "no table found"
    for row in rows:
        for protocol, cell in zip(protocols, row[1:]):
            if not cell:
                assert (row[0], protocol) not in expected
                continue
            assert NUMBER.findall(cell) == expected[(row[0], protocol)], (row[0], protocol, cell)
    assert {row[0] for row in rows} == {name for name, _ in expected}


@pytest.mark.parametrize("csv, marker, with_ci, protocols", [
    ("corel5k_summary.csv", "**Corel5k** (4,592", True, ["0", "0.25", "0.5", "0.75"]),
    ("enron_summary.csv", "**enron**", True, ["0", "0.25", "0.5", "0.75"]),
    ("demo_summary.csv", "**Demo**", False, ["0", "0.25", "0.5", "0.75", "single positive"]),
    ("corel5k_field_summary.csv", "**Corel5k** (`time make heads figures", False,
     ["0", "0.25", "0.5", "0.75", "single positive"]),
])
def test_results_tables_equal_their_csv(csv, marker, with_ci, protocols):
    frame = pd.read_csv(RESULTS / csv, dtype={"protocol": str})
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    expected = {}
    for row in frame.itertuples(index=False):
        values = []
        for metric in ("micro_f1", "mAP"):
            values.append(f"{getattr(row, metric + '_mean'):.3f}")
            if with_ci:
                values.append(f"{getattr(row, metric + '_ci95'):.3f}")
        expected[(row.name + (" (oracle)" if row.oracle else ""), row.protocol)] = values
    check(table_after("results.md", marker), protocols, expected)


def test_label_statistics_table_equals_its_csvs():
    rows = table_after("results.md", "## The synthetic set against MSCOCO")
    demo = pd.read_csv(RESULTS / "label_stats_demo.csv").set_index("statistic")["value"]
    coco = pd.read_csv(RESULTS / "label_stats_mscoco.csv").set_index("statistic")["value"]
    shown = {row[0]: row[1:] for row in rows}
    assert shown["classes"] == [f"{demo['classes']:.0f}", f"{coco['classes']:.0f}"]
    means = [f"{demo['labels per image (mean)']:.2f}", f"{coco['labels per image (mean)']:.2f}"]
    assert [cell.split(" / ")[0] for cell in shown["labels per image: mean / median / max"]] == means
    assert shown["Gini of class frequencies"] == [f"{demo['Gini of class frequencies']:.2f}",
                                                   f"{coco['Gini of class frequencies']:.2f}"]
