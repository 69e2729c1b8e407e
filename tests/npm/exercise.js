// Drives a Weft server with the npm `consul` client, the way a Node.js service would, and
// prints what it saw as one JSON document for tests/integration/test_registry_npm_consul.py.
//   node exercise.js http://127.0.0.1:PORT TOKEN
"use strict";
const Consul = require("consul");

async function main() {
  const url = new URL(process.argv[2]);
  const consul = new Consul({
    host: url.hostname,
    port: url.port,
    defaults: { token: process.argv[3] },
  });
  const seen = {};

  await consul.agent.service.register({
    name: "orders", id: "orders-1", port: 7001, tags: ["v1"], meta: { env: "prod" },
    check: { ttl: "30s" },
  });
  await consul.agent.service.register({ name: "orders", id: "orders-2", port: 7002, tags: ["v2"] });
  await consul.agent.check.pass({ id: "service:orders-1", note: "warm" });
  seen.passing = (await consul.health.service({ service: "orders", passing: true }))
    .map((e) => e.Service.ID);
  seen.filtered = (await consul.catalog.service.nodes({
    service: "orders", filter: 'ServiceMeta.env == "prod"',
  })).map((e) => e.ServiceID);
  try {
    await consul.health.service({ service: "orders", filter: "ServiceMeta ==" });
    seen.badFilter = "accepted";
  } catch (err) {
    seen.badFilter = err.response ? err.response.statusCode : String(err);
  }
  try {
    await consul.catalog.service.list({ dc: "dc2" });
    seen.otherDc = "answered";
  } catch (err) {
    seen.otherDc = err.response ? err.response.statusCode : String(err);
  }
  seen.datacenters = await consul.catalog.datacenters();

  // Sessions and a lock.
  const a = (await consul.session.create({ name: "a", ttl: "15s", lockdelay: "0s" })).ID;
  const b = (await consul.session.create({ name: "b", lockdelay: "0s" })).ID;
  seen.lockA = await consul.kv.set({ key: "jobs/leader", value: "a", acquire: a });
  // The client hands a `false` answer back as undefined: compare with true.
  seen.lockB = (await consul.kv.set({ key: "jobs/leader", value: "b", acquire: b })) === true;
  const held = await consul.kv.get("jobs/leader");
  seen.holder = held.Session === a ? "a" : held.Session;
  seen.lockIndex = held.LockIndex;
  seen.sessionInfo = (await consul.session.info(a)).Name;
  seen.renewed = (await consul.session.renew(a))[0].ID === a;
  await consul.session.destroy(a);
  seen.lockBAfter = await consul.kv.set({ key: "jobs/leader", value: "b", acquire: b });
  seen.sessions = (await consul.session.list()).map((s) => s.Name);

  // A transaction: all or nothing.
  const b64 = (s) => Buffer.from(s).toString("base64");
  const ok = await consul.transaction.create([
    { KV: { Verb: "set", Key: "cart/1", Value: b64("apple") } },
    { KV: { Verb: "get", Key: "jobs/leader" } },
  ]);
  seen.txnResults = ok.Results.map((r) => r.KV.Key);
  try {
    await consul.transaction.create([
      { KV: { Verb: "set", Key: "cart/2", Value: b64("pear") } },
      { KV: { Verb: "check-not-exists", Key: "cart/1" } },
    ]);
    seen.txnConflict = "applied";
  } catch (err) {
    seen.txnConflict = err.response ? err.response.statusCode : String(err);
  }
  seen.cart2 = (await consul.kv.get("cart/2")) === undefined ? "absent" : "present";

  // The catalog's node view.
  await consul.catalog.register({
    node: "ext-1", address: "192.0.2.44", nodemeta: { rack: "r2" },
    service: { service: "legacy", id: "legacy-1", port: 9 },
  });
  const node = await consul.catalog.node.services("ext-1");
  seen.nodeAddress = node.Node.Address;
  seen.nodeMeta = node.Node.Meta;
  seen.healthNode = await consul.health.node("ext-1");
  seen.members = (await consul.agent.members()).map((m) => m.Name);
  await consul.agent.service.maintenance({ id: "orders-2", enable: true, reason: "npm" });
  seen.afterMaintenance = (await consul.health.service({ service: "orders", passing: true }))
    .map((e) => e.Service.ID);
  process.stdout.write(JSON.stringify(seen) + "\n");
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});
