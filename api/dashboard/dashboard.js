// Rondo's live dashboard. Reads the controller's FEDn REST v1 routes every
// POLL_MS milliseconds and draws sessions, the selected session's rounds,
// validation plots, combiners, clients and the model trail.
//
// A token given in the URL fragment (#token=<JWT>) is kept in
// sessionStorage and sent as "Authorization: Bearer <JWT>", never in a
// query string; the fragment is then removed from the address bar.
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "rondo.token";

// -- the token -----------------------------------------------------------

function takeToken() {
  const m = /(?:^|&)token=([^&]+)/.exec(location.hash.replace(/^#/, ""));
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

const token = takeToken();

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

async function getJson(path) {
  const res = await fetch(path, { headers: headers({ "X-Limit": "0" }) });
  if (!res.ok) {
    let message = res.statusText;
    try { message = (await res.json()).message || message; } catch (e) {}
    throw new Error(path + ": HTTP " + res.status + " " + message);
  }
  return res.json();
}

// A FEDn list answer {count, result: [...]}, or a bare array.
function items(answer) {
  if (Array.isArray(answer)) return answer;
  return (answer && Array.isArray(answer.result)) ? answer.result : [];
}

// -- small DOM helpers ---------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "onclick") e.addEventListener("click", v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fillBody(table, rows) {
  const body = document.querySelector(table + " tbody");
  body.replaceChildren(...rows);
}

function statusClass(s) {
  const t = String(s || "").toLowerCase();
  if (["finished", "success", "online", "available", "ok"].includes(t))
    return "status-ok";
  if (["failed", "terminated", "offline", "lost"].includes(t))
    return "status-bad";
  return "status-run";
}

function statusCell(s) {
  return el("td", { class: statusClass(s) }, s || "—");
}

// Unix seconds or an HTTP date, as local time.
function when(t) {
  if (t === null || t === undefined || t === "" || t === 0) return "—";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
}

function timeOf(t) {
  if (typeof t === "number") return t * 1000;
  const d = Date.parse(t || "");
  return isNaN(d) ? 0 : d;
}

function shortId(id) {
  return id && id.length > 12 ? id.slice(0, 8) + "…" : (id || "—");
}

function fixed(x, digits) {
  return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "—";
}

// -- state ---------------------------------------------------------------

let selected = null;       // session id the user picked; null: newest
let problems = [];

function sessionIdOf(s) { return s.session_id || s.id; }

// -- sessions ------------------------------------------------------------

function drawSessions(sessions) {
  sessions.sort((a, b) => timeOf(b.committed_at) - timeOf(a.committed_at));
  const current = selected || (sessions[0] && sessionIdOf(sessions[0]));
  fillBody("#sessions-table", sessions.map((s) => {
    const id = sessionIdOf(s);
    const rounds = (s.session_config && s.session_config.rounds) || "";
    const done = Array.isArray(s.round_ids) ? s.round_ids.length : "";
    return el("tr", {
      "data-session-id": id,
      class: "selectable" + (id === current ? " selected" : ""),
      onclick: () => { selected = id; poll(); },
    },
    el("td", { class: "id" }, s.name || id), statusCell(s.status),
    el("td", { class: "num" }, done === "" ? rounds : done + " / " + rounds),
    el("td", {}, when(s.committed_at)),
    el("td", { class: "reason" }, s.reason || ""));
  }));
  return current;
}

// -- rounds --------------------------------------------------------------

function roundNumber(r) {
  const n = Number(r.round_id);
  return isNaN(n) ? 0 : n;
}

function rejectedCell(rejected) {
  const td = el("td", { class: "rejected" }, String(rejected.length));
  for (const x of rejected)
    td.append(el("div", { class: "reason" },
                 (x.client_id || "?") + ": " + (x.reason || "")));
  return td;
}

function drawRounds(rounds) {
  rounds.sort((a, b) => roundNumber(a) - roundNumber(b));
  fillBody("#rounds-table", rounds.map((r) => {
    const combiners = r.combiners || [];
    const ok = combiners.filter((c) => statusClass(c.status) === "status-ok");
    const combinerText = combiners.length
      ? ok.length + "/" + combiners.length + " "
        + combiners.map((c) => c.name).join(", ")
      : "—";
    const statusTd = statusCell(r.status);
    if (r.reason) statusTd.append(el("div", { class: "reason" }, r.reason));
    return el("tr", { "data-round-id": r.round_id,
                      "data-status": r.status },
      el("td", { class: "num" }, r.round_id), statusTd,
      el("td", {}, combinerText),
      el("td", { class: "num" }, (r.clients_selected || []).length),
      el("td", { class: "num" }, (r.clients_accepted || []).length),
      rejectedCell(r.clients_rejected || []),
      el("td", { class: "num" }, (r.clients_silent || []).length),
      el("td", { class: "num" }, r.num_examples ?? "—"),
      el("td", { class: "num" }, fixed(r.seconds, 2)));
  }));
}

// -- validation plots ----------------------------------------------------

// The metric key to plot: test_* when a validation reports it, else
// training_*, else the bare name.
function pickKey(validations, name) {
  const keys = new Set();
  for (const v of validations)
    for (const k of Object.keys(v.metrics)) keys.add(k);
  for (const k of ["test_" + name, "training_" + name, name])
    if (keys.has(k)) return k;
  for (const k of keys) if (k.includes(name)) return k;
  return null;
}

// Each validation with its metrics parsed and the session round it
// belongs to: the round whose new global model it validated (the
// combiners' validation rounds have ids of their own, e.g. "3-validation").
function parseValidations(validations, rounds) {
  const byModel = new Map();
  for (const r of rounds) if (r.model_id) byModel.set(r.model_id, r.round_id);
  const out = [];
  for (const v of validations) {
    let m = v.data;
    if (typeof m === "string") {
      try { m = JSON.parse(m); } catch (e) { m = null; }
    }
    const round = byModel.get(v.model_id)
      || String(v.round_id || "").replace(/-validation$/, "");
    if (m && typeof m === "object") out.push({ round_id: round, metrics: m });
  }
  return out;
}

// Per round: mean, min, max of `key` across clients.
function series(validations, key, roundIds) {
  const byRound = new Map();
  for (const v of validations) {
    const x = v.metrics[key];
    if (typeof x !== "number" || !isFinite(x)) continue;
    if (!byRound.has(v.round_id)) byRound.set(v.round_id, []);
    byRound.get(v.round_id).push(x);
  }
  const points = [];
  for (const id of roundIds) {
    const xs = byRound.get(id);
    if (!xs || !xs.length) continue;
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    points.push({ round_id: id, mean, min: Math.min(...xs),
                  max: Math.max(...xs), n: xs.length });
  }
  return points;
}

function drawPlot(id, points, key) {
  const plot = document.getElementById(id);
  plot.replaceChildren();
  const W = 420, H = 220, L = 48, R = 12, T = 12, B = 34;
  const inset = 18;  // keeps the first and last point off the axes
  if (!points.length) {
    plot.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle",
                              class: "empty" },
                    key ? "no validations yet" : "no metric reported"));
    return;
  }
  let lo = Math.min(...points.map((p) => p.min));
  let hi = Math.max(...points.map((p) => p.max));
  if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.08;
  lo -= pad; hi += pad;
  const x = (i) => L + inset
    + (points.length === 1 ? (W - L - R - 2 * inset) / 2
       : i * (W - L - R - 2 * inset) / (points.length - 1));
  const y = (v) => T + (hi - v) * (H - T - B) / (hi - lo);
  for (let k = 0; k <= 4; ++k) {
    const v = lo + (hi - lo) * k / 4;
    plot.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v),
                              class: "grid" }));
    plot.append(svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end",
                              class: "tick" }, Number(v.toPrecision(3))));
  }
  plot.append(svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  plot.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B,
                            class: "axis" }));
  plot.append(svg("text", { x: (L + W - R) / 2, y: H - 4,
                            "text-anchor": "middle", class: "tick" },
                  "round"));
  plot.append(svg("polyline", {
    class: "mean-line",
    points: points.map((p, i) => x(i) + "," + y(p.mean)).join(" "),
  }));
  points.forEach((p, i) => {
    plot.append(svg("line", { x1: x(i), x2: x(i), y1: y(p.min), y2: y(p.max),
                              class: "spread", "data-round-id": p.round_id }));
    const c = svg("circle", { cx: x(i), cy: y(p.mean), r: 4, class: "point",
                              "data-round-id": p.round_id,
                              "data-mean": p.mean });
    c.append(svg("title", {}, "round " + p.round_id + ": mean "
                 + p.mean.toPrecision(4) + ", min " + p.min.toPrecision(4)
                 + ", max " + p.max.toPrecision(4) + " (" + p.n
                 + " clients)"));
    plot.append(c);
    plot.append(svg("text", { x: x(i), y: H - B + 14, "text-anchor": "middle",
                              class: "tick" }, p.round_id));
  });
}

