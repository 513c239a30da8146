"""The leaderboard against a direct computation, and a searched study's report end to end."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import leaderboard, report, tables
from heads import trainer
from tests.helpers import make_features

from .test_search import searched


def frame_of(means: dict, oracle=(), n=8, seed=0):
    """Runs of methods (registry id -> mean mAP) over n (seed, fold) pairs, with shared noise per pair."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 0.02, n)
    rows = []
    for method, mean in means.items():
        for i in range(n):
            rows.append({"stage": "heads", "method": method, "name": tables.run_name("heads", method),
                         "protocol": "0.5", "order": 0.5, "oracle": method in oracle, "seed": i // 4,
                         "fold": i % 4 + 1, "mAP": mean + shared[i] + rng.normal(0, 0.002)})
    return pd.DataFrame(rows)


def test_the_best_is_bold_the_tied_are_marked_and_oracles_never_lead():
    frame = frame_of({"ce": 0.60, "an": 0.601, "em": 0.55, "ignore_missing": 0.70}, oracle={"ignore_missing"})
    board = leaderboard.board(frame, "mAP").set_index("method")
    assert board.loc["an", "best"] and not board.loc["ignore_missing", "best"]
    ce, an, em = (frame[frame["method"] == m]["mAP"].to_numpy() for m in ("ce", "an", "em"))
    p = tables.holm(np.array([stats.wilcoxon(an - ce).pvalue, stats.wilcoxon(an - em).pvalue]))
    assert board.loc["ce", "holm p"] == pytest.approx(p[0])
    assert board.loc["em", "holm p"] == pytest.approx(p[1])
    assert board.loc["ce", "tied"] == (p[0] >= 0.05) and not board.loc["em", "tied"]
    assert board.loc["an", "mean"] == pytest.approx(an.mean())
    assert board.loc["an", "ci95"] == pytest.approx(tables.interval(an))
    assert board.loc["an", "name"] == "AN" and board.loc["an", "stage"] == "heads"
    text = leaderboard.markdown(frame.pipe(lambda f: leaderboard.board(f, "mAP").assign(metric="mAP")), "mAP",
                                ["0.5"])
    assert f"| AN | **{an.mean():.3f} ± {tables.interval(an):.3f}** |" in text
    assert text.index("oracles") < text.index("IM-WCE")


def test_a_searched_study_reports_its_leaderboard_choices_and_grid(tmp_path):
    cfg = searched(tmp_path / "s")
    make_features(cfg)
    trainer.train(cfg, only={"ratio": "0.5"}, n_jobs=1)
    path = report.report(cfg)
    text = path.read_text()
    assert text.index("## Leaderboard") < text.index("## What the search chose") < text.index("## Summary")
    chosen = pd.read_csv(path.parent / "selection.csv", dtype={"protocol": str})
    points = pd.read_csv(path.parent / "search.csv", dtype={"protocol": str})
    runs = pd.read_csv(path.parent / "runs.csv", dtype={"protocol": str})
    ce = runs[(runs["method"] == "ce") & (runs["protocol"] == "0.5")]["mAP"]
    assert chosen.set_index("method").loc["ce", "test mAP (chosen)"] == pytest.approx(ce.mean(), abs=1e-5)
    last = points[(points["method"] == "ce") & (points["epoch"] == points["epoch"].max())]
    bound = last.groupby(["seed", "fold"])["test_map"].max().mean()
    assert chosen.set_index("method").loc["ce", "test mAP (test pick)"] == pytest.approx(bound, abs=1e-5)
    assert (path.parent / "fig8_search.png").stat().st_size > 1000
    boards = pd.read_csv(path.parent / "leaderboard.csv", dtype={"protocol": str})
    assert set(boards["metric"]) == {"mAP", "CF1", "OF1"} and set(boards["column"]) >= {"CF1_class",
                                                                                        "OF1_global"}
    assert set(boards["method"]) == set(cfg.heads.methods) and set(boards["stage"]) == {"heads"}


