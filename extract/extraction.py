"""Run a pretrained backbone once over every image of `splits.h5` into the feature store.

The image list (ids, paths) comes from the splits store, so the feature rows line up with the
splits' rows by contract. Rows are processed in chunks of `chunk_rows` (a multiple of the batch
size keeps batches aligned): each chunk is decoded, run through the frozen network in
inference mode, written and committed. A rerun resumes at the first uncommitted chunk and
writes exactly what one uninterrupted run writes: a chunk's content depends only on its rows.
`--shard i/n` takes the i-th of n contiguous runs of chunks, into its own file;
`python -m features merge` joins them. A run whose images are unreadable beyond
`extract.max_invalid_share` (by default: all of them) fails and leaves nothing complete.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import artifacts
import configs
from features import store
from runtime import cluster
from runtime.progress import bar
from runtime.tf_quiet import tf
from splits import store as splits_store

from . import checkpoints, images, preprocessing, registry


@dataclass(frozen=True)
class Plan:
    """What one extraction computes: the resolved [extract] settings."""
    backbone: str
    endpoint: str
    image_size: int
    preprocessing: str
    pooling: str
    dtype: str

    @classmethod
    def from_config(cls, cfg) -> Plan:
        ex = cfg.extract
        return cls(ex.backbone, ex.endpoint, ex.image_size, ex.preprocessing, ex.pooling, ex.dtype)

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


def shard_rows(n_rows: int, chunk_rows: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Rows [start, stop) of shard i of n: contiguous whole chunks."""
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"--shard {index}/{count}: need 0 <= i < n")
    n_chunks = -(-n_rows // chunk_rows)
    first, last = index * n_chunks // count, (index + 1) * n_chunks // count
    return first * chunk_rows, min(last * chunk_rows, n_rows)


def checkpoint_identity(cfg, spec) -> tuple[Path, str]:
    """(checkpoint prefix, its identity): a configured checkpoint must exist and is identified
    by its sha256; the official one by its URL (fetched into the cache when absent)."""
    prefix = checkpoints.resolve(spec, cfg.extract.checkpoint, cfg.extract.cache_dir)
    return prefix, (checkpoints.sha256(prefix) if cfg.extract.checkpoint else f"official:{spec.url}")


def image_identity(path: str) -> str:
    """An image file's size and modification time (the cheap identity: hashing every image of
    a large set at every run would cost more than reading it); "missing" when it is absent."""
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def provenance(plan: Plan, ids, paths, checkpoint: str) -> dict:
    """What a feature store is made from: the resolved network settings, the checkpoint, the
    image list (keys, paths, and each image's size and modification time: an image replaced in
    place changes it) and the packages that run the network."""
    listing = hashlib.sha256("\n".join(f"{i}\t{p}\t{image_identity(p)}" for i,
                                       p in zip(ids, paths)).encode()).hexdigest()
    network = {f"extract.{key}": value for key, value in dataclasses.asdict(plan).items()}
    return {**network, "checkpoint": checkpoint, "images": listing, "rows": len(ids),
            "versions": artifacts.versions("tensorflow", "tf-slim")}


@dataclass(frozen=True)
class Job:
    """One extraction: the network of `plan` restored from `checkpoint`, over a list of images,
    into the store `out` (`features.store`): the study's images (`study_job`), or the images a
    model predicts (`model.predict`)."""
    plan: Plan
    checkpoint: Path  # the checkpoint prefix
    identity: str  # the checkpoint as the provenance records it (`checkpoint_identity`)
    ids: tuple  # row keys
    paths: tuple  # image files, one per key
    out: Path  # the single-file store; shards go beside it
    batch_size: int = 32
    chunk_rows: int = 256  # rows committed at once (the resume granularity): a multiple of batch_size
    # fail when more rows than this share are unreadable (1: only when all are)
    max_invalid_share: float = 1.0
    config_json: str = "{}"  # the store's `config` attribute
    where: str = ""  # what messages name as the image list's source


def study_job(cfg) -> Job:
    """The study's extraction: [extract]'s network over every image of splits.h5."""
    plan = Plan.from_config(cfg)
    sf = splits_store.load(splits_store.path(cfg))
    checkpoint, identity = checkpoint_identity(cfg, registry.get(plan.backbone))
    ex = cfg.extract
    return Job(plan, checkpoint, identity, tuple(sf.ids), tuple(sf.image_paths), store.path(cfg),
               ex.batch_size,
               ex.chunk_rows, ex.max_invalid_share, configs.to_json(cfg), f"{cfg.source}: dataset.root")


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
    """Write (or resume) the config's feature store (or one shard of it); return its path.

    `on_chunk(chunk)` is called after each committed chunk (progress, tests).
    """
    return run(study_job(cfg), shard, force, on_chunk, cfg)


def run(job: Job, shard: tuple[int, int] = (0, 1), force: bool = False, on_chunk=None, cfg=None) -> Path:
    """Write (or resume) `job`'s store (or one shard of it); return its path. With `cfg` whose
    [cluster] names a scheduler, the whole store is made as shard tasks there, then merged."""
    # setup: what to compute and where; reused when complete
    recipe = provenance(job.plan, job.ids, job.paths, job.identity)
    out = store.shard_path(job.out, shard)
    with artifacts.claim(out):
        if not artifacts.must_make(out, recipe, force):
            print(f"{out}: already done (use --force to redo)")
            return out
        check_images(job.paths, job.where)
        if cfg is not None and cfg.cluster.scheduler and shard == (0, 1):
            return _extract_on_cluster(cfg, job, out, force)
        return _extract(job, recipe, shard, out, on_chunk)


def _extract_on_cluster(cfg, job: Job, out: Path, force: bool) -> Path:
    """One task per contiguous shard ([cluster] extract_shards, default one per worker), each
    writing (or resuming) its own shard file as `--shard i/n` does, then the merge."""
    count = cfg.cluster.extract_shards or cfg.cluster.workers
    tasks = [cluster.Task(f"extract shard {i}/{count}", run, (job, (i, count), force)) for i in range(count)]
    shards = cluster.run(cfg, tasks)
    store.merge(shards, out)
    for shard in shards:  # the shards and their claims, now that the store holds them
        shard.unlink()
        Path(f"{shard}.lock").unlink(missing_ok=True)
    print(f"{out}: merged {count} shards")
    return out


def check_images(paths, where: str) -> None:
    """Fail before any work when none of the image files exists (a wrong dataset.root); `where`
    names what to check."""
    paths = list(paths)
    if paths and not any(Path(p).is_file() for p in paths[:: max(1, len(paths) // 200)] + paths[:1]):
        raise ValueError(f"none of the {len(paths)} images checked exists, e.g. {paths[0]}; check {where}")


def _extract(job: Job, recipe: dict, shard: tuple[int, int], out: Path, on_chunk) -> Path:
    """Build the network, then decode, run and commit chunk by chunk into `out`.tmp."""
    plan, ids, paths = job.plan, job.ids, job.paths
    start, stop = shard_rows(len(ids), job.chunk_rows, shard)
    model = FeatureModel(plan, job.checkpoint)
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    attrs = {"backbone": plan.backbone, "endpoint": plan.endpoint, "pooling": plan.pooling,
             "image_size": plan.image_size, "preprocessing": plan.preprocessing,
             "checkpoint": str(job.checkpoint), "checkpoint_sha256": checkpoints.sha256(job.checkpoint),
             "feat_shape": list(model.feat_shape), "config": job.config_json,
             "versions": json.dumps(artifacts.versions()), "fingerprint": artifacts.fingerprint(recipe)}
    if shard[1] > 1:
        attrs.update(row_offset=start, n_total=len(ids), shard=f"{shard[0]}/{shard[1]}")

    # the store: resume a partial file of the same run, else start anew
    tmp = out.with_name(out.name + ".tmp")
    artifacts.writable(out.parent)
    if not tmp.is_file() or not _same_run(tmp, attrs):
        store.create(tmp, ids[start:stop], model.feat_dim, plan.dtype, job.chunk_rows, attrs, recipe)
    todo = store.pending_chunks(tmp)
    n_rows = stop - start
    print(f"{plan.backbone}:{plan.endpoint} at {plan.image_size}px ({plan.preprocessing}, pooling "
          f"{plan.pooling}) on {device}: {n_rows} images (rows {start}..{stop}), {model.feat_dim} "
          f"values each, {n_rows * model.feat_dim * np.dtype(plan.dtype).itemsize / 2**20:.0f} MiB; "
          f"{len(todo)} of {-(-n_rows // job.chunk_rows)} chunks to do")
    artifacts.check_space(tmp, len(todo) * job.chunk_rows * model.feat_dim * np.dtype(plan.dtype).itemsize)

    # loop: decode, run, commit chunk by chunk
    rows_by_chunk = [(k, np.arange(start + k * job.chunk_rows, min(start + (k + 1) * job.chunk_rows, stop)))
                     for k in todo]
    progress = bar(sum(len(r) for _, r in rows_by_chunk), "extract", "img")
    if rows_by_chunk:
        for chunk, batch, valid, errors in images.chunks(rows_by_chunk, paths, plan.image_size):
            features = np.concatenate([model(batch[i:i + job.batch_size])
                                       for i in range(0, len(batch), job.batch_size)])
            features[~valid] = 0
            store.commit_chunk(tmp, chunk, features.astype(plan.dtype), valid,
                               [(ids[r], m) for r, m in errors])
            progress.update(len(batch))
            if on_chunk:
                on_chunk(chunk)
    progress.close()

    # save, unless too many images were unreadable
    check_invalid(tmp, n_rows, job.max_invalid_share)
    store.finish(tmp, out, recipe)
    n_invalid, _ = store.errors(out)
    print(f"{out}: complete; {n_invalid} unreadable image(s)"
          + (" (see error_ids / error_messages)" if n_invalid else ""))
    return out


def check_invalid(tmp: Path, n_rows: int, max_share: float) -> None:
    """ValueError (and the partial store removed) when more rows than `max_share` of `n_rows`,
    or all of them, hold no readable image."""
    n_invalid, first = store.errors(tmp)
    if n_invalid and (n_invalid == n_rows or n_invalid > max_share * n_rows):
        tmp.unlink()
        reasons = "; ".join(f"{key}: {message}" for key, message in first[:3])
        raise ValueError(f"{n_invalid} of {n_rows} images are unreadable (extract.max_invalid_share = "
                         f"{max_share}); "
                         f"nothing was kept. First reasons: {reasons}")


def _same_run(path: Path, attrs: dict) -> bool:
    """A partial file may be resumed only if it was started with the same settings."""
    def plain(value):
        return np.asarray(value).tolist()

    with artifacts.open_h5(path) as h5:
        return all(k in h5.attrs and plain(h5.attrs[k]) == plain(v) for k, v in attrs.items()
                   if k not in ("versions", "config"))
