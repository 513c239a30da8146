"""Shared fixtures (helpers that are plain functions: `tests.helpers`); pyproject.toml puts the
repository root on sys.path."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PAPER_SPLITS = SHARED / "paper_splits"


def shared_or_skip(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared data (../shared/data) is not laid out beside this clone")
    return path


@pytest.fixture(scope="session")
def coco_splits(tmp_path_factory):
    """The paper's MSCOCO splits imported into a splits.h5 (skips without ../shared)."""
    import splits

    directory = shared_or_skip(PAPER_SPLITS / "labels_balanced_4labels")
    return splits.import_to(directory, tmp_path_factory.mktemp("coco") / "splits.h5")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A searched study of three methods on features that carry the labels, trained once per
    module (the final model's and the suggestions' tests)."""
    from heads import trainer
    from tests.helpers import make_features, study_config

    cfg = study_config(tmp_path_factory.mktemp("study"))
    sf = make_features(cfg)
    trainer.train(cfg, n_jobs=1)
    return cfg, sf
