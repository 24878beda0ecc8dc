// verticalize console, runs and registry pages: show the server's 4xx answers (a refused
// promotion, a bad field) in place of the page, and keep at most two runs ticked to compare.
(function () {
  "use strict";

  document.body.addEventListener("htmx:beforeSwap", (e) => {
    const status = e.detail.xhr.status;
    const source = (e.detail.requestConfig && e.detail.requestConfig.elt) || e.detail.elt;
    if (status >= 400 && status < 500 && source && source.closest("[data-swap-errors]")) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });

  function syncPicks(form) {
    const boxes = Array.from(form.querySelectorAll("input.pick"));
    const ticked = boxes.filter((b) => b.checked).length;
    for (const b of boxes) b.disabled = !b.checked && ticked >= 2;
    const button = document.getElementById("compare-button");
    if (button) button.setAttribute("aria-disabled", String(ticked !== 2));
    const hint = document.getElementById("compare-hint");
    if (hint) hint.dataset.ticked = String(ticked);
  }

  const form = document.getElementById("runs-compare");
  if (form) {
    form.addEventListener("change", () => syncPicks(form));
    form.addEventListener("submit", (e) => {
      if (form.querySelectorAll("input.pick:checked").length !== 2) {
        e.preventDefault();
        const hint = document.getElementById("compare-hint");
        if (hint) hint.textContent = "Tick exactly two evaluated runs to compare them.";
      }
    });
    syncPicks(form);
  }
})();
