// Live requests of a service's sidecars, gathered by the server (GET /v1/metrics/tap, polled),
// and a top table of the busiest paths counted from them since the page opened.
import { get } from "./api.js";
import { el, link, part, table } from "./dom.js";

const KEEP = 40; // the newest requests shown; the top table counts them all

export class TapView {
  constructor(service) {
    this.service = service;
    this.events = [];
    this.paths = new Map();
    this.running = true;
    this.error = "";
  }

  add(e) {
    this.events.unshift(e);
    this.events.length = Math.min(this.events.length, KEEP);
    const inbound = e.direction === "inbound";
    const from = inbound ? String(e.client_id || "?").split("/").pop() : e.service;
    const to = inbound ? e.service : e.upstream || "?";
    const path = String(e.path || "").split("?")[0];
    const key = JSON.stringify([e.direction, from, to, e.method, path]);
    let s = this.paths.get(key);
    if (!s) {
      if (this.paths.size >= 10000) return;
      s = { direction: e.direction, from, to, method: e.method, path, count: 0, ok: 0, best: Infinity, worst: 0, last: 0 };
      this.paths.set(key, s);
    }
    const latency = Number(e.latency_ms) || 0;
    s.count++;
    if (Number.isInteger(e.status) && e.status < 500 && !e.error) s.ok++;
    s.best = Math.min(s.best, latency);
    s.worst = Math.max(s.worst, latency);
    s.last = latency;
  }

  async poll(onChange) {
    while (this.running) {
      const started = Date.now();
      try {
        const got = await get("/v1/metrics/tap", { service: this.service, wait: "1s", max: 200 });
        if (!this.running) return;
        got.events.forEach((e) => this.add(e));
        this.error = got.proxies ? "" : "no sidecar of this service has reported yet";
      } catch (err) {
        this.error = err.message;
        await new Promise((r) => setTimeout(r, 1000));
      }
      onChange();
      // The server answers at once when no sidecar can be read: never poll faster than 1/s.
      const rest = 1000 - (Date.now() - started);
      if (rest > 0) await new Promise((r) => setTimeout(r, rest));
    }
  }

  render() {
    const top = [...this.paths.values()].sort((a, b) => b.count - a.count).slice(0, 15);
    const ms = (v) => `${v.toFixed(1)}ms`;
    const topTable = table(
      ["DIRECTION", "FROM", "TO", "METHOD", "PATH", "COUNT", "BEST", "WORST", "LAST", "SUCCESS"],
      top.map((s) => [s.direction, s.from, s.to, s.method, s.path, s.count, ms(s.best), ms(s.worst), ms(s.last), `${((s.ok / s.count) * 100).toFixed(2)}%`]),
      "waiting for requests",
    );
    topTable.id = "top";
    const when = (ts) => (typeof ts === "number" ? new Date(ts * 1000).toLocaleTimeString() : "-");
    const tapTable = table(
      ["TIME", "INSTANCE", "DIRECTION", "PEER", "METHOD", "PATH", "STATUS", "LATENCY"],
      this.events.map((e) => [
        when(e.ts),
        e.instance,
        e.direction,
        e.direction === "inbound" ? e.client_id || "" : e.upstream || "",
        e.method,
        e.path,
        e.status ?? e.error ?? "",
        `${(Number(e.latency_ms) || 0).toFixed(1)}ms`,
      ]),
      "waiting for requests",
    );
    tapTable.id = "tap";
    return [
      el("h1", {}, "Tap ", el("span", { class: "name" }, this.service)),
      el("p", {}, link("its service page", `#/service/${part(this.service)}`)),
      this.error ? el("p", { class: "error" }, this.error) : null,
      el("h2", {}, "Top paths (since this page opened)"),
      topTable,
      el("h2", {}, `Live requests (newest ${KEEP} first)`),
      tapTable,
    ];
  }
}

export async function chooser() {
  const services = await get("/v1/registry/services");
  return [
    el("h1", {}, "Tap & top"),
    el("p", {}, "Pick a service to watch its requests live:"),
    el("ul", {}, services.map((s) => el("li", {}, link(s.name, `#/tap/${part(s.name)}`)))),
  ];
}
