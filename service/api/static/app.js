// The QA page: plain JS against the service's own API, no external assets.
"use strict";

// Same colours as the overlay pictures (service/images/overlay.py PALETTE).
const PALETTE = ["#e6194b", "#ffc800", "#00aaff", "#be3cff", "#3cc84b", "#ff7828", "#00d2c8", "#f032e6"];
const colour = (classId) => PALETTE[(classId - 1) % PALETTE.length];
const $ = (selector) => document.querySelector(selector);
let classes = {};
let cursor = null;
let current = null;

function headers() {
  const key = $("#api-key").value.trim();
  localStorage.setItem("api-key", key);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function say(text) { $("#message").textContent = text; }

function filterParams() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData($("#filters"))) {
    if (value === "") continue;
    // datetime-local has no zone: the page works in UTC, like the API.
    params.set(name, name === "since" || name === "until" ? `${value}:00Z` : value);
  }
  return params;
}

async function overlayUrl(id) {
  const blob = await (await api(`/v1/inspections/${id}/overlay.png`)).blob();
  return URL.createObjectURL(blob);
}

function row(item) {
  const tr = document.createElement("tr");
  tr.dataset.id = item.inspection_id;
  const defects = item.defects.map((d) => `${classes[d.class_id] || d.class_id} (${d.area_px})`).join(", ") || "none";
  for (const text of [item.received_at.replace("T", " ").slice(0, 19), item.line_id || "", item.camera_id, item.coil_id || "", defects]) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  const img = document.createElement("img");
  img.alt = "overlay";
  overlayUrl(item.inspection_id).then((url) => { img.src = url; }).catch(() => { img.alt = "no overlay"; });
  const cell = document.createElement("td");
  cell.append(img);
  tr.append(cell);
  tr.addEventListener("click", () => showDetail(item.inspection_id));
  return tr;
}

async function loadPage(more = false) {
  const params = filterParams();
  params.set("limit", "20");
  if (more && cursor) params.set("cursor", cursor);
  const page = await (await api(`/v1/inspections?${params}`)).json();
  const body = $("#inspections tbody");
  if (!more) body.replaceChildren();
  for (const item of page.items) body.append(row(item));
  cursor = page.next_cursor;
  $("#more").hidden = cursor === null;
  $("#export-csv").href = `/v1/inspections/export.csv?${filterParams()}`;
}

async function loadTrend() {
  const params = new URLSearchParams({ bucket: "hour" });
  const filters = filterParams();
  for (const name of ["line_id", "camera_id", "coil_id", "since", "until"]) {
    if (filters.has(name)) params.set(name, filters.get(name));
  }
  const summary = await (await api(`/v1/defects/summary?${params}`)).json();
  drawTrend(summary);
}

function drawTrend(summary) {
  const svg = $("#trend");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const start = Date.parse(summary.since);
  const span = Math.max(Date.parse(summary.until) - start, 1);
  const series = {};
  for (const bucket of summary.classes) (series[bucket.class_id] ||= []).push(bucket);
  const top = Math.max(1, ...summary.classes.map((b) => b.defects));
  const x = (time) => 40 + 950 * (Date.parse(time) - start) / span;
  const y = (count) => 200 - 180 * count / top;
  for (const [label, value] of [[String(top), top], ["0", 0]]) {
    const text = document.createElementNS(ns, "text");
    text.setAttribute("x", "4"); text.setAttribute("y", String(y(value) + 4));
    text.textContent = label;
    svg.append(text);
  }
  const legend = $("#trend-legend");
  legend.replaceChildren();
  for (const [classId, buckets] of Object.entries(series)) {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", buckets.map((b) => `${x(b.start)},${y(b.defects)}`).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", colour(Number(classId)));
    line.setAttribute("stroke-width", "2");
    line.dataset.classId = classId;
    svg.append(line);
    for (const b of buckets) {
      const dot = document.createElementNS(ns, "circle");
      dot.setAttribute("cx", String(x(b.start))); dot.setAttribute("cy", String(y(b.defects)));
      dot.setAttribute("r", "3"); dot.setAttribute("fill", colour(Number(classId)));
      svg.append(dot);
    }
    const item = document.createElement("span");
    item.innerHTML = `<i class="swatch" style="background:${colour(Number(classId))}"></i>`;
    item.append(`${classes[classId] || classId}: ${buckets.reduce((n, b) => n + b.defects, 0)}`);
    legend.append(item);
  }
  if (!summary.classes.length) legend.textContent = "no defects in this range";
}

