// liftwatch status page: fleet view and car detail, fed by /api/snapshot and /events (SSE).
// Plain DOM, no framework, no network access beyond this daemon. Text always goes in through
// textContent (car names and fault details come from configuration and boards).
"use strict";

const ui = { snap: null, car: null, trip: null, trace: null, traceKey: null, connected: false };

const FAULT_LABELS = {
  entrapment: "Entrapment 困人", stopped_outside_door_zone: "Stopped outside door zone 非平层停梯",
  moving_with_door_open: "Moving with door open 开门走梯", door_open_too_long: "Door open too long 长时间开门",
  door_reopen_loop: "Door reopen loop 反复开关门", abnormal_vibration: "Abnormal vibration 异常振动",
  leveling_fault: "Leveling fault 平层异常", overspeed: "Overspeed 超速", alarm_button: "Alarm button 报警按钮",
  floor_position_lost: "Floor position lost 楼层丢失", sensor_fault: "Sensor fault 传感器故障",
  board_offline: "Board offline 离线", power_loss: "Power loss 停电", overtravel_top: "Overtravel at the top 冲顶",
  overtravel_bottom: "Overtravel at the bottom 蹲底", door_fails_to_open: "Door fails to open 开门故障（有人）",
};
const REASON_LABELS = {
  alarm_button_pressed: "alarm button pressed", board_offline: "board offline",
  last_trip_over_vibration_limit: "last trip over vibration limit", board_safe_mode: "board in safe mode",
  inspection_on: "maintenance in progress", no_data_yet: "no data yet",
};

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k.startsWith("data-")) el.setAttribute(k, v);
    else el[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const fmt = (v, nd = 1, unit = "") => (v === null || v === undefined ? "—" : `${Number(v).toFixed(nd)}${unit}`);
const pad = (n) => String(n).padStart(2, "0");
// Every time on the page is the site's local time (the daemon's day_utc_offset_h), whatever zone
// the browser is in: an operator and the reports must name the same hour.
const siteOffsetH = () => (ui.snap && typeof ui.snap.utc_offset_h === "number" ? ui.snap.utc_offset_h : 0);
const siteDate = (ts) => new Date((ts + siteOffsetH() * 3600) * 1000); // read with getUTC*()
function zoneLabel() {
  const off = siteOffsetH(), m = Math.round(Math.abs(off) * 60);
  return `UTC${off < 0 ? "−" : "+"}${Math.floor(m / 60)}${m % 60 ? `:${pad(m % 60)}` : ""}`;
}
function clock(ts) {
  if (ts === null || ts === undefined) return "—";
  const d = siteDate(ts);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}
function dateTime(ts) {
  if (ts === null || ts === undefined) return "—";
  const d = siteDate(ts);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${clock(ts)}`;
}
function span(s) {
  if (s === null || s === undefined) return "—";
  s = Math.max(0, s);
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
const ago = (ts) => (ts === null || ts === undefined || !ui.snap || ui.snap.data_ts === null ? "—" : span(ui.snap.data_ts - ts));
const faultLabel = (t) => FAULT_LABELS[t] || t.replaceAll("_", " ");
// The landing's name from the car's config (B1, G, M) where there is one, else its number.
const floorText = (live) => (live.floor === null || live.floor === undefined ? (live.known ? "?" : "—") : String(live.floor_label ?? live.floor));

// ---------------------------------------------------------------------------------------------
// data

async function loadSnapshot() {
  const r = await fetch("/api/snapshot", { cache: "no-store" });
  if (r.ok) onSnapshot(await r.json());
}

function connect() {
  const es = new EventSource("/events");
  es.addEventListener("snapshot", (e) => onSnapshot(JSON.parse(e.data)));
  es.onopen = () => setConnected(true);
  es.onerror = () => setConnected(false); // EventSource retries by itself (server sends retry: 2000)
}

function setConnected(up) {
  ui.connected = up;
  const el = document.getElementById("conn");
  el.textContent = up ? "live" : "reconnecting…";
  el.className = "conn " + (up ? "conn-up" : "conn-down");
}

function onSnapshot(snap) {
  if (ui.snap && snap.version < ui.snap.version && snap.generated_ts <= ui.snap.generated_ts) return;
  ui.snap = snap;
  document.body.dataset.version = String(snap.version);
  render();
}

function route() {
  const params = new URLSearchParams(location.hash.slice(1));
  ui.car = params.get("car");
  ui.trip = params.get("trip") ? Number(params.get("trip")) : null;
  render();
}

// ---------------------------------------------------------------------------------------------
// rendering

function render() {
  const snap = ui.snap;
  if (!snap) return;
  document.getElementById("site").textContent = snap.site ? `site ${snap.site}` : "";
  renderDaemon(snap.daemon || {});
  document.getElementById("data-time").textContent =
    `data up to ${dateTime(snap.data_ts)} · times are site time (${zoneLabel()}) · ${snap.cars.length} cars`;
  const car = ui.car && snap.cars.find((c) => c.car === ui.car);
  document.getElementById("fleet").hidden = !!car;
  document.getElementById("car").hidden = !car;
  if (car) renderCar(car);
  else renderFleet(snap);
}

function renderDaemon(d) {
  const chips = [];
  if (d.broker) chips.push(h("span", { class: "chip", "data-broker": d.broker }, `broker ${d.broker}`));
  if (d.outbox && d.outbox.pending !== undefined) chips.push(h("span", { class: "chip" }, `outbox ${d.outbox.pending} pending`));
  document.getElementById("daemon").replaceChildren(...chips);
}

function levelBadge(att) {
  return h("span", { class: `badge lvl-${att.level}`, "data-level": att.level }, att.level);
}

function livePills(live) {
  const pills = [];
  if (!live.known) return [h("span", { class: "state-pill" }, "no state yet")];
  pills.push(h("span", { class: "state-pill" + (live.door === "open" && live.moving ? " bad" : "") }, `door ${live.door}`));
  pills.push(h("span", { class: "state-pill" }, live.moving ? `moving (${live.motion})` : "at rest"));
  if (live.in_door_zone === false && !live.moving) pills.push(h("span", { class: "state-pill bad" }, "between floors"));
  if (live.inspection) pills.push(h("span", { class: "state-pill info" }, "inspection"));
  if (live.alarm_button) pills.push(h("span", { class: "state-pill bad" }, "alarm"));
  if (live.presence) pills.push(h("span", { class: "state-pill" }, "occupied"));
  return pills;
}

function faultChip(f) {
  return h("span", { class: `fault-chip sev-${f.severity}`, "data-fault": f.type }, faultLabel(f.type));
}

function renderFleet(snap) {
  const root = document.getElementById("fleet");
  const counts = {};
  for (const c of snap.cars) counts[c.attention.level] = (counts[c.attention.level] || 0) + 1;
  const summary = ["critical", "fault", "warning", "maintenance", "ok"]
    .filter((l) => counts[l]).map((l) => h("span", { class: `badge lvl-${l}` }, `${counts[l]} ${l}`));
  const cards = snap.cars.map((c) => {
    const last = c.trips[0];
    const rq = last && last.ride_quality;
    const online = c.board.online;
    return h("div", {
      class: `card lvl-${c.attention.level}`, "data-car": c.car,
      on: { click: () => { location.hash = `car=${encodeURIComponent(c.car)}`; } },
    },
      h("div", { class: "card-head" }, h("span", { class: "card-name" }, c.car), h("span", { class: "card-board" }, c.board_id),
        h("span", { class: "spacer" }), levelBadge(c.attention)),
      h("div", { class: "card-row" },
        h("div", {}, h("div", { class: "floor" }, floorText(c.live)), h("div", { class: "floor-label" }, "floor 楼层")),
        h("div", {}, ...livePills(c.live))),
      c.open_faults.length ? h("div", {}, ...c.open_faults.map(faultChip)) : null,
      h("div", { class: "card-reasons" }, c.attention.reasons.filter((r) => !FAULT_LABELS[r]).map((r) => REASON_LABELS[r] || r).join(" · ") ||
        (c.open_faults.length ? "" : "no open faults")),
      h("dl", { class: "kv" },
        h("dt", {}, "last trip"), h("dd", {}, last ? `${clock(last.start_ts)} · ${last.from_label ?? last.from_floor ?? "?"}→${last.to_label ?? last.to_floor ?? "?"} · ${fmt(last.peak_speed_mps, 2, " m/s")}` : "—"),
        h("dt", {}, "ride (z A95)"), h("dd", {}, rq ? `${fmt(rq.z_a95_pp_mg, 1, " mg")} (limit ${fmt(c.limits_mg.z_a95_pp, 1)})` : "—"),
        h("dt", {}, "trips"), h("dd", {}, String(c.trips_total))),
      h("div", { class: "card-foot" },
        h("span", {}, online === false ? "board offline" : online ? `link ${fmt(c.board.link_quality_pct, 1, " %")}` : "board —"),
        h("span", {}, `heard ${ago(c.live.last_ts)} ago`)));
  });
  root.replaceChildren(
    h("div", { class: "car-head" }, h("h2", { class: "view-title" }, "Fleet 电梯总览"), ...summary),
    snap.cars.length ? h("div", { class: "fleet-grid" }, ...cards) : h("div", { class: "empty" }, "No cars configured."));
}

function panel(id, title, ...body) {
  document.getElementById(id).replaceChildren(h("div", { class: "panel-title" }, ...title), ...body);
}

function kv(rows) {
  return h("dl", { class: "kv" }, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

// The running and the previous firmware, and what the last update came to (issue 18).
function updateText(b) {
  const parts = [];
  const run = b.update_running;
  if (run && run.kind === "push") parts.push(`updating to ${run.version}: ${run.step}, ${Math.floor(100 * run.have / run.total)} %`);
  if (b.update) parts.push(`${b.update.replace("_", " ")} · previous ${b.prev_fw_version || "—"}`);
  const last = b.last_update;
  if (last && last.outcome !== "updated") parts.push(`${last.version} ${last.outcome.replace("_", " ")}: ${last.reason}`);
  else if (b.update_refused) parts.push(`refused: ${b.update_refused}`);
  return parts.join(" · ") || "never updated";
}

function renderCar(c) {
  document.getElementById("car-head").replaceChildren(
    h("a", { href: "#" }, "← fleet"), h("h2", {}, c.car), h("span", { class: "muted" }, c.board_id), levelBadge(c.attention),
    h("span", { class: "muted" }, c.attention.reasons.map((r) => FAULT_LABELS[r] || REASON_LABELS[r] || r).join(" · ")));
  const live = c.live;
  panel("p-live", ["Live state", h("span", { class: "zh" }, "实时状态")],
    h("div", { class: "big-state" },
      h("div", {}, h("div", { class: "big-floor", "data-floor": floorText(live) }, floorText(live)), h("div", { class: "floor-label" }, "floor")),
      h("div", {}, ...livePills(live))),
    kv([["door", live.door ? `${live.door}${live.door === "open" ? ` for ${ago(live.door_open_since_ts)}` : ""}` : "—"],
        ["position", live.at_landing ? "level at landing" : live.in_door_zone ? "in door zone" : live.in_door_zone === false ? "outside door zone" : "—"],
        ["inspection", live.inspection ? "on (technician)" : live.inspection === false ? "off" : "—"],
        ["last data", `${clock(live.last_ts)} (${ago(live.last_ts)} ago)`]]));
  panel("p-faults", ["Open faults", h("span", { class: "zh" }, "当前故障")],
    c.open_faults.length ? h("table", {},
      h("tr", {}, h("th", {}, "fault"), h("th", {}, "since"), h("th", { class: "num" }, "for"), h("th", { class: "num", title: "GB/T 24476-2017 fault code" }, "code")),
      ...c.open_faults.map((f) => h("tr", { "data-fault": f.type },
        h("td", {}, faultChip(f)), h("td", {}, clock(f.raised_ts)), h("td", { class: "num" }, ago(f.raised_ts)),
        h("td", { class: "num" }, f.gbt24476_code ?? "—")))) : h("div", { class: "muted" }, "none"));
  const b = c.board;
  panel("p-board", ["Board health", h("span", { class: "zh" }, "设备状态")], kv([
    ["link", b.online === false ? "offline" : b.online ? `online · ${fmt(b.link_quality_pct, 2, " %")} frames received` : "—"],
    ["frames / lost", `${b.frames ?? "—"} / ${b.lost_frames ?? "—"}`],
    ["drops", `session ${b.session_drops ?? "—"} · board link ${b.board_link_drops ?? "—"} · FIFO ${b.fifo_overruns ?? "—"}`],
    ["heap free", b.heap_free === null || b.heap_free === undefined ? "—" : `${(b.heap_free / 1024).toFixed(1)} kB`],
    ["boots", `${b.boots ?? "—"} (last reset: ${b.reset_cause || "—"})`],
    ["firmware", `${b.fw_version || "—"} · ${b.sensor_model || "—"}${b.calibrated === false ? " · uncalibrated" : ""}${b.safe_mode ? " · SAFE MODE" : ""}`],
    ["firmware update", updateText(b)],
    ["uptime", b.uptime_s === null || b.uptime_s === undefined ? "—" : span(b.uptime_s)],
  ]));
  renderTrips(c);
  renderTrace(c);
  renderDaily(c);
  const d = c.doors;
  panel("p-doors", ["Doors", h("span", { class: "zh" }, "门系统")], kv([
    ["cycles", String(d.cycles)], ["reopenings", String(d.reopenings)],
    ["open time median", fmt(d.open_s_median, 1, " s")], ["open time p95", fmt(d.open_s_p95, 1, " s")],
    ["longest open", fmt(d.open_s_max, 1, " s")]]));
  const lv = c.leveling;
  panel("p-leveling", ["Leveling", h("span", { class: "zh" }, "平层")], kv([
    ["stops", String(lv.stops)], ["level", lv.level_pct === null ? "—" : `${lv.level_pct} % within ±${lv.tolerance_mm} mm`],
    ["off level", String(lv.by_status.off_level || 0)], ["outside door zone", String(lv.by_status.outside_door_zone || 0)],
    ["offset mean / max", `${fmt(lv.offset_mm_mean, 1, " mm")} / ${fmt(lv.offset_mm_max_abs, 1, " mm")}`]]));
  const m = c.maintenance;
  const v = m.last_visit;
  panel("p-maint", ["Maintenance", h("span", { class: "zh" }, "维保")], kv([
    ["now", m.in_progress_since_ts ? `technician on site for ${ago(m.in_progress_since_ts)}` : "no visit in progress"],
    ["last visit", v ? `${dateTime(v.start_ts)}` : "—"],
    ["duration", v ? `${span(v.duration_s)}${v.too_short ? " — below contract minimum" : ""}` : "—"],
    ["inspection runs", v ? String(v.inspection_runs) : "—"]]));
  panel("p-history", ["Recently cleared faults", h("span", { class: "zh" }, "已恢复故障")],
    c.cleared_faults.length ? h("table", {},
      h("tr", {}, h("th", {}, "fault"), h("th", {}, "raised"), h("th", {}, "cleared"), h("th", { class: "num" }, "duration"),
        h("th", { class: "num" }, "response"), h("th", { class: "num" }, "repair")),
      ...c.cleared_faults.map((f) => h("tr", {}, h("td", {}, faultLabel(f.type)), h("td", {}, dateTime(f.raised_ts)),
        h("td", {}, clock(f.event_ts)), h("td", { class: "num" }, span(f.duration_s)),
        h("td", { class: "num" }, span(f.response_s)), h("td", { class: "num" }, span(f.repair_s))))) :
      h("div", { class: "muted" }, "none"));
}

function renderDaily(c) {
  const d = c.daily;
  if (!d) {
    panel("p-daily", ["Daily record", h("span", { class: "zh" }, "日报")],
      h("div", { class: "muted" }, "No daily record yet: the first one closes at local midnight."));
    return;
  }
  const faults = Object.entries(d.faults_by_type || {}).map(([t, n]) => `${faultLabel(t)} ×${n}`).join(", ") || "none";
  const z = (d.ride_quality || {}).z_a95_pp_mg;
  panel("p-daily", ["Daily record", h("span", { class: "zh" }, "日报"), h("span", { class: "muted small" }, `  ${d.day}${d.partial ? " (partial)" : ""}`)],
    kv([["trips", `${d.trips} (▲ ${d.trips_up} / ▼ ${d.trips_down})`], ["run time", fmt(d.run_hours, 2, " h")],
        ["door cycles", `${d.door_cycles} (${d.door_reopenings} reopenings)`], ["faults raised", faults],
        ["maintenance", `${d.maintenance_visits} visits, ${fmt(d.maintenance_minutes, 0, " min")}`],
        ["ride z A95 p95", z ? fmt(z.p95, 1, " mg") : "—"], ["offline", fmt(d.offline_minutes, 0, " min")]]));
}

// Why a trip has no vibration figures (Trip.ride_quality_unjudged): a bare "—" said nothing.
const UNJUDGED_LABELS = {
  one_floor: "one-floor trip: no constant speed to judge 单层运行",
  short: "too short: no constant speed to judge 运行过短",
  no_vib: "no vibration data (lost on the link) 无振动数据",
};

function renderTrips(c) {
  const over = (t, k) => (t.over_limits.includes(k) ? "num over" : "num");
  const rows = c.trips.map((t) => {
    const rq = t.ride_quality || {};
    return h("tr", {
      class: "clickable" + (ui.tripShown === t.id ? " selected" : ""), "data-trip": String(t.id),
      on: { click: () => { location.hash = `car=${encodeURIComponent(c.car)}&trip=${t.id}`; } },
    },
      h("td", {}, clock(t.start_ts)), h("td", {}, t.direction === "up" ? "▲ up" : t.direction === "down" ? "▼ down" : "—"),
      h("td", {}, `${t.from_label ?? t.from_floor ?? "?"} → ${t.to_label ?? t.to_floor ?? "?"}`), h("td", { class: "num" }, fmt(t.duration_s, 1, " s")),
      h("td", { class: "num" }, fmt(t.peak_speed_mps, 2)),
      t.ride_quality_unjudged ? h("td", { colSpan: 4, class: "muted small" }, UNJUDGED_LABELS[t.ride_quality_unjudged] || t.ride_quality_unjudged) : [
        h("td", { class: over(t, "z_max_pp_mg") }, fmt(rq.z_max_pp_mg, 1)), h("td", { class: over(t, "z_a95_pp_mg") }, fmt(rq.z_a95_pp_mg, 1)),
        h("td", { class: over(t, "x_a95_pp_mg") }, fmt(rq.x_a95_pp_mg, 1)), h("td", { class: over(t, "y_a95_pp_mg") }, fmt(rq.y_a95_pp_mg, 1))],
      h("td", { class: "num" }, fmt(rq.accel_max_mps2, 2)), h("td", { class: "num" }, fmt(rq.jerk_max_mps3, 2)),
      h("td", {}, t.leveling.status.replaceAll("_", " ")), h("td", { class: "num" }, fmt(t.leveling.offset_mm, 1)));
  });
  const lim = c.limits_mg;
  panel("p-trips", ["Last trips", h("span", { class: "zh" }, "最近行程"),
    h("span", { class: "muted small" }, `  ride quality per ISO 18738-1; limits GB/T 10058: z max ${lim.z_max_pp} / A95 ${lim.z_a95_pp} mg, x,y A95 ${lim.xy_a95_pp} mg`)],
    c.trips.length ? h("table", {},
      h("tr", {}, h("th", {}, "start"), h("th", {}, "dir"), h("th", {}, "floors"), h("th", { class: "num" }, "duration"),
        h("th", { class: "num" }, "peak m/s"), h("th", { class: "num" }, "z max pp mg"), h("th", { class: "num" }, "z A95 mg"),
        h("th", { class: "num" }, "x A95 mg"), h("th", { class: "num" }, "y A95 mg"), h("th", { class: "num" }, "accel m/s²"),
        h("th", { class: "num" }, "jerk m/s³"), h("th", {}, "leveling"), h("th", { class: "num" }, "offset mm")),
      ...rows) : h("div", { class: "muted" }, "no trips yet"));
}

// ---------------------------------------------------------------------------------------------
// vibration trace (canvas)

async function renderTrace(c) {
  const wanted = ui.trip && c.trips.find((t) => t.id === ui.trip) ? ui.trip : (c.trips.find((t) => t.has_trace) || {}).id;
  const note = document.getElementById("trace-note");
  if (!wanted) {
    ui.trace = null; ui.tripShown = null;
    document.getElementById("trace-title").textContent = "";
    note.textContent = "No trip with a vibration trace yet.";
    drawTrace();
    return;
  }
  const key = `${c.car}/${wanted}`;
  ui.tripShown = wanted;
  for (const tr of document.querySelectorAll("#p-trips tr[data-trip]")) tr.classList.toggle("selected", Number(tr.dataset.trip) === wanted);
  if (ui.traceKey === key) return;
  ui.traceKey = key;
  const r = await fetch(`/api/trace?car=${encodeURIComponent(c.car)}&trip=${wanted}`, { cache: "no-store" });
  if (ui.traceKey !== key) return; // the user moved on meanwhile
  const trip = c.trips.find((t) => t.id === wanted);
  document.getElementById("trace-title").textContent = trip ? `${dateTime(trip.start_ts)} · ${trip.from_floor ?? "?"} → ${trip.to_floor ?? "?"}` : "";
  if (!r.ok) {
    ui.trace = null;
    note.textContent = "The raw samples of this trip are no longer kept on the Pi (only the last trips are).";
    drawTrace();
    return;
  }
  ui.trace = await r.json();
  const lim = ui.trace.limits_mg;
  note.textContent = `${ui.trace.samples} samples at ${ui.trace.rate_hz} Hz. Limit lines at ± half the GB/T 10058 peak-to-peak limits ` +
    `(z: max ${lim.z_max_pp}, A95 ${lim.z_a95_pp} mg; x, y: max ${lim.xy_max_pp}, A95 ${lim.xy_a95_pp} mg). ` +
    `Shaded: constant-speed region the figures are judged over.`;
  drawTrace();
}

function drawTrace() {
  const canvas = document.getElementById("trace-canvas");
  const dpr = window.devicePixelRatio || 1;
  const cssW = canvas.clientWidth || 1200, cssH = canvas.clientHeight || 420;
  canvas.width = Math.round(cssW * dpr); canvas.height = Math.round(cssH * dpr);
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, cssW, cssH);
  const legend = document.getElementById("trace-legend");
  const tr = ui.trace;
  canvas.dataset.drawn = tr ? "trace" : "empty";
  if (!tr) { legend.replaceChildren(); return; }
  const left = 56, right = 14, gapY = 40, top = 28, bottom = 26;
  const plotH = (cssH - top - bottom - gapY) / 2;
  const t = tr.t_s;
  const tMax = t[t.length - 1] || 1;
  const plots = [
    { title: "vertical z (Wk weighted, raw)", y0: top, series: [["raw", tr.raw_mg.z, "#b0bec5", 1], ["Wk z", tr.weighted_mg.z, "#1f5fa8", 1.4]],
      limMax: tr.limits_mg.z_max_pp / 2, limA95: tr.limits_mg.z_a95_pp / 2 },
    { title: "horizontal x, y (Wd weighted)", y0: top + plotH + gapY, series: [["Wd x", tr.weighted_mg.x, "#00897b", 1.2], ["Wd y", tr.weighted_mg.y, "#8e24aa", 1.2]],
      limMax: tr.limits_mg.xy_max_pp / 2, limA95: tr.limits_mg.xy_a95_pp / 2 },
  ];
  const X = (s) => left + (s / tMax) * (cssW - left - right);
  g.font = "11px sans-serif";
  for (const p of plots) {
    // Vertical scale: the larger of the data (inside the judged region when there is one, since
    // the ramps carry the car's acceleration) and 1.6x the max limit, symmetric about zero.
    let peak = p.limMax * 1.6;
    for (const [name, ys] of p.series) {
      if (name === "raw") continue;
      for (let i = 0; i < ys.length; i++) {
        if (tr.region_s && (t[i] < tr.region_s[0] || t[i] > tr.region_s[1])) continue;
        peak = Math.max(peak, Math.abs(ys[i]) * 1.15);
      }
    }
    const Y = (v) => p.y0 + plotH / 2 - (Math.max(-peak, Math.min(peak, v)) / peak) * (plotH / 2);
    g.fillStyle = "#fafbfc"; g.fillRect(left, p.y0, cssW - left - right, plotH);
    if (tr.region_s) { g.fillStyle = "#e3f2e5"; g.fillRect(X(tr.region_s[0]), p.y0, X(tr.region_s[1]) - X(tr.region_s[0]), plotH); }
    for (const gp of tr.gaps_s) { g.fillStyle = "#fdecea"; g.fillRect(X(gp[0]), p.y0, Math.max(2, X(gp[1]) - X(gp[0])), plotH); }
    g.strokeStyle = "#dde3ea"; g.lineWidth = 1; g.strokeRect(left, p.y0, cssW - left - right, plotH);
    g.fillStyle = "#6b7785"; g.textAlign = "right"; g.textBaseline = "middle";
    const step = niceStep(peak);
    for (let v = -Math.floor(peak / step) * step; v <= peak; v += step) {
      g.strokeStyle = v === 0 ? "#c5cdd6" : "#eef1f4"; g.beginPath(); g.moveTo(left, Y(v)); g.lineTo(cssW - right, Y(v)); g.stroke();
      g.fillText(`${Math.round(v)}`, left - 6, Y(v));
    }
    for (const [name, ys, color, width] of p.series) {
      g.strokeStyle = color; g.lineWidth = width; g.beginPath();
      // The raw trace carries the car's own acceleration on the ramps, far beyond the vibration
      // scale: leave those stretches out rather than draw them as flat lines along the frame.
      let pen = false;
      for (let i = 0; i < ys.length; i++) {
        if (name === "raw" && Math.abs(ys[i]) > peak) { pen = false; continue; }
        const x = X(t[i]), y = Y(ys[i]);
        pen ? g.lineTo(x, y) : g.moveTo(x, y);
        pen = true;
      }
      g.stroke();
    }
    for (const [lim, color, dash] of [[p.limMax, "#c62828", []], [p.limA95, "#ef9a9a", [6, 4]]]) {
      g.strokeStyle = color; g.lineWidth = 1.2; g.setLineDash(dash);
      for (const s of [1, -1]) { g.beginPath(); g.moveTo(left, Y(s * lim)); g.lineTo(cssW - right, Y(s * lim)); g.stroke(); }
      g.setLineDash([]);
    }
    g.fillStyle = "#1d2733"; g.textAlign = "left"; g.textBaseline = "bottom"; g.font = "600 12px sans-serif";
    g.fillText(p.title, left, p.y0 - 3); g.font = "11px sans-serif";
    g.save(); g.translate(14, p.y0 + plotH / 2); g.rotate(-Math.PI / 2); g.textAlign = "center"; g.fillStyle = "#6b7785";
    g.fillText("mg", 0, 0); g.restore();
  }
  g.fillStyle = "#6b7785"; g.textAlign = "center"; g.textBaseline = "top";
  const ts = niceStep(tMax / 3);
  for (let s = 0; s <= tMax; s += ts) g.fillText(`${s.toFixed(ts < 1 ? 1 : 0)} s`, X(s), cssH - bottom + 6);
  legend.replaceChildren(
    ...[["sw-raw", "raw z (car frame, gravity removed; ramps off scale)"], ["sw-wz", "Wk-weighted z"], ["sw-wx", "Wd-weighted x"],
      ["sw-wy", "Wd-weighted y"], ["sw-lim", "± ½ max peak-to-peak limit"], ["sw-a95", "± ½ A95 peak-to-peak limit"],
      ["sw-region", "constant-speed region"]]
      .map(([cls, label]) => h("span", {}, h("span", { class: `swatch ${cls}` }), label)));
}

function niceStep(range) {
  const raw = range / 2.5;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

window.addEventListener("hashchange", route);
window.addEventListener("resize", () => drawTrace());
route();
loadSnapshot().finally(connect);
