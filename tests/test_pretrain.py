"""The demo's pretrained checkpoint restores through the real path and its features carry the labels."""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

import configs
import splits
from extract import extraction
from extract.pretrain import pretrain
from features.store import FeatureReader
from splits import store


def test_linear_probe_on_pretrained_features_is_far_above_chance(tmp_path):
    extract = {"pooling": "max", "batch_size": 32, "chunk_rows": 64, "pretrain_images": 800,
               "pretrain_epochs": 3,
               "checkpoint": str(tmp_path / "ckpt" / "model.ckpt")}
    cfg = configs.from_dict({"experiment": {"name": "p", "runs_dir": str(tmp_path)},
                             "dataset": {"n_images": 400, "min_labels": 0},
                             "extract": extract}, source="test")
    pretrain(cfg)
    [path] = splits.make(cfg)
    x = FeatureReader(extraction.extract_features(cfg)).rows(np.arange(400))
    y = store.load(path).labels
    train, test = np.arange(0, 250), np.arange(250, 400)
    scores = np.column_stack([LogisticRegression(max_iter=2000).fit(x[train],
                                                                    y[train, c]).predict_proba(x[test])[:, 1]
                              for c in range(y.shape[1])])
    keep = y[test].sum(0) > 0
    probe_map = average_precision_score(y[test][:, keep], scores[:, keep], average="macro")
    chance = y[test][:, keep].mean()  # the AP of a random ranking
    assert probe_map > chance + 0.4, (probe_map, chance)
