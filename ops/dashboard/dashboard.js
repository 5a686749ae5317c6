// fibod dashboard: polls the monitor app's JSON every second and draws it.
// Plain JavaScript, no build step, no library; text goes in with
// textContent only, never as HTML. Paths are relative to /myapp/.
"use strict";

const REFRESH_MS = 1000;
const PAGE = 20;
const PARTS = ["task store", "sequence store", "kafka"];

// The page of tasks shown: null = the newest (live); else the `before` cursor.
let before = null;

function $(id) { return document.getElementById(id); }

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function age(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.max(0, ms / 1000);
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
  return (s / 3600).toFixed(1) + " h";
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

async function getJson(path) {
  const resp = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!resp.ok) throw new Error(path + ": " + resp.status + " " + (await resp.text()).trim());
  return resp.json();
}

function progressBar(done, total, state) {
  const pct = total > 0 ? Math.floor((100 * done) / total) : (state === "ready" ? 100 : 0);
  const bar = el("div", {
    class: "bar" + (state === "ready" ? " done" : state === "failed" ? " failed" : ""),
    "data-progress": String(pct),
    role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(pct),
  });
  const fill = el("div", { class: "fill" });
  fill.style.width = pct + "%";
  bar.append(fill, el("span", { class: "text" }, pct + "%"));
  return bar;
}

function drawTasks(page, now) {
  const body = $("tasks").tBodies[0];
  body.replaceChildren(...page.tasks.map((t) => el("tr", { "data-task-id": t.id, "data-state": t.state },
    el("td", { class: "id" }, t.id),
    el("td", {}, t.sn.toLocaleString()),
    el("td", {}, el("span", { class: "state " + t.state }, t.state)),
    el("td", {}, progressBar(t.progress, 1, t.state)),  // progress: the fraction of its bytes
    el("td", {}, age(now - t.created) + " ago"),
    el("td", {}, t.finished ? age(t.finished - (t.started || t.created)) : t.started ? age(now - t.started) : "–"),
  )));
  if (!page.tasks.length) body.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "no tasks")));
  $("older").disabled = page.next === null;
  $("older").dataset.next = page.next === null ? "" : String(page.next);
  $("newest").disabled = before === null;
  $("page-info").textContent = before === null ? "newest first, live" : "older page";
}

function drawWorkers(workers, now) {
  const body = $("workers").tBodies[0];
  body.replaceChildren(...workers.map((w) => el("tr", { "data-worker": w.name },
    el("td", {}, w.name),
    el("td", {}, w.host + " [" + w.pid + "]"),
    el("td", {}, el("span", { class: "state " + w.state }, w.state)),
    el("td", { class: "id" }, w.task ? w.kind + " " + w.task + " (sn " + w.sn.toLocaleString() + ")" : "–"),
    el("td", {}, age(now - w.since)),
    el("td", {}, w.partitions.join(", ") || "none"),
    el("td", {}, w.units_done),
  )));
  if (!workers.length) body.append(el("tr", {}, el("td", { colspan: "7", class: "muted" }, "no worker seen")));
}

function drawStores(stores) {
  const body = $("stores").tBodies[0];
  body.replaceChildren(...stores.map((s) => {
    const cell = el("td");
    if (s.maxmemory > 0) {
      const bar = progressBar(s.used_memory, s.maxmemory, "running");
      bar.querySelector(".text").textContent = bytes(s.used_memory) + " of " + bytes(s.maxmemory);
      cell.append(bar);
    } else {
      cell.append(bytes(s.used_memory) + " (no cap)");
    }
    return el("tr", {}, el("td", {}, s.store), el("td", {}, s.address), cell,
      el("td", {}, s.keys.toLocaleString()), el("td", {}, s.evicted_keys.toLocaleString()));
  }));
}

function drawQueue(queue) {
  const most = Math.max(1, ...queue.partitions.map((p) => p.lag));
  $("partitions").replaceChildren(...queue.partitions.map((p) => {
    const col = el("div", { class: "col", title: "lag " + p.lag + ", end " + p.end });
    col.style.height = Math.round((70 * p.lag) / most) + "%";
    return el("div", { class: "p" }, String(p.lag), col, "p" + p.partition);
  }));
}

