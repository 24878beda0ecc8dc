// The Review tab: the reviewer's name (kept in localStorage), errors shown as text, and the
// NER span editor (offsets computed from the selection on the text's own characters).
(function () {
  "use strict";
  const KEY = "vz-reviewer";

  function reviewer() { return document.getElementById("reviewer"); }

  function errorBox(el) {
    const item = el && el.closest ? el.closest("article.review-item") : null;
    return (item && item.querySelector(".item-error")) || document.getElementById("review-error");
  }

  function showError(el, message) {
    const box = errorBox(el);
    if (box) box.textContent = message;  // text, never HTML: it echoes what was sent
  }

  function needReviewer(el) {
    const input = reviewer();
    if (input && input.value.trim()) return false;
    showError(el, "reviewer: empty. Fix: type your name in the Reviewer field; every decision records who took it");
    if (input) input.focus();
    return true;
  }

  // ---- the NER editor -------------------------------------------------------------------
  const editors = new WeakMap();

  function renderText(box, text, spans) {
    box.textContent = "";
    let at = 0;
    spans.slice().sort((a, b) => a[0] - b[0]).forEach(([s, e, t]) => {
      if (s < at) return;
      if (s > at) box.appendChild(document.createTextNode(text.slice(at, s)));
      const mark = document.createElement("mark");
      mark.className = "ent";
      mark.dataset.type = t;
      mark.appendChild(document.createTextNode(text.slice(s, e)));
      const small = document.createElement("small");
      small.textContent = t;
      mark.appendChild(small);
      box.appendChild(mark);
      at = e;
    });
    if (at < text.length) box.appendChild(document.createTextNode(text.slice(at)));
  }

  // characters of the text before a boundary point: the type labels (<small>) do not count
  function offsetOf(box, node, offset) {
    const point = document.createRange();
    point.setStart(node, offset);
    const walk = document.createTreeWalker(box, NodeFilter.SHOW_TEXT, {
      acceptNode: (n) => (n.parentElement.closest("small") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
    });
    let count = 0;
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      if (n === node) return count + offset;
      if (point.comparePoint(n, n.length) > 0) break;  // this text node lies after the point
      count += n.length;
    }
    return count;
  }

  function renderList(article, state) {
    const list = article.querySelector(".span-list");
    list.textContent = "";
    state.spans.forEach((span, i) => {
      const [s, e, t] = span;
      const li = document.createElement("li");
      const mark = document.createElement("mark");
      mark.className = "ent";
      mark.textContent = state.text.slice(s, e);
      const small = document.createElement("small");
      small.textContent = t;
      mark.appendChild(small);
      li.appendChild(mark);
      li.appendChild(document.createTextNode(` characters ${s}–${e} `));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "secondary remove-span";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove ${t} span “${state.text.slice(s, e)}”`);
      remove.addEventListener("click", () => { state.spans.splice(i, 1); redraw(article); });
      li.appendChild(remove);
      list.appendChild(li);
    });
    if (!state.spans.length) list.innerHTML = "<li class=\"muted\">No spans: saving records that the text has no entity.</li>";
  }

  function redraw(article) {
    const state = editors.get(article);
    renderText(article.querySelector(".ner-text"), state.text, state.spans);
    renderList(article, state);
  }

  function addSpan(article) {
    const state = editors.get(article);
    const box = article.querySelector(".ner-text");
    const sel = window.getSelection();
    if (!sel.rangeCount || sel.isCollapsed || !box.contains(sel.getRangeAt(0).commonAncestorContainer)) {
      showError(article, "Select some text in the text box first.");
      return;
    }
    const range = sel.getRangeAt(0);
    let start = offsetOf(box, range.startContainer, range.startOffset);
    let end = offsetOf(box, range.endContainer, range.endOffset);
    while (start < end && /\s/.test(state.text[start])) start++;
    while (end > start && /\s/.test(state.text[end - 1])) end--;
    if (start >= end) { showError(article, "The selection holds no text."); return; }
    const clash = state.spans.find(([s, e]) => start < e && s < end);
    if (clash) {
      showError(article, `The selection overlaps the span “${state.text.slice(clash[0], clash[1])}”: remove that span first.`);
      return;
    }
    state.spans.push([start, end, article.querySelector(".ent-type").value]);
    state.spans.sort((a, b) => a[0] - b[0]);
    sel.removeAllRanges();
    showError(article, "");
    redraw(article);
  }

  async function saveSpans(article) {
    if (needReviewer(article)) return;
    const body = new FormData();
    body.append("item", article.dataset.id);
    body.append("reviewer", reviewer().value.trim());
    body.append("spans", JSON.stringify(editors.get(article).spans));
    const url = document.getElementById("review-queue").dataset.decideUrl;
    const response = await fetch(url, { method: "POST", body, headers: { "X-CSRF-Token": document.body.dataset.csrf } });
    const text = await response.text();
    if (!response.ok) { showError(article, text); return; }
    const holder = document.createElement("div");
    holder.innerHTML = text;  // the server's own escaped template
    const fresh = holder.querySelector("article.review-item");
    countDecision(article);
    article.replaceWith(fresh);
    setUp(fresh);
    fresh.querySelector(".save-spans").focus();
  }

  function setUp(article) {
    if (article.dataset.kind !== "spans" || editors.has(article)) return;
    const data = JSON.parse(article.querySelector("script.ner-data").textContent);
    const state = { text: data.text, spans: data.spans.map((s) => s.slice(0, 3)) };
    editors.set(article, state);
    article.querySelector(".add-span").addEventListener("click", () => addSpan(article));
    article.querySelector(".use-predicted").addEventListener("click", () => { state.spans = data.predicted.map((s) => s.slice(0, 3)); redraw(article); });
    article.querySelector(".use-recorded").addEventListener("click", () => { state.spans = data.recorded.map((s) => s.slice(0, 3)); redraw(article); });
    article.querySelector(".save-spans").addEventListener("click", () => saveSpans(article));
    redraw(article);
  }

  // ---- page wiring ----------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    const input = reviewer();
    if (input) {
      input.value = localStorage.getItem(KEY) || "";
      input.addEventListener("input", () => localStorage.setItem(KEY, input.value.trim()));
    }
    document.querySelectorAll("article.review-item").forEach(setUp);
  });

  document.addEventListener("htmx:confirm", (e) => {
    if (e.target.closest && e.target.closest("form.decide") && needReviewer(e.target)) e.preventDefault();
  });

  document.addEventListener("htmx:responseError", (e) => {
    showError(e.detail.elt, e.detail.xhr.responseText);
  });

  // the "Decided" count goes up when an undecided item gets its first decision
  function countDecision(old) {
    const decided = document.getElementById("review-decided");
    if (decided && !old.classList.contains("decided")) decided.textContent = Number(decided.textContent) + 1;
  }

  document.addEventListener("htmx:beforeSwap", (e) => {
    const old = e.detail.target;
    if (e.detail.xhr.status === 200 && old.matches && old.matches("article.review-item")) countDecision(old);
  });

  document.addEventListener("htmx:afterSettle", (e) => {
    const fresh = e.detail.target && e.detail.target.id ? document.getElementById(e.detail.target.id) : null;
    if (fresh && fresh.matches("article.review-item")) {
      setUp(fresh);
      const button = fresh.querySelector("button");
      if (button) button.focus();
    }
  });
})();
