// The k8s-simulator dashboard: one page, hash-routed views, live from /ws/monitoring.
// Plain DOM (text only, never innerHTML with data) and uPlot for time series; no build step.

const $main = document.getElementById("main");
const $live = document.getElementById("live");
const $banner = document.getElementById("banner");

// ---------------------------------------------------------------- helpers

function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

async function api(path, { method = "GET", body, query } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const res = await fetch(url, init);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok && res.status !== 202) {
    const err = new Error((data && data.message) || `${method} ${path}: HTTP ${res.status}`);
    err.status = res.status; err.data = data;
    throw err;
  }
  return data;
}

const fmt = {
  num: (v, d = 1) => (v === null || v === undefined || Number.isNaN(v)) ? "–" : Number(v).toLocaleString("en-US", { maximumFractionDigits: d }),
  pct: (v, d = 1) => (v === null || v === undefined) ? "–" : `${fmt.num(v, d)} %`,
  cores: (v) => (v === null || v === undefined) ? "–" : `${fmt.num(v, 2)} cores`,
  bytes: (v) => {
    if (v === null || v === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; let x = Number(v);
    while (x >= 1024 && i < units.length - 1) { x /= 1024; i += 1; }
    return `${fmt.num(x, 1)} ${units[i]}`;
  },
  age: (iso) => {
    if (!iso) return "–";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 120) return `${Math.round(s)}s`;
    if (s < 7200) return `${Math.round(s / 60)}m`;
    if (s < 172800) return `${Math.round(s / 3600)}h`;
    return `${Math.round(s / 86400)}d`;
  },
  time: (iso) => iso ? new Date(iso).toLocaleString() : "–",
};

function badge(text, tone) {
  const t = tone || ({ healthy: "ok", meeting: "ok", Running: "ok", Active: "ok", Available: "ok", Completed: "ok", resolved: "ok", completed: "ok",
    degraded: "warn", at_risk: "warn", Pending: "warn", warning: "warn", deploying: "warn", Progressing: "warn",
    unhealthy: "bad", breached: "bad", Failed: "bad", critical: "bad", firing: "bad", failed: "bad" }[text] || "info");
  return h("span", { class: `badge ${t}` }, text);
}

function table(caption, columns, rows, { empty = "Nothing to show.", label } = {}) {
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : undefined }, c.title)));
  const body = rows.length
    ? rows.map((r) => h("tr", { dataset: r.__data || {} }, columns.map((c) => h("td", { class: c.num ? "num" : c.cls }, c.cell(r)))))
    : [h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty))];
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": label || caption },
    h("table", {}, h("caption", {}, caption), h("thead", {}, head), h("tbody", {}, body)));
}

function field(label, control) { return h("label", {}, label, control); }

function message(text, ok) { return h("p", { class: `message ${ok ? "ok" : "bad"}`, role: ok ? "status" : "alert" }, text); }

function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

// ---------------------------------------------------------------- theme

document.getElementById("theme").addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  const next = dark ? "light" : "dark";
  document.documentElement.dataset.theme = next;
  try { localStorage.setItem("k8sim-theme", next); } catch (e) { /* private mode */ }
  route(); // charts take their colours at creation
});

// ---------------------------------------------------------------- live data

const live = { snapshot: null, received: 0, listeners: new Set(), deployListeners: new Set(), socket: null };
window.k8simLive = live; // for the browser console (and tests): what arrived, and when

function deliver(doc) {
  live.snapshot = doc; live.received += 1;
  showForeignMetrics(doc);
  setLive(true, `live · ${new Date(doc.timestamp).toLocaleTimeString()}`);
  live.listeners.forEach((f) => f(doc));
}

function connect(delay = 500) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${proto}://${location.host}/ws/monitoring`);
  live.socket = socket;
  socket.onopen = () => { delay = 500; setLive(true, "live"); };
  socket.onmessage = (event) => {
    let doc;
    try { doc = JSON.parse(event.data); } catch (e) { return; }
    if (doc.type === "deployment_progress") { live.deployListeners.forEach((f) => f(doc)); return; }
    if (doc.type === "monitoring_update" && doc.data?.services) deliver(doc.data); // CONTRACT.md's envelope
  };
  socket.onclose = () => {
    setLive(false, "disconnected, retrying…");
    setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  };
}

// The engine's snapshot names another backend holding one of its metrics APIs (a monitoring stack's
// adapter): kubectl top and the HPAs then read that backend, not the simulated load.
function showForeignMetrics(doc) {
  const foreign = doc?.metrics_apis?.foreign || [];
  $banner.hidden = !foreign.length;
  $banner.textContent = foreign.map((f) => `${f.apiservice} is served by ${f.service} (Available=${f.available}`
    + `${f.reason ? `: ${f.reason}` : ""}), not by the simulator: kubectl top and HPAs read that backend.`).join(" ");
}

function setLive(on, text) {
  $live.classList.toggle("on", on); $live.classList.toggle("off", !on);
  $live.lastElementChild.textContent = text;
}

function tenantsOf(doc) {
  return [...new Set(Object.values(doc?.services || {}).map((s) => s.tenant_id).filter(Boolean))].sort();
}

// ---------------------------------------------------------------- router

let current = null;

const views = {
  overview: overviewView, tenants: tenantsView, resources: resourcesView, deploy: deployView,
  sla: slaView, alerts: alertsView, scenarios: scenariosView,
};