function drawChart(canvas, points, color) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 22;
  ctx.clearRect(0, 0, w, h);
  const most = Math.max(...points, 0);
  const top = most > 0 ? most * 1.15 : 1;
  ctx.strokeStyle = "#e3e6eb"; ctx.fillStyle = "#6b7385"; ctx.font = "10px system-ui";
  for (const f of [0, 0.5, 1]) {
    const y = h - pad - f * (h - 2 * pad);
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - 4, y); ctx.stroke();
    ctx.fillText((f * top).toPrecision(2).replace(/\.0+$/, ""), 2, y - 2);
  }
  ctx.fillText("-10 min", pad, h - 6); ctx.fillText("now", w - 26, h - 6);
  if (points.length < 2) return;
  const x = (i) => pad + (i * (w - pad - 4)) / (points.length - 1);
  const y = (v) => h - pad - (v / top) * (h - 2 * pad);
  ctx.beginPath(); ctx.moveTo(x(0), y(points[0]));
  points.forEach((v, i) => ctx.lineTo(x(i), y(v)));
  ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.stroke();
  ctx.lineTo(x(points.length - 1), h - pad); ctx.lineTo(x(0), h - pad); ctx.closePath();
  ctx.globalAlpha = 0.12; ctx.fillStyle = color; ctx.fill(); ctx.globalAlpha = 1;
}

function drawThroughput(tp) {
  const buckets = tp.buckets, s = tp.bucket_s;
  drawChart($("chart-tasks"), buckets.map((b) => ((b.tasks_completed + b.tasks_failed) * 60) / s), "#2e9d5b");
  drawChart($("chart-segments"), buckets.map((b) => b.segments_computed / s), "#2f6fdb");
  drawChart($("chart-bytes"), buckets.map((b) => b.bytes_streamed / s / 1048576), "#b7862b");
}

function drawOverview(o) {
  $("parts").replaceChildren(...PARTS.map((part) => el("li",
    { class: o.errors[part] ? "down" : "up", title: o.errors[part] || "answers" },
    part + (o.errors[part] ? " down" : ""))));
  if (o.tasks) {
    $("queued").textContent = o.tasks.counts.queued;
    $("running").textContent = o.tasks.counts.running;
    const oldest = (state) => (o.tasks.oldest_created[state] ? age(o.time - o.tasks.oldest_created[state]) : "–");
    $("oldest-queued").textContent = oldest("queued");
    $("oldest-running").textContent = oldest("running");
  }
  if (o.counters) {
    $("finished").textContent = o.counters.tasks_completed + " / " + o.counters.tasks_failed;
    $("segments").textContent = o.counters.segments_computed + " / " + o.counters.segments_reused;
  }
  if (o.queue) { $("lag").textContent = o.queue.lag; drawQueue(o.queue); }
  if (o.workers) drawWorkers(o.workers, o.time);
  drawStores(o.stores);
  if (o.throughput) drawThroughput(o.throughput);
}

async function refresh() {
  try {
    const query = "monitor/tasks?limit=" + PAGE + (before === null ? "" : "&before=" + before);
    const [overview, page] = await Promise.all([getJson("monitor/overview"), getJson(query)]);
    drawOverview(overview);
    drawTasks(page, overview.time);
    $("updated").textContent = "updated " + new Date(overview.time).toLocaleTimeString();
  } catch (err) {
    $("updated").textContent = "cannot reach the monitor: " + err.message;
  }
}

$("older").addEventListener("click", () => {
  before = Number($("older").dataset.next);
  refresh();
});
$("newest").addEventListener("click", () => { before = null; refresh(); });
$("submit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const sn = $("submit-sn").value;
  try {
    const task = await getJson("fibo?sn=" + encodeURIComponent(sn));
    $("submit-result").textContent = "queued " + task.id;
    $("submit-result").dataset.taskId = task.id;
    before = null;
    refresh();
  } catch (err) {
    $("submit-result").textContent = err.message;
  }
});

refresh();
setInterval(refresh, REFRESH_MS);
