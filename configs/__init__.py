"""Experiment configuration: TOML files validated into frozen dataclasses.

    schema      every section and key with its default, once (the dataclasses: configs.schema.Heads, ...)
    loading     load(path) / from_dict(raw): coerce, check, apply heads.paper_exact, fill [extract]
    checks      the value rules; each broken one is a ValueError naming file, key and what is allowed
    provenance  to_json(cfg) beside every output, section(cfg, name) as provenance entries
    backbones   what a backbone name means in a config (TensorFlow-free)
Method names and parameters are checked against their registry by `heads.methods.check` (every
stage CLI from heads on, and `make check` before any stage).
"""
from .loading import from_dict, load, require_paths, with_scheduler
from .provenance import section, to_json
from .schema import LABEL_CODINGS, Config, Dataset, Search

__all__ = ["LABEL_CODINGS", "Config", "Dataset", "Search", "from_dict", "load", "require_paths",
           "section", "to_json",
           "with_scheduler"]
