// The fleet dashboard: renders /api/open every OPEN_POLL_MS and /api/overview every OVERVIEW_POLL_MS.
// Car ids, sites and company names come from the Pis and the registry: written with textContent only.
"use strict";

const OPEN_POLL_MS = 2000; // an entrapment shows within this of its commit
const OVERVIEW_POLL_MS = 60000; // the server recomputes the ranking at most once a minute
const FAULT_NAMES = {
  entrapment: "困人 entrapment", stopped_outside_door_zone: "非平层停梯 stopped outside door zone",
  moving_with_door_open: "开门走梯 moving with door open", door_open_too_long: "长时间开门 door open too long",
  door_reopen_loop: "反复开关门 door reopen loop", abnormal_vibration: "运行振动异常 abnormal vibration",
  leveling_fault: "平层异常 leveling fault", overspeed: "超速 overspeed", alarm_button: "报警按钮 alarm button",
  floor_position_lost: "楼层位置丢失 floor position lost",
};

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "—" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function duration(seconds) {
  if (seconds < 3600) return `${Math.round(seconds / 60)} 分 min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} 小时 h`;
  return `${(seconds / 86400).toFixed(1)} 天 d`;
}

function reportHref(period, car) {
  const q = new URLSearchParams({ from: period[0], to: period[1] });
  if (car) q.append("car", car);
  return `/report?${q}`;
}

function renderOpen(faults) {
  const body = document.getElementById("open-rows");
  body.replaceChildren();
  for (const f of faults) {
    const tr = document.createElement("tr");
    tr.dataset.car = f.car;
    tr.dataset.fault = f.type;
    if (f.type === "entrapment") tr.className = "entrapment";
    if (!f.registered) tr.classList.add("unregistered");
    cell(tr, f.car, "car");
    cell(tr, FAULT_NAMES[f.type] || f.type);
    cell(tr, f.building);
    cell(tr, f.rescue_code);
    cell(tr, f.contractor);
    cell(tr, duration(f.open_s), "num");
    body.appendChild(tr);
  }
  document.getElementById("open-none").hidden = faults.length > 0;
  document.body.dataset.openVersion = String(Number(document.body.dataset.openVersion || 0) + 1);
}

function renderOverview(o) {
  document.getElementById("period").textContent = `${o.period[0]} — ${o.period[1]}`;
  const risk = document.getElementById("risk-rows");
  risk.replaceChildren();
  o.cars.forEach((c, i) => {
    const tr = document.createElement("tr");
    tr.dataset.car = c.car;
    if (!c.registered) tr.classList.add("unregistered");
    cell(tr, i + 1, "num");
    cell(tr, c.car, "car");
    cell(tr, c.score, "num");
    cell(tr, `${c.band_zh} ${c.band}`, `band-${c.band}`);
    cell(tr, c.entrapments, "num");
    cell(tr, c.late_responses, "num");
    cell(tr, c.short_visits, "num");
    const link = document.createElement("a");
    link.href = reportHref(o.period, c.car);
    link.textContent = "报告 report";
    cell(tr, "").replaceChildren(link);
    risk.appendChild(tr);
  });
  const contractors = document.getElementById("contractor-rows");
  contractors.replaceChildren();
  for (const k of o.contractors) {
    const tr = document.createElement("tr");
    tr.dataset.company = k.company;
    cell(tr, k.company);
    for (const v of [k.cars, k.visits, k.visit_min_mean, k.short_visits, k.missed_visits,
      `${k.late_responses}/${k.judged_faults}`, k.repeat_faults, k.points_per_car]) cell(tr, v, "num");
    contractors.appendChild(tr);
  }
  document.getElementById("fleet-report").href = reportHref(o.period, null);
  document.body.dataset.overviewVersion = String(Number(document.body.dataset.overviewVersion || 0) + 1);
}

async function poll(url, render, period) {
  try {
    const r = await fetch(url, { cache: "no-store" });
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    render(await r.json());
    document.getElementById("conn").textContent = "live";
  } catch (err) {
    document.getElementById("conn").textContent = `offline: ${err.message}`;
  }
  setTimeout(() => poll(url, render, period), period);
}

poll("/api/open", (j) => renderOpen(j.open), OPEN_POLL_MS);
poll("/api/overview", renderOverview, OVERVIEW_POLL_MS);
