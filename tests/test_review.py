"""The review loop: export, the page in a real browser, Label Studio's format, import, the next round."""
import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest

import configs
from model import directory, final, review, review_page
from tests.helpers import make_features

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def review_config(root, **dataset):
    return configs.from_dict({
        "experiment": {"name": "v", "runs_dir": str(root)},
        "dataset": {"n_images": 240, **dataset},
        "splits": {"ratios": [0.5], "validation": 0.2},
        "heads": {"head": "paper_mlp", "hidden": [16], "optimizer": "adam", "learning_rate": 0.01,
                  "epochs": 4,
                  "methods": ["ce"]},
        "model": {"method": "ce", "hide": 0.5, "folds": 2, "validation": 0.2},
    }, source="review.toml")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model with half of each row's positives hidden, its out-of-fold predictions and a review export."""
    cfg = review_config(tmp_path_factory.mktemp("review"))
    make_features(cfg)
    final.fit(cfg)
    folder = review.export(cfg, budget=40, max_per_image=2)
    return cfg, folder


def decisions_file(path, exported: dict, decided: list[tuple[str, str, str]]):
    path.write_text(json.dumps({"format": review_page.DECISIONS_FORMAT,
                                "version": review_page.DECISIONS_VERSION,
                                "review": exported["review"], "model": exported["model"],
                                "decisions": [{"key": k, "class": c, "decision": d} for k, c, d in decided]}))
    return path


def expected_labels(cfg, decided) -> pd.DataFrame:
    """labels.csv as the decisions imply: the trained labels (1 / -1), accepted 1, rejected 0."""
    oof = directory.out_of_fold(directory.load(cfg.model_dir))
    classes = directory.load(cfg.model_dir).classes
    codes = np.where(oof["observed"] == 1, 1, -1)
    row = {str(k): i for i, k in enumerate(oof["ids"])}
    for key, cls, decision in decided:
        codes[row[key], classes.index(cls)] = 1 if decision == "accept" else 0
    frame = pd.DataFrame(codes, columns=classes)
    frame.insert(0, "key", [str(k) for k in oof["ids"]])
    return frame


def test_the_export_writes_a_page_label_studio_tasks_and_config_of_the_top_suggestions(fitted):
    from xml.etree import ElementTree
    cfg, folder = fitted
    exported = review.read_review(folder)
    suggested = exported["suggestions"]
    assert len(suggested) == 40 and [s["rank"] for s in suggested] == list(range(1, 41))
    tasks = json.loads((folder / "tasks.json").read_text())
    assert sum(len(t["predictions"][0]["result"][0]["value"]["choices"]) for t in tasks) == 40
    assert all(t["data"]["image"].endswith(".png") and t["data"]["review"] == exported["review"]
               for t in tasks)
    assert all(t["predictions"][0]["model_version"].startswith("cbwce-") for t in tasks)
    config = ElementTree.fromstring((folder / "labeling_config.xml").read_text())
    choices = config.find("Choices")
    assert choices.get("choice") == "multiple" and choices.get("toName") == "image"
    assert [c.get("value") for c in choices] == directory.load(cfg.model_dir).classes
    page = (folder / "review.html").read_text()
    assert "data:image/jpeg;base64," in page and "http://" not in page and "https://" not in page


