"""The review loop: a model's suggestions out for a person to accept or reject, the decisions
back in as labels for the next fit.

    python -m model review export --config C [--budget N] [--max-per-image K] [--out DIR]
    python -m model review import --config C FILE [--out DIR]

Export (`make review`) writes into DIR (default <model>/review/), for the top suggestions of
`model.suggest` (never an observed positive or a verified negative):
    review.json           what was suggested (key, class, score, rank), the model's fingerprint and
                          the review's id (written last: it marks the export complete)
    tasks.json            a Label Studio import file: one task per image, `data.image` its path
                          (or --image-url PREFIX + its key, for served images), `data.key`,
                          `data.review`, and the suggestions as a prediction (a `choices` result
                          of the suggested classes, the model's version, the best score)
    labeling_config.xml   the matching Label Studio config: the image (or the key, for feature
                          tables) and a multiple-choice `Choices` control over every class
    review.html           the same suggestions as one self-contained page (`model.review_page`)
Import reads a Label Studio JSON export (a task's annotation: a suggested class that is chosen is
accepted, one that is not chosen is rejected; a cancelled annotation decides nothing) or the
page's decisions file, checks every decision against review.json, and writes into DIR (default
runs/<name>/reviews/<review id>/):
    labels.csv            key, then one column per class coded 1 / 0 / -1: 1 a positive (as the
                          model trained on it, or accepted), 0 a verified negative (as the data had
                          it, or rejected), -1 unknown (every other label: not decided)
    decisions.csv         the log: key, class, decision, score, rank, the file it came from
Both CSVs are spreadsheet-safe (`artifacts.cells`: a key or class name a spreadsheet would run
as a formula carries a leading single quote, which `[dataset] reviewed_labels` drops again).
The original labels are never written to. The next round points `[dataset] reviewed_labels` at
labels.csv; `make splits heads` / `make model` retrain on it, and the refitted model's
suggestions never include a decided entry (accepted ones are positives, rejected ones verified
negatives). A key or class the model does not know, a decision on an entry that was not
suggested, two conflicting decisions, a file of another review or model: one named error each,
nothing written.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd

import artifacts
from splits import store as splits_store

from . import directory, review_page, suggest

FORMAT, VERSION = "cbwce-review", 1
MANIFEST = "review.json"
CONTROL = "labels"  # the Choices control's name in the Label Studio config
CODES = {"positive": 1, "negative": 0, "unknown": -1}  # labels.csv's coding ([dataset] reviewed_labels)


class Decision(NamedTuple):
    key: str
    cls: str
    decision: str  # accept | reject
    source: str  # the file it came from


# export -----------------------------------------------------------------------------------------------------


def export(cfg, budget: int = 0, max_per_image: int = 3, out: str = "", image_url: str = "", source: str = "",
           estimator: str = "auto", thumbnail: int = 128) -> Path:
    """Write the review files of the config's model (module docstring); their folder. The model
    is claimed for reading meanwhile (`model.directory.reading`)."""
    with directory.reading(cfg.model_dir):
        return _export(cfg, budget, max_per_image, out, image_url, source, estimator, thumbnail)


def _export(cfg, budget: int, max_per_image: int, out: str, image_url: str, source: str, estimator: str,
            thumbnail: int) -> Path:
    # the suggestions: the model's rows ranked as `model suggest` ranks them
    model = directory.load(cfg.model_dir)
    annotation = suggest.from_model(model.path)
    ranked = suggest.suggestions(annotation, source, estimator, max_per_image, budget)
    table = ranked.table
    if not len(table):
        raise ValueError(f"{model.path}: no label to suggest (every entry is observed or verified); "
                         "nothing to review")
    paths = image_paths(cfg, annotation["keys"])

    # the files: review.json last, once the others are written
    target = Path(out) if out else model.path / "review"
    artifacts.writable(target)
    suggested = [{"key": str(k), "class": str(c), "score": float(s), "rank": int(r)}
                 for k, c, s, r in zip(table["key"], table["class"], table["score"], table["rank"])]
    review_id = hashlib.sha256(json.dumps([model.meta["fingerprint"], suggested]).encode()).hexdigest()
    manifest = {"format": FORMAT, "version": VERSION, "review": review_id, "model": model.meta["fingerprint"],
                "model_dir": str(model.path), "classes": model.classes, "source": ranked.source,
                "suggestions": suggested, "complete": True}
    items = grouped(suggested)
    with_images = any(paths.get(item["key"]) for item in items)
    tasks = label_studio_tasks(items, paths, image_url, review_id, model.meta["fingerprint"], with_images)
    artifacts.write_text(target / "tasks.json", json.dumps(tasks, indent=1))
    artifacts.write_text(target / "labeling_config.xml", labeling_config(model.classes, with_images))
    page_items = [{**item, "thumbnail": thumbnail_uri(paths.get(item["key"], ""), thumbnail)}
                  for item in items]
    artifacts.write_text(target / "review.html", review_page.page(manifest, page_items))
    artifacts.write_text(target / MANIFEST, json.dumps(manifest, indent=1))
    print(f"{target}: {len(suggested)} suggestion(s) on {len(items)} row(s) by {ranked.source}: "
          "review.html (open it in a browser), tasks.json + labeling_config.xml (Label Studio); then "
          f"python -m model review import --config {cfg.source} FILE")
    return target


def image_paths(cfg, keys) -> dict:
    """{key: image path} of the model's rows from the study's splits.h5 ("" for feature rows)."""
    sf = splits_store.load(splits_store.path(cfg))
    paths = dict(zip(map(str, sf.ids), sf.image_paths))
    missing = [str(k) for k in keys if str(k) not in paths]
    if missing:
        raise ValueError(f"{cfg.model_dir}: row {missing[0]!r} is not in {sf.path} "
                         f"({len(missing)} of {len(keys)}); the model was fitted on other splits: refit it "
                         "(make model FORCE=1)")
    return paths


def grouped(suggested: list[dict]) -> list[dict]:
    """One item per row, in the order of its best-ranked suggestion: {key, suggestions: [{class, score}]}."""
    items: dict = {}
    for s in sorted(suggested, key=lambda s: s["rank"]):
        items.setdefault(s["key"], []).append({"class": s["class"], "score": s["score"]})
    return [{"key": key, "suggestions": value} for key, value in items.items()]


def label_studio_tasks(items, paths: dict, image_url: str, review_id: str, fingerprint: str,
                       with_images: bool) -> list[dict]:
    """Label Studio tasks with the suggestions as pre-annotations (its "predictions")."""
    to_name = "image" if with_images else "key"
    tasks = []
    for n, item in enumerate(items, 1):
        data = {"key": item["key"], "review": review_id,
                "suggested": ", ".join(f"{s['class']} ({s['score']:.2f})" for s in item["suggestions"])}
        if with_images:
            data["image"] = image_url + quote(item["key"]) if image_url else paths.get(item["key"], "")
        tasks.append({"id": n, "data": data, "predictions": [{
            "model_version": f"cbwce-{fingerprint[:12]}",
            "score": max(s["score"] for s in item["suggestions"]),
            "result": [{"id": f"t{n}-suggested", "from_name": CONTROL, "to_name": to_name, "type": "choices",
                        "value": {"choices": [s["class"] for s in item["suggestions"]]}}]}]})
    return tasks


def labeling_config(classes: list[str], with_images: bool) -> str:
    """The Label Studio labeling config: the image (or the key) and a multiple choice over the classes."""
    shown = '  <Image name="image" value="$image"/>' if with_images else '  <Text name="key" value="$key"/>'
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return ("<View>\n" + shown + "\n"
            '  <Header value="suggested: $suggested"/>\n'
            f'  <Choices name="{CONTROL}" toName="{"image" if with_images else "key"}" choice="multiple" '
            'showInLine="true">\n' + choices + "\n  </Choices>\n</View>\n")


def thumbnail_uri(path: str, size: int) -> str:
    """A JPEG thumbnail of an image as a data: URI ("" without an image, or when it cannot be read)."""
    if not path or not size:
        return ""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=80)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


# import -----------------------------------------------------------------------------------------------------


def read_review(folder: Path) -> dict:
    """review.json of a complete export; ValueError naming what is wrong."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder} holds no {MANIFEST}: export the review first "
                         "(python -m model review export --config C), or give its folder with --review DIR")
    try:
        review = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged ({err}); export the review again") from None
    if not isinstance(review, dict) or review.get("format") != FORMAT or review.get("version") != VERSION \
            or review.get("complete") is not True:
        raise ValueError(f"{path} is not a complete {FORMAT} version {VERSION} export; "
                         "export the review again")
    check_review(review, path)
    return review


