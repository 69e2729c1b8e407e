// The topology: services as boxes in columns by call depth, caller -> callee edges coloured
// by success rate, labelled with RPS. Hand-drawn SVG; no layout library.
import { get } from "./api.js";
import { el, part, svg } from "./dom.js";
import { health, pct, rps } from "./format.js";

const W = 150, H = 44, GAPX = 190, GAPY = 40, PAD = 20;

export function layout(names, edges) {
  const rank = new Map(names.map((n) => [n, 0]));
  // Longest path from a caller-less service, bounded so a cycle cannot loop forever.
  for (let i = 0; i < names.length; i++) {
    for (const e of edges) {
      if (e.from !== e.to && rank.get(e.to) <= rank.get(e.from)) rank.set(e.to, rank.get(e.from) + 1);
    }
  }
  const columns = [];
  for (const n of names) (columns[rank.get(n)] ||= []).push(n);
  const at = new Map();
  columns.forEach((col, x) =>
    (col || []).forEach((n, y) => at.set(n, { x: PAD + x * (W + GAPX), y: PAD + y * (H + GAPY) })),
  );
  const width = PAD * 2 + columns.length * (W + GAPX) - GAPX;
  const height = PAD * 2 + Math.max(1, ...columns.map((c) => (c || []).length)) * (H + GAPY) - GAPY;
  return { at, width, height };
}

export async function topology(window) {
  const [services, edges] = await Promise.all([
    get("/v1/registry/services"),
    get("/v1/metrics/edges", { window }),
  ]);
  const names = [...new Set([...services.map((s) => s.name), ...edges.rows.flatMap((e) => [e.from, e.to])])].sort();
  const { at, width, height } = layout(names, edges.rows);
  const marker = svg(
    "marker",
    { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }),
  );
  const lines = edges.rows.map((e) => {
    const a = at.get(e.from), b = at.get(e.to);
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    const g = svg("g", { class: `edge ${health(e.success_rate)}`, "data-from": e.from, "data-to": e.to });
    g.append(
      svg("line", { x1, y1, x2, y2, "marker-end": "url(#arrow)" }),
      svg("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 9, "text-anchor": "middle" }, `${pct(e.success_rate)} · ${rps(e.rps)} rps`),
      svg("title", {}, `${e.from} → ${e.to}\n${e.client_id || ""}`),
    );
    return g;
  });
  const boxes = names.map((n) => {
    const p = at.get(n);
    const a = svg("a", { href: `#/service/${part(n)}`, class: "node", "data-service": n });
    a.append(
      svg("rect", { x: p.x, y: p.y, width: W, height: H, rx: 6 }),
      svg("text", { x: p.x + W / 2, y: p.y + H / 2 + 5, "text-anchor": "middle" }, n),
    );
    return a;
  });
  const picture = svg(
    "svg",
    { id: "topology", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" },
    svg("defs", {}, marker),
    lines,
    boxes,
  );
  return [
    el("h1", {}, "Topology"),
    el("p", { class: "hint" }, `Calls between services over ${window}, as the callees' sidecars saw them. `,
      el("span", { class: "good" }, "≥ 99 %"), " ", el("span", { class: "fair" }, "≥ 95 %"), " ",
      el("span", { class: "poor" }, "< 95 %"), " success"),
    el("div", { class: "graph" }, picture),
  ];
}