async function showDetail(id) {
  const item = await (await api(`/v1/inspections/${id}`)).json();
  current = item;
  document.querySelectorAll("#inspections tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === id));
  $("#detail").hidden = false;
  $("#detail-id").textContent = id;
  $("#detail-overlay").src = await overlayUrl(id);
  const meta = $("#detail-meta");
  meta.replaceChildren();
  for (const [name, value] of [["Received", item.received_at], ["Captured", item.captured_at], ["Line", item.line_id], ["Camera", item.camera_id], ["Coil", item.coil_id], ["Frame", item.frame_id], ["Model", `${item.model.name} v${item.model.version}`]]) {
    const dt = document.createElement("dt"); dt.textContent = name;
    const dd = document.createElement("dd"); dd.textContent = value ?? "";
    meta.append(dt, dd);
  }
  const body = $("#verdicts tbody");
  body.replaceChildren();
  for (const d of item.defects) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td><i class="swatch" style="background:${colour(d.class_id)}"></i></td><td>${d.area_px}</td><td>${d.score.toFixed(2)}</td>
      <td><select name="verdict-${d.class_id}" data-class-id="${d.class_id}"><option value="confirmed">confirmed</option><option value="false_positive">false positive</option></select></td>`;
    tr.cells[0].append(`${d.class_id} ${d.class_name}`);
    body.append(tr);
  }
  $("#review-status").textContent = "";
  api(`/v1/inspections/${id}/review`).then(async (response) => {
    const review = await response.json();
    $("#review-status").textContent = `reviewed by ${review.reviewer} at ${review.reviewed_at}`;
  }).catch(() => {});
}

async function submitReview(event) {
  event.preventDefault();
  const form = $("#review");
  const defects = [...form.querySelectorAll("select[data-class-id]")].map((s) => ({ class_id: Number(s.dataset.classId), verdict: s.value }));
  const missed = [];
  if (form.missed_class.value && form.missed_rle.value.trim()) {
    missed.push({ class_id: Number(form.missed_class.value), encoded_pixels: form.missed_rle.value.trim() });
  }
  try {
    const response = await api(`/v1/inspections/${current.inspection_id}/review`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ defects, missed }),
    });
    const review = await response.json();
    $("#review-status").textContent = `review saved by ${review.reviewer} at ${review.reviewed_at}`;
  } catch (error) {
    $("#review-status").textContent = `not saved: ${error.message}`;
  }
}

function cells(tr, texts) {
  for (const text of texts) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  return tr;
}

const utc = (time) => (time ? time.replace("T", " ").slice(0, 19) : "");

function lineParams() {
  const params = new URLSearchParams();
  const filters = filterParams();
  for (const name of ["line_id", "since", "until"]) {
    if (filters.has(name)) params.set(name, filters.get(name));
  }
  return params;
}

async function loadCoils() {
  const coils = await (await api(`/v1/coils?${lineParams()}&limit=20`)).json();
  const body = $("#coils tbody");
  body.replaceChildren();
  for (const coil of coils.items) {
    const defects = Object.entries(coil.defects).map(([name, n]) => `${name} ${n}`).join(", ") || "none";
    const tr = cells(document.createElement("tr"), [coil.coil_id, coil.line_id || "", coil.strips, defects, utc(coil.last_received_at)]);
    tr.dataset.coilId = coil.coil_id;
    tr.addEventListener("click", () => showCoil(coil.coil_id).catch((error) => say(error.message)));
    body.append(tr);
  }
}

async function showCoil(coilId) {
  const path = `/v1/coils/${encodeURIComponent(coilId)}`;
  const coil = await (await api(path)).json();
  document.querySelectorAll("#coils tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.coilId === coilId));
  $("#coil").hidden = false;
  $("#coil-id").textContent = coilId;
  $("#coil-map").src = URL.createObjectURL(await (await api(`${path}/map.png`)).blob());
  $("#coil-roll-marks").textContent = coil.roll_marks.length
    ? `Suspected roll marks: ${coil.roll_marks.map((m) => `${classes[m.class_id] || m.class_id} every ${m.pitch_m} m (${m.occurrences} times)`).join("; ")}`
    : "No repeating defect.";
  const body = $("#coil-strips tbody");
  body.replaceChildren();
  for (const strip of coil.strips.filter((s) => s.defects.length)) {
    const defects = strip.defects.map((d) => `${d.class_name} (${d.area_px})`).join(", ");
    const tr = cells(document.createElement("tr"), [strip.position_m ?? "", strip.frame_id || "", defects]);
    tr.dataset.id = strip.inspection_id;
    tr.addEventListener("click", () => showDetail(strip.inspection_id).catch((error) => say(error.message)));
    body.append(tr);
  }
}

async function loadAlarms() {
  const alarms = await (await api(`/v1/alarms?${lineParams()}&limit=20`)).json();
  const body = $("#alarms tbody");
  body.replaceChildren();
  for (const alarm of alarms.items) {
    const window = alarm.window.strips ? `${alarm.count} of ${alarm.window.strips}` : `${alarm.count} in ${alarm.window.seconds} s`;
    body.append(cells(document.createElement("tr"), [utc(alarm.fired_at), alarm.rule, alarm.line_id, alarm.class_id === null ? "any" : (classes[alarm.class_id] || alarm.class_id), window]));
  }
}

async function loadClasses() {
  const models = await (await api("/v1/models")).json();
  const live = models.live && models.models.find((m) => m.name === models.live.name);
  const version = live && live.versions.find((v) => v.version === models.live.version);
  classes = Object.fromEntries((version ? version.classes : []).map((c) => [c.id, c.name]));
  for (const select of [document.querySelector("[name=class_id]"), document.querySelector("[name=missed_class]")]) {
    for (const [id, name] of Object.entries(classes)) select.append(new Option(`${id} ${name}`, id));
  }
}

async function refresh() {
  say("");
  try {
    await Promise.all([loadPage(), loadTrend(), loadCoils(), loadAlarms()]);
  } catch (error) {
    say(error.message);
  }
}

$("#api-key").value = localStorage.getItem("api-key") || "";
$("#filters").addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
$("#more").addEventListener("click", () => loadPage(true).catch((error) => say(error.message)));
$("#review").addEventListener("submit", submitReview);
$("#api-key").addEventListener("change", () => loadClasses().then(refresh).catch((error) => say(error.message)));
loadClasses().catch((error) => say(error.message)).finally(refresh);
