"""Run a pretrained backbone once over every manifest image into the feature store.

Rows are processed in chunks of `chunk_rows` (a multiple of the batch size keeps batches
aligned): each chunk is decoded, run through the frozen network in inference mode, written and
committed. A rerun resumes at the first uncommitted chunk and writes exactly what one
uninterrupted run writes: a chunk's content depends only on its rows. `--shard i/n` takes the
i-th of n contiguous runs of chunks, into its own file; `python -m features merge` joins them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

import configs
from configs.progress import Progress
from features import store
from splits import datasets

from . import checkpoints, images, preprocessing, registry


@dataclass(frozen=True)
class Plan:
    """What one extraction computes: resolved from the config and the backbone's defaults."""
    backbone: str
    endpoint: str
    image_size: int
    preprocessing: str
    pooling: str
    dtype: str

    @classmethod
    def from_config(cls, cfg) -> Plan:
        ex = cfg.extract
        spec = registry.get(ex.backbone)
        return cls(spec.name, ex.endpoint or spec.endpoint, ex.image_size or spec.image_size,
                   ex.preprocessing or spec.preprocessing, ex.pooling or spec.pooling, ex.dtype)

    def pooled(self, end_points: dict):
        """The endpoint tensor, pooled over space as `pooling` says ("none": left as it is)."""
        if self.endpoint not in end_points:
            raise ValueError(f"{self.backbone} has no endpoint {self.endpoint!r}; "
                             f"known: {', '.join(sorted(end_points))}")
        net = end_points[self.endpoint]
        if self.pooling == "avg":
            return tf.reduce_mean(net, axis=[1, 2])
        if self.pooling == "max":
            return tf.reduce_max(net, axis=[1, 2])
        return net

    @property
    def tag(self) -> str:
        return f"{self.backbone}_{self.endpoint.replace('/', '-')}_{self.image_size}_{self.preprocessing}_{self.pooling}"


def feature_path(cfg, shard: tuple[int, int] = (0, 1)) -> Path:
    """runs/<name>/features/<backbone>_<endpoint>_<size>_<preprocessing>_<pooling>[.shard-i-of-n].h5"""
    base = cfg.run_dir / "features" / Plan.from_config(cfg).tag
    return base.with_suffix(".h5") if shard[1] == 1 else Path(f"{base}.shard-{shard[0]}-of-{shard[1]}.h5")


