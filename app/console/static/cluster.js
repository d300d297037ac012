// Cluster & drives: this node's view of the nodes (state, heartbeat RTT), every
// drive (state, errors, latency; free space: this node's measured now, the others' as their
// heartbeats last reported it), healing, and charts of this node's request rate and
// latency. Refreshed every REFRESH ms while shown.

import { action, bytes, h, replace, say, table, when } from "./ui.js";

const REFRESH = 5000;
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

// A line chart of `series` ([{label, class, values: [number|null]}]) over `times`.
function chart(title, unit, times, series) {
  const width = 600;
  const height = 160;
  const pad = { left: 48, right: 8, top: 10, bottom: 22 };
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
  const top = Math.max(0, ...values) * 1.1 || 1; // an idle or empty chart still has a scale
  const first = times[0] ?? 0;
  const span = Math.max(1, (times[times.length - 1] ?? 1) - first);
  const x = (t) => pad.left + ((t - first) / span) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
                            "aria-label": `${title}: ${series.map((s) => `${s.label} ${fmt(last(s.values))} ${unit}`).join(", ")}` });
  for (const fraction of [0, 0.5, 1]) {
    const v = top * fraction;
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "grid" }),
                svg("text", { x: pad.left - 4, y: y(v) + 4, "text-anchor": "end", class: "axis" }, fmt(v)));
  }
  root.append(svg("text", { x: pad.left, y: height - 4, class: "axis" }, times.length ? new Date(first * 1000).toLocaleTimeString() : "no data yet"),
              svg("text", { x: width - pad.right, y: height - 4, "text-anchor": "end", class: "axis" }, "now"));
  for (const s of series) {
    const points = s.values.map((v, i) => (v === null ? null : `${x(times[i]).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
    if (points.length > 1) root.append(svg("polyline", { points: points.join(" "), class: `line ${s.class}` }));
    if (points.length) {
      const [px, py] = points[points.length - 1].split(",");
      root.append(svg("circle", { cx: px, cy: py, r: 3, class: `dot ${s.class}` }));
    }
  }
  const legend = h("p", { class: "legend" }, series.map((s) => h("span", { class: `key ${s.class}` }, `${s.label}: ${fmt(last(s.values))} ${unit}`)));
  return h("figure", { class: "card chart-card" }, h("figcaption", {}, title), root, legend);
}

function last(values) {
  for (let i = values.length - 1; i >= 0; i -= 1) if (values[i] !== null) return values[i];
  return null;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function nodeState(state) {
  if (state === "alive") return "up";
  if (state === "suspect") return "suspect";
  return `down (${state})`;
}

function report(title, r) {
  if (!r) return null;
  const fields = ["objects_scanned", "shards_checked", "shards_missing", "shards_corrupt", "shards_healed",
                  "records_healed", "failures"];
  return h("div", {}, h("h3", {}, title),
    h("p", {}, `started ${when(r.started)}, ${r.finished ? `finished ${when(r.finished)}` : "running"}`),
    h("dl", { class: "meta" }, fields.flatMap((f) => [h("dt", {}, f.replace(/_/g, " ")), h("dd", {}, r[f] ?? 0)])),
    r.unrecoverable?.length ? h("p", { class: "error" }, `unrecoverable: ${r.unrecoverable.join(", ")}`) : null);
}

export async function render(view, ctx) {
  const summary = h("section", { class: "card", id: "summary" });
  const nodes = h("section", { class: "card", id: "nodes" });
  const drives = h("section", { class: "card", id: "drives" });
  const healing = h("section", { class: "card", id: "healing" });
  const charts = h("div", { class: "charts", id: "charts" });
  replace(view, h("h1", {}, "Cluster & drives"), summary, charts, nodes, drives, healing);

  async function load() {
    const [status, metrics] = await Promise.all([ctx.client.json("/-/cluster"), ctx.client.json("/-/console/api/metrics")]);
    const free = new Map(metrics.drives.map((d) => [d.drive, d]));
    // Other nodes' drives: the space each node last reported with its heartbeats.
    for (const n of status.nodes || []) {
      for (const [name, space] of Object.entries(n.drives || {})) if (!free.has(name)) free.set(name, space);
    }
    replace(summary, h("h2", {}, "This node"),
      h("dl", { class: "meta" },
        h("dt", {}, "mode"), h("dd", {}, status.mode),
        status.node_id ? [h("dt", {}, "node"), h("dd", {}, status.node_id)] : null,
        status.erasure ? [h("dt", {}, "erasure"), h("dd", {}, `${status.erasure.data_shards} data + ${status.erasure.parity_shards} parity shards`)] : null,
        status.cluster_id ? [h("dt", {}, "cluster"), h("dd", { class: "mono" }, status.cluster_id)] : null));

    const now = Date.now() / 1000;
    replace(nodes, h("h2", {}, "Nodes"), status.nodes ? table(["Node", "Address", "State", "Heartbeat RTT", "Last heartbeat"],
      status.nodes.map((n) => h("tr", { "data-node": n.node_id, class: n.state === "alive" ? "up" : "down" },
        h("td", {}, n.node_id, n.self ? " (this node)" : ""), h("td", { class: "mono" }, n.address),
        h("td", { class: "state" }, nodeState(n.state)), h("td", { class: "num" }, n.self || n.rtt_ms === null || n.rtt_ms === undefined ? "–" : `${fmt(n.rtt_ms)} ms`),
        h("td", {}, n.last_heartbeat ? `${Math.max(0, now - n.last_heartbeat).toFixed(1)} s ago` : "–"))))
      : h("p", {}, "A single node (no cluster secret): no peers."));

    const rows = [];
    (status.sets || []).forEach((members, index) => {
      for (const d of members) {
        const space = free.get(d.name);
        rows.push(h("tr", { "data-drive": d.name, class: d.state === "online" ? "up" : "down" },
          h("td", { class: "mono break" }, d.name), h("td", {}, String(index + 1)),
          h("td", { class: "state" }, d.state, d.offline_reason ? ` (${d.offline_reason})` : ""),
          h("td", { class: "num" }, d.errors), h("td", { class: "num hide-narrow" }, d.latency_ms === null ? "–" : `${fmt(d.latency_ms)} ms`),
          h("td", { class: "num" }, space ? `${bytes(space.free_bytes)} of ${bytes(space.total_bytes)}` : "–")));
      }
    });
    if (!rows.length) {
      for (const d of metrics.drives) {
        rows.push(h("tr", { "data-drive": d.drive, class: "up" }, h("td", { class: "mono" }, d.drive), h("td", {}, "–"),
          h("td", {}, "online"), h("td", {}, "–"), h("td", { class: "hide-narrow" }, "–"),
          h("td", { class: "num" }, `${bytes(d.free_bytes)} of ${bytes(d.total_bytes)}`)));
      }
    }
    replace(drives, h("h2", {}, "Drives"), table(["Drive", "Set", "State", "Errors", ["Latency", "hide-narrow"], "Free"], rows));

    const heal = status.healing;
    replace(healing, h("h2", {}, "Healing"),
      heal ? [
        h("p", {}, heal.running ? "A scan is running. " : "No scan running. ", `Backlog: ${heal.backlog} object(s).`),
        report("Current scan", heal.current),
        report("Last scan", heal.last_scan) || h("p", { class: "hint" }, "No full scan yet."),
        action("Heal now", async () => {
          await ctx.client.json("/-/heal", { method: "POST", params: [["background", "true"]] });
          say("Healing scan started.", "ok");
          await load();
        }),
      ] : h("p", { class: "hint" }, "Healing runs in cluster mode only."));

    const points = metrics.points;
    const times = points.map((p) => p.time);
    replace(charts, metrics.metrics ? [
      chart("Requests per second", "/s", times, [
        { label: "requests", class: "a", values: points.map((p) => p.requests_per_second) },
        { label: "errors", class: "b", values: points.map((p) => p.errors_per_second) }]),
      chart("Latency", "ms", times, [
        { label: "mean", class: "a", values: points.map((p) => p.latency_mean_ms) },
        { label: "p95 (bucket bound)", class: "b", values: points.map((p) => p.latency_p95_ms) }]),
    ] : h("p", { class: "hint" }, "Charts need the server's metrics (metrics.enabled)."));
  }

  await load();
  const timer = setInterval(() => load().catch((error) => say(error.message, "error")), REFRESH);
  ctx.signal.addEventListener("abort", () => clearInterval(timer));
}
