"""The batched trainer against one-head-at-a-time training, and on features that carry labels."""
import h5py
import numpy as np
import pytest

import configs
import splits
from features import store as feature_store
from heads import trainer
from splits import folds, synthetic


def make_features(cfg, n_features=24, noise=0.6, seed=0):
    """A splits.h5 from the config's synthetic labels and a feature store of a noisy linear map."""
    sf_path = splits.make(cfg)
    from splits import store
    sf = store.load(sf_path)
    rng = np.random.default_rng(seed)
    mixing = rng.normal(0, 1, (sf.labels.shape[1], n_features))
    x = sf.labels @ mixing + rng.normal(0, noise, (len(sf.ids), n_features))
    from extract.extraction import feature_path
    path = feature_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    feature_store.create(tmp, sf.ids, n_features, "float32", 64, {"backbone": "synthetic"})
    for chunk in feature_store.pending_chunks(tmp):
        rows = slice(chunk * 64, (chunk + 1) * 64)
        feature_store.commit_chunk(tmp, chunk, x[rows].astype(np.float32), np.ones(len(x[rows]), bool), [])
    feature_store.finish(tmp, path)
    return sf


def config(root, **heads):
    return configs.from_dict({
        "experiment": {"name": "h", "runs_dir": str(root)},
        "dataset": {"n_images": 400},
        "heads": {"head": "paper_mlp", "hidden": [16, 8], "optimizer": "adadelta", "learning_rate": 1.0,
                  "epochs": 3, "batch_size": 32, **heads},
    }, source="test")


def probabilities(cfg, run):
    with h5py.File(trainer.run_dir(cfg, run) / "predictions.h5", "r") as h5:
        return h5["probabilities"][:]


def test_batched_stack_equals_each_head_alone(tmp_path):
    cfg = config(tmp_path / "stack")
    make_features(cfg)
    trainer.train(cfg, only={"fold": "2"}, n_jobs=1)
    runs = [trainer.HeadRun(1, r, m) for r in cfg.splits.ratios for m in cfg.heads.methods]
    alone = config(tmp_path / "alone")
    make_features(alone)
    for run in runs[::5]:
        trainer.train(alone, only={"fold": "2", "ratio": str(run.ratio), "method": run.method}, n_jobs=1)
        np.testing.assert_allclose(probabilities(cfg, run), probabilities(alone, run), atol=1e-5)


def test_two_jobs_equal_one_and_reruns_skip(tmp_path, capsys):
    one = config(tmp_path / "one", head="linear", epochs=2)
    two = config(tmp_path / "two", head="linear", epochs=2)
    make_features(one)
    make_features(two)
    trainer.train(one, only={"method": "ce", "ratio": "0.5"}, n_jobs=1)
    trainer.train(two, only={"method": "ce", "ratio": "0.5"}, n_jobs=2)
    for k in range(4):
        run = trainer.HeadRun(k, 0.5, "ce")
        np.testing.assert_array_equal(probabilities(one, run), probabilities(two, run))
    trainer.train(one, only={"method": "ce", "ratio": "0.5"}, n_jobs=1)
    assert "every requested run is complete" in capsys.readouterr().out


def test_heads_learn_and_the_oracle_recovers_hidden_positives(tmp_path):
    cfg = config(tmp_path / "learn", hidden=[32], optimizer="adam", learning_rate=0.01, epochs=25)
    sf = make_features(cfg, noise=0.4)
    trainer.train(cfg, only={"fold": "1", "ratio": "0.75"}, n_jobs=1)
    test = sf.test_fold == 0
    from sklearn.metrics import average_precision_score
    recall = {}
    for method in cfg.heads.methods:
        probs = probabilities(cfg, trainer.HeadRun(0, 0.75, method))
        truth = sf.labels[test]
        assert average_precision_score(truth, probs, average="macro") > 2 * truth.mean()  # far above chance
        recall[method] = ((probs > 0.5) & (truth == 1)).sum() / truth.sum()
    assert recall["ignore_missing"] > recall["ce"] + 0.1


def test_bad_input_is_named(tmp_path):
    cfg = config(tmp_path / "bad")
    with pytest.raises(ValueError, match="does not exist; run `make splits`"):
        trainer.train(cfg)
    make_features(cfg)
    with pytest.raises(ValueError, match="--only method=focal is not in"):
        trainer.train(cfg, only={"method": "focal"})
    with pytest.raises(ValueError, match="--only ratio=0.3 is not in"):
        trainer.train(cfg, only={"ratio": "0.3"})
    wide = config(tmp_path / "bad", hidden=[2**21])
    with pytest.raises(ValueError, match="GiB are free"):
        trainer.train(wide)
