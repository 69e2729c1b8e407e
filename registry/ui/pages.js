// The overview, a service's page and the traffic resources: each a function from the window
// to a freshly built DOM subtree (the caller swaps it in whole, so a refresh never flickers).
import { get, getOr } from "./api.js";
import { el, link, part, table } from "./dom.js";
import { GOLDEN, golden, health, until } from "./format.js";

export async function overview(window) {
  const [services, stat] = await Promise.all([
    get("/v1/registry/services"),
    get("/v1/metrics/stat", { window }),
  ]);
  const byName = new Map(stat.rows.map((r) => [r.service, r]));
  const rows = services.map((s) => {
    const m = byName.get(s.name) || {};
    const cells = [
      link(s.name, `#/service/${part(s.name)}`),
      `${s.passing}/${s.instances}`,
      s.warning,
      s.critical,
      "instances" in m ? `${m.proxies}/${m.instances}` : "-",
      ...golden(m),
      m.tcp_connections ?? 0,
    ];
    return cells;
  });
  const t = table(
    ["SERVICE", "PASSING", "WARNING", "CRITICAL", "MESHED", ...GOLDEN, "TCP_CONN"],
    rows,
    "no services registered",
  );
  t.id = "services";
  for (const [i, s] of services.entries()) {
    const tr = t.tBodies[0]?.rows[i];
    if (!tr) continue;
    tr.dataset.service = s.name;
    tr.cells[5].className = health((byName.get(s.name) || {}).success_rate);
  }
  return [
    el("h1", {}, "Services"),
    el("p", { class: "hint" }, `Inbound traffic each service's sidecars served over ${window}.`),
    t,
  ];
}

function instanceRows(instances, byInstance) {
  return instances.map((i) => {
    const m = byInstance.get(i.id) || {};
    const tags = i.tags.join(", ");
    const meta = Object.entries(i.meta).map(([k, v]) => `${k}=${v}`).join(" ");
    return [
      i.id,
      i.node,
      `${i.address}:${i.port}`,
      el("span", { class: `st-${i.status}` }, i.status),
      ...golden(m),
      el("span", { class: "tags" }, tags),
      el("span", { class: "meta" }, meta),
    ];
  });
}

function edgeRows(rows, key) {
  return rows.map((r) => [link(r[key], `#/service/${part(r[key])}`), ...golden(r)]);
}

// Resources and intentions that name the service anywhere (as the routed service, a backend,
// a source or a destination).
function mentions(value, name) {
  if (value === name) return true;
  if (Array.isArray(value)) return value.some((v) => mentions(v, name));
  if (value && typeof value === "object") return Object.values(value).some((v) => mentions(v, name));
  return false;
}

export async function service(name, window) {
  const [svc, inst, callers, callees, routes, roots, resources, intentions] = await Promise.all([
    get(`/v1/registry/services/${part(name)}`),
    get("/v1/metrics/stat", { service: name, by: "instance", window }),
    get("/v1/metrics/stat", { to: name, window }),
    get("/v1/metrics/stat", { from: name, window }),
    get("/v1/metrics/routes", { service: name, window }),
    getOr("/v1/ca/roots", {}, { roots: [] }),
    getOr("/v1/resources", {}, { resources: [] }),
    getOr("/v1/intentions", {}, { intentions: [] }),
  ]);
  const byInstance = new Map(inst.rows.map((r) => [r.instance, r]));
  const identities = [...new Set(svc.instances.map((i) => i.identity).filter(Boolean))];
  const applied = resources.resources.filter((r) => mentions(r.spec, name));
  const touching = intentions.intentions.filter(
    (i) => [i.SourceName, i.DestinationName].some((n) => n === name || n === "*"),
  );
  return [
    el("h1", {}, "Service ", el("span", { class: "name" }, name)),
    el("p", {}, link("tap its requests", `#/tap/${part(name)}`)),
    el("h2", {}, "Instances"),
    table(
      ["INSTANCE", "NODE", "ADDRESS", "HEALTH", ...GOLDEN, "TAGS", "META"],
      instanceRows(svc.instances, byInstance),
      "no instances",
    ),
    el("h2", {}, "Inbound (callers)"),
    table(["FROM", ...GOLDEN], edgeRows(callers.rows, "from"), `no calls in ${window}`),
    el("h2", {}, "Outbound (callees)"),
    table(["TO", ...GOLDEN], edgeRows(callees.rows, "to"), `no calls in ${window}`),
    el("h2", {}, "Routes"),
    table(["ROUTE", ...GOLDEN], routes.rows.map((r) => [r.route, ...golden(r)]), "no routes"),
    el("h2", {}, "Certificates"),
    table(
      ["IDENTITY (leaf SAN)", "ISSUED BY ROOT", "ROOT EXPIRES"],
      identities.flatMap((id) =>
        roots.roots.filter((r) => r.active).map((r) => [id, r.name, `${r.not_after} (${until(r.not_after)})`]),
      ),
      "no identity (no sidecar, or the CA is not initialised)",
    ),
    el(
      "p",
      { class: "hint" },
      "Leaf certificates live on the hosts (renewed at two thirds of their life); " +
        "`weft agent status` shows each one's expiry.",
    ),
    el("h2", {}, "Traffic resources"),
    resourceTable(applied),
    el("h2", {}, "Intentions"),
    intentionTable(touching),
  ];
}

function resourceTable(items) {
  return table(
    ["KIND", "NAME", "SPEC"],
    items.map((r) => [r.kind, r.metadata?.name ?? "", el("code", {}, JSON.stringify(r.spec))]),
    "none",
  );
}

function intentionTable(items) {
  return table(
    ["SOURCE", "DESTINATION", "ACTION", "PRECEDENCE", "DESCRIPTION"],
    items.map((i) => [
      i.SourceName,
      i.DestinationName,
      el("span", { class: `act-${i.Action === "allow" ? "allow" : "deny"}` }, i.Action ?? "L7"),
      i.Precedence,
      i.Description,
    ]),
    "none",
  );
}

export async function config() {
  const [resources, intentions] = await Promise.all([
    get("/v1/resources"),
    get("/v1/intentions"),
  ]);
  return [
    el("h1", {}, "Traffic resources"),
    resourceTable(resources.resources),
    el("h1", {}, "Intentions"),
    el("p", { class: "hint" }, `When none matches a pair: ${intentions.default}.`),
    intentionTable(intentions.intentions),
  ];
}
