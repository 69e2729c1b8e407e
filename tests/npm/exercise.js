// Drives a Weft server with the npm `consul` client, the way a Node.js service would, and
// prints what it saw as one JSON document for tests/integration/test_registry_npm_consul.py.
//   node exercise.js http://127.0.0.1:PORT TOKEN
"use strict";
const Consul = require("consul");
const utils = require("consul/lib/utils");

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
  try {
    await consul.kv.get({ key: "anything", dc: "dc2" });
    seen.otherDcKv = "answered";
  } catch (err) {
    seen.otherDcKv = err.response ? err.response.statusCode : String(err);
  }
  seen.agentFiltered = Object.keys(await consul.agent.service.list({ filter: "Port == 7002" }));

  // A check registered on the agent against a service, passed, then deregistered.
  await consul.agent.check.register({
    name: "orders ready", id: "orders-ready", serviceid: "orders-2", ttl: "30s",
  });
  seen.checkListed = (await consul.agent.check.list())["orders-ready"].ServiceID;
  const passingIds = async () =>
    (await consul.health.service({ service: "orders", passing: true })).map((e) => e.Service.ID);
  seen.whileCritical = await passingIds();
  await consul.agent.check.pass("orders-ready");
  seen.afterPass = (await passingIds()).sort();
  await consul.agent.check.deregister("orders-ready");
  seen.checkGone = !("orders-ready" in (await consul.agent.check.list()));

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
  try {
    await consul.session.renew(a);
    seen.renewGone = "renewed";
  } catch (err) {
    seen.renewGone = err.response
      ? [err.response.statusCode, err.response.headers["content-type"], err.message]
      : String(err);
  }
  seen.lockBAfter = await consul.kv.set({ key: "jobs/leader", value: "b", acquire: b });
  seen.sessions = (await consul.session.list()).map((s) => s.Name);
  seen.sessionsOnNode = (await consul.session.node("weft")).map((s) => s.Name);
  seen.releaseByOther = (await consul.kv.set({ key: "jobs/leader", value: "x", release: a })) === true;
  seen.released = await consul.kv.set({ key: "jobs/leader", value: "done", release: b });
  const free = await consul.kv.get("jobs/leader");
  seen.afterRelease = [free.Session === undefined, free.LockIndex, free.Value];

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

  // Plain KV: keys, a recursive read, a check-and-set and a delete.
  await consul.kv.set("cart/3", "plum");
  seen.kvKeys = await consul.kv.keys("cart/");
  seen.kvRecurse = (await consul.kv.get({ key: "cart/", recurse: true })).map((e) => e.Value);
  const plum = await consul.kv.get("cart/3");
  seen.casStale = (await consul.kv.set({ key: "cart/3", value: "x", cas: plum.ModifyIndex - 1 }))
    === true;
  seen.casFresh = await consul.kv.set({ key: "cart/3", value: "fig", cas: plum.ModifyIndex });
  await consul.kv.del("cart/3");
  seen.kvDeleted = (await consul.kv.get("cart/3")) === undefined;

  // The catalog's node view.
  await consul.catalog.register({
    node: "ext-1", address: "192.0.2.44", nodemeta: { rack: "r2" },
    service: { service: "legacy", id: "legacy-1", port: 9 },
    check: { checkid: "legacy-alive", name: "legacy", status: "passing", serviceid: "legacy-1" },
  });
  const node = await consul.catalog.node.services("ext-1");
  seen.nodeAddress = node.Node.Address;
  seen.nodeMeta = node.Node.Meta;
  seen.nodeList = (await consul.catalog.node.list())
    .filter((n) => n.Node === "ext-1").map((n) => n.Address);
  seen.legacyNodeAddress = (await consul.health.service("legacy"))[0].Node.Address;
  seen.healthNode = (await consul.health.node("ext-1")).map((c) => [c.CheckID, c.Status]);
  seen.nodeMetaMatch = (await consul.health.service({ service: "legacy", "node-meta": "rack:r2" }))
    .length;
  seen.nodeMetaMiss = (await consul.health.service({ service: "legacy", "node-meta": "rack:r9" }))
    .length;
  seen.members = (await consul.agent.members()).map((m) => m.Name);
  // The client has no call for /v1/acl/token/self: its own request machinery reaches it.
  const selfRequest = { name: "acl.token.self", path: "/acl/token/self" };
  utils.options(selfRequest, utils.defaults({}, consul._defaults));  // the token, as every call
  seen.tokenSelf = (await consul._get(selfRequest, utils.body)).Policies.map((p) => p.Name);
  await consul.catalog.deregister({ node: "ext-1", serviceid: "legacy-1" });
  seen.legacyAfterDeregister = (await consul.catalog.service.nodes("legacy")).length;
  const bare = await consul.catalog.node.services("ext-1");  // the node stays, with no services
  seen.bareNode = [bare.Node.Address, Object.keys(bare.Services).length];
  await consul.catalog.deregister("ext-1");
  seen.nodesAfterDeregister = (await consul.catalog.node.list()).map((n) => n.Node);
  seen.missingNode = String(await consul.catalog.node.services("nowhere"));  // Consul: null
  await consul.agent.service.maintenance({ id: "orders-2", enable: true, reason: "npm" });
  seen.afterMaintenance = (await consul.health.service({ service: "orders", passing: true }))
    .map((e) => e.Service.ID);
  await consul.agent.service.maintenance({ id: "orders-2", enable: false });
  seen.maintenanceOver = (await passingIds()).sort();
  process.stdout.write(JSON.stringify(seen) + "\n");
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});