def test_a_label_studio_export_imports_to_the_labels_of_the_equivalent_decisions_file(fitted, tmp_path):
    cfg, folder = fitted
    exported = review.read_review(folder)
    tasks = json.loads((folder / "tasks.json").read_text())
    decided = []
    for n, task in enumerate(tasks):  # the annotator keeps every other suggested class of a task
        offered = task["predictions"][0]["result"][0]["value"]["choices"]
        kept = offered[n % 2::2]
        task["annotations"] = [{"id": n, "was_cancelled": False, "result": [
            {"id": f"a{n}", "from_name": "labels", "to_name": "image", "type": "choices",
             "value": {"choices": kept}}]}]
        decided += [(task["data"]["key"], c, "accept" if c in kept else "reject") for c in offered]
    tasks.append({"data": {"key": tasks[0]["data"]["key"], "review": exported["review"]},
                  "annotations": [{"was_cancelled": True, "result": []}]})  # a skipped task decides nothing
    studio = tmp_path / "export.json"
    studio.write_text(json.dumps(tasks))
    from_studio = review.import_decisions(cfg, str(studio), out=str(tmp_path / "studio"))
    from_page = review.import_decisions(cfg, str(decisions_file(tmp_path / "d.json", exported, decided)),
                                        out=str(tmp_path / "page"))
    labels = pd.read_csv(from_studio / "labels.csv", dtype={"key": str})
    assert labels.equals(pd.read_csv(from_page / "labels.csv", dtype={"key": str}))
    assert labels.equals(expected_labels(cfg, decided))
    log = pd.read_csv(from_studio / "decisions.csv")
    assert len(log) == 40 and set(log["decision"]) == {"accept", "reject"}


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.append(("no-such-key", "c0", "accept")), "key 'no-such-key' is not a row of the model"),
    (lambda d: d.append((d[0][0], "no-such-class", "accept")), "class 'no-such-class' .* is not one of"),
    (lambda d: d.append((d[0][0], d[0][1], "reject" if d[0][2] == "accept" else "accept")),
     "is both accepted and rejected"),
])
def test_a_bad_decision_is_one_named_error_and_nothing_is_written(fitted, tmp_path, edit, message):
    cfg, folder = fitted
    exported = review.read_review(folder)
    decided = [(s["key"], s["class"], "accept") for s in exported["suggestions"][:3]]
    edit(decided)
    with pytest.raises(ValueError, match=message):
        review.import_decisions(cfg, str(decisions_file(tmp_path / "d.json", exported, decided)),
                                out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_an_unsuggested_entry_or_another_review_is_refused(fitted, tmp_path):
    cfg, folder = fitted
    exported = review.read_review(folder)
    oof = directory.out_of_fold(directory.load(cfg.model_dir))
    suggested = {(s["key"], s["class"]) for s in exported["suggestions"]}
    classes = exported["classes"]
    key, cls = next((str(k), c) for k in oof["ids"] for c in classes if (str(k), c) not in suggested)
    with pytest.raises(ValueError, match=f"key '{key}' class '{cls}' was accepted but was not suggested"):
        review.import_decisions(cfg,
                                str(decisions_file(tmp_path / "d.json", exported, [(key, cls, "accept")])),
                                out=str(tmp_path / "out"))
    other = dict(exported, review="0" * 64)
    with pytest.raises(ValueError, match="decisions of another review"):
        review.import_decisions(cfg, str(decisions_file(tmp_path / "e.json", other, [])),
                                out=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="suggestions of another model"):
        review.import_decisions(cfg,
                                str(decisions_file(tmp_path / "f.json", dict(exported, model="f" * 64), [])),
                                out=str(tmp_path / "out"))
    (tmp_path / "g.json").write_text("{}")
    with pytest.raises(ValueError, match="neither a review page's decisions file"):
        review.import_decisions(cfg, str(tmp_path / "g.json"), out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_second_round_on_the_reviewed_labels_never_suggests_a_decided_entry(fitted, tmp_path):
    cfg, folder = fitted
    exported = review.read_review(folder)
    decided = [(s["key"], s["class"], "accept" if n % 3 else "reject")
               for n, s in enumerate(exported["suggestions"])]
    out = review.import_decisions(cfg, str(decisions_file(tmp_path / "d.json", exported, decided)),
                                  out=str(tmp_path / "round1"))
    reviewed = dataclasses.replace(cfg.dataset, reviewed_labels=str(out / "labels.csv"))
    with pytest.raises(ValueError, match="model.hide = 0.5 with dataset.reviewed_labels"):
        final.check(dataclasses.replace(cfg, dataset=reviewed))
    second = dataclasses.replace(cfg, experiment=dataclasses.replace(cfg.experiment, name="v2"),
                                 dataset=dataclasses.replace(cfg.dataset,
                                                             reviewed_labels=str(out / "labels.csv"),
                                                             natural_missing_rate=0.4),
                                 model=dataclasses.replace(cfg.model, hide=0.0))
    sf = make_features(second)
    row = {str(k): i for i, k in enumerate(sf.ids)}
    for key, cls, decision in decided:  # the splits hold the decisions: positives and verified negatives
        i, j = row[key], sf.classes.index(cls)
        assert sf.labels[i, j] == (decision == "accept") and sf.known[i, j]
    final.fit(second)
    again = review.read_review(review.export(second, budget=40, max_per_image=2))
    assert not {(s["key"], s["class"]) for s in again["suggestions"]} & {(k, c) for k, c, _ in decided}


def browser():
    """Playwright's sync API and Debian's chromium, or a skip saying which is missing."""
    playwright = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (requirements.txt)")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no chromium on this machine: apt-get install chromium (.ci/run installs it)")
    return playwright, path


def test_the_page_keeps_clicks_across_a_reload_and_saves_exactly_them(fitted, tmp_path):
    playwright, chromium = browser()
    cfg, folder = fitted
    exported = review.read_review(folder)
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = launched.new_context(accept_downloads=True).new_page()
        page.goto((folder / "review.html").as_uri())
        rows = page.locator(".item")
        rows.nth(0).locator(".suggestion").nth(0).locator("button.accept").click()
        rows.nth(1).locator(".suggestion").nth(0).locator("button.reject").click()
        rows.nth(2).click()
        page.keyboard.press("a")  # the keyboard: accept the current row's first undecided suggestion
        page.reload()
        assert page.locator("#progress").text_content() == f"3 of {len(exported['suggestions'])} decided"
        assert rows.nth(0).locator(".suggestion").nth(0).get_attribute("data-state") == "accept"
        with page.expect_download() as download:
            page.keyboard.press("s")
        saved = tmp_path / "decisions.json"
        download.value.save_as(saved)
        launched.close()
    items = review.grouped(exported["suggestions"])
    decided = [(items[0]["key"], items[0]["suggestions"][0]["class"], "accept"),
               (items[1]["key"], items[1]["suggestions"][0]["class"], "reject"),
               (items[2]["key"], items[2]["suggestions"][0]["class"], "accept")]
    out = review.import_decisions(cfg, str(saved), out=str(tmp_path / "out"))
    assert pd.read_csv(out / "labels.csv", dtype={"key": str}).equals(expected_labels(cfg, decided))


def test_names_from_the_data_are_shown_as_text_and_run_no_script(tmp_path):
    playwright, chromium = browser()
    hostile = "<img src=x onerror=alert(1)>"
    key = "</script><script>alert(2)</script>"
    html = review_page.page({"review": "r" * 64, "model": "m" * 64},
                            [{"key": key, "thumbnail": "",
                              "suggestions": [{"class": hostile, "score": 0.9}]}])
    (tmp_path / "page.html").write_text(html)
    assert hostile not in html and key not in html  # the raw markup never reaches the file
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = launched.new_page()
        dialogs = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto((tmp_path / "page.html").as_uri())
        shown = page.locator(".suggestion .name").text_content()
        shown_key = page.locator(".key").text_content()
        images = page.locator("img").count()
        launched.close()
    assert shown == hostile and shown_key == key and images == 0 and not dialogs