def test_compare_ranks_each_method_before_and_after_among_non_oracles(tmp_path):
    before = leaderboard.board(frame_of({"ce": 0.60, "an": 0.58, "em": 0.50, "ignore_missing": 0.7},
                                        {"ignore_missing"}), "mAP")
    after = leaderboard.board(frame_of({"ce": 0.60, "an": 0.62, "em": 0.65, "ignore_missing": 0.7},
                                       {"ignore_missing"}), "mAP")
    paths = []
    for name, board in (("before", before), ("after", after)):
        paths.append(tmp_path / f"{name}.csv")
        board.assign(metric="mAP").to_csv(paths[-1], index=False)
    table = leaderboard.compare_files(*paths, "mAP", tmp_path / "ranks.csv").set_index("method")
    assert table["rank before"].to_dict() == {"ce": 1, "an": 2, "em": 3}
    assert table["rank after"].to_dict() == {"em": 1, "an": 2, "ce": 3}
    assert table.loc["em", "rank change"] == 2 and "ignore_missing" not in table.index
    assert table.loc["em", "name"] == "EM"
    with pytest.raises(ValueError, match="no leaderboard.csv with metric 'CF1'"):
        leaderboard.compare_files(*paths, "CF1", None)
    before.drop(columns=["method"]).assign(metric="mAP").to_csv(paths[0], index=False)
    with pytest.raises(ValueError, match="no 'method' column: it was written before"):
        leaderboard.compare_files(*paths, "mAP", None)


def test_head_to_head_pairs_runs_by_seed_and_fold(tmp_path):
    frame = frame_of({"role": 0.62, "an": 0.60})
    table = leaderboard.head_to_head(frame, [(("heads", "role"), ("heads", "an"))], "mAP")
    role = frame[frame["method"] == "role"]["mAP"].to_numpy()
    an = frame[frame["method"] == "an"]["mAP"].to_numpy()
    row = table.iloc[0]
    assert row[["a", "b", "a name", "b name"]].tolist() == ["role", "an", "ROLE", "AN"]
    assert row["pairs"] == 8 and row["a better"] == int((role > an).sum())
    assert row["mean difference"] == pytest.approx((role - an).mean())
    assert row["wilcoxon p"] == pytest.approx(stats.wilcoxon(role - an).pvalue)
    runs = tmp_path / "runs.csv"
    frame.to_csv(runs, index=False)
    with pytest.raises(ValueError, match="no runs of 'll_r'; present: an, role"):
        leaderboard.head_to_head_file(runs, "ll_r:an", "mAP", None)
    with pytest.raises(ValueError, match="unknown method 'ROLE'"):  # a display name is no key
        leaderboard.head_to_head_file(runs, "ROLE:AN", "mAP", None)
    frame.drop(columns=["stage"]).to_csv(runs, index=False)
    with pytest.raises(ValueError, match="no 'stage' column"):
        leaderboard.head_to_head_file(runs, "role:an", "mAP", None)


def test_paired_studies_match_a_loop_over_seed_and_fold_with_holm_per_protocol(tmp_path):
    before = frame_of({"role": 0.62, "an": 0.60})
    after = before.assign(mAP=before["mAP"] + np.where(before["method"] == "an", 0.01, 0.0))
    after = after.sample(frac=1.0, random_state=0)  # rows in another order: pairing is by keys
    table = leaderboard.paired(before, after, "mAP")
    for _, row in table.iterrows():
        one = before[(before["method"] == row["method"]) & (before["protocol"] == row["protocol"])]
        two = after[(after["method"] == row["method"]) & (after["protocol"] == row["protocol"])]
        differences = [float(two[(two["seed"] == s) & (two["fold"] == f)]["mAP"].iloc[0]) - m
                       for s, f, m in zip(one["seed"], one["fold"], one["mAP"])]
        assert row["difference"] == pytest.approx(np.mean(differences))
        assert row["runs"] == len(differences) and row["higher"] == sum(d > 0 for d in differences)
        if row["method"] == "an":
            assert row["wilcoxon p"] == pytest.approx(stats.wilcoxon(differences).pvalue)
    assert table[table["method"] == "role"]["wilcoxon p"].isna().all()  # every difference 0
    summary = leaderboard.paired_summary(table, "mAP")
    assert summary["lifted"].tolist() == [1] * len(summary)
    with pytest.raises(ValueError, match="share no"):
        b, a = tmp_path / "b.csv", tmp_path / "a.csv"
        before.to_csv(b, index=False)
        after.assign(seed=after["seed"] + 10).to_csv(a, index=False)
        leaderboard.paired_files(b, a, "mAP", None)