// The plotted metrics: figure "<name>-plot" shows the key pickKey finds
// for <name> (its caption's "<name>-key").
const PLOTS = ["accuracy", "loss"];

function addPlotFigures() {
  const section = document.getElementById("plots");
  for (const name of PLOTS)
    section.append(el("figure", {},
      el("figcaption", {}, "Validation " + name + " (",
         el("span", { id: name + "-key" }, "—"),
         "): mean per round, bar = min–max across clients"),
      svg("svg", { id: name + "-plot", viewBox: "0 0 420 220", role: "img",
                   "aria-label": "validation " + name + " per round" })));
}

function drawValidations(validations, rounds) {
  const vs = parseValidations(validations, rounds);
  const roundIds = rounds.map((r) => r.round_id);
  for (const name of PLOTS) {
    const key = pickKey(vs, name);
    document.getElementById(name + "-key").textContent = key || "—";
    drawPlot(name + "-plot", key ? series(vs, key, roundIds) : [], key);
  }
}

// -- combiners and clients -----------------------------------------------

function combinerName(c) { return c.name || c.combiner_id || c.id; }

function drawCombiners(combiners, clients) {
  fillBody("#combiners-table", combiners.map((c) => {
    const name = combinerName(c);
    const n = c.clients_online ?? clients.filter((x) => x.combiner === name
                                                 && statusClass(x.status)
                                                    === "status-ok").length;
    const address = c.address
      ? c.address + (c.port ? ":" + c.port : "") : "—";
    return el("tr", { "data-combiner": name },
      el("td", { class: "id" }, name), el("td", {}, address),
      statusCell(c.alive && c.draining ? "draining" : (c.status || "—")),
      el("td", { class: "num" }, n),
      el("td", {}, when(c.updated_at || c.committed_at)));
  }));
}

