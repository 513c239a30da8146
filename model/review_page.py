"""The review page: one self-contained HTML file (no server, no network) where a person accepts
or rejects each suggested label, and saves the decisions for `python -m model review import`.

The data (keys, classes, scores, thumbnails) rides in a `<script type="application/json">`
block with every `<`, `>` and `&` escaped as JSON unicode escapes, so no string from the data
can close the block or open a tag; the page's script builds every element with `textContent`
and attributes it sets itself, never from markup, so a class named `<img src=x onerror=...>`
shows as text. Decisions are kept in the browser's localStorage under the review's id (a
reload loses nothing) and saved as a JSON decisions file (`DECISIONS_FORMAT`).

Keys: a accept, r reject, u undo (back to undecided), j / down next, k / up previous, s save.
"""
from __future__ import annotations

import json

DECISIONS_FORMAT, DECISIONS_VERSION = "cbwce-review-decisions", 1

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #222; }
header { position: sticky; top: 0; background: #fff; padding: .4em 0; border-bottom: 1px solid #ccc; }
.item { display: flex; gap: 1em; padding: .6em; border-bottom: 1px solid #eee; align-items: flex-start; }
.item.current { background: #eef4ff; }
.thumb { width: 128px; min-height: 40px; }
.thumb img { max-width: 128px; max-height: 128px; }
.key { font-family: monospace; font-size: .9em; word-break: break-all; }
.suggestion { display: flex; gap: .5em; align-items: center; margin: .15em 0; }
.suggestion.accept .name { color: #1a7f37; font-weight: bold; }
.suggestion.reject .name { color: #b3261e; text-decoration: line-through; }
.score { color: #666; font-size: .85em; }
button { cursor: pointer; }
"""

SCRIPT = """
(function () {
  const review = JSON.parse(document.getElementById("review-data").textContent);
  const storageKey = "cbwce-review:" + review.review;
  let decisions = {};
  try { decisions = JSON.parse(localStorage.getItem(storageKey) || "{}"); } catch (e) { decisions = {}; }
  let current = 0;
  const list = document.getElementById("items");
  const progress = document.getElementById("progress");
  const entry = (i, j) => i + "\\u0000" + j;

  function store() {
    localStorage.setItem(storageKey, JSON.stringify(decisions));
    let done = 0, total = 0;
    review.items.forEach((item, i) => item.suggestions.forEach((s, j) => {
      total += 1;
      if (decisions[entry(i, j)]) done += 1;
    }));
    progress.textContent = done + " of " + total + " decided";
  }

  function paint(i) {
    const row = list.children[i];
    row.classList.toggle("current", i === current);
    review.items[i].suggestions.forEach((s, j) => {
      const line = row.querySelectorAll(".suggestion")[j];
      const state = decisions[entry(i, j)] || "";
      line.classList.toggle("accept", state === "accept");
      line.classList.toggle("reject", state === "reject");
      line.dataset.state = state;
    });
  }

  function decide(i, j, state) {
    if (state) { decisions[entry(i, j)] = state; } else { delete decisions[entry(i, j)]; }
    store();
    paint(i);
  }

  function decideCurrent(state) {
    const item = review.items[current];
    const j = item.suggestions.findIndex((s, k) => !decisions[entry(current, k)]);
    if (state === "") {
      const last = item.suggestions.map((s, k) => k).filter(k => decisions[entry(current, k)]).pop();
      if (last !== undefined) decide(current, last, "");
      return;
    }
    if (j >= 0) decide(current, j, state);
    if (item.suggestions.every((s, k) => decisions[entry(current, k)])) move(1);
  }

  function move(step) {
    const before = current;
    current = Math.max(0, Math.min(review.items.length - 1, current + step));
    paint(before);
    paint(current);
    list.children[current].scrollIntoView({block: "nearest"});
  }

  function button(text, onClick, name) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.className = name;
    b.addEventListener("click", onClick);
    return b;
  }

  review.items.forEach((item, i) => {
    const row = document.createElement("div");
    row.className = "item";
    row.dataset.index = String(i);
    const thumb = document.createElement("div");
    thumb.className = "thumb";
    if (item.thumbnail) {
      const img = document.createElement("img");
      img.setAttribute("src", item.thumbnail);
      img.setAttribute("alt", item.key);
      thumb.appendChild(img);
    }
    row.appendChild(thumb);
    const body = document.createElement("div");
    const key = document.createElement("div");
    key.className = "key";
    key.textContent = item.key;
    body.appendChild(key);
    item.suggestions.forEach((s, j) => {
      const line = document.createElement("div");
      line.className = "suggestion";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = s.class;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = s.score.toFixed(3);
      line.append(name, score, button("accept", () => { current = i; decide(i, j, "accept"); }, "accept"),
                  button("reject", () => { current = i; decide(i, j, "reject"); }, "reject"),
                  button("undo", () => { current = i; decide(i, j, ""); }, "undo"));
      body.appendChild(line);
    });
    row.appendChild(body);
    row.addEventListener("click", () => { const before = current; current = i; paint(before); paint(i); });
    list.appendChild(row);
  });

  function save() {
    const out = [];
    review.items.forEach((item, i) => item.suggestions.forEach((s, j) => {
      const state = decisions[entry(i, j)];
      if (state) out.push({key: item.key, class: s.class, decision: state});
    }));
    const file = {format: review.decisions_format, version: review.decisions_version, review: review.review,
                  model: review.model, decisions: out};
    const blob = new Blob([JSON.stringify(file, null, 1)], {type: "application/json"});
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "decisions.json";
    document.body.appendChild(link);
    link.click();
    link.remove();
  }

  document.getElementById("save").addEventListener("click", save);
  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT") return;
    const actions = {a: () => decideCurrent("accept"), r: () => decideCurrent("reject"),
                     u: () => decideCurrent(""), j: () => move(1), ArrowDown: () => move(1),
                     k: () => move(-1), ArrowUp: () => move(-1), s: save};
    if (actions[event.key]) { event.preventDefault(); actions[event.key](); }
  });
  review.items.forEach((item, i) => paint(i));
  store();
})();
"""


def embedded_json(value) -> str:
    """`value` as JSON safe inside a <script> block: `<`, `>` and `&` as unicode escapes."""
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page(review: dict, items: list[dict]) -> str:
    """The whole page: `review` (id, model fingerprint, title) and `items` ([{key, thumbnail (a
    data: URI or ""), suggestions: [{class, score}]}])."""
    data = {"review": review["review"], "model": review["model"], "items": items,
            "decisions_format": DECISIONS_FORMAT, "decisions_version": DECISIONS_VERSION}
    n = sum(len(item["suggestions"]) for item in items)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
         "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"),
        "<title>Review suggested labels</title>",
        f"<style>{STYLE}</style></head><body>",
        ("<header><strong>Review suggested labels</strong> "
         f"({len(items)} images, {n} suggestions) <span id=\"progress\"></span> "
         '<button type="button" id="save">save decisions (s)</button>'
         "<div>keys: a accept, r reject, u undo, j / k next / previous, s save; decisions are kept in this "
         "browser until you save them</div></header>"),
        '<main id="items"></main>',
        f'<script type="application/json" id="review-data">{embedded_json(data)}</script>',
        f"<script>{SCRIPT}</script>",
        "</body></html>",
        "",
    ])
