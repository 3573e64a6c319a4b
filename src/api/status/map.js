// Meridian status page, traffic map: asks /v1/map for the traffic-managed names and, for the
// chosen one, the region each country is answered from now; draws an equirectangular world
// (viewBox 0 0 360 180: x = lon + 180, y = 90 - lat) with a dot per country at its centroid,
// coloured by region, and the regions as labelled markers (hollow when not serving).
// Refreshes with the page (REFRESH_MS of status.js). The DOM is built with createElementNS
// and textContent only: names from zone files never become markup.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const PERIOD_MS = typeof REFRESH_MS === "number" ? REFRESH_MS : 2000;
  // By region index in the service (its regions in zone file order).
  const PALETTE = ["#2b6cb0", "#d97706", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#a16207", "#db2777", "#4f46e5", "#65a30d"];
  const GREY = "#9aa3b2"; // fallback, or no answer
  const POOL = "#1d2330"; // weighted: every region as one pool

  let chosen = new URLSearchParams(location.search).get("map") || "";

  function svg(tag, attrs) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  function html(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : String(c));
    return e;
  }

  const px = (lon) => (lon + 180).toFixed(2);
  const py = (lat) => (90 - lat).toFixed(2);
  const regionColour = (i) => PALETTE[i % PALETTE.length];

  // Colour of a country: its region's, grey when the fallback answers or nothing does.
  function countryColour(c, index) {
    if (c.outcome === "fallback" || c.outcome === "nodata") return GREY;
    if (c.region === null) return POOL;
    return index.has(c.region) ? regionColour(index.get(c.region)) : GREY;
  }

  function graticule(root) {
    const g = svg("g", { class: "graticule" });
    for (let lon = -150; lon <= 150; lon += 30) {
      g.append(svg("line", { x1: px(lon), y1: 0, x2: px(lon), y2: 180 }));
    }
    for (let lat = -60; lat <= 60; lat += 30) {
      g.append(svg("line", { x1: 0, y1: py(lat), x2: 360, y2: py(lat) }));
    }
    g.append(svg("line", { x1: 0, y1: 90, x2: 360, y2: 90, class: "equator" }));
    root.append(g);
  }

  function draw(m) {
    const index = new Map(m.regions.map((r, i) => [r.name, i]));
    const root = svg("svg", { viewBox: "0 0 360 180", id: "map-svg", role: "img", "aria-label": "Traffic map of " + m.service });
    root.append(svg("rect", { x: 0, y: 0, width: 360, height: 180, class: "ocean" }));
    graticule(root);
    const dots = svg("g", { class: "countries" });
    for (const c of m.countries) {
      const dot = svg("circle", {
        cx: px(c.lon), cy: py(c.lat), r: 1.7,
        fill: countryColour(c, index),
        "data-country": c.country,
        "data-region": c.region === null ? "" : c.region,
        "data-outcome": c.outcome,
      });
      const title = svg("title");
      title.textContent = c.country + " → " + (c.region === null ? (c.outcome === "nodata" ? "no answer" : "all regions") : c.region) + " (" + c.outcome + ")";
      dot.append(title);
      dots.append(dot);
    }
    root.append(dots);
    const markers = svg("g", { class: "regions" });
    m.regions.forEach((r, i) => {
      if (!r.location) return;
      const [lat, lon] = r.location;
      const colour = regionColour(i);
      const mark = svg("g", { class: "region-marker" + (r.serving ? "" : " down"), "data-region-marker": r.name, "data-serving": r.serving });
      mark.append(svg("circle", { cx: px(lon), cy: py(lat), r: 3.6, stroke: colour, fill: r.serving ? colour : "#ffffff" }));
      const label = svg("text", { x: (lon + 180 + 5).toFixed(2), y: (90 - lat + 1.6).toFixed(2) });
      label.textContent = r.name + (r.serving ? "" : " (down)");
      mark.append(label);
      markers.append(mark);
    });
    root.append(markers);
    document.getElementById("map").replaceChildren(root);
    legend(m, index);
  }

  function legend(m, index) {
    // Swatches are small SVGs coloured by attribute: the CSP forbids inline styles.
    const items = m.regions.map((r, i) => {
      const li = html("li", { "data-legend-region": r.name },
        swatch(r.serving ? regionColour(i) : "#ffffff", regionColour(i)),
        r.name + " · " + r.countries + " countries" + (r.serving ? "" : " · not serving"));
      return li;
    });
    const pooled = m.countries.some((c) => c.region === null && (c.outcome === "healthy" || c.outcome === "standby"));
    const grey = m.countries.filter((c) => countryColour(c, index) === GREY).length;
    if (pooled) items.push(swatchItem(POOL, "all regions (weighted pool)"));
    items.push(swatchItem(GREY, "fallback or no answer · " + grey + " countries"));
    document.getElementById("map-legend").replaceChildren(...items);
    document.getElementById("map-note").textContent = m.service + " · policy " + m.policy +
      " · generation " + m.generation + " · a dot is a country's centroid; subnet overrides are not shown";
  }

  function swatch(fill, stroke) {
    const box = svg("svg", { viewBox: "0 0 10 10", class: "swatch" });
    box.append(svg("circle", { cx: 5, cy: 5, r: 4, fill: fill, stroke: stroke, "stroke-width": 1.5 }));
    return box;
  }

  function swatchItem(colour, text) {
    return html("li", {}, swatch(colour, colour), text);
  }

  async function json(path) {
    const r = await fetch(path, { cache: "no-store" });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || path + ": HTTP " + r.status);
    return body;
  }

  function fillSelect(names) {
    const select = document.getElementById("map-service");
    const have = Array.from(select.options).map((o) => o.value);
    if (have.join("\n") !== names.join("\n")) {
      select.replaceChildren(...names.map((n) => html("option", { value: n }, n)));
    }
    const want = names.find((n) => n.toLowerCase() === chosen.toLowerCase().replace(/\.?$/, "."));
    chosen = want || names[0] || "";
    select.value = chosen;
  }

  async function refresh() {
    const note = document.getElementById("map-note");
    try {
      const list = await json("v1/map");
      fillSelect(list.services);
      if (!chosen) {
        document.getElementById("map").replaceChildren();
        document.getElementById("map-legend").replaceChildren();
        note.textContent = "No traffic-managed names.";
      } else {
        draw(await json("v1/map?" + new URLSearchParams({ service: chosen })));
      }
      note.classList.remove("error");
      document.body.dataset.mapLoaded = "true";
    } catch (err) {
      note.classList.add("error");
      note.textContent = "traffic map: " + err.message;
    }
  }

  function start() {
    document.getElementById("map-service").addEventListener("change", (e) => {
      chosen = e.target.value;
      refresh();
    });
    refresh();
    setInterval(refresh, PERIOD_MS);
  }

  start();
})();