function drawClients(clients) {
  clients.sort((a, b) => String(a.combiner).localeCompare(String(b.combiner))
                         || String(a.name).localeCompare(String(b.name)));
  fillBody("#clients-table", clients.map((c) =>
    el("tr", { "data-client-id": c.client_id, "data-combiner": c.combiner },
      el("td", { class: "id" }, c.combiner || "—"),
      el("td", { class: "id" }, shortId(c.client_id)),
      el("td", {}, c.name || "—"), statusCell(c.status),
      el("td", {}, when(c.last_seen || c.updated_at)))));
}

// -- models --------------------------------------------------------------

async function download(id) {
  try {
    const res = await fetch("/api/v1/models/" + encodeURIComponent(id)
                            + "/download", { headers: headers() });
    if (!res.ok) throw new Error("download of " + id + ": HTTP " + res.status);
    const url = URL.createObjectURL(await res.blob());
    const a = el("a", { href: url, download: id + ".npz" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    showProblems([e.message]);
  }
}

function drawModels(models) {
  models.sort((a, b) => timeOf(b.committed_at) - timeOf(a.committed_at));
  fillBody("#models-table", models.map((m) => {
    const id = m.model_id || m.model;
    const path = "/api/v1/models/" + encodeURIComponent(id) + "/download";
    const link = token
      ? el("button", { class: "link", onclick: () => download(id) }, "download")
      : el("a", { href: path, download: id + ".npz" }, "download");
    return el("tr", { "data-model-id": id },
      el("td", { class: "id", title: id }, shortId(id)),
      el("td", { class: "id", title: m.parent_model || "" },
         shortId(m.parent_model)),
      el("td", {}, m.session_id || "—"), el("td", {}, m.round_id || "—"),
      el("td", {}, when(m.committed_at)), el("td", {}, link));
  }));
}

// -- polling -------------------------------------------------------------

function showProblems(list) {
  const p = document.getElementById("problems");
  p.hidden = list.length === 0;
  p.textContent = list.join(" · ");
}

// Fetches `path` and hands its items to `draw`; a failure is listed and
// leaves that part of the page as it was.
async function part(path, draw) {
  try {
    const answer = await getJson(path);
    return draw(items(answer));
  } catch (e) {
    problems.push(e.message);
    return undefined;
  }
}

let timer = null;
let running = false;

async function poll() {
  if (timer) { clearTimeout(timer); timer = null; }
  if (running) return;
  running = true;
  problems = [];
  try {
    const current = await part("/api/v1/sessions/", drawSessions);
    document.getElementById("selected-session").textContent = current || "—";
    let clients = [];
    await part("/api/v1/clients/", (xs) => { clients = xs; drawClients(xs); });
    await part("/api/v1/combiners/", (xs) => drawCombiners(xs, clients));
    await part("/api/v1/models/", drawModels);
    if (current) {
      const q = "?session_id=" + encodeURIComponent(current);
      let rounds = [];
      await part("/api/v1/rounds/" + q,
                 (xs) => { rounds = xs; drawRounds(xs); });
      await part("/api/v1/validations/" + q,
                 (xs) => drawValidations(xs, rounds));
    }
    showProblems(problems);
    document.getElementById("updated").textContent =
      "updated " + new Date().toLocaleTimeString();
  } finally {
    running = false;
    timer = setTimeout(poll, POLL_MS);
  }
}

addPlotFigures();
document.getElementById("auth-state").textContent =
  token ? "with a bearer token" : "without a token";
poll();
