"""The config as outputs record it: the whole resolved config as JSON beside every output, and a
section as flat provenance entries {"section.key": value} (`artifacts` compares them)."""
from __future__ import annotations

import dataclasses
import json

from .schema import Config


def to_json(cfg: Config) -> str:
    """The resolved config as JSON, written beside every output."""
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)



# Keys added after runs were made: left out of provenance at these values, so those runs stay valid.
SILENT_DEFAULTS = {"heads.standardize": False, "dataset.reviewed_labels": ""}



def section(cfg: Config, name: str, exclude: tuple[str, ...] = ()) -> dict:
    """A config section as flat provenance entries {"name.key": value} (SILENT_DEFAULTS left out)."""
    entries = {f"{name}.{key}": value for key, value in dataclasses.asdict(getattr(cfg, name)).items()
               if key not in exclude}
    return {key: value for key, value in entries.items()
            if key not in SILENT_DEFAULTS or value != SILENT_DEFAULTS[key]}
