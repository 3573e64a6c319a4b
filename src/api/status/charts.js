// Meridian status page, charts: queries per second by rcode and answers per second by region
// over the last 15 minutes, from /v1/history (the server samples its counters every 10 s).
// Small inline SVG line charts built with createElementNS and textContent; no library.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const PERIOD_MS = typeof REFRESH_MS === "number" ? Math.max(REFRESH_MS, 5000) : 5000;
  const PALETTE = ["#2b6cb0", "#d97706", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#a16207", "#db2777", "#4f46e5", "#65a30d"];
  const W = 320, H = 90, PAD = 2;

  function svg(tag, attrs) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  function fmt(v) {
    return v >= 100 ? Math.round(v).toString() : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  // One chart: a line per label (labels that stayed at zero are left out, but counted).
  function chart(id, title, series, spanMs) {
    const fig = document.getElementById(id);
    const caption = document.createElement("figcaption");
    const labels = Object.keys(series.rates).filter((l) => series.rates[l].some((v) => v > 0));
    const max = Math.max(0, ...labels.flatMap((l) => series.rates[l]));
    caption.textContent = title + (series.at_ms.length ? " · peak " + fmt(max) + "/s" : " · collecting…");
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart", role: "img", "aria-label": title });
    root.append(svg("rect", { x: 0, y: 0, width: W, height: H, class: "chart-bg" }));
    for (let i = 1; i < 4; i++) root.append(svg("line", { x1: 0, x2: W, y1: (H * i) / 4, y2: (H * i) / 4, class: "chart-grid" }));
    const end = series.at_ms.length ? series.at_ms[series.at_ms.length - 1] : 0;
    const x = (t) => (W - ((end - t) / spanMs) * W).toFixed(1);
    const y = (v) => (H - PAD - (max > 0 ? (v / max) * (H - 2 * PAD) : 0)).toFixed(1);
    const legend = document.createElement("ul");
    legend.className = "chart-legend";
    labels.forEach((label, i) => {
      const colour = PALETTE[i % PALETTE.length];
      const points = series.rates[label].map((v, j) => x(series.at_ms[j]) + "," + y(v)).join(" ");
      root.append(svg("polyline", { points: points, stroke: colour, fill: "none", "data-series": label }));
      const li = document.createElement("li");
      const sw = svg("svg", { viewBox: "0 0 10 10", class: "swatch" });
      sw.append(svg("rect", { x: 1, y: 4, width: 8, height: 2.5, fill: colour }));
      const last = series.rates[label][series.rates[label].length - 1];
      li.append(sw, label + " " + fmt(last) + "/s");
      legend.append(li);
    });
    if (labels.length === 0 && series.at_ms.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "nothing yet";
      legend.append(li);
    }
    fig.replaceChildren(caption, root, legend);
  }

  async function refresh() {
    try {
      const r = await fetch("v1/history", { cache: "no-store" });
      if (!r.ok) throw new Error("v1/history: HTTP " + r.status);
      const h = await r.json();
      const spanMs = Math.max(1, h.interval_seconds * 1000 * 90);
      chart("chart-queries", "Queries per second by rcode", h.queries_per_second, spanMs);
      chart("chart-answers", "Answers per second by region", h.answers_per_second, spanMs);
      document.body.dataset.chartsLoaded = "true";
    } catch (err) {
      document.getElementById("chart-queries").textContent = "charts: " + err.message;
    }
  }

  refresh();
  setInterval(refresh, PERIOD_MS);
})();