def check_review(review: dict, path: Path) -> None:
    """ValueError naming the first key of review.json that import cannot take as it is: the
    review id (it names the output folder: 64 hex digits, never a path), the model's
    fingerprint, the classes, the suggestions ({key, class, score, rank} each)."""
    def refuse(key: str, value):
        raise ValueError(f"{path}: {key} is {directory.shown(value)}; the file was edited or damaged: "
                         "export the review again")

    for key in ("review", "model"):
        if not isinstance(review.get(key), str) or not re.fullmatch(r"[0-9a-f]{64}", review[key]):
            refuse(key, review.get(key))
    if not isinstance(review.get("classes"), list) or not all(isinstance(c, str) for c in review["classes"]):
        refuse("classes", review.get("classes"))
    suggested = review.get("suggestions")
    if not isinstance(suggested, list):
        refuse("suggestions", suggested)
    for n, item in enumerate(suggested):
        if not (isinstance(item, dict) and isinstance(item.get("key"), str)
                and isinstance(item.get("class"), str) and isinstance(item.get("score"), int | float)
                and isinstance(item.get("rank"), int)):
            refuse(f"suggestions[{n}]", item)


def read_decisions(path: Path, review: dict) -> list[Decision]:
    """The decisions of a file: the page's decisions file, or a Label Studio JSON export."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist: give the decisions file the review page saved, "
                         "or a Label Studio JSON export")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not JSON ({err}): give the review page's decisions file "
                         "or a Label Studio JSON export") from None
    if isinstance(data, dict) and data.get("format") == review_page.DECISIONS_FORMAT:
        return page_decisions(path, data, review)
    if isinstance(data, list):
        return label_studio_decisions(path, data, review)
    raise ValueError(f"{path} is neither a review page's decisions file "
                     f"(format {review_page.DECISIONS_FORMAT!r}) nor a Label Studio JSON export "
                     "(a list of tasks)")


def same_review(path: Path, review_id, model, review: dict) -> None:
    if model is not None and model != review["model"]:
        raise ValueError(f"{path} holds decisions on the suggestions of another model "
                         f"(fingerprint {str(model)[:12]}... vs {review['model'][:12]}...); "
                         "export a review of this model and decide those")
    if review_id != review["review"]:
        raise ValueError(f"{path} holds decisions of another review ({str(review_id)[:12]}... vs "
                         f"{review['review'][:12]}...); import it with the review it came from "
                         "(--review DIR)")


def page_decisions(path: Path, data: dict, review: dict) -> list[Decision]:
    if data.get("version") != review_page.DECISIONS_VERSION:
        raise ValueError(f"{path}: decisions file version {data.get('version')!r}; this version reads "
                         f"{review_page.DECISIONS_VERSION}")
    same_review(path, data.get("review"), data.get("model"), review)
    out = []
    for n, item in enumerate(data.get("decisions") or []):
        if not isinstance(item, dict) or item.get("decision") not in ("accept", "reject"):
            raise ValueError(f"{path}: decision {n + 1} is {item!r}; each is "
                             "{key, class, decision: accept | reject}")
        out.append(Decision(str(item.get("key")), str(item.get("class")), item["decision"], str(path)))
    return out


def label_studio_decisions(path: Path, tasks: list, review: dict) -> list[Decision]:
    """A suggested class chosen in a task's (not cancelled) annotation is accepted, one not chosen
    rejected; a chosen class that was not suggested is returned as an accept (and refused as such)."""
    suggested: dict = {}
    for s in review["suggestions"]:
        suggested.setdefault(s["key"], []).append(s["class"])
    out = []
    for n, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or "key" not in data:
            raise ValueError(f"{path}: task {n + 1} has no data.key: it is not a task of a review export")
        same_review(path, data.get("review"), None, review)
        key = str(data["key"])
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            chosen = {choice for result in annotation.get("result") or []
                      if result.get("from_name") == CONTROL and result.get("type") == "choices"
                      for choice in (result.get("value") or {}).get("choices") or []}
            for cls in suggested.get(key, []):
                out.append(Decision(key, cls, "accept" if cls in chosen else "reject", str(path)))
            unsuggested = sorted(chosen - set(suggested.get(key, [])))
            out += [Decision(key, str(cls), "accept", str(path)) for cls in unsuggested]
    return out


def checked(decisions: list[Decision], review: dict, keys: set[str]) -> dict:
    """{(key, class): Decision} after checking each against the model and the review: its key and
    class known, its entry suggested, no two decisions apart on one entry."""
    classes = set(review["classes"])
    suggested = {(s["key"], s["class"]) for s in review["suggestions"]}
    out: dict = {}
    for d in decisions:
        if d.key not in keys:
            raise ValueError(f"{d.source}: key {d.key!r} is not a row of the model "
                             f"({review.get('model_dir')}); decide only the review's suggestions")
        if d.cls not in classes:
            raise ValueError(f"{d.source}: class {d.cls!r} (key {d.key!r}) is not one of the model's "
                             f"{len(classes)} classes")
        if (d.key, d.cls) not in suggested:
            raise ValueError(f"{d.source}: key {d.key!r} class {d.cls!r} was {d.decision}ed but was not "
                             "suggested; a review decides its suggestions only (add other labels to your own "
                             "label file)")
        before = out.get((d.key, d.cls))
        if before is not None and before.decision != d.decision:
            raise ValueError(f"{d.source}: key {d.key!r} class {d.cls!r} is both accepted and rejected "
                             f"({before.source}); decide it once")
        out[(d.key, d.cls)] = d
    return out


def reviewed_labels(oof: dict, classes: list[str], decided: dict) -> np.ndarray:
    """(N, L) int8 in labels.csv's coding: the labels the model trained on with the decisions applied."""
    codes = np.full(oof["observed"].shape, CODES["unknown"], np.int8)
    codes[oof["observed"] == 1] = CODES["positive"]
    if oof.get("known") is not None:
        codes[oof["known"] & (oof["labels"] == 0)] = CODES["negative"]
    row = {str(k): i for i, k in enumerate(oof["ids"])}
    column = {c: j for j, c in enumerate(classes)}
    for (key, cls), d in decided.items():
        codes[row[key], column[cls]] = CODES["positive"] if d.decision == "accept" else CODES["negative"]
    return codes


