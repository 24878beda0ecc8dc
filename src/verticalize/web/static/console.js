// verticalize console: the live view of a project (server-sent events from /live/<project>)
// and small SVG line charts. No framework; htmx handles forms and partial updates.
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";

  function drawChart(svg, points, label) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const W = 320, H = 160, L = 44, B = 18, T = 8, R = 8;
    const box = document.createElementNS(NS, "rect");
    box.setAttribute("x", L); box.setAttribute("y", T);
    box.setAttribute("width", W - L - R); box.setAttribute("height", H - T - B);
    box.setAttribute("class", "frame");
    svg.appendChild(box);
    svg.dataset.points = String(points.length);
    if (!points.length) return;
    const xs = points.map(p => p[0]), ys = points.map(p => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const sx = x => L + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (W - L - R);
    const sy = y => H - B - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * (H - T - B);
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", points.map(p => sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" "));
    line.setAttribute("class", "series");
    svg.appendChild(line);
    if (points.length < 40) {
      for (const p of points) {
        const c = document.createElementNS(NS, "circle");
        c.setAttribute("cx", sx(p[0]).toFixed(1)); c.setAttribute("cy", sy(p[1]).toFixed(1));
        c.setAttribute("r", "2.5"); c.setAttribute("class", "point");
        svg.appendChild(c);
      }
    }
    const fmt = v => Math.abs(v) >= 0.01 || v === 0 ? v.toPrecision(3) : v.toExponential(1);
    const text = (x, y, s, anchor) => {
      const t = document.createElementNS(NS, "text");
      t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("text-anchor", anchor || "end");
      t.textContent = s; svg.appendChild(t);
    };
    text(L - 4, T + 10, fmt(y1)); text(L - 4, H - B, fmt(y0));
    text(L, H - 4, "step " + x0, "start"); text(W - R, H - 4, "step " + x1);
    const title = document.createElementNS(NS, "title");
    title.textContent = label + ": " + points.length + " points, last " + fmt(ys[ys.length - 1]);
    svg.appendChild(title);
  }

  window.vzDrawChart = drawChart;

  function startLive(section) {
    const url = section.dataset.url;
    const rows = [];
    let source = null, lastStatus = null;
    const series = {
      "chart-loss": r => r.event === "train" && r.loss !== undefined ? [r.step, r.loss] : null,
      "chart-lr": r => r.event === "train" && r.lr !== undefined ? [r.step, r.lr] : null,
      "chart-val": r => {
        if (r.event !== "eval") return null;
        const key = Object.keys(r).find(k => k.startsWith("val_") && k !== "val_loss");
        return key ? [r.step, r[key]] : (r.val_loss !== undefined ? [r.step, r.val_loss] : null);
      },
    };
    function redraw() {
      for (const [id, pick] of Object.entries(series)) {
        const svg = document.getElementById(id);
        if (svg) drawChart(svg, rows.map(pick).filter(Boolean), svg.getAttribute("aria-label"));
      }
    }
    function refreshJobs() {
      if (window.htmx) htmx.ajax("GET", location.pathname, { target: "#jobs", select: "#jobs", swap: "outerHTML" });
    }
    function open() {
      if (source) source.close();
      source = new EventSource(url + "?since=" + rows.length);
      source.addEventListener("rows", e => {
        const fresh = JSON.parse(e.data);
        if (fresh.reset) { rows.length = 0; }
        for (const r of fresh.rows) rows.push(r);
        redraw();
      });
      source.addEventListener("state", e => {
        const s = JSON.parse(e.data);
        for (const li of section.querySelectorAll(".stage")) {
          const st = s.stages[li.dataset.stage] || "pending";
          li.className = "stage " + st; li.querySelector("span").textContent = st;
        }
        const p = s.progress || {};
        document.getElementById("progress").textContent = p.step
          ? "step " + p.step + " / " + (p.total || "?") + (p.eta_s !== undefined ? " · ETA " + p.eta_s + " s" : "")
          : "No training steps yet.";
        const log = document.getElementById("log");
        if (log && log.textContent !== s.log) { log.textContent = s.log; log.scrollTop = log.scrollHeight; }
        const status = s.job ? s.job.id + ":" + s.job.status : null;
        if (status !== lastStatus) { if (lastStatus !== null) refreshJobs(); lastStatus = status; }
      });
      source.onerror = () => { source.close(); setTimeout(open, 2000); };
    }
    document.body.addEventListener("jobs-changed", () => { refreshJobs(); open(); });
    open();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const live = document.getElementById("live");
    if (live) startLive(live);
  });
})();
