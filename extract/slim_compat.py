"""Import tf-slim through here: it makes tf-slim 1.1.0 work on TensorFlow >= 2.15.

tf-slim 1.1.0's `slim.batch_norm` ends in TensorFlow's lazy loader, which asks for
`tf_keras.legacy_tf_layers`; tf-keras >= 2.15 ships that package as
`tf_keras.src.legacy_tf_layers` only, so the import fails with "No module named
'tf_keras.legacy_tf_layers'" (google-research/tf-slim issue #24, fixed upstream but never
released). Registering the package and its submodules under the old name fixes it.

    from extract.slim_compat import slim
"""
from __future__ import annotations

import importlib
import pkgutil
import sys


def alias_legacy_tf_layers() -> None:
    try:
        legacy = importlib.import_module("tf_keras.src.legacy_tf_layers")
    except ImportError:  # an older tf-keras still has the old name
        return
    sys.modules.setdefault("tf_keras.legacy_tf_layers", legacy)
    for module in pkgutil.iter_modules(legacy.__path__):
        full = importlib.import_module(f"tf_keras.src.legacy_tf_layers.{module.name}")
        sys.modules.setdefault(f"tf_keras.legacy_tf_layers.{module.name}", full)


alias_legacy_tf_layers()

import tf_slim as slim

__all__ = ["slim"]
