// Meridian status page: polls /health and /v1/status every REFRESH_MS and rebuilds the
// tables; the form asks /v1/explain. Every value goes in through textContent, never HTML.
"use strict";

const REFRESH_MS = 2000;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function state(s) {
  return el("span", { class: "state " + s }, s);
}

function ago(ms) {
  if (ms < 1000) return ms + " ms";
  const s = Math.round(ms / 1000);
  if (s < 120) return s + " s";
  const m = Math.round(s / 60);
  if (m < 120) return m + " min";
  return Math.round(m / 60) + " h";
}

function fill(tableId, rows, empty) {
  const body = document.querySelector("#" + tableId + " tbody");
  const cols = document.querySelectorAll("#" + tableId + " thead th").length;
  body.replaceChildren();
  if (rows.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: cols, class: "muted" }, empty)));
    return;
  }
  for (const cells of rows) {
    body.append(el("tr", {}, ...cells.map((c) => el("td", {}, c))));
  }
}

function vote(v) {
  const label = v.prober_id + " (" + v.region + "): ";
  const title = (v.reason || "") + (v.latency_us != null ? ", " + Math.round(v.latency_us / 1000) + " ms" : "");
  return el("span", { class: "vote" + (v.fresh ? "" : " stale"), title: title },
    label, state(v.state), " ", el("span", { class: "muted" }, ago(v.age_ms) + " ago" + (v.fresh ? "" : ", stale")));
}

// Why the weight is what it is, and what the probes measured: load, check latency,
// slow start (the weight below the configured one while the endpoint ramps), drains.
function weightNotes(e) {
  const notes = [];
  const s = e.signals;
  if (s) {
    if (s.load != null) notes.push("load " + Math.round(s.load * 100) + "%");
    if (s.latency_us != null) notes.push("check " + (s.latency_us / 1000).toFixed(1) + " ms");
    if (s.weight != null) notes.push("hint " + s.weight);
    if (s.transition) notes.push("in transition");
  }
  if (e.ramp != null) notes.push("slow start " + Math.round(e.ramp * 100) + "%");
  if (e.shed != null) notes.push("shedding to " + Math.round(e.shed * 100) + "%");
  if (e.drain) {
    notes.push(e.drain.complete
      ? "drain complete since " + new Date(e.drain.complete_at_ms).toISOString()
      : "draining until " + new Date(e.drain.complete_at_ms).toISOString());
  }
  return notes.length ? el("div", { class: "muted" }, notes.join(", ")) : null;
}

function renderServices(services) {
  const root = document.getElementById("services");
  root.replaceChildren();
  if (services.length === 0) {
    root.append(el("p", { class: "muted" }, "No traffic-managed names."));
    return;
  }
  for (const svc of services) {
    const box = el("div", { class: "service" },
      el("h3", {}, svc.service + "." + svc.zone, " ", el("span", { class: "muted" }, "policy " + svc.policy)));
    const rows = [];
    for (const region of svc.regions) {
      for (const e of region.endpoints) {
        const decided = e.checked ? state(e.decided) : el("span", { class: "muted" }, "no check");
        const serving = e.serving ? state("up") : state("down");
        const votes = e.votes.length ? el("div", {}, ...e.votes.map(vote)) : el("span", { class: "muted" }, e.checked ? "no votes yet" : "");
        rows.push(el("tr", {},
          el("td", {}, region.name),
          el("td", {}, e.address),
          el("td", {}, decided, e.decided_for_ms != null ? el("span", { class: "muted" }, " for " + ago(e.decided_for_ms)) : null),
          el("td", {}, serving),
          el("td", {}, e.effective_weight + " / " + e.weight, weightNotes(e)),
          el("td", {}, votes)));
      }
    }
    box.append(el("table", {},
      el("thead", {}, el("tr", {}, ...["region", "endpoint", "decided", "serving", "weight (now / configured)", "votes"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows)));
    root.append(box);
  }
}

function targetText(t) {
  return [t.zone, t.service, t.region || "*", t.address || "*"].join(" / ");
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

async function refresh() {
  const summary = document.getElementById("summary");
  try {
    const [health, status] = await Promise.all([getJson("health"), getJson("v1/status")]);
    fill("zones", health.zones.map((z) => [z.origin, String(z.serial), z.file]), "No zones.");
    renderServices(status.services);
    fill("probers", status.probers.map((p) => [p.prober_id, p.region, String(p.endpoints), ago(p.youngest_vote_age_ms) + " ago"]),
      "No prober has reported.");
    const now = Date.now();
    if (Array.isArray(status.overrides)) {
      fill("overrides", status.overrides.map((o) => [String(o.id), targetText(o.target), state(o.state), o.reason,
        "in " + ago(Math.max(0, o.expires_at * 1000 - now))]), "None.");
    } else {
      // /v1/status lists overrides (targets, reasons) only for the admin token; the page has none.
      const n = status.overrides_active || 0;
      fill("overrides", [], n === 0 ? "None." : n + " active override" + (n === 1 ? "" : "s") +
        " (details need the admin token: GET /v1/overrides)");
    }
    fill("transitions", status.transitions.map((t) => [new Date(t.at_ms).toISOString().replace("T", " ").slice(0, 19),
      t.endpoint, el("span", {}, state(t.from), " → ", state(t.to)), t.cause, t.up_regions + " / " + t.down_regions]),
      "No changes since start-up.");
    summary.className = "";
    summary.textContent = "generation " + status.generation + " · " + health.zones.length + " zones · " +
      status.services.length + " services · " + status.endpoints_down + " endpoints down · uptime " + ago(health.uptime_seconds * 1000);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "true";
  } catch (err) {
    summary.className = "error";
    summary.textContent = "cannot reach the server: " + err.message;
  }
}

async function explain(event) {
  if (event) event.preventDefault();
  const name = document.getElementById("explain-name").value.trim();
  const client = document.getElementById("explain-client").value.trim();
  const type = document.getElementById("explain-type").value;
  const out = document.getElementById("explain-result");
  if (!name) return;
  const q = new URLSearchParams({ name: name, type: type, format: "text" });
  if (client.includes("/")) q.set("ecs", client); else if (client) q.set("client", client);
  // Keep the question in the address bar, so the link can be shared.
  history.replaceState(null, "", "?" + new URLSearchParams({ name: name, client: client, type: type }));
  out.className = "";
  try {
    const r = await fetch("v1/explain?" + q, { cache: "no-store" });
    out.textContent = await r.text();
    if (!r.ok) out.className = "error";
  } catch (err) {
    out.textContent = "explain failed: " + err.message;
  }
  document.body.dataset.explained = "true";
}

function start() {
  document.getElementById("explain-form").addEventListener("submit", explain);
  const params = new URLSearchParams(location.search);
  if (params.get("name")) {
    document.getElementById("explain-name").value = params.get("name");
    document.getElementById("explain-client").value = params.get("client") || "";
    if (params.get("type")) document.getElementById("explain-type").value = params.get("type");
    explain();
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
}

start();
