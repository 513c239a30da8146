"""python -m model fit --config C [--fold K --protocol P] [--force]       the final model (model.final)
python -m model predict (--model DIR | --config C) (--images FOLDER|LIST | --features FILE) [--top-k K]
python -m model suggest (--model DIR | --config C [--protocol P --fold K --method M]) [--max-per-image N]
python -m model export (--model DIR | --config C) [--out DIR]           a TensorFlow SavedModel of it
python -m model check --config C                                        [model] against the registry
python -m model review export --config C [--budget N] [--max-per-image K] [--out DIR]  to decide
python -m model review import --config C FILE [--out DIR]              the decisions as labels"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import configs
from runtime.cli import run_cli


def model_path(args) -> Path:
    """The model directory a command reads: --model, else the [model] dir of --config."""
    if args.model:
        return Path(args.model)
    return configs.load(args.config).model_dir


def fit_command(args) -> None:
    from .final import fit
    cfg = configs.with_scheduler(configs.load(args.config), args.scheduler)
    fit(cfg, fold=args.fold, protocol=args.protocol, force=args.force)


def check_command(args) -> None:
    from .final import check
    cfg = configs.load(args.config)
    check(cfg)
    print(f"{cfg.source}: [model] valid")


def predict_command(args) -> None:
    from .predict import predict
    dataset = configs.Dataset(features_key=args.features_key, id_column=args.id_column,
                              n_labels=args.n_labels,
                              labels_first=args.labels_first, header=not args.no_header)
    predict(model_path(args), args.images, args.features, args.out, args.threshold, args.top_k,
            args.checkpoint,
            args.scheduler, dataset, args.force)


def export_command(args) -> None:
    from .export import export
    export(model_path(args), args.out, args.checkpoint)


def suggest_command(args) -> None:
    """`model suggest` from a model directory, or from a study's fold (--protocol)."""
    from heads import methods
    from splits.store import protocol_dir

    from . import directory as model_directory
    from . import suggest
    if args.protocol:
        if not args.config:
            raise ValueError("--protocol names a study's protocol: give the study's --config")
        cfg = configs.load(args.config)
        if args.method:
            methods.get(args.method)
        annotation = suggest.from_study(cfg, args.protocol, args.fold, args.method)
        name = f"{protocol_dir(annotation['protocol'])}_fold{args.fold}" + (f"_{args.method}"
                                                                            if args.method else "")
        out = Path(args.out) if args.out else cfg.run_dir / "suggestions" / f"{name}.csv"
        suggest.suggest(annotation, out, args.source, args.estimator, args.max_per_image, args.budget)
        return
    path = model_path(args)
    with model_directory.reading(path):  # a fit replacing the model meanwhile is refused
        annotation = suggest.from_model(path)
        out = Path(args.out) if args.out else path / "suggestions.csv"
        suggest.suggest(annotation, out, args.source, args.estimator, args.max_per_image, args.budget)


def review_command(args) -> None:
    from . import review
    cfg = configs.load(args.config)
    if args.step == "export":
        review.export(cfg, args.budget, args.max_per_image, args.out, args.image_url, args.source,
                      args.estimator,
                      args.thumbnail)
    else:
        review.import_decisions(cfg, args.file, args.out, args.review, args.force)


def add_review(sub) -> None:
    p = sub.add_parser("review",
                       help="the suggestions out for a person to accept or reject, the decisions back in")
    steps = p.add_subparsers(dest="step", required=True)
    e = steps.add_parser("export",
                         help="review.html, a Label Studio import file and its config (model.review)")
    e.add_argument("--config", default=None)
    e.add_argument("--budget", type=int, default=0, help="suggestions in all (0: no limit)")
    e.add_argument("--max-per-image", type=int, default=3)
    e.add_argument("--out", default="", help="the folder (default <model>/review)")
    e.add_argument("--image-url", default="", help="Label Studio: the images' URL prefix (+ the key), e.g. "
                   "http://host/images/; default: each image's path")
    e.add_argument("--source", default="", help="which score ranks the suggestions (as model suggest)")
    e.add_argument("--estimator", default="auto")
    e.add_argument("--thumbnail", type=int, default=128, help="the page's thumbnails in pixels (0: none)")
    i = steps.add_parser("import", help="a decisions file or a Label Studio JSON export -> labels.csv")
    i.add_argument("file")
    i.add_argument("--config", default=None)
    i.add_argument("--out", default="", help="the folder (default runs/<name>/reviews/<review id>)")
    i.add_argument("--review", default="", help="the export's folder (default <model>/review)")
    i.add_argument("--force", action="store_true", help="replace a labels.csv of other decisions in --out")


