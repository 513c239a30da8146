"""Checkpoints: find or download one, and restore only the backbone, loudly.

`resolve(spec, checkpoint, cache_dir)` returns a checkpoint prefix: the configured local path,
or the official tarball downloaded once into the cache (`~/.cache/cbwce/checkpoints` by
default, or `$CBWCE_CACHE`), with its sha256 recorded beside it.
`restore(session, spec, path)` restores every backbone variable and refuses to go on when a
variable is missing from the checkpoint, has another shape, or when nothing was restored.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

from runtime.tf_quiet import tf

from .registry import Backbone, backbone_variables, variable_name


def default_cache() -> Path:
    return Path(os.environ.get("CBWCE_CACHE", Path.home() / ".cache" / "cbwce")) / "checkpoints"


def checkpoint_files(prefix: Path) -> list[Path]:
    """The files of a checkpoint: a V1 file, or a V2 `.index` with its `.data-*` shards."""
    if prefix.is_file():
        return [prefix]
    return sorted(prefix.parent.glob(prefix.name + ".index")) + sorted(prefix.parent.glob(prefix.name
                                                                                          + ".data-*"))


def sha256(prefix: str | Path) -> str:
    digest = hashlib.sha256()
    for path in checkpoint_files(Path(prefix)):
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path) -> None:
    tmp = target.with_name(target.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
        total = int(response.headers.get("Content-Length", 0))
        done = 0
        while block := response.read(1 << 20):
            out.write(block)
            done += len(block)
            if total:
                print(f"\r{url}: {done / 2**20:.0f} / {total / 2**20:.0f} MiB", end="", file=sys.stderr)
    print(file=sys.stderr)
    os.replace(tmp, target)


def resolve(spec: Backbone, checkpoint: str = "", cache_dir: str = "") -> Path:
    """A checkpoint prefix for `spec`: the local path given, else the cached official one."""
    if checkpoint:
        prefix = Path(checkpoint)
        if not checkpoint_files(prefix):
            raise ValueError(f"checkpoint {prefix} not found (neither a file nor {prefix}.index); "
                             "check extract.checkpoint in your config")
        return prefix
    if not spec.url:
        raise ValueError(f"backbone {spec.name!r} has no official checkpoint; set extract.checkpoint "
                         "(for demo_cnn: run `python -m extract pretrain`)")
    cache = Path(cache_dir) if cache_dir else default_cache()
    prefix = cache / spec.checkpoint_file
    if checkpoint_files(prefix):
        return prefix
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / spec.url.rsplit("/", 1)[1]
    if not tarball.is_file():
        try:
            _download(spec.url, tarball)
        except OSError as err:
            raise ValueError(
                f"could not download {spec.url} ({err}). Download it by hand and put it at {tarball} "
                f"(or extract {spec.checkpoint_file} into {cache}), or set extract.checkpoint") from err
    with tarfile.open(tarball) as tar:
        tar.extractall(cache, filter="data")
    if not checkpoint_files(prefix):
        raise ValueError(f"{tarball} does not hold {spec.checkpoint_file}; delete it and retry")
    (cache / (spec.checkpoint_file + ".sha256")).write_text(sha256(prefix) + "\n")
    return prefix


def check(spec: Backbone, prefix: str | Path, variables) -> list[str]:
    """The checkpoint names of `variables`; ValueError when one is missing or has another shape."""
    if not variables:
        raise ValueError(f"the graph holds no variable under {spec.scope}/; nothing to restore")
    stored = tf.train.load_checkpoint(str(prefix)).get_variable_to_shape_map()
    names = [variable_name(v) for v in variables]
    missing = [name for name in names if name not in stored]
    if missing:
        raise ValueError(f"{prefix} lacks {len(missing)} of {len(variables)} {spec.name} variables, e.g. "
                         + ", ".join(missing[:10]))
    wrong = [(name, tuple(stored[name]), tuple(v.shape.as_list())) for name, v in zip(names, variables)
             if tuple(stored[name]) != tuple(v.shape.as_list())]
    if wrong:
        raise ValueError(f"{prefix}: shapes differ (name, checkpoint, graph): "
                         + "; ".join(f"{n} {a} vs {b}" for n, a, b in wrong[:10]))
    skipped = [n for n in stored if any(n.startswith(s + "/") for s in spec.exclude)]
    print(f"restoring {len(variables)} {spec.name} variables from {prefix}; "
          f"skipping {len(skipped)} in {', '.join(spec.exclude)}")
    return names


def restore(session, spec: Backbone, prefix: str | Path) -> int:
    """Restore the backbone variables of the default graph from `prefix`; return their count."""
    variables = backbone_variables(spec)
    names = check(spec, prefix, variables)
    tf.compat.v1.train.Saver(var_list=dict(zip(names, variables))).restore(session, str(prefix))
    return len(variables)
