from pathlib import Path

import pytest

import configs
from heads import predictions

CONFIGS = Path(configs.__file__).parent


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_shipped_configs_load(name):
    cfg = configs.load(CONFIGS / name)
    assert cfg.splits.n_folds == 4


@pytest.mark.parametrize("text, message", [
    ("[splits]\nn_fold = 4\n", r"\[splits\]: unknown key 'n_fold'; allowed: fpc, import_dir, n_folds"),
    ("[splits]\nn_folds = 'four'\n", r"splits\].n_folds: expected int, got str"),
    ("[splits]\nratios = [0.5, 1.0]\n", r"ratios holds 1.0"),
    ("[splits]\nn_folds = 1\n", "at least 2 folds"),
    ("[heads]\nhead = 'transformer'\n", "heads.head = 'transformer'; allowed: linear, paper_mlp"),
    ("[models]\n", r"unknown section \[models\]"),
    ("[dataset]\nnatural_missing_rate = 1.0\n", r"dataset.natural_missing_rate = 1.0; must lie in \[0, 1\)"),
    ("[experiment]\nseeds = [0, 1]\n[finetune]\nseeds = [2]\n",
     r"finetune.seeds holds 2, which is not among the experiment's seeds \[0, 1\]"),
])
def test_bad_config_names_file_key_and_allowed(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        configs.load(path)
    assert str(path) in str(err.value)


def test_missing_path_is_named(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[dataset]\nadapter = 'csv'\nannotations = 'nowhere/labels.csv'\n")
    with pytest.raises(ValueError, match="dataset.annotations = 'nowhere/labels.csv' does not exist"):
        configs.require_paths(configs.load(path), "dataset.annotations")


@pytest.mark.parametrize("name",
                         ["../../escape", "/absolute", "..", ".", "a/b", "a\\b", "a:b", "", " spaced"])
def test_experiment_names_stay_one_folder_under_runs_dir(name):
    with pytest.raises(ValueError, match=r"experiment.name = .*one folder name under experiment.runs_dir"):
        configs.from_dict({"experiment": {"name": name}}, source="test")
    assert configs.from_dict({"experiment": {"name": "corel5k_seed-1.v2"}}, source="test").run_dir.name == \
        "corel5k_seed-1.v2"


def test_finetune_runs_on_its_own_seeds_while_the_heads_repeat_over_all():
    cfg = configs.from_dict({"experiment": {"seeds": [0, 1, 2]}, "finetune": {"seeds": [0], "folds": [1]}},
                            source="test")
    assert {run.seed for run in predictions.grid(cfg, "heads", 4, ["0.5"])} == {0, 1, 2}
    assert {(run.seed, run.fold) for run in predictions.grid(cfg, "finetune", 4, ["0.5"])} == {(0, 0)}
    every_seed = configs.from_dict({"experiment": {"seeds": [0, 1]}}, source="test")
    assert {run.seed for run in predictions.grid(every_seed, "finetune", 4, ["0.5"])} == {0, 1}
