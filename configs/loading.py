"""TOML -> a `Config`: each key coerced to its field's type (a table to its section), the value
rules checked (`configs.checks`), heads.paper_exact applied and [extract]'s empty keys filled
from the backbone's defaults (`configs.backbones`), so the loaded config names every setting its
outputs depend on."""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path

from . import backbones
from .checks import check_choices, check_values
from .schema import DEFAULT_CONFIG, PAPER_EXACT, PAPER_EXACT_IRV2, Config, ConfigTypeError, GridTables


def _coerce(value, kind, where: str):
    """`value` as the annotated `kind`, or a ValueError naming `where` and what is allowed."""
    if kind is dict:
        return _parameter_tables(value, where)
    if kind is GridTables:
        return _grid_tables(value, where)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigTypeError(f"{where}: expected a table, got {value!r}")
        return _section(kind, {"enabled": True, **value}, where)
    origin = typing.get_origin(kind)
    if origin is tuple:
        item = typing.get_args(kind)[0]
        if not isinstance(value, list):
            raise ConfigTypeError(f"{where}: expected a list of {item.__name__}, got {value!r}")
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigTypeError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value



def _parameter_tables(value, where: str) -> dict:
    """{name: {parameter: number}}, as [heads.params.<name>] tables give it."""
    if not isinstance(value, dict):
        raise ConfigTypeError(f"{where}: expected tables [heads.params.<method>], got {value!r}")
    out = {}
    for name, table in value.items():
        if not isinstance(table, dict):
            raise ConfigTypeError(f"{where}.{name}: expected a table of parameter = number, got {table!r}")
        out[name] = {key: _coerce(number, float, f"{where}.{name}.{key}") for key, number in table.items()}
    return out



def _grid_tables(value, where: str) -> GridTables:
    """{name: {parameter: (numbers, ...)}}, as [heads.search.params.<name>] tables give it."""
    if not isinstance(value, dict):
        raise ConfigTypeError(f"{where}: expected tables [heads.search.params.<method>], got {value!r}")
    out = GridTables()
    for name, table in value.items():
        if not isinstance(table, dict):
            raise ConfigTypeError(f"{where}.{name}: expected a table of parameter = [values], got {table!r}")
        out[name] = {key: _coerce(values, tuple[float, ...], f"{where}.{name}.{key}") for key,
                     values in table.items()}
        for key, values in out[name].items():
            if not values:
                raise ValueError(f"{where}.{name}.{key} is empty; list at least one value")
    return out



def _section(cls, table: dict, where: str):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in table.items()})



def from_dict(raw: dict, source: str = "<dict>") -> Config:
    sections = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "source"}
    hints = typing.get_type_hints(Config)
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ValueError(f"{source}: unknown section [{unknown[0]}]; allowed: {', '.join(sections)}")
    parts = {}
    for name in sections:
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigTypeError(f"{source}: [{name}] must be a table, got {table!r}")
        parts[name] = _section(hints[name], table, f"{source} [{name}]")
    cfg = Config(**parts, source=source)
    check_values(cfg)
    cfg = _paper_exact(cfg,
                       {f"{s}.{k}" for s, table in raw.items() if isinstance(table, dict) for k in table})
    return _resolve_backbone(cfg)



def _resolve_backbone(cfg: Config) -> Config:
    """[extract] with every empty key filled from the backbone's defaults."""
    ex = cfg.extract
    spec = backbones.defaults(ex.backbone)
    return dataclasses.replace(cfg, extract=dataclasses.replace(
        ex, endpoint=ex.endpoint or spec.endpoint, image_size=ex.image_size or spec.image_size,
        preprocessing=ex.preprocessing or spec.preprocessing, pooling=ex.pooling or spec.pooling))



def _paper_exact(cfg: Config, given: set[str]) -> Config:
    """Apply heads.paper_exact (PAPER_EXACT); a key the file sets to another value is an error."""
    if not cfg.heads.paper_exact:
        return cfg
    fixed = dict(PAPER_EXACT)
    if cfg.extract.backbone == "inception_resnet_v2":
        fixed.update(PAPER_EXACT_IRV2)
    for key, value in fixed.items():
        section, name = key.split(".")
        current = getattr(getattr(cfg, section), name)
        if key in given and current != value:
            raise ValueError(f"{cfg.source}: heads.paper_exact sets {key} = {value!r} (the notebooks'), "
                             f"but the file sets {current!r}; remove one of them")
    for section in ("heads", "extract"):
        values = {k.split(".")[1]: v for k, v in fixed.items() if k.startswith(section + ".")}
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **values)})
    return cfg



def with_scheduler(cfg: Config, scheduler: str | None) -> Config:
    """The config with [cluster] scheduler set from the command line (`--scheduler`), checked."""
    if scheduler is None:
        return cfg
    cfg = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, scheduler=scheduler))
    check_choices(cfg)
    return cfg



def load(path: str | Path | None = None) -> Config:
    """Read and validate a TOML config (default: configs/demo.toml)."""
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist; the shipped ones are in configs/")
    with open(path, "rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: not valid TOML: {err}") from err
    return from_dict(raw, source=str(path))



def require_paths(cfg: Config, *keys: str) -> None:
    """Raise ValueError if a `section.key` path of the config does not exist."""
    for key in keys:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not value or not Path(value).exists():
            raise ValueError(f"{cfg.source}: {key} = {value!r} does not exist; "
                             f"point it at the {name} of your data")