def add_model_source(p) -> None:
    p.add_argument("--model", default="", help="a model directory (python -m model fit)")
    p.add_argument("--config", default=None, help="instead of --model: the config whose [model] dir to read")


def add_fit(sub) -> None:
    p = sub.add_parser("fit",
                       help="the final model: [model] method on every labelled row, into a model directory")
    p.add_argument("--config", default=None)
    p.add_argument("--fold", type=int, default=None,
                   help="train on this fold of the study's splits instead (1-based)")
    p.add_argument("--protocol", default=None,
                   help="with --fold: the protocol's labels (a ratio, or single_positive)")
    p.add_argument("--scheduler", default=None,
                   help="local, or a Dask scheduler address (overrides [cluster])")
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("check", help="[model] of a config against the method registry")
    p.add_argument("--config", default=None)


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="a model's probabilities and tags for new images or features")
    add_model_source(p)
    p.add_argument("--images", default="", help="a folder of images, or a file listing image paths")
    p.add_argument("--features", default="",
                   help="a feature store, or a table (.npy .npz .csv .tsv .arff .mat .h5)")
    p.add_argument("--out", default="", help="the CSV to write (default <model>/predictions/<input>.csv)")
    p.add_argument("--threshold", default="global",
                   help="global | class | 0.5 | a number: which scores are tags")
    p.add_argument("--top-k", type=int, default=None, help="tag each row's K highest classes instead")
    p.add_argument("--checkpoint", default="",
                   help="the backbone checkpoint, if not where the model recorded it")
    p.add_argument("--scheduler", default=None, help="extract on Dask: local, or a scheduler address")
    p.add_argument("--force", action="store_true", help="extract the images again")
    table = p.add_argument_group("reading a features table (as [dataset] keys)")
    table.add_argument("--features-key", default="", help=".npz / .mat / .h5: the features' key")
    table.add_argument("--id-column", default="", help="CSV: the column of row keys")
    table.add_argument("--n-labels", type=int, default=0,
                       help="CSV / ARFF: label columns to drop (last ones)")
    table.add_argument("--labels-first", action="store_true", help="the label columns come first")
    table.add_argument("--no-header", action="store_true", help="CSV: the first line is data")


def add_suggest_export(sub) -> None:
    p = sub.add_parser("suggest",
                       help="the labels the annotation probably lacks, ranked (and how good, when known)")
    add_model_source(p)
    p.add_argument("--protocol", default="",
                   help="a study instead: its fold's rows under this protocol (--config)")
    p.add_argument("--fold", type=int, default=1, help="with --protocol: whose training rows (1-based)")
    p.add_argument("--method", default="",
                   help="with --protocol: the study's heads of this method score the rows")
    p.add_argument("--out", default="",
                   help="the CSV (default <model>/suggestions.csv, or under runs/<name>/)")
    p.add_argument("--source", default="",
                   help="which score ranks the list: model (the default with a model), "
                   "combined, or an estimator (the default without)")
    p.add_argument("--estimator", default="auto", help="the confidence estimator (splits.weights)")
    p.add_argument("--max-per-image", type=int, default=3)
    p.add_argument("--budget", type=int, default=0, help="suggestions in all (0: no limit)")
    p = sub.add_parser("export",
                       help="a model as a TensorFlow SavedModel (images and features -> probabilities)")
    add_model_source(p)
    p.add_argument("--out", default="", help="the SavedModel directory (default <model>/saved_model)")
    p.add_argument("--checkpoint", default="",
                   help="the backbone checkpoint, if not where the model recorded it")


COMMANDS = {"fit": fit_command, "check": check_command, "predict": predict_command,
            "suggest": suggest_command,
            "export": export_command, "review": review_command}
FROM_A_MODEL = ("predict", "suggest", "export")  # the commands that read a model directory


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_fit(sub)
    add_predict(sub)
    add_suggest_export(sub)
    add_review(sub)
    args = parser.parse_args(argv)

    def action():
        if args.command in FROM_A_MODEL and bool(args.model) == bool(args.config):
            raise ValueError(f"model {args.command}: give the model: --model DIR, or --config C (its [model] "
                             "dir)")
        COMMANDS[args.command](args)

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