def import_decisions(cfg, file: str, out: str = "", review_dir: str = "", force: bool = False) -> Path:
    """Read a decisions file or Label Studio export and write labels.csv and decisions.csv (module
    docstring); their folder. Nothing is written when any decision is refused. The model is
    claimed for reading meanwhile (`model.directory.reading`)."""
    with directory.reading(cfg.model_dir):
        return _import(cfg, file, out, review_dir, force)


def _import(cfg, file: str, out: str, review_dir: str, force: bool) -> Path:
    # what was suggested, by which model
    model = directory.load(cfg.model_dir)
    review = read_review(Path(review_dir) if review_dir else model.path / "review")
    same_review(Path(file), review["review"], model.meta["fingerprint"], review)
    oof = directory.out_of_fold(model)
    keys = set(map(str, oof["ids"]))

    # the decisions, checked
    decided = checked(read_decisions(Path(file), review), review, keys)
    if not decided:
        raise ValueError(f"{file} holds no decision: accept or reject some suggestions first")
    codes = reviewed_labels(oof, model.classes, decided)

    # the files, beside nothing of the user's
    target = Path(out) if out else cfg.run_dir / "reviews" / review["review"][:12]
    protect(cfg, target)
    labels = pd.DataFrame(codes, columns=model.classes)
    labels.insert(0, "key", [str(k) for k in oof["ids"]])
    rank = {(s["key"], s["class"]): s for s in review["suggestions"]}
    log = pd.DataFrame([{"key": d.key, "class": d.cls, "decision": d.decision, "score": rank[k]["score"],
                         "rank": rank[k]["rank"], "from": d.source} for k, d in decided.items()])
    labels_text = artifacts.csv_text(labels)
    existing = target / "labels.csv"
    if existing.is_file() and existing.read_text() != labels_text and not force:
        raise ValueError(f"{existing} exists and holds other labels; give another --out, "
                         "or --force to replace it")
    artifacts.writable(target)
    artifacts.write_csv(target / "decisions.csv", log)
    artifacts.write_text(existing, labels_text)
    accepted = int((log["decision"] == "accept").sum())
    rate = still_missing(oof, accepted)
    print(f"{existing}: {accepted} accepted, {len(log) - accepted} rejected of {len(review['suggestions'])} "
          f"suggested. For the next fit: [dataset] reviewed_labels = \"{existing}\", natural_missing_rate = "
          f"{rate:.3g} (the share of positives still missing if the model's estimate held), [model] hide = "
          "0; "
          "then make splits heads figures model (or make model FORCE=1)")
    return target


def still_missing(oof: dict, accepted: int) -> float:
    """The share of true positives the reviewed labels still lack, if the model's missing rate
    was right: (expected missing - accepted) / (observed + expected missing)."""
    rate = float(oof["attrs"]["missing_rate"])
    observed = float(oof["observed"].sum())
    expected = observed * rate / (1 - rate)
    return max(expected - accepted, 0.0) / max(observed + expected, 1.0)


def protect(cfg, target: Path) -> None:
    """ValueError when the output folder would hold one of the dataset's own label files."""
    ds = cfg.dataset
    own = [Path(p).resolve() for p in (ds.annotations, ds.labels, ds.features, ds.reviewed_labels) if p]
    for name in ("labels.csv", "decisions.csv"):
        if (target / name).resolve() in own:
            raise ValueError(f"--out {target}: {target / name} is one of the dataset's own files; "
                             "the review never writes over your labels: give another folder")
