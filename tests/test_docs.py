"""Every result table in docs/ equals what its committed CSV under docs/results/ says."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from analysis.tables import run_name
from tests.conftest import ROOT

DOCS, RESULTS = ROOT / "docs", ROOT / "docs" / "results"
NUMBER = re.compile(r"-?\d+\.\d+")


def tables(page: str) -> list[list[list[str]]]:
    """The Markdown tables of a docs page, each as rows of cells (header and rule left out)."""
    found, current = [], []
    for line in (DOCS / page).read_text().splitlines() + [""]:
        if line.lstrip().startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current:
            found.append(current[2:])
            current = []
    return found


def table_after(page: str, marker: str) -> list[list[str]]:
    """The first table after the line that contains `marker`."""
    text = (DOCS / page).read_text()
    start = text.index(marker)
    before = sum(line.lstrip().startswith("|---") for line in text[:start].splitlines())
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


def display_of(row) -> str:
    """How a table shows a CSV row's method: its registry id's display name (never the CSV's `name`)."""
    return run_name(row["stage"], row["method"])


def summary_expected(csv: str, metrics, with_ci: bool) -> dict:
    """{(shown name, protocol): the numbers of its cell, 3 decimals} from a summary.csv."""
    frame = pd.read_csv(RESULTS / csv, dtype={"protocol": str})
    expected = {}
    for _, row in frame.iterrows():
        values = []
        for metric in metrics:
            values.append(f"{row[metric + ' mean']:.3f}")
            if with_ci:
                values.append(f"{row[metric + ' ci95']:.3f}")
        expected[(display_of(row) + (" (oracle)" if row["oracle"] else ""), row["protocol"])] = values
    return expected


OLD = ("micro_f1", "mAP")  # the CSVs made before the field's metric names (micro F1 = today's OF1 at 0.5)


@pytest.mark.parametrize("csv, marker, with_ci, protocols, metrics", [
    ("corel5k_summary.csv", "**Corel5k** (4,592", True, ["0", "0.25", "0.5", "0.75"], OLD),
    ("enron_summary.csv", "**enron**", True, ["0", "0.25", "0.5", "0.75"], OLD),
    ("demo_summary.csv", "**Demo**", False, ["0", "0.25", "0.5", "0.75", "single positive"],
     ("mAP", "CF1_class")),
    ("corel5k_field_summary.csv", "**Corel5k** (`time make heads figures", False,
     ["0", "0.25", "0.5", "0.75", "single positive"], OLD),
])
def test_results_tables_equal_their_csv(csv, marker, with_ci, protocols, metrics):
    check(table_after("results.md", marker), protocols, summary_expected(csv, metrics, with_ci))


def test_as_published_tables_equal_their_csvs():
    expected = {key: value for key, value in summary_expected("as_published/summary.csv",
                                                              ("micro_recall", "micro_f1", "mAP"),
                                                              True).items()
                if key[1] != "0"}
    check(table_after("notebooks.md", "| method | .25 | .5 | .75 |"), ["0.25", "0.5", "0.75"], expected)
    detection = pd.read_csv(RESULTS / "as_published" / "detection.csv", dtype={"protocol": str})
    rows = table_after("notebooks.md", "| data, ratio |")
    order = ["confidence_notebook", "confidence", "confidence_auto"]
    assert len(rows) == len(detection) // len(order)
    for row in rows:
        data, ratio = row[0].rsplit(" ", 1)
        at = detection[(detection["data"] == data) & (detection["protocol"] == "0"
                                                      + ratio)].set_index("method")
        for method, cell in zip(order, row[1:]):
            # the CSV holds 4 decimals: a 3-decimal cell is within half its unit plus the CSV's rounding
            columns = ("roc_auc", "ap", "weight_hidden", "weight_negative")
            shown = [float(v) for v in NUMBER.findall(cell)]
            limits = [5e-5 + 1e-9, 5e-5 + 1e-9, 5e-4 + 5e-5, 5e-4 + 5e-5]
            assert all(abs(v - at.loc[method, c]) <= lim for v, c,
                       lim in zip(shown, columns, limits)), (row[0], cell)


def test_estimator_table_equals_its_csv():
    table = pd.read_csv(RESULTS / "weights_quality.csv", dtype={"protocol": str})
    auc = table.pivot_table(index=["set", "protocol"], columns="estimator", values="roc_auc")
    rows = table_after("estimators.md", "| set, protocol |")
    first_line = (DOCS / "estimators.md").read_text().split("| set, protocol |")[1].splitlines()[0]
    header = first_line.split("|")
    estimators = [c.strip() for c in header if c.strip() and c.strip() != "auto chose"]
    shown = {"MSCOCO fold 1": "mscoco", "NUS-WIDE fold 1": "nuswide", "synthetic 16k x 1,000": "synthetic"}
    for row in rows:
        if row[0].startswith("mean of the"):
            expected = auc.drop(index="synthetic", level="set").mean()
        else:
            prefix = next((k for k in shown if row[0].startswith(k + " ")), None)
            name, protocol = (shown[prefix], row[0][len(prefix) + 1:]) if prefix else row[0].split(" ", 1)
            expected = auc.loc[(name, protocol)]
        values = [float(c.strip("*")) for c in row[1:len(estimators) + 1]]
        assert np.allclose(values, [expected[e] for e in estimators], rtol=0, atol=5e-5 + 1e-9), row[0]


def test_importer_table_equals_its_csv():
    table = pd.read_csv(RESULTS / "importer.csv").set_index("file")
    for row in table_after("benchmarks.md", "| file | rows |"):
        at = table.loc[row[0].removesuffix(" (sparse)")]
        assert row[1:] == [f"{at['rows']:,.0f}", f"{at['library_rows_per_s']:,.0f}",
                           f"{at['import_rows_per_s']:,.0f}",
                           f"{at['import_over_library']:.2f}x"]


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


@pytest.mark.parametrize("name", ["yeast", "enron", "corel5k"])
def test_the_search_tables_equal_their_csvs(name):
    """results.md "Every method searched": mAP (rank) before and after, from <name>_ranks_mAP.csv."""
    lines = (DOCS / "results.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| method ({name}) |"))
    cells_of = {}
    for line in lines[start + 2:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        cells_of[cells[0]] = cells[1:]
    frame = pd.read_csv(RESULTS / f"{name}_ranks_mAP.csv", dtype={"protocol": str})
    frame["shown"] = [display_of(row) for _, row in frame.iterrows()]
    assert set(cells_of) == set(frame["shown"])
    for method, cells in cells_of.items():
        expected = []
        for protocol in ("0.75", "single positive"):
            row = frame[(frame["shown"] == method) & (frame["protocol"] == protocol)].iloc[0]
            expected += [f"{row['mAP before']:.3f} ({row['rank before']})",
                         f"{row['mAP after']:.3f} ({row['rank after']})"]
        assert cells == expected, method


def test_the_suggestion_table_equals_its_csv():
    """results.md "What the suggestions find": the demo's suggestion quality, from
    demo_suggestions_quality.csv."""
    text = (DOCS / "results.md").read_text()
    start = text.index("What the demo's suggestions find")
    rows = [line for line in text[start:].split("\n\n")[1].splitlines() if line.startswith("| ")
            and "---" not in line]
    frame = pd.read_csv(RESULTS / "demo_suggestions_quality.csv").set_index("source")
    for line in rows[1:]:
        source, *cells = [c.strip() for c in line.strip("|").split("|")]
        row = frame.loc[source]
        assert cells == [f"{row[k]:.3f}" for k in ("P@1", "P@5", "AP", "list precision")], source
    assert frame.loc["combined", "P@1"] >= frame.loc["prior", "P@1"] and \
        frame.loc["combined", "P@5"] >= frame.loc["prior", "P@5"]


def _partial_cell(board: pd.DataFrame, name: str, protocol: str) -> str:
    """A cell of results.md "Partial labels": mean mAP, bold when best, ° when tied with it."""
    row = board.loc[(name, protocol)]
    text = f"{row['mean']:.3f}"
    return f"**{text}**" if row["best"] else text + (" °" if row["tied"] else "")


def test_the_partial_label_tables_equal_their_csvs():
    """results.md "Partial labels": both tables, marks included, from *_partial_leaderboard.csv."""
    text = (DOCS / "results.md").read_text()
    start = text.index("## Partial labels")
    section = text[start:text.index("\n## ", start + 1)]
    boards = {}
    shown_name = display_of
    for name, title in (("yeast", "yeast"), ("enron", "enron"), ("corel5k", "Corel5k")):
        frame = pd.read_csv(RESULTS / f"{name}_partial_leaderboard.csv", dtype={"protocol": str})
        frame["shown"] = [shown_name(row) for _, row in frame.iterrows()]
        boards[title] = frame[frame["metric"] == "mAP"].set_index(["shown", "protocol"])
    blocks = [block for block in section.split("\n\n") if block.startswith("| method")]
    assert len(blocks) == 2
    for block in blocks:
        header, _, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()]
        columns = []
        for title in header[1:]:
            dataset, _, share = title.partition(" ")
            columns.append((dataset,
                            f"partial {int(share.rstrip('%')) / 100:g}" if share else "single positive"))
        for label, *cells in rows:
            name = label.removesuffix(" (oracle)")
            assert (label != name) == bool(boards["yeast"].loc[(name, columns[0][1])]["oracle"]), label
            assert cells == [_partial_cell(boards[d], name, p) for d, p in columns], name


def test_the_readme_is_a_front_door_and_its_leaderboard_is_the_demos():
    """README.md at most 15 KB; its leaderboard is `analysis.leaderboard.markdown` of the
    committed demo CSV."""
    from analysis import leaderboard
    readme = (DOCS.parent / "README.md").read_text()
    assert len(readme.encode()) <= 15_000
    board = pd.read_csv(RESULTS / "demo_leaderboard.csv", dtype={"protocol": str})
    assert leaderboard.markdown(board, "mAP", list(dict.fromkeys(board["protocol"]))) in readme
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (DOCS.parent / link).is_file(), link