def shard_rows(n_rows: int, chunk_rows: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Rows [start, stop) of shard i of n: contiguous whole chunks."""
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"--shard {index}/{count}: need 0 <= i < n")
    n_chunks = -(-n_rows // chunk_rows)
    first, last = index * n_chunks // count, (index + 1) * n_chunks // count
    return first * chunk_rows, min(last * chunk_rows, n_rows)


class FeatureModel:
    """The frozen backbone in its own graph and session: (n, s, s, 3) [0, 255] -> (n, feat_dim)."""

    def __init__(self, plan: Plan, checkpoint: Path):
        spec = registry.get(plan.backbone)
        self.graph = tf.Graph()
        with self.graph.as_default():
            # seeded: random initialisers stay legal when another stage enabled op determinism
            tf.compat.v1.set_random_seed(0)
            self.images = tf.compat.v1.placeholder(tf.float32, [None, plan.image_size, plan.image_size, 3])
            _, end_points = spec.build(preprocessing.get(plan.preprocessing)(self.images), is_training=False)
            net = plan.pooled(end_points)
            self.feat_shape = tuple(net.shape.as_list()[1:])
            self.features = tf.reshape(net, [-1, int(np.prod(self.feat_shape))])
            self.session = tf.compat.v1.Session(graph=self.graph)
            self.n_restored = checkpoints.restore(self.session, spec, checkpoint)

    @property
    def feat_dim(self) -> int:
        return int(np.prod(self.feat_shape))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self.features, {self.images: batch})


def extract_features(cfg, shard: tuple[int, int] = (0, 1), force: bool = False, on_chunk=None) -> Path:
    """Write (or resume) the config's feature store; return its path.

    `on_chunk(chunk)` is called after each committed chunk (progress, tests).
    """
    # setup: what to compute, where
    plan = Plan.from_config(cfg)
    ex = cfg.extract
    if ex.chunk_rows % ex.batch_size:
        raise ValueError(f"{cfg.source}: extract.chunk_rows = {ex.chunk_rows} must be a multiple of "
                         f"extract.batch_size = {ex.batch_size} (batches stay aligned across resumes)")
    out = feature_path(cfg, shard)
    if store.is_complete(out) and not force:
        print(f"{out}: already done (use --force to redo)")
        return out
    manifest = datasets.load(cfg)
    start, stop = shard_rows(len(manifest.ids), ex.chunk_rows, shard)
    spec = registry.get(plan.backbone)
    checkpoint = checkpoints.resolve(spec, ex.checkpoint, ex.cache_dir)

    # model
    model = FeatureModel(plan, checkpoint)
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    attrs = {"backbone": plan.backbone, "endpoint": plan.endpoint, "pooling": plan.pooling,
                 "image_size": plan.image_size, "preprocessing": plan.preprocessing,
                 "checkpoint": str(checkpoint), "checkpoint_sha256": checkpoints.sha256(checkpoint),
                 "feat_shape": list(model.feat_shape), "config": configs.to_json(cfg),
                 "versions": json.dumps(configs.versions())}
    if shard[1] > 1:
        attrs.update(row_offset=start, n_total=len(manifest.ids), shard=f"{shard[0]}/{shard[1]}")

    # the store: resume a matching partial file, else start anew
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    if force or not tmp.is_file() or not _same_run(tmp, attrs):
        store.create(tmp, manifest.ids[start:stop], model.feat_dim, plan.dtype, ex.chunk_rows, attrs)
    todo = store.pending_chunks(tmp)
    n_rows = stop - start
    print(f"{plan.backbone}:{plan.endpoint} at {plan.image_size}px ({plan.preprocessing}, pooling "
          f"{plan.pooling}) on {device}: {n_rows} images (rows {start}..{stop}), {model.feat_dim} "
          f"values each, {n_rows * model.feat_dim * np.dtype(plan.dtype).itemsize / 2**20:.0f} MiB; "
          f"{len(todo)} of {-(-n_rows // ex.chunk_rows)} chunks to do")

    # loop: decode, run, commit chunk by chunk
    rows_by_chunk = [(k, np.arange(start + k * ex.chunk_rows, min(start + (k + 1) * ex.chunk_rows, stop)))
                     for k in todo]
    progress = Progress(sum(len(r) for _, r in rows_by_chunk), "extract", "img")
    if rows_by_chunk:
        for chunk, batch, valid, errors in images.chunks(rows_by_chunk, manifest.paths, plan.image_size):
            features = np.concatenate([model(batch[i:i + ex.batch_size])
                                       for i in range(0, len(batch), ex.batch_size)])
            features[~valid] = 0
            store.commit_chunk(tmp, chunk, features.astype(plan.dtype), valid,
                               [(manifest.ids[r], m) for r, m in errors])
            progress.update(len(batch))
            if on_chunk:
                on_chunk(chunk)

    # save
    store.finish(tmp, out)
    with h5py.File(out, "r") as h5:
        n_invalid = int((~h5["valid"][:]).sum())
    print(f"{out}: complete; {n_invalid} unreadable image(s)" + (" (see error_ids / error_messages)" if n_invalid else ""))
    return out


def _same_run(path: Path, attrs: dict) -> bool:
    """A partial file may be resumed only if it was started with the same settings."""
    def plain(value):
        return np.asarray(value).tolist()

    with h5py.File(path, "r") as h5:
        return all(k in h5.attrs and plain(h5.attrs[k]) == plain(v) for k, v in attrs.items() if k != "versions")