function route() {
  const [name, ...rest] = (location.hash.replace(/^#\/?/, "") || "overview").split("/");
  const view = views[name] || views.overview;
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
  if (current && current.stop) current.stop();
  for (const a of document.querySelectorAll("nav a[data-view]")) {
    if (a.dataset.view === (views[name] ? name : "overview")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  $main.replaceChildren();
  current = view(arg);
  document.title = `${current.title} · k8s-simulator`;
}

// A view: render once, then refresh from REST at most every `every` ms while snapshots arrive.
function mount(title, build, { refresh, every = 3000, onSnapshot } = {}) {
  const section = h("section", { "aria-labelledby": "view-title" }, h("h2", { id: "view-title" }, title));
  $main.append(section);
  const ctx = { section, stopped: false };
  build(ctx);
  let last = 0; let running = false;
  const tick = async (force) => {
    // A hidden tab asks nothing: listing a big cluster every few seconds for nobody is real load.
    if (!refresh || ctx.stopped || running || (!force && (document.hidden || Date.now() - last < every))) return;
    running = true; last = Date.now();
    try { await refresh(ctx); } catch (e) { ctx.error?.(e); } finally { running = false; }
  };
  const listener = (doc) => { onSnapshot?.(ctx, doc); tick(false); };
  live.listeners.add(listener);
  const timer = setInterval(() => tick(false), every * 2); // keeps going if the engine is quiet
  const visible = () => { if (!document.hidden) tick(true); };
  document.addEventListener("visibilitychange", visible);
  tick(true);
  if (live.snapshot && onSnapshot) onSnapshot(ctx, live.snapshot);
  return { title, stop() {
    ctx.stopped = true; live.listeners.delete(listener); clearInterval(timer);
    document.removeEventListener("visibilitychange", visible); ctx.cleanup?.();
  } };
}

// ---------------------------------------------------------------- cluster overview

function meterRow(label, used, total, text) {
  return h("div", { class: "meter-row" }, h("span", {}, label),
    h("meter", { min: 0, max: total || 1, value: Math.min(used || 0, total || 1), high: (total || 1) * 0.85, optimum: 0,
      "aria-label": `${label}: ${text}` }), h("span", { class: "muted" }, text));
}

function overviewView() {
  return mount("Cluster overview", (ctx) => {
    ctx.cards = h("div", { class: "cards" }); ctx.body = h("div");
    ctx.section.append(ctx.cards, ctx.body);
    ctx.error = (e) => ctx.body.replaceChildren(message(`Capacity unavailable: ${e.message}`, false));
  }, {
    every: 4000,
    async refresh(ctx) {
      const cap = await api("/cluster/capacity");
      // The GPU faults firing now (the engine's GPUXidError, GPUFallenOffBus, GPUThermalThrottling), beside the GPUs.
      const gpuAlerts = Object.keys(cap.gpus || {}).length ? await api("/sla/alerts/history", { query: { state: "firing", limit: 200 } })
        .then((r) => r.alerts.filter((a) => a.name.startsWith("GPU"))).catch(() => []) : [];
      // The price of the nodes changes only as nodes come and go: asked again every 30 s, not every refresh.
      if (!ctx.cost || Date.now() - ctx.cost.at > COST_EVERY) {
        ctx.cost = { at: Date.now(), doc: await api("/cluster/cost?window=10m&aggregate=pool").catch(() => null) };
      }
      if (!ctx.lives || Date.now() - ctx.lives.at > 15000) {
        ctx.lives = { at: Date.now(), doc: await api("/cluster/nodes/history", { query: { hours: 6 } }).catch(() => null) };
      }
      const cost = ctx.cost.doc;
      const nodes = cap.nodes.length; const ready = cap.nodes.filter((n) => n.ready).length;
      const phases = cap.pods_by_phase || {};
      const summary = live.snapshot?.summary;
      ctx.cards.replaceChildren(
        card("Nodes ready", `${ready} / ${nodes}`),
        ...["Running", "Pending", "Succeeded", "Failed"].map((p) => card(`Pods ${p}`, fmt.num(phases[p] || 0, 0), `pods-${p.toLowerCase()}`)),
        card("Services", summary ? `${summary.healthy_services} / ${summary.total_services} healthy` : "–"),
        card("Requests/s", summary ? fmt.num(summary.total_requests_per_second) : "–"),
        card("SLA", summary ? fmt.pct(summary.sla_percentage, 3) : "–"),
        ...costCards({ hourly: cost?.hourly_cost_now, total: cost?.monthly_projection, totalLabel: "This month at that rate",
          totalId: "cost-monthly", digits: [2, 0] }),
      );
      const pools = cap.pools.map((p) => h("div", { class: "panel", dataset: { pool: p.name } },
        h("h3", {}, `${p.name} `, h("span", { class: "muted" }, `${p.ready_nodes}/${p.nodes} nodes ready${p.gpu_type ? ` · ${fmt.num(p.physical_gpus, 0)} ${p.gpu_type.toUpperCase()} GPUs` : ""}`)),
        meterRow("CPU req.", p.requested.cpu_cores, p.allocatable.cpu_cores, `${fmt.num(p.requested.cpu_cores)} of ${fmt.num(p.allocatable.cpu_cores, 0)} cores`),
        p.used ? meterRow("CPU used", p.used.cpu_cores, p.allocatable.cpu_cores, `${fmt.num(p.used.cpu_cores, 2)} cores`) : null,
        meterRow("Mem req.", p.requested.memory_bytes, p.allocatable.memory_bytes, `${fmt.bytes(p.requested.memory_bytes)} of ${fmt.bytes(p.allocatable.memory_bytes)}`),
        p.used ? meterRow("Mem used", p.used.memory_bytes, p.allocatable.memory_bytes, fmt.bytes(p.used.memory_bytes)) : null,
        Object.entries(p.gpu_devices || {}).map(([r, d]) => meterRow(r === "nvidia.com/gpu" ? "GPU req." : deviceName(r), d.requested,
          d.allocatable, `${fmt.num(d.requested, 0)} of ${fmt.num(d.allocatable, 0)}`)),
      ));
      const gpuRows = Object.entries(cap.gpu_types || {}).map(([type, g]) => ({ type, ...g }));
      const pending = cap.pending.map((g) => h("details", { class: "panel" },
        h("summary", {}, h("strong", {}, `${g.count} pending`), " · ", g.reason),
        h("ul", {}, g.pods.map((p) => h("li", {}, p)))));
      ctx.body.replaceChildren(
        h("h3", {}, "Node pools"), h("div", { class: "grid2" }, pools),
        h("div", { class: "grid2" },
          h("div", {}, h("h3", {}, "GPUs by type"), table("GPUs installed, and their devices requested of allocatable, per type", [
            { title: "Type", cell: (r) => r.type.toUpperCase() },
            { title: "Nodes", num: true, cell: (r) => fmt.num(r.nodes, 0) },
            { title: "GPUs", num: true, cell: (r) => fmt.num(r.physical_gpus, 0) },
            { title: "Devices (requested / allocatable)", cell: (r) => devicesText(r.gpu_devices) }],
          gpuRows.map((r) => ({ ...r, __data: { gpuType: r.type } }))),
            gpuAlerts.length ? table(`${gpuAlerts.length} GPU fault(s) firing`, [
              { title: "Alert", cell: (a) => a.name }, { title: "Severity", cell: (a) => badge(a.severity) },
              { title: "GPU", cell: (a) => a.service }, { title: "Message", cls: "reason", cell: (a) => a.message }], gpuAlerts) : null),
          h("div", {}, h("h3", {}, `Pending pods (${cap.pending_pods})`),
            pending.length ? pending : h("p", { class: "muted" }, "Every pod is placed."))),
        h("h3", {}, "Nodes"),
        table(`${nodes} nodes`, [
          { title: "Node", cell: (n) => n.name }, { title: "Pool", cell: (n) => n.pool }, { title: "Zone", cell: (n) => n.zone || "–" },
          { title: "Status", cell: (n) => badge(n.ready ? (n.schedulable ? "Ready" : "Cordoned") : "NotReady", n.ready ? "ok" : "bad") },
          { title: "CPU req./alloc.", num: true, cell: (n) => `${fmt.num(n.requested.cpu_cores)} / ${fmt.num(n.allocatable.cpu_cores, 0)}` },
          { title: "CPU used", num: true, cell: (n) => n.used ? fmt.num(n.used.cpu_cores, 2) : "–" },
          { title: "Memory req./alloc.", num: true, cell: (n) => `${fmt.bytes(n.requested.memory_bytes)} / ${fmt.bytes(n.allocatable.memory_bytes)}` },
          { title: "GPUs", cell: (n) => n.physical_gpus || Object.keys(n.gpu_devices || {}).length
            ? `${fmt.num(n.physical_gpus, 0)} ${n.gpu_type || ""}${n.gpu_sharing && n.gpu_sharing !== "none" ? ` (${n.gpu_sharing})` : ""}: ${devicesText(n.gpu_devices)}` : "–" },
          { title: "Taints", cell: (n) => n.taints.join(", ") || "–" }], cap.nodes),
        nodeTimeline(ctx.lives.doc),
      );
    },
  });
}

// Nodes over time and why each came or went (GET /cluster/nodes/history): the count as columns, then one
// row per Karpenter node and per node that went, its interval drawn across the window; the static
// pools' nodes still there are one line, not a bar each.
function nodeTimeline(doc) {
  if (!doc) return h("p", { class: "muted" }, "Node history unavailable (no PostgreSQL?).");
  const t0 = Date.parse(doc.start); const t1 = Date.parse(doc.end); const span = Math.max(t1 - t0, 1);
  const at = (iso, dflt) => iso ? Math.min(Math.max(Date.parse(iso), t0), t1) : dflt;
  const moved = doc.nodes.filter((n) => n.autoscaled || n.deleted_at);
  const stayed = doc.nodes.length - moved.length;
  const most = Math.max(1, ...doc.over_time.map((c) => c.nodes));
  const columns = h("div", { class: "node-count", role: "img",
    "aria-label": `Nodes over the last ${fmt.num(span / 3600000, 1)} h: from ${doc.over_time[0]?.nodes ?? 0} to ${doc.over_time.at(-1)?.nodes ?? 0}, at most ${most}` },
    doc.over_time.map((c) => h("span", { style: `height:${(100 * c.nodes / most).toFixed(1)}%`,
      title: `${fmt.time(c.at)}: ${c.nodes} nodes, $${fmt.num(c.hourly_cost, 2)}/h` })));
  const bar = (n) => {
    const a = at(n.created_at || n.claimed_at, t0); const b = at(n.deleted_at, t1);
    return h("div", { class: "span-track" }, h("span", { class: `span-bar ${n.went ? "gone" : ""}`,
      style: `left:${(100 * (a - t0) / span).toFixed(2)}%;width:${Math.max(0.5, 100 * (b - a) / span).toFixed(2)}%` }));
  };
  const steps = (n) => [["launched", n.launched_at], ["registered", n.registered_at], ["ready", n.ready_at],
    ["initialized", n.initialized_at], ["disrupted", n.disrupted_at]].filter(([, v]) => v)
    .map(([k, v]) => `${k} ${new Date(v).toLocaleTimeString()}`).join(" · ") || "–";
  return h("section", { class: "node-history", "aria-label": "Nodes over time" },
    h("h3", {}, "Nodes over time ", h("span", { class: "muted" }, `last ${fmt.num(span / 3600000, 1)} h · ${stayed} static-pool nodes still there`)),
    columns,
    table(`${moved.length} autoscaled or gone`, [
      { title: "Node", cell: (n) => n.node || h("span", { class: "muted" }, `${n.name} (no node)`) },
      { title: "Pool", cell: (n) => n.pool }, { title: "Type", cell: (n) => `${n.instance_type || "–"} ${n.capacity_type}` },
      { title: "Zone", cell: (n) => n.zone || "–" },
      { title: "$/h", num: true, cell: (n) => n.hourly_price === null ? "–" : fmt.num(n.hourly_price, 3) },
      { title: "Interval", cls: "span-cell", cell: bar },
      { title: "Came", cell: (n) => n.came }, { title: "Steps", cell: steps },
      { title: "Went", cell: (n) => n.went ? h("span", { title: n.message || "" }, badge(n.went, "warn"), n.deleted_at ? ` ${new Date(n.deleted_at).toLocaleTimeString()}` : "") : "–" }],
    moved.map((n) => ({ ...n, __data: { node: n.node || n.name } })), { empty: "No Karpenter node, and no node went, in this window." }));
}

function card(label, value, id, data = {}) {
  return h("div", { class: "card", dataset: id ? { card: id, ...data } : data }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

// A device plugin resource as people say it: mig-1g.5gb, gpu.shared.
function deviceName(resource) { return resource.replace(/^nvidia\.com\//, ""); }

// GPU devices by resource, requested / allocatable: "mig-1g.5gb 2/4 · mig-3g.20gb 0/2".
function devicesText(devices) {
  const parts = Object.entries(devices || {}).map(([r, d]) => `${deviceName(r)} ${fmt.num(d.requested, 0)}/${fmt.num(d.allocatable, 0)}`);
  return parts.length ? parts.join(" · ") : "–";
}

// ---------------------------------------------------------------- cost

// Prices change only as nodes and pods come and go: a view asks GET /cluster/cost again every 30 s, not every refresh.
const COST_EVERY = 30000;

// Dollars: cents from $1, four places below (a tenant's few pods cost fractions of a cent per minute); a cost too
// small for those places is "< $0.0001", not a free "$0".
function usd(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const d = digits ?? (Math.abs(v) >= 1 ? 2 : 4);
  return v > 0 && v < 0.5 * 10 ** -d ? `< $${(10 ** -d).toFixed(d)}` : `$${fmt.num(v, d)}`;
}

// The cost cards every view shows the same way: the rate now and a total (a month at that rate, a window's bill).
// data: per card, attributes with the exact figures (the tests read them).
function costCards({ hourly, total, hourlyLabel = "Cost now", totalLabel, totalId, digits = [], data = [{}, {}] }) {
  return [card(hourlyLabel, hourly === null || hourly === undefined ? "–" : `${usd(hourly, digits[0])}/h`, "cost-hourly", data[0]),
    card(totalLabel, usd(total, digits[1]), totalId, data[1])];
}

// A tenant's cost from GET /cluster/cost?aggregate=tenant (its exact id): the window's total, and $/h now as the
// rate over the last few minutes while its pods ran (0 when none runs at the window's end). Explicit windows
// (Unix seconds) so what is shown can be asked again and compared.
const RATE_SECONDS = 300;
async function tenantCost(tenant, seconds) {
  const end = Math.floor(Date.now() / 1000);
  const ask = (from) => api("/cluster/cost", { query: { window: `${from},${end}`, aggregate: "tenant" } });
  const [over, recent] = await Promise.all([ask(end - Math.round(seconds)), ask(end - RATE_SECONDS)]);
  const mine = (doc) => doc.data[0]?.[tenant] || null;
  const last = mine(recent);
  const running = last && last.end === recent.window.end && last.minutes > 0;
  return { total: mine(over)?.totalCost ?? 0, hourly: running ? last.totalCost * 60 / last.minutes : 0,
    window: `${end - Math.round(seconds)},${end}`, rateWindow: `${end - RATE_SECONDS},${end}` };
}

// ---------------------------------------------------------------- tenants

const METRICS = [
  { key: "rps", title: "Requests per second", unit: "req/s" },
  { key: "latency", title: "Response time", unit: "ms" },
  { key: "errors", title: "Error rate", unit: "%" },
  { key: "cpu", title: "CPU (of limit)", unit: "%" },
  { key: "memory", title: "Memory", unit: "MiB" },
  { key: "ready", title: "Ready replicas", unit: "" },
  { key: "gpu", title: "GPU utilisation", unit: "%" },
];

// One point of one tenant (or one of its services) from a monitoring document.
function pointOf(doc, tenant, service) {
  const entries = Object.entries(doc.services || {}).filter(([k, v]) => v.tenant_id === tenant && (!service || k === service)).map(([, v]) => v);
  if (!entries.length) return null;
  const rps = entries.reduce((a, v) => a + v.network.requests_per_second, 0);
  const weighted = (f) => rps > 0 ? entries.reduce((a, v) => a + f(v) * v.network.requests_per_second, 0) / rps
    : entries.reduce((a, v) => a + f(v), 0) / entries.length;
  const gpus = entries.filter((v) => v.gpu);
  const gpuCount = gpus.reduce((a, v) => a + v.gpu.count, 0);
  return {
    t: Date.parse(doc.timestamp) / 1000, rps,
    latency: weighted((v) => v.network.response_time_ms), errors: weighted((v) => v.network.error_rate_percent),
    cpu: entries.reduce((a, v) => a + v.cpu.usage_percent, 0) / entries.length,
    memory: entries.reduce((a, v) => a + v.memory.usage_mb, 0),
    ready: entries.reduce((a, v) => a + (v.replicas ? v.replicas.ready : v.pods?.ready || 0), 0),
    gpu: gpuCount ? gpus.reduce((a, v) => a + v.gpu.utilization_percent * v.gpu.count, 0) / gpuCount : null,
  };
}

function makeChart(el, metric, label) {
  const width = Math.max(300, el.clientWidth - 10);
  const opts = {
    width, height: 170, legend: { show: true, live: true },
    scales: { x: { time: true } },
    axes: [
      { stroke: css("--muted"), grid: { stroke: css("--grid") }, ticks: { stroke: css("--grid") } },
      { stroke: css("--muted"), grid: { stroke: css("--grid") }, ticks: { stroke: css("--grid") }, size: 55 },
    ],
    series: [{}, { label: `${label} (${metric.unit || "count"})`, stroke: css("--series"), width: 2, fill: "transparent", spanGaps: false }],
  };
  return new uPlot(opts, [[], []], el);
}

const RANGES = [["0.25", "15 minutes"], ["1", "1 hour"], ["6", "6 hours"], ["24", "24 hours"], ["168", "7 days"]];

function tenantsView(arg) {
  const state = { tenant: arg, service: "", hours: 1, points: [], charts: new Map(), observer: null };
  return mount("Tenants", (ctx) => {
    const tenants = tenantsOf(live.snapshot);
    if (!state.tenant && tenants.length) state.tenant = tenants[0];
    ctx.picker = h("select", { id: "tenant-select", onchange: (e) => { location.hash = `#/tenants/${encodeURIComponent(e.target.value)}`; } });
    ctx.services = h("select", { id: "service-select", onchange: (e) => { state.service = e.target.value; state.points = []; loadHistory(ctx); } });
    ctx.range = h("select", { id: "range-select", onchange: (e) => { state.hours = Number(e.target.value); loadHistory(ctx); loadCost(ctx); } },
      RANGES.map(([v, t]) => h("option", { value: v, selected: v === "1" }, t)));
    ctx.summary = h("div"); ctx.table = h("div"); ctx.grid = h("div", { class: "charts" }); ctx.note = h("p", { class: "muted" });
    ctx.costs = h("div", { class: "cards", role: "region", "aria-label": "Cost of the tenant" });
    ctx.section.append(h("div", { class: "filters" }, field("Tenant", ctx.picker), field("Service", ctx.services), field("Time range", ctx.range)),
      ctx.summary, ctx.costs, ctx.note, ctx.grid, h("h3", {}, "Services"), ctx.table);
    ctx.observer = new ResizeObserver(() => { for (const c of state.charts.values()) c.plot.setSize({ width: Math.max(300, c.el.clientWidth - 10), height: 170 }); });
    ctx.cleanup = () => ctx.observer.disconnect();
    fillPickers(ctx);
    loadHistory(ctx);
  }, {
    every: COST_EVERY,
    refresh: (ctx) => loadCost(ctx),
    onSnapshot(ctx, doc) {
      fillPickers(ctx);
      renderServices(ctx, doc);
      const p = state.tenant && pointOf(doc, state.tenant, state.service);
      if (p && (!state.points.length || p.t > state.points[state.points.length - 1].t)) {
        state.points.push(p);
        const cutoff = p.t - state.hours * 3600;
        while (state.points.length && state.points[0].t < cutoff) state.points.shift();
        drawCharts(ctx);
      }
    },
  });

  function fillPickers(ctx) {
    const tenants = tenantsOf(live.snapshot);
    if (state.tenant && !tenants.includes(state.tenant)) tenants.unshift(state.tenant);
    if (ctx.picker.options.length !== tenants.length || [...ctx.picker.options].some((o, i) => o.value !== tenants[i])) {
      ctx.picker.replaceChildren(...tenants.map((t) => h("option", { value: t, selected: t === state.tenant }, t)));
    }
    const services = Object.entries(live.snapshot?.services || {}).filter(([, v]) => v.tenant_id === state.tenant).map(([k]) => k).sort();
    const wanted = ["", ...services];
    if (ctx.services.options.length !== wanted.length || [...ctx.services.options].some((o, i) => o.value !== wanted[i])) {
      ctx.services.replaceChildren(h("option", { value: "" }, "All services (tenant)"),
        ...services.map((s) => h("option", { value: s, selected: s === state.service }, s.split("/")[1])));
    }
  }

  function renderServices(ctx, doc) {
    const rows = Object.entries(doc.services).filter(([, v]) => v.tenant_id === state.tenant).sort(([a], [b]) => a.localeCompare(b));
    const sla = doc.tenant_sla?.[state.tenant];
    ctx.summary.replaceChildren(
      h("p", {}, state.tenant ? [`Tenant `, h("strong", {}, state.tenant), ` · ${rows.length} services`,
        sla ? [" · SLA ", h("strong", {}, fmt.pct(sla.sla_percentage, 3)), " ", badge(sla.sla_status)] : null] : "No tenant has services yet: deploy one."));
    ctx.table.replaceChildren(
      table(`Services of ${state.tenant || "–"}`, [
        { title: "Service", cell: ([k]) => h("a", { href: "#", onclick: (e) => { e.preventDefault(); state.service = k; ctx.services.value = k; state.points = []; loadHistory(ctx); } }, k.split("/")[1]) },
        { title: "Health", cell: ([, v]) => badge(v.health.status) },
        { title: "Replicas", num: true, cell: ([, v]) => v.replicas ? `${v.replicas.ready}/${v.replicas.desired}` : "–" },
        { title: "CPU", num: true, cell: ([, v]) => fmt.pct(v.cpu.usage_percent) },
        { title: "Memory", num: true, cell: ([, v]) => `${fmt.num(v.memory.usage_mb, 0)} MiB` },
        { title: "Req/s", num: true, cell: ([, v]) => fmt.num(v.network.requests_per_second) },
        { title: "Latency", num: true, cell: ([, v]) => `${fmt.num(v.network.response_time_ms, 0)} ms` },
        { title: "Errors", num: true, cell: ([, v]) => fmt.pct(v.network.error_rate_percent, 2) },
        { title: "GPU", num: true, cell: ([, v]) => v.gpu ? `${fmt.pct(v.gpu.utilization_percent, 0)} of ${v.gpu.count}` : "–" },
      ], rows, { empty: "No services for this tenant." }));
  }

  // The tenant's cost over the chosen time range (the whole tenant: a service's share is not split out).
  async function loadCost(ctx) {
    if (!state.tenant) return;
    const asked = state.costAsked = (state.costAsked || 0) + 1;
    const range = RANGES.find(([v]) => Number(v) === state.hours)?.[1] || `${state.hours} h`;
    let cost = null;
    try { cost = await tenantCost(state.tenant, state.hours * 3600); } catch (e) { cost = null; }
    if (asked !== state.costAsked || ctx.stopped) return; // a newer answer (another range) is on its way
    ctx.costs.replaceChildren(...costCards({
      hourly: cost?.hourly, total: cost?.total, hourlyLabel: `Cost now (last ${RATE_SECONDS / 60} min)`,
      totalLabel: `Cost over the last ${range}`, totalId: "cost-window",
      data: [cost ? { usd: String(cost.hourly), window: cost.rateWindow } : {}, cost ? { usd: String(cost.total), window: cost.window } : {}] }));
  }

  async function loadHistory(ctx) {
    if (!state.tenant) return;
    ctx.note.textContent = "Loading history…";
    try {
      const hist = await api("/monitoring/metrics/history", { query: { hours: state.hours, points: 360 } });
      const pts = hist.history.map((x) => pointOf(x.data, state.tenant, state.service)).filter(Boolean);
      const seen = new Set(pts.map((p) => p.t));
      const cutoff = Date.now() / 1000 - state.hours * 3600;
      state.points = [...pts, ...state.points.filter((p) => !seen.has(p.t))].filter((p) => p.t >= cutoff).sort((a, b) => a.t - b.t);
      ctx.note.textContent = `${pts.length} points of history over ${state.hours >= 1 ? `${state.hours} h` : `${state.hours * 60} min`}, then live.`;
    } catch (e) {
      ctx.note.textContent = `History unavailable (${e.message}); showing live points only.`;
    }
    drawCharts(ctx);
  }

  function drawCharts(ctx) {
    if (typeof uPlot === "undefined") return;
    const label = state.service ? state.service.split("/")[1] : state.tenant;
    const metrics = METRICS.filter((m) => m.key !== "gpu" || state.points.some((p) => p.gpu !== null));
    for (const m of metrics) {
      let c = state.charts.get(m.key);
      if (!c || c.label !== label) {
        if (c) { c.plot.destroy(); c.box.remove(); }
        const el = h("div");
        const caption = h("p", { class: "muted", dataset: { caption: m.key } });
        const box = h("figure", { class: "chart", dataset: { metric: m.key, points: "0" }, "aria-label": `${m.title} of ${label}` },
          h("h3", {}, m.title), el, caption);
        ctx.grid.append(box);
        ctx.observer.observe(box);
        c = { box, el, caption, label, plot: makeChart(el, m, label) };
        state.charts.set(m.key, c);
      }
      const xs = state.points.map((p) => p.t); const ys = state.points.map((p) => p[m.key]);
      c.plot.setData([xs, ys]);
      c.box.dataset.points = String(xs.length);
      const latest = ys.length ? ys[ys.length - 1] : null;
      c.caption.textContent = `${xs.length} points · latest ${fmt.num(latest, 2)} ${m.unit}`;
    }
  }
}

// ---------------------------------------------------------------- resources

const resourceFilters = { tenant: "", namespace: "", kind: "", status: "", text: "" };

function resourcesView() {
  let all = [];
  return mount("Resources", (ctx) => {
    const input = (key, el) => { el.value = resourceFilters[key]; el.addEventListener("input", () => { resourceFilters[key] = el.value; render(ctx); }); return el; };
    ctx.selects = {
      tenant: input("tenant", h("select", { id: "filter-tenant" })), namespace: input("namespace", h("select", { id: "filter-namespace" })),
      kind: input("kind", h("select", { id: "filter-kind" })),
      status: input("status", h("select", { id: "filter-status" }, h("option", { value: "" }, "Any"), h("option", { value: "ready" }, "Ready"), h("option", { value: "not-ready" }, "Not ready"))),
    };
    ctx.text = input("text", h("input", { id: "filter-text", type: "search", placeholder: "name contains…" }));
    ctx.out = h("div"); ctx.msg = h("div"); ctx.history = h("div", { id: "object-history" });
    ctx.section.append(h("div", { class: "filters" }, field("Tenant", ctx.selects.tenant), field("Namespace", ctx.selects.namespace),
      field("Kind", ctx.selects.kind), field("Status", ctx.selects.status), field("Name", ctx.text)), ctx.msg, ctx.history, ctx.out);
    ctx.error = (e) => ctx.msg.replaceChildren(message(`Resources unavailable: ${e.message}`, false));
  }, {
    every: 5000,
    async refresh(ctx) {
      const data = await api("/k8s/resources");
      all = data.resources;
      ctx.msg.replaceChildren();
      options(ctx.selects.tenant, all.map((r) => r.tenant_id).filter(Boolean), "Any tenant", "tenant");
      options(ctx.selects.namespace, all.map((r) => r.namespace).filter(Boolean), "Any namespace", "namespace");
      options(ctx.selects.kind, all.map((r) => r.kind), "Any kind", "kind");
      render(ctx);
    },
  });

  function options(select, values, anyLabel, key) {
    const wanted = ["", ...[...new Set(values)].sort()];
    if (resourceFilters[key] && !wanted.includes(resourceFilters[key])) wanted.push(resourceFilters[key]);
    if (select.options.length === wanted.length && [...select.options].every((o, i) => o.value === wanted[i])) return;
    select.replaceChildren(...wanted.map((v) => h("option", { value: v, selected: v === resourceFilters[key] }, v || anyLabel)));
  }

  function render(ctx) {
    const f = resourceFilters;
    const rows = all.filter((r) => (!f.tenant || r.tenant_id === f.tenant) && (!f.namespace || r.namespace === f.namespace)
      && (!f.kind || r.kind === f.kind) && (!f.status || (f.status === "ready") === r.ready)
      && (!f.text || r.name.toLowerCase().includes(f.text.toLowerCase())))
      // What needs attention first, then the user's own objects before cluster-scoped ones.
      .sort((a, b) => (a.ready - b.ready) || (!a.namespace - !b.namespace) || a.namespace.localeCompare(b.namespace)
        || a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name));
    const notReady = rows.filter((r) => !r.ready).length;
    ctx.out.replaceChildren(table(`${rows.length} of ${all.length} objects · ${notReady} not ready`, [
      { title: "Kind", cell: (r) => r.kind }, { title: "Namespace", cell: (r) => r.namespace || "–" },
      { title: "Name", cell: (r) => r.name },
      { title: "Status", cell: (r) => badge(r.status, r.ready ? "ok" : (r.status === "Pending" || r.status === "Progressing" ? "warn" : "bad")) },
      { title: "Ready", num: true, cell: (r) => r.replicas ? `${r.replicas.ready}/${r.replicas.desired}` : (r.ready ? "yes" : "no") },
      { title: "Age", num: true, cell: (r) => fmt.age(r.created_at) },
      { title: "Tenant", cell: (r) => r.tenant_id || "–" },
      { title: "Reason", cls: "reason", cell: (r) => r.reason || "" },
      { title: "Actions", cell: (r) => h("span", { class: "actions" },
        h("button", { type: "button", "aria-label": `History of ${r.kind} ${r.namespace ? `${r.namespace}/` : ""}${r.name}`,
          onclick: () => showHistory(ctx, r) }, "History"),
        h("button", { type: "button", class: "danger", "aria-label": `Delete ${r.kind} ${r.namespace ? `${r.namespace}/` : ""}${r.name}`,
          onclick: () => remove(ctx, r) }, "Delete")) },
    ], rows.slice(0, 1000).map((r) => ({ ...r, __data: { id: r.id, status: r.status } })), { empty: "No objects match." }));
  }

  // The operator's record of the object (and of earlier objects of the same name), newest last.
  async function showHistory(ctx, r) {
    const id = `${r.kind} ${r.namespace ? `${r.namespace}/` : ""}${r.name}`;
    const q = new URLSearchParams({ kind: r.kind, name: r.name, limit: "5000" });
    if (r.namespace) q.set("namespace", r.namespace);
    try {
      const data = await api(`/k8s/resources/history?${q}`);
      const steps = data.steps.slice(-100);
      const detail = (d) => Object.entries(d || {}).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
      ctx.history.replaceChildren(h("div", { class: "history" },
        h("h3", {}, `History of ${id}`),
        table(`${steps.length} of ${data.count} recorded steps${data.next_after_id ? " (more recorded)" : ""}`, [
          { title: "When", cell: (st) => new Date(st.occurred_at).toLocaleString() },
          { title: "Step", cell: (st) => badge(st.transition, st.transition === "event" ? (st.detail.type === "Warning" ? "warn" : "info") : undefined) },
          { title: "Detail", cls: "detail", cell: (st) => detail(st.detail) },
        ], steps, { empty: "Nothing recorded yet." }),
        h("button", { type: "button", onclick: () => ctx.history.replaceChildren() }, "Close history")));
      ctx.history.querySelector("h3").scrollIntoView({ block: "nearest" });
    } catch (e) { ctx.msg.replaceChildren(message(`History unavailable: ${e.message}`, false)); }
  }

  async function remove(ctx, r) {
    if (!confirm(`Delete ${r.kind} ${r.namespace ? `${r.namespace}/` : ""}${r.name}?`)) return;
    try {
      const res = await api(`/k8s/resources/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.kind)}/${encodeURIComponent(r.name)}`, { method: "DELETE" });
      ctx.msg.replaceChildren(message(res.message || `${r.id} deleted`, true));
      all = all.filter((x) => x.id !== r.id); render(ctx);
    } catch (e) { ctx.msg.replaceChildren(message(`Delete failed: ${e.message}`, false)); }
  }
}

// ---------------------------------------------------------------- deploy

function deployView() {
  let deploymentId = null; let progress = null;
  const onProgress = (ev) => { if (ev.deployment_id === deploymentId) progress?.(ev); };
  live.deployListeners.add(onProgress);
  const view = mount("Deploy a manifest", (ctx) => {
    ctx.text = h("textarea", { id: "manifest", spellcheck: false, placeholder: "apiVersion: apps/v1\nkind: Deployment\n…" });
    ctx.file = h("input", { id: "manifest-file", type: "file", accept: ".yaml,.yml,.json,text/yaml",
      onchange: async (e) => { const f = e.target.files[0]; if (f) { ctx.text.value = await f.text(); ctx.out.replaceChildren(message(`Loaded ${f.name} (${f.size} bytes). Validate or deploy it.`, true)); } } });
    ctx.tenant = h("input", { id: "deploy-tenant", type: "text", placeholder: "optional, e.g. t1", autocomplete: "off" });
    ctx.namespace = h("input", { id: "deploy-namespace", type: "text", placeholder: "default", autocomplete: "off" });
    ctx.validate = h("button", { type: "button", onclick: () => validate(ctx) }, "Validate");
    ctx.deploy = h("button", { type: "button", class: "primary", onclick: () => deploy(ctx) }, "Deploy");
    ctx.out = h("div", { id: "deploy-result" });
    ctx.section.append(
      h("div", { class: "form" }, field("Manifest file", ctx.file), field("Tenant id", ctx.tenant), field("Namespace", ctx.namespace)),
      field("Manifest (YAML, several documents separated by ---)", ctx.text),
      h("div", { class: "form" }, ctx.validate, ctx.deploy), ctx.out);
  });
  const stop = view.stop;
  view.stop = () => { live.deployListeners.delete(onProgress); stop(); };
  return view;

  function body(ctx) {
    const b = { manifest: ctx.text.value };
    if (ctx.tenant.value.trim()) b.tenant_id = ctx.tenant.value.trim();
    if (ctx.namespace.value.trim()) b.namespace = ctx.namespace.value.trim();
    return b;
  }

  async function validate(ctx) {
    if (!ctx.text.value.trim()) { ctx.out.replaceChildren(message("Paste or upload a manifest first.", false)); return null; }
    ctx.validate.disabled = true;
    try {
      const res = await api("/k8s/manifest/parse", { method: "POST", body: body(ctx) });
      const byIndex = new Map();
      for (const e of res.errors || []) { if (!byIndex.has(e.index)) byIndex.set(e.index, []); byIndex.get(e.index).push(e); }
      const rows = res.resources.map((r, i) => ({ i, r, errors: byIndex.get(i) || [] }));
      ctx.out.replaceChildren(
        message(res.valid ? `All ${res.count} documents pass the cluster's dry run.` : res.message, res.valid),
        table("Per-document validation (server-side dry run)", [
          { title: "#", num: true, cell: (x) => x.i }, { title: "Kind", cell: (x) => x.r.kind },
          { title: "Name", cell: (x) => x.r.metadata?.name || "–" }, { title: "Namespace", cell: (x) => x.r.metadata?.namespace || "–" },
          { title: "Result", cell: (x) => x.errors.length ? badge("invalid", "bad") : badge("valid", "ok") },
          { title: "Field", cell: (x) => x.errors.map((e) => e.field || "").join("; ") },
          { title: "Message", cls: "reason", cell: (x) => x.errors.map((e) => e.message).join("; ") },
        ], rows));
      return res;
    } catch (e) {
      const problems = e.data?.errors || [];
      ctx.out.replaceChildren(message(e.message, false), problems.length ? table("Problems", [
        { title: "#", num: true, cell: (p) => p.index ?? "–" }, { title: "Kind", cell: (p) => p.kind || "–" },
        { title: "Name", cell: (p) => p.name || "–" }, { title: "Field", cell: (p) => p.field || (p.line ? `line ${p.line}` : "–") },
        { title: "Message", cls: "reason", cell: (p) => p.message }], problems) : null);
      return null;
    } finally { ctx.validate.disabled = false; }
  }

  async function deploy(ctx) {
    if (!ctx.text.value.trim()) { ctx.out.replaceChildren(message("Paste or upload a manifest first.", false)); return; }
    ctx.deploy.disabled = true;
    try {
      const res = await api("/k8s/manifest/deploy", { method: "POST", body: body(ctx), query: { wait: "false" } });
      deploymentId = res.deployment_id;
      const state = new Map(res.resources.map((r) => [r.id, r]));
      const status = h("p", { role: "status" });
      const holder = h("div");
      const draw = (ev) => {
        for (const r of ev.resources || []) state.set(r.id, r);
        status.replaceChildren(badge(ev.status), ` ${ev.deployed_count ?? 0} ready, ${ev.failed_count ?? 0} failed of ${state.size}`,
          ev.message ? ` · ${ev.message}` : "");
        holder.replaceChildren(table(`Deployment ${deploymentId}`, [
          { title: "Kind", cell: (r) => r.kind }, { title: "Namespace", cell: (r) => r.namespace || "–" }, { title: "Name", cell: (r) => r.name },
          { title: "Status", cell: (r) => badge(r.status, r.ready ? "ok" : (["failed", "Failed"].includes(r.status) ? "bad" : "warn")) },
          { title: "Reason", cls: "reason", cell: (r) => r.reason || "" }], [...state.values()].map((r) => ({ ...r, __data: { id: r.id } }))));
      };
      progress = draw;
      ctx.out.replaceChildren(h("h3", {}, "Progress"), status, holder);
      draw(res);
    } catch (e) {
      const problems = e.data?.errors || [];
      ctx.out.replaceChildren(message(`Not deployed: ${e.message}`, false), problems.length ? table("Rejected documents", [
        { title: "#", num: true, cell: (p) => p.index ?? "–" }, { title: "Kind", cell: (p) => p.kind || "–" }, { title: "Name", cell: (p) => p.name || "–" },
        { title: "Field", cell: (p) => p.field || "–" }, { title: "Message", cls: "reason", cell: (p) => p.message }], problems) : null);
    } finally { ctx.deploy.disabled = false; }
  }
}

// ---------------------------------------------------------------- SLA

function slaView() {
  const state = { tenant: "", days: 30 };
  return mount("Service level", (ctx) => {
    ctx.tenant = h("select", { id: "sla-tenant", onchange: (e) => { state.tenant = e.target.value; ctx.force(); } });
    ctx.days = h("select", { id: "sla-days", onchange: (e) => { state.days = Number(e.target.value); ctx.force(); } },
      [["1", "1 day"], ["7", "7 days"], ["30", "30 days"]].map(([v, t]) => h("option", { value: v, selected: v === "30" }, t)));
    ctx.out = h("div");
    ctx.section.append(h("div", { class: "filters" }, field("Tenant", ctx.tenant), field("Report period", ctx.days)), ctx.out);
    ctx.error = (e) => ctx.out.replaceChildren(message(`SLA unavailable: ${e.message}`, false));
    ctx.force = () => { ctx.last = 0; refresh(ctx).catch(ctx.error); };
  }, { every: 5000, refresh: (ctx) => refresh(ctx) });

  async function refresh(ctx) {
    const tenants = tenantsOf(live.snapshot);
    if (ctx.tenant.options.length !== tenants.length + 1) {
      ctx.tenant.replaceChildren(h("option", { value: "" }, "Whole cluster"), ...tenants.map((t) => h("option", { value: t, selected: t === state.tenant }, t)));
    }
    const q = { tenant_id: state.tenant || undefined };
    const [status, report] = await Promise.all([api("/sla/status", { query: q }), api("/sla/report", { query: { ...q, days: state.days } })]);
    const pct = status.percentage; const target = status.target;
    const budget = status.error_budget_remaining;
    ctx.out.replaceChildren(
      h("div", { class: "grid2" },
        h("div", { class: "panel gauge", dataset: { sla: "gauge" } },
          h("h3", {}, `Availability over ${fmt.num(status.window_seconds / 3600, 1)} h`),
          h("div", { class: "big" }, pct === null ? "–" : fmt.pct(pct, 3), " ", badge(status.status)),
          h("meter", { min: Math.min(95, target - 1), max: 100, low: target, optimum: 100, value: pct ?? 0, "aria-label": `Availability ${fmt.pct(pct, 3)} against a target of ${target} %` }),
          h("span", { class: "muted" }, `Target ${target} % · ${fmt.num(status.requests?.good, 0)} good of ${fmt.num(status.requests?.total, 0)} requests`)),
        h("div", { class: "panel gauge" },
          h("h3", {}, "Error budget remaining"),
          h("div", { class: "big" }, budget === null || budget === undefined ? "–" : fmt.pct(100 * budget, 1)),
          h("meter", { min: 0, max: 1, low: 0.25, high: 0.5, optimum: 1, value: Math.max(0, budget ?? 0), "aria-label": `Error budget remaining ${fmt.pct(100 * (budget ?? 0), 1)}` }),
          h("span", { class: "muted" }, `As of ${fmt.time(status.as_of)}`))),
      h("h3", {}, "Burn rates"),
      table("Error-budget burn rate per window (1 = spending exactly the budget; alerts at 14.4 over 1 h, 6 over 6 h)", [
        { title: "Window", cell: ([w]) => w }, { title: "Burn rate", num: true, cell: ([, v]) => fmt.num(v, 3) },
        { title: "", cell: ([, v]) => badge(v >= 14.4 ? "fast burn" : v >= 1 ? "burning" : "within budget", v >= 14.4 ? "bad" : v >= 1 ? "warn" : "ok") }],
        Object.entries(status.burn_rates || {})),
      h("h3", {}, `Report: ${state.days} days`),
      h("p", {}, `Availability ${fmt.pct(report.period.availability, 4)} `, badge(report.period.status),
        ` · ${fmt.num(report.period.requests, 0)} requests, ${fmt.num(report.period.failed_requests, 0)} failed · coverage ${fmt.pct(100 * (report.period.coverage || 0), 1)}`),
      table("Daily availability", [
        { title: "Day", cell: (d) => d.period.slice(0, 10) }, { title: "Availability", num: true, cell: (d) => fmt.pct(d.availability, 4) },
        { title: "Requests", num: true, cell: (d) => fmt.num(d.requests, 0) }, { title: "Failed", num: true, cell: (d) => fmt.num(d.failed_requests, 0) },
        { title: "Status", cell: (d) => badge(d.status) }], [...(report.daily || [])].reverse(), { empty: "No samples in this period yet." }),
    );
  }
}

// ---------------------------------------------------------------- alerts

const RULE_METRICS = ["error_rate_percent", "response_time_ms", "cpu_usage_percent", "memory_usage_percent", "requests_per_second", "ready_pods"];

function alertsView() {
  return mount("Alerts", (ctx) => {
    ctx.msg = h("div"); ctx.firing = h("div"); ctx.rules = h("div"); ctx.history = h("div");
    const name = h("input", { id: "rule-name", required: true, placeholder: "high error rate" });
    const metric = h("select", { id: "rule-metric" }, RULE_METRICS.map((m) => h("option", { value: m }, m)));
    const op = h("select", { id: "rule-operator" }, [">", ">=", "<", "<="].map((o) => h("option", { value: o }, o)));
    const threshold = h("input", { id: "rule-threshold", type: "number", step: "any", required: true, value: "1" });
    const tenant = h("input", { id: "rule-tenant", placeholder: "all tenants" });
    const service = h("input", { id: "rule-service", placeholder: "all services" });
    const severity = h("select", { id: "rule-severity" }, ["warning", "critical", "info"].map((s) => h("option", { value: s }, s)));
    const form = h("form", { class: "form", "aria-label": "New alert rule", onsubmit: async (e) => {
      e.preventDefault();
      const body = { name: name.value.trim(), metric: metric.value, operator: op.value, threshold: Number(threshold.value), severity: severity.value };
      if (tenant.value.trim()) body.tenant_id = tenant.value.trim();
      if (service.value.trim()) body.service = service.value.trim();
      try { await api("/sla/alerts/rules", { method: "POST", body }); ctx.msg.replaceChildren(message(`Rule “${body.name}” created.`, true)); form.reset(); ctx.force(); }
      catch (err) { ctx.msg.replaceChildren(message(`Rule not created: ${err.message}`, false)); }
    } }, field("Name", name), field("Metric", metric), field("Operator", op), field("Threshold", threshold), field("Tenant id", tenant),
      field("Service", service), field("Severity", severity), h("button", { type: "submit", class: "primary" }, "Create rule"));
    ctx.section.append(ctx.msg, h("h3", {}, "Firing now"), ctx.firing, h("h3", {}, "Rules"), form, ctx.rules, h("h3", {}, "History"), ctx.history);
    ctx.error = (e) => ctx.msg.replaceChildren(message(`Alerts unavailable: ${e.message}`, false));
    ctx.force = () => refresh(ctx).catch(ctx.error);
  }, { every: 4000, refresh: (ctx) => refresh(ctx) });

  async function refresh(ctx) {
    const [firing, history, rules] = await Promise.all([
      api("/sla/alerts/history", { query: { state: "firing", limit: 200 } }), api("/sla/alerts/history", { query: { limit: 200 } }), api("/sla/alerts/rules")]);
    const cols = [
      { title: "Alert", cell: (a) => a.name }, { title: "Severity", cell: (a) => badge(a.severity) },
      { title: "Service", cell: (a) => a.service || "–" }, { title: "Tenant", cell: (a) => a.tenant_id || "–" },
      { title: "Value", num: true, cell: (a) => fmt.num(a.value, 3) }, { title: "Message", cls: "reason", cell: (a) => a.message },
      { title: "Fired", cell: (a) => fmt.time(a.fired_at) }, { title: "State", cell: (a) => badge(a.state) }];
    ctx.firing.replaceChildren(table(`${firing.alerts.length} firing`, cols, firing.alerts, { empty: "Nothing is firing." }));
    ctx.history.replaceChildren(table("Newest first", [...cols, { title: "Resolved", cell: (a) => a.resolved_at ? fmt.time(a.resolved_at) : "–" }], history.alerts,
      { empty: "No alert has fired yet." }));
    ctx.rules.replaceChildren(table(`${rules.rules.length} rules`, [
      { title: "Name", cell: (r) => r.name }, { title: "Condition", cell: (r) => `${r.metric} ${r.operator} ${r.threshold}` },
      { title: "Tenant", cell: (r) => r.tenant_id || "all" }, { title: "Service", cell: (r) => r.service || "all" },
      { title: "Severity", cell: (r) => badge(r.severity) },
      { title: "Actions", cell: (r) => h("button", { type: "button", class: "danger", "aria-label": `Delete rule ${r.name}`, onclick: async () => {
        try { await api(`/sla/alerts/rules/${encodeURIComponent(r.id)}`, { method: "DELETE" }); ctx.msg.replaceChildren(message(`Rule “${r.name}” deleted.`, true)); ctx.force(); }
        catch (err) { ctx.msg.replaceChildren(message(`Delete failed: ${err.message}`, false)); }
      } }, "Delete") }], rules.rules, { empty: "No custom rules; the built-in alerts always apply." }));
  }
}

// ---------------------------------------------------------------- scenarios

const SCENARIO_TYPES = ["PodCrash", "OOMKill", "ProbeFailure", "ImagePullBackOff", "NodeNotReady", "ZoneOutage", "LoadSpike", "LatencyIncident", "ErrorBurst"];

function scenariosView() {
  return mount("Failure scenarios", (ctx) => {
    ctx.msg = h("div"); ctx.list = h("div");
    const name = h("input", { id: "scenario-name", required: true, pattern: "[a-z0-9]([a-z0-9\\-]*[a-z0-9])?", value: `scn-${Date.now().toString(36)}` });
    const namespace = h("input", { id: "scenario-namespace", required: true, value: "default" });
    const type = h("select", { id: "scenario-type" }, SCENARIO_TYPES.map((t) => h("option", { value: t }, t)));
    const tenant = h("input", { id: "scenario-tenant", placeholder: "optional" });
    const selector = h("input", { id: "scenario-selector", placeholder: "app=callbot (optional)" });
    const nodes = h("input", { id: "scenario-nodes", placeholder: "node names, comma separated" });
    const zone = h("input", { id: "scenario-zone", placeholder: "us-east-1a (ZoneOutage)" });
    const duration = h("input", { id: "scenario-duration", value: "2m" });
    const params = h("input", { id: "scenario-parameters", placeholder: '{"factor": 4}' });
    const form = h("form", { class: "form", "aria-label": "Start a scenario", onsubmit: async (e) => {
      e.preventDefault();
      const target = {};
      if (namespace.value.trim()) target.namespace = namespace.value.trim();
      if (tenant.value.trim()) target.tenant = tenant.value.trim();
      if (selector.value.trim()) {
        target.selector = { matchLabels: Object.fromEntries(selector.value.split(",").map((kv) => kv.trim().split("=").map((s) => s.trim()))) };
      }
      if (nodes.value.trim()) target.nodes = nodes.value.split(",").map((s) => s.trim()).filter(Boolean);
      if (zone.value.trim()) target.zone = zone.value.trim();
      let parameters;
      try { parameters = params.value.trim() ? JSON.parse(params.value) : undefined; }
      catch (err) { ctx.msg.replaceChildren(message(`Parameters must be JSON: ${err.message}`, false)); return; }
      const spec = { type: type.value, target };
      if (duration.value.trim()) spec.duration = duration.value.trim();
      if (parameters) spec.parameters = parameters;
      try {
        await api("/scenarios", { method: "POST", body: { metadata: { name: name.value.trim(), namespace: namespace.value.trim() }, spec } });
        ctx.msg.replaceChildren(message(`Scenario ${name.value} started.`, true));
        name.value = `scn-${Date.now().toString(36)}`; ctx.force();
      } catch (err) { ctx.msg.replaceChildren(message(`Not started: ${err.message}`, false)); }
    } }, field("Name", name), field("Namespace", namespace), field("Type", type), field("Tenant id", tenant), field("Pod selector", selector),
      field("Nodes", nodes), field("Zone", zone), field("Duration", duration), field("Parameters", params),
      h("button", { type: "submit", class: "primary" }, "Start"));
    ctx.section.append(form, ctx.msg, ctx.list);
    ctx.error = (e) => ctx.msg.replaceChildren(message(`Scenarios unavailable: ${e.message}`, false));
    ctx.force = () => refresh(ctx).catch(ctx.error);
  }, { every: 3000, refresh: (ctx) => refresh(ctx) });

  async function refresh(ctx) {
    const data = await api("/scenarios");
    ctx.list.replaceChildren(table(`${data.count} scenarios`, [
      { title: "Name", cell: (s) => s.metadata.name }, { title: "Namespace", cell: (s) => s.metadata.namespace },
      { title: "Type", cell: (s) => s.spec.type }, { title: "Phase", cell: (s) => badge(s.status?.phase || "Pending") },
      { title: "Affected", num: true, cell: (s) => fmt.num(s.status?.affectedCount ?? 0, 0) },
      { title: "Runs", num: true, cell: (s) => fmt.num(s.status?.runs ?? 0, 0) },
      { title: "Started", cell: (s) => fmt.time(s.status?.startedAt) }, { title: "Ends", cell: (s) => fmt.time(s.status?.endsAt) },
      { title: "Message", cls: "reason", cell: (s) => s.status?.message || "" },
      { title: "Actions", cell: (s) => h("button", { type: "button", class: "danger", "aria-label": `End scenario ${s.metadata.name}`, onclick: async () => {
        try { const r = await api(`/scenarios/${encodeURIComponent(s.metadata.namespace)}/${encodeURIComponent(s.metadata.name)}`, { method: "DELETE" });
          ctx.msg.replaceChildren(message(`Scenario ${s.metadata.name} ${r.status}.`, true)); ctx.force(); }
        catch (err) { ctx.msg.replaceChildren(message(`End failed: ${err.message}`, false)); }
      } }, "End") }], data.scenarios, { empty: "No scenario has been started." }));
  }
}

// ---------------------------------------------------------------- start

window.addEventListener("hashchange", route);
connect();
// The socket sends the latest snapshot it has; a freshly started API may have none until the next tick.
api("/monitoring/health").then((doc) => { if (!live.snapshot && doc?.services) deliver(doc); }).catch(() => {});
// uPlot loads with `defer`; modules run after deferred scripts, so it is there now.
route();
