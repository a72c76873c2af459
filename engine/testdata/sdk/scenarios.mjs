// End-to-end scenarios run through the official SDKs.
//
//   WEBPUBSUB_CONNECTION_STRING=... node scenarios.mjs <scenario>
//   node scenarios.mjs --list
//   node scenarios.mjs --methods
//
// Optional env: WEBPUBSUB_HUB (default e2e_<scenario>), WEBPUBSUB_PROTOCOL
// (json.reliable.webpubsub.azure.v1, the SDK default, or json.webpubsub.azure.v1),
// WEBPUBSUB_TIMEOUT_MS (each wait, default 10000), WEBPUBSUB_SCENARIO_TIMEOUT_MS (whole run,
// default 60000). Output: JSON lines, see lib.mjs, plus one coverage line per scenario:
//   {"type":"coverage","scenario":S,"methods":["WebPubSubServiceClient.sendToAll",...]}
// naming every public method of the REST SDK's classes the scenario called. `--methods` prints
// the names of all of them as one JSON array, read from the classes' prototypes, so the harness
// can demand that the scenarios together call each one (engine/e2e_test.go).

import { isDeepStrictEqual } from "node:util";

import { WebPubSubServiceClient, odata } from "@azure/web-pubsub";

import {
  TIMEOUT_MS,
  describe,
  emit,
  errInfo,
  main,
  rawHandshake,
  settle,
  signJWT,
  tamperJWT,
  withAccessKey,
  pollUntil,
} from "./lib.mjs";

const ALL_ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];

/**
 * sdkMethods lists every public method of the REST SDK's two classes, WebPubSubServiceClient
 * and the class behind service.group(...), as {proto, name, qualified}. "Public" means a
 * function on the prototype other than the constructor whose name does not start with "_".
 * The group class is not exported, so it is reached through an instance built from a dummy
 * connection string (no request is made).
 */
function sdkMethods() {
  const probe = new WebPubSubServiceClient("Endpoint=http://127.0.0.1;AccessKey=probe;Version=1.0;", "probe");
  const out = [];
  for (const proto of [WebPubSubServiceClient.prototype, Object.getPrototypeOf(probe.group("probe"))]) {
    const owner = proto.constructor.name;
    for (const name of Object.getOwnPropertyNames(proto)) {
      const d = Object.getOwnPropertyDescriptor(proto, name);
      if (name === "constructor" || name.startsWith("_") || typeof d.value !== "function") continue;
      out.push({ proto, name, qualified: `${owner}.${name}` });
    }
  }
  return out.sort((a, b) => (a.qualified < b.qualified ? -1 : 1));
}

/** calledMethods holds the qualified name of every SDK method called so far in this process. */
const calledMethods = new Set();

/** recordSDKCalls wraps every method sdkMethods lists so that each call lands in calledMethods. */
function recordSDKCalls() {
  for (const { proto, name, qualified } of sdkMethods()) {
    const d = Object.getOwnPropertyDescriptor(proto, name);
    const original = d.value;
    Object.defineProperty(proto, name, {
      ...d,
      value: function (...args) {
        calledMethods.add(qualified);
        return original.apply(this, args);
      },
    });
  }
}

/** withCoverage makes each scenario of table emit its coverage line when it ends, however it ends. */
function withCoverage(table) {
  return Object.fromEntries(
    Object.entries(table).map(([name, fn]) => [
      name,
      async (env, c) => {
        try {
          await fn(env, c);
        } finally {
          emit({ type: "coverage", scenario: name, methods: [...calledMethods].sort() });
        }
      },
    ]),
  );
}

/** claimsOf decodes the payload of a JWT without checking it. */
function claimsOf(token) {
  return JSON.parse(Buffer.from(String(token).split(".")[1] ?? "", "base64url").toString("utf8"));
}

/** restError is errInfo plus the ErrorDetail body the server answered with, if any. */
function restError(err) {
  const out = errInfo(err);
  if (out && err?.response?.parsedBody !== undefined) out.body = err.response.parsedBody;
  return out;
}

/** bytes returns a fresh ArrayBuffer holding the given byte values. */
function bytes(...values) {
  return new Uint8Array(values).buffer;
}

/**
 * restPayloads lists one message per content type the REST SDK can send, with what a
 * json(.reliable) client must see. Each carries tag so repeated sends are distinguishable.
 */
function restPayloads(tag) {
  const t = Number(tag) & 0xff;
  return [
    {
      name: "json-object",
      message: { tag, hello: "world", list: [1, true, null], nested: { "ü": "✓" } },
      options: {},
      dataType: "json",
    },
    { name: "json-string", message: `json string ${tag}`, options: {}, dataType: "json" },
    { name: "json-number", message: 42 + Number(tag), options: {}, dataType: "json" },
    {
      name: "text",
      message: `plain text ${tag} ✓ "quoted"`,
      options: { contentType: "text/plain" },
      dataType: "text",
    },
    { name: "binary-uint8array", message: new Uint8Array([0, 1, 2, 254, 255, t]), options: {}, dataType: "binary" },
    { name: "binary-arraybuffer", message: bytes(9, 8, 7, 0, t), options: {}, dataType: "binary" },
  ].map((p) => ({ ...p, expectData: ArrayBuffer.isView(p.message) ? p.message.slice().buffer : p.message }));
}

function sameData(a, b) {
  return isDeepStrictEqual(describe(a), describe(b));
}

function summarize(events, kind) {
  return events
    .filter((e) => e.kind === kind)
    .slice(-5)
    .map((e) => ({ from: e.from, group: e.group, fromUserId: e.fromUserId, dataType: e.dataType, data: describe(e.data) }));
}

/**
 * expectMessage waits until h receives a message of kind ("server" or "group") carrying
 * want.data, then checks the other fields. On timeout it reports what did arrive.
 */
async function expectMessage(c, h, name, kind, want) {
  const r = await settle(
    h.inbox.wait((e) => e.kind === kind && sameData(e.data, want.data), `${kind} message ${name}`),
    name,
  );
  if (!r.ok) {
    c.check(`${name}: ${h.label} receives ${kind} message`, false, { dataType: want.dataType, data: want.data }, {
      error: String(r.error.message),
      recent: summarize(h.inbox.events, kind),
    });
    return;
  }
  const e = r.value;
  c.check(`${name}: ${h.label} receives ${kind} message`, true, describe(want.data), describe(e.data));
  c.eq(`${name}: ${h.label} dataType`, e.dataType, want.dataType);
  c.eq(`${name}: ${h.label} from`, e.from, kind);
  if (kind === "group") {
    c.eq(`${name}: ${h.label} group`, e.group, want.group);
    c.eq(`${name}: ${h.label} fromUserId`, e.fromUserId, want.fromUserId);
  }
}

/** expectAbsent checks, after a sentinel round trip, that h never saw a matching message. */
async function expectAbsent(env, c, h, name, pred) {
  const r = await settle(env.sentinel(h), `sentinel to ${h.label}`);
  if (!r.ok) {
    c.check(`${name}: sentinel reaches ${h.label}`, false, "sentinel delivered", String(r.error.message));
    return;
  }
  const got = h.inbox.find(pred);
  c.check(`${name}: ${h.label} receives nothing`, got === undefined, "no message", got && { dataType: got.dataType, data: describe(got.data), group: got.group });
}

/** expectOK checks that an SDK call resolved within the deadline. */
async function expectOK(c, name, p) {
  const r = await settle(p, name);
  c.check(`${name} resolves`, r.ok, "resolved", r.ok ? describe(r.value) : errInfo(r.error));
  return r;
}

/** expectAckError checks that a client request was refused with the given ack error name. */
async function expectAckError(c, name, p, errorName) {
  const r = await settle(p, name);
  c.check(`${name} rejects with ${errorName}`, !r.ok && r.error?.errorDetail?.name === errorName, errorName, r.ok ? { resolved: describe(r.value) } : errInfo(r.error));
}

/** expectDisconnected waits for h's disconnected event and checks the reason it carries. */
async function expectDisconnected(c, h, name, reason) {
  const r = await settle(h.inbox.wait((e) => e.kind === "disconnected", "disconnected event"), name);
  if (!r.ok) {
    c.check(`${name}: ${h.label} disconnected`, false, "disconnected event", {
      error: String(r.error.message),
      // What the socket saw, for the report: the SDK keeps the last close frame privately.
      lastClose: h.client._lastCloseEvent ?? null,
    });
    return;
  }
  c.check(`${name}: ${h.label} disconnected`, true, "disconnected event", "disconnected event");
  c.eq(`${name}: ${h.label} disconnected.connectionId`, r.value.connectionId, h.id);
  if (reason !== undefined) {
    c.eq(`${name}: ${h.label} disconnected reason`, r.value.message?.message, reason);
  }
  const s = await settle(h.inbox.wait((e) => e.kind === "stopped", "stopped event"), name);
  c.check(`${name}: ${h.label} stopped (autoReconnect off)`, s.ok, "stopped event", s.ok ? "stopped event" : String(s.error.message));
}

async function expectExists(c, name, p, want) {
  const r = await settle(p, name);
  c.check(name, r.ok && r.value === want, want, r.ok ? r.value : errInfo(r.error));
}

/** expectEventually polls an exists-style call until it returns want. */
async function expectEventually(c, name, fn, want) {
  let last;
  const r = await settle(
    pollUntil(async () => {
      last = await fn();
      return last === want;
    }, name),
    name,
  );
  c.check(name, r.ok && r.value === true, want, r.ok ? last : errInfo(r.error));
}

/**
 * expectOnly checks, after one send of want.data, that exactly the handles in `to` receive it
 * (as a message of kind) and every other handle of `all` does not.
 */
async function expectOnly(env, c, name, all, to, kind, want) {
  for (const h of all) {
    if (to.includes(h)) {
      await expectMessage(c, h, name, kind, want);
    } else {
      await expectAbsent(env, c, h, name, (e) => e.kind === kind && sameData(e.data, want.data));
    }
  }
}

/**
 * expectBadFilter checks that an SDK call carrying an invalid filter rejects with 400 and an
 * ErrorDetail that names the filter and the position of the error (rest-api.md §5.2).
 */
async function expectBadFilter(c, name, p) {
  const r = await settle(p, name);
  const e = r.ok ? { resolved: describe(r.value) } : restError(r.error);
  c.check(`${name} rejects with 400`, !r.ok && r.error?.statusCode === 400, 400, e);
  if (r.ok) return;
  c.check(`${name}: message names a position`, /position \d+/.test(String(r.error.message)), "…position N…", r.error.message);
  c.eq(`${name}: ErrorDetail.code`, r.error.code, "Error.BadRequest");
  c.eq(`${name}: ErrorDetail.target`, r.error.response?.parsedBody?.target, "filter");
}

/**
 * listGroup lists the members of group g through listConnections(options), either item by item
 * (`for await`) or page by page (byPage(settings)). Every HTTP response the SDK got is recorded
 * with the URL it requested, so paging through nextLink can be checked.
 */
async function listGroup(g, options, { byPage = false, settings, onPage } = {}) {
  const responses = [];
  const onResponse = (raw) => {
    let wire;
    try {
      wire = JSON.parse(raw.bodyAsText ?? "null");
    } catch {
      wire = raw.bodyAsText;
    }
    responses.push({ url: raw.request.url, status: raw.status, wire });
  };
  const iter = await g.listConnections({ ...options, onResponse });
  const items = [];
  const pages = [];
  if (byPage) {
    for await (const page of iter.byPage(settings)) {
      pages.push(page.map((m) => ({ ...m })));
      items.push(...page);
      if (onPage) await onPage(page, pages.length);
    }
  } else {
    for await (const m of iter) items.push({ ...m });
  }
  return { items, pages, responses };
}

/**
 * checkListing checks that items list each connection of want (id → user id or undefined)
 * exactly once, in connection id order, as {connectionId, userId} with userId absent for a
 * connection without a user.
 */
function checkListing(c, name, items, want) {
  const ids = items.map((m) => m.connectionId);
  c.eq(`${name}: no connection listed twice`, ids.length - new Set(ids).size, 0);
  c.eq(`${name}: the listed connections`, [...new Set(ids)].sort(), [...want.keys()].sort());
  c.eq(`${name}: sorted by connection id`, ids, [...ids].sort());
  const shapes = items.map((m) => ({ connectionId: m.connectionId, keys: Object.keys(m).filter((k) => m[k] !== undefined).sort(), userId: m.userId }));
  const wantShapes = items.map((m) => {
    const u = want.get(m.connectionId);
    return { connectionId: m.connectionId, keys: u === undefined ? ["connectionId"] : ["connectionId", "userId"], userId: u };
  });
  c.eq(`${name}: items are {connectionId, userId?}`, shapes, wantShapes);
}

/** checkPaging checks how the SDK walked the pages: each request after the first is the previous nextLink. */
function checkPaging(c, name, responses, endpoint) {
  c.eq(`${name}: every page answered 200`, responses.map((r) => r.status), responses.map(() => 200));
  const origin = new URL(endpoint).origin;
  for (let i = 0; i < responses.length; i++) {
    const link = responses[i].wire?.nextLink;
    if (i === responses.length - 1) {
      c.eq(`${name}: last page has no nextLink`, link, undefined);
      continue;
    }
    let abs = null;
    try {
      abs = new URL(link).origin;
    } catch {
      // not an absolute URL
    }
    c.check(`${name}: page ${i + 1} nextLink is an absolute URL of the endpoint`, abs === origin, `${origin}/...`, link);
    c.eq(`${name}: request ${i + 2} GETs nextLink ${i + 1} verbatim`, responses[i + 1].url, link);
  }
}

const scenarios = {
  async connect(env, c) {
    const a = await env.connect("alice", { userId: "alice" });
    const ev = a.inbox.find((e) => e.kind === "connected");
    c.check("connected.connectionId is a non-empty string", typeof ev.connectionId === "string" && ev.connectionId.length > 0, "non-empty string", ev.connectionId);
    c.eq("connected.userId", ev.userId, "alice");
    const anon = await env.connect("nouser", {});
    const ev2 = anon.inbox.find((e) => e.kind === "connected");
    c.check("connected.userId is null or absent without sub", ev2.userId == null, null, ev2.userId);
    c.check("connection ids are distinct", ev.connectionId !== ev2.connectionId, "distinct", [ev.connectionId, ev2.connectionId]);
    await expectExists(c, "connectionExists(alice)", env.service.connectionExists(a.id), true);
    await expectExists(c, "userExists(alice)", env.service.userExists("alice"), true);
    a.client.stop();
    const s = await settle(a.inbox.wait((e) => e.kind === "stopped", "stopped"), "stop");
    c.check("stopped event after stop()", s.ok, "stopped", s.ok ? "stopped" : String(s.error.message));
    if (env.reliable) {
      // A client-initiated close keeps a reliable connection for its recovery window
      // (client-protocol.md §7.6), so existence right after stop() is not asserted.
      c.info("connectionExists(alice) right after stop (reliable)", await env.service.connectionExists(a.id));
    } else {
      await expectEventually(c, "connectionExists(alice) after stop", () => env.service.connectionExists(a.id), false);
      await expectEventually(c, "userExists(alice) after stop", () => env.service.userExists("alice"), false);
    }
    await expectExists(c, "connectionExists(nouser) still", env.service.connectionExists(anon.id), true);
  },

  async joinLeave(env, c) {
    const a = await env.connect("a", { userId: "a", roles: ALL_ROLES });
    const r = await expectOK(c, "joinGroup(g1)", a.client.joinGroup("g1"));
    if (r.ok) c.eq("joinGroup(g1) isDuplicated", r.value?.isDuplicated, false);
    await expectExists(c, "groupExists(g1) after join", env.service.groupExists("g1"), true);
    await expectOK(c, "REST group(g1).sendToAll after join", env.service.group("g1").sendToAll({ step: "after-join" }));
    await expectMessage(c, a, "REST group send after join", "group", { dataType: "json", data: { step: "after-join" }, group: "g1", fromUserId: undefined });

    await expectOK(c, "leaveGroup(g1)", a.client.leaveGroup("g1"));
    await expectEventually(c, "groupExists(g1) after leave", () => env.service.groupExists("g1"), false);
    await expectOK(c, "REST group(g1).sendToAll after leave", env.service.group("g1").sendToAll({ step: "after-leave" }));
    await expectAbsent(env, c, a, "REST group send after leave", (e) => e.kind === "group" && sameData(e.data, { step: "after-leave" }));

    await expectOK(c, "joinGroup(g2) first", a.client.joinGroup("g2"));
    await expectOK(c, "joinGroup(g2) again (idempotent)", a.client.joinGroup("g2"));
    await expectOK(c, "leaveGroup(never-joined)", a.client.leaveGroup("never-joined"));
    await expectOK(c, "REST group(g2).sendToAll", env.service.group("g2").sendToAll("once", { contentType: "text/plain" }));
    await expectMessage(c, a, "group send after double join", "group", { dataType: "text", data: "once", group: "g2", fromUserId: undefined });
    const sr = await settle(env.sentinel(a), "sentinel after double join");
    c.check("double join: sentinel reaches a", sr.ok, "sentinel delivered", sr.ok ? "sentinel delivered" : String(sr.error.message));
    c.eq("double join delivers a group message once", a.inbox.events.filter((e) => e.kind === "group" && e.data === "once").length, 1);

    // Groups named in the token are joined at connect time, whatever the roles.
    const t = await env.connect("t", { userId: "t", groups: ["from-token", "second"] });
    await expectOK(c, "REST group(from-token).sendToAll", env.service.group("from-token").sendToAll({ step: "token-group" }));
    await expectMessage(c, t, "token group membership", "group", { dataType: "json", data: { step: "token-group" }, group: "from-token", fromUserId: undefined });
    await expectExists(c, "groupExists(second) from token", env.service.groupExists("second"), true);
  },

  async sendToGroup(env, c) {
    const a = await env.connect("a", { userId: "a", roles: ALL_ROLES });
    const b = await env.connect("b", { userId: "b", roles: ALL_ROLES });
    const out = await env.connect("outsider", { userId: "outsider", roles: ALL_ROLES });
    await expectOK(c, "a joinGroup(room)", a.client.joinGroup("room"));
    await expectOK(c, "b joinGroup(room)", b.client.joinGroup("room"));
    const sends = [
      ["json", { from: "a", n: 1, nested: { ok: true } }],
      ["json", "a json string"],
      ["text", "hello from a ✓"],
      ["binary", bytes(0, 1, 2, 3, 250)],
    ];
    for (const [dataType, data] of sends) {
      const name = `client sendToGroup ${dataType} ${JSON.stringify(describe(data))}`;
      const r = await expectOK(c, name, a.client.sendToGroup("room", data, dataType));
      if (r.ok) c.eq(`${name} isDuplicated`, r.value?.isDuplicated, false);
      await expectMessage(c, b, name, "group", { dataType, data, group: "room", fromUserId: "a" });
      await expectMessage(c, a, `${name} (echo)`, "group", { dataType, data, group: "room", fromUserId: "a" });
    }
    // Sending needs the permission, not membership.
    await expectOK(c, "non-member sendToGroup", out.client.sendToGroup("room", { from: "outsider" }, "json"));
    await expectMessage(c, a, "non-member sendToGroup", "group", { dataType: "json", data: { from: "outsider" }, group: "room", fromUserId: "outsider" });
    await expectMessage(c, b, "non-member sendToGroup", "group", { dataType: "json", data: { from: "outsider" }, group: "room", fromUserId: "outsider" });
    await expectAbsent(env, c, out, "non-member gets no group traffic", (e) => e.kind === "group");
    // A fire-and-forget publish (no ackId) is delivered too.
    await expectOK(c, "fireAndForget sendToGroup", a.client.sendToGroup("room", { fireAndForget: true }, "json", { fireAndForget: true }));
    await expectMessage(c, b, "fireAndForget sendToGroup", "group", { dataType: "json", data: { fireAndForget: true }, group: "room", fromUserId: "a" });
  },

  async noEcho(env, c) {
    const a = await env.connect("a", { userId: "a", roles: ALL_ROLES });
    const b = await env.connect("b", { userId: "b", roles: ALL_ROLES });
    await expectOK(c, "a joinGroup(room)", a.client.joinGroup("room"));
    await expectOK(c, "b joinGroup(room)", b.client.joinGroup("room"));
    await expectOK(c, "sendToGroup noEcho=true", a.client.sendToGroup("room", { n: 1 }, "json", { noEcho: true }));
    await expectMessage(c, b, "noEcho=true reaches other member", "group", { dataType: "json", data: { n: 1 }, group: "room", fromUserId: "a" });
    await expectOK(c, "sendToGroup noEcho=false", a.client.sendToGroup("room", { n: 2 }, "json", { noEcho: false }));
    await expectMessage(c, a, "noEcho=false echoes to sender", "group", { dataType: "json", data: { n: 2 }, group: "room", fromUserId: "a" });
    await expectMessage(c, b, "noEcho=false reaches other member", "group", { dataType: "json", data: { n: 2 }, group: "room", fromUserId: "a" });
    // Messages from one connection are processed in order, so {n:1} would have reached a before {n:2}.
    const echoed = a.inbox.find((e) => e.kind === "group" && sameData(e.data, { n: 1 }));
    c.check("noEcho=true: sender does not receive its own message", echoed === undefined, "no message", echoed && describe(echoed.data));
    await expectOK(c, "sendToGroup text noEcho=true", a.client.sendToGroup("room", "quiet", "text", { noEcho: true }));
    await expectMessage(c, b, "text noEcho=true reaches other member", "group", { dataType: "text", data: "quiet", group: "room", fromUserId: "a" });
    await expectAbsent(env, c, a, "text noEcho=true not echoed", (e) => e.kind === "group" && e.data === "quiet");
  },

  async permissions(env, c) {
    const none = await env.connect("none", { userId: "none" });
    await expectAckError(c, "joinGroup without role", none.client.joinGroup("g"), "Forbidden");
    await expectAckError(c, "leaveGroup without role", none.client.leaveGroup("g"), "Forbidden");
    await expectAckError(c, "sendToGroup without role", none.client.sendToGroup("g", { x: 1 }, "json"), "Forbidden");
    await expectExists(c, "connection stays open after Forbidden", env.service.connectionExists(none.id), true);

    const scoped = await env.connect("scoped", { userId: "scoped", roles: ["webpubsub.joinLeaveGroup.g1", "webpubsub.sendToGroup.g1"] });
    await expectOK(c, "scoped joinGroup(g1)", scoped.client.joinGroup("g1"));
    await expectAckError(c, "scoped joinGroup(g2)", scoped.client.joinGroup("g2"), "Forbidden");
    await expectOK(c, "scoped sendToGroup(g1)", scoped.client.sendToGroup("g1", { scoped: 1 }, "json"));
    await expectMessage(c, scoped, "scoped sendToGroup(g1) echo", "group", { dataType: "json", data: { scoped: 1 }, group: "g1", fromUserId: "scoped" });
    await expectAckError(c, "scoped sendToGroup(g2)", scoped.client.sendToGroup("g2", { scoped: 2 }, "json"), "Forbidden");
    await expectOK(c, "scoped joinGroup(g1) after a refusal", scoped.client.joinGroup("g1"));
  },

  async restPermissions(env, c) {
    const h = await env.connect("h", { userId: "h" });
    const s = env.service;
    await expectExists(c, "hasPermission(joinLeaveGroup, g2) before grant", s.hasPermission(h.id, "joinLeaveGroup", { targetName: "g2" }), false);
    await expectOK(c, "grantPermission(joinLeaveGroup, g2)", s.grantPermission(h.id, "joinLeaveGroup", { targetName: "g2" }));
    await expectExists(c, "hasPermission(joinLeaveGroup, g2) after grant", s.hasPermission(h.id, "joinLeaveGroup", { targetName: "g2" }), true);
    await expectOK(c, "joinGroup(g2) after grant", h.client.joinGroup("g2"));
    await expectAckError(c, "joinGroup(g3) not granted", h.client.joinGroup("g3"), "Forbidden");
    await expectOK(c, "revokePermission(joinLeaveGroup, g2)", s.revokePermission(h.id, "joinLeaveGroup", { targetName: "g2" }));
    await expectExists(c, "hasPermission(joinLeaveGroup, g2) after revoke", s.hasPermission(h.id, "joinLeaveGroup", { targetName: "g2" }), false);
    await expectAckError(c, "leaveGroup(g2) after revoke", h.client.leaveGroup("g2"), "Forbidden");
    await expectOK(c, "grantPermission(sendToGroup) for every group", s.grantPermission(h.id, "sendToGroup"));
    await expectExists(c, "hasPermission(sendToGroup)", s.hasPermission(h.id, "sendToGroup"), true);
    await expectOK(c, "sendToGroup after grant", h.client.sendToGroup("g2", { granted: true }, "json"));
    await expectMessage(c, h, "sendToGroup after grant (member echo)", "group", { dataType: "json", data: { granted: true }, group: "g2", fromUserId: "h" });
  },

  async sendToAll(env, c) {
    const c1 = await env.connect("c1", { userId: "u1" });
    const c2 = await env.connect("c2", { userId: "u2" });
    const c3 = await env.connect("c3", { userId: "u3" });
    for (const p of restPayloads(1)) {
      const name = `sendToAll ${p.name} excluding c3`;
      await expectOK(c, name, env.service.sendToAll(p.message, { ...p.options, excludedConnections: [c3.id] }));
      await expectMessage(c, c1, name, "server", { dataType: p.dataType, data: p.expectData });
      await expectMessage(c, c2, name, "server", { dataType: p.dataType, data: p.expectData });
    }
    await expectAbsent(env, c, c3, "sendToAll excluded", (e) => e.kind === "server" && !e.data?.sentinel);
    for (const p of restPayloads(2)) {
      const name = `sendToAll ${p.name}`;
      await expectOK(c, name, env.service.sendToAll(p.message, p.options));
      for (const h of [c1, c2, c3]) {
        await expectMessage(c, h, name, "server", { dataType: p.dataType, data: p.expectData });
      }
    }
    await expectOK(c, "sendToAll excluding two", env.service.sendToAll({ two: true }, { excludedConnections: [c1.id, c2.id] }));
    await expectMessage(c, c3, "sendToAll excluding two", "server", { dataType: "json", data: { two: true } });
    await expectAbsent(env, c, c1, "sendToAll excluding two (c1)", (e) => e.kind === "server" && sameData(e.data, { two: true }));
    await expectAbsent(env, c, c2, "sendToAll excluding two (c2)", (e) => e.kind === "server" && sameData(e.data, { two: true }));
  },

  async sendToUser(env, c) {
    const a1 = await env.connect("u1-a", { userId: "u1" });
    const a2 = await env.connect("u1-b", { userId: "u1" });
    const b = await env.connect("u2", { userId: "u2" });
    for (const p of restPayloads(3)) {
      const name = `sendToUser(u1) ${p.name}`;
      await expectOK(c, name, env.service.sendToUser("u1", p.message, p.options));
      await expectMessage(c, a1, name, "server", { dataType: p.dataType, data: p.expectData });
      await expectMessage(c, a2, name, "server", { dataType: p.dataType, data: p.expectData });
    }
    await expectAbsent(env, c, b, "sendToUser(u1) skips u2", (e) => e.kind === "server" && !e.data?.sentinel);
    // User ids travel percent-encoded in the path (rest-api.md §1.1).
    const odd = "user/1 x?&ü";
    const o = await env.connect("odd", { userId: odd });
    await expectOK(c, "sendToUser(odd id)", env.service.sendToUser(odd, { odd: true }));
    await expectMessage(c, o, "sendToUser(odd id)", "server", { dataType: "json", data: { odd: true } });
    await expectExists(c, "userExists(odd id)", env.service.userExists(odd), true);
    await expectOK(c, "sendToUser(nobody)", env.service.sendToUser("nobody", { lost: true }));
  },

  async sendToConnection(env, c) {
    const c1 = await env.connect("c1", { userId: "u1" });
    const c2 = await env.connect("c2", { userId: "u1" });
    for (const p of restPayloads(4)) {
      const name = `sendToConnection(c1) ${p.name}`;
      await expectOK(c, name, env.service.sendToConnection(c1.id, p.message, p.options));
      await expectMessage(c, c1, name, "server", { dataType: p.dataType, data: p.expectData });
    }
    await expectAbsent(env, c, c2, "sendToConnection(c1) skips c2", (e) => e.kind === "server" && !e.data?.sentinel);
    await expectOK(c, "sendToConnection(unknown id)", env.service.sendToConnection("no-such-connection", { lost: true }));
  },

  async groupSend(env, c) {
    const c1 = await env.connect("c1", { userId: "u1", groups: ["g"] });
    const c2 = await env.connect("c2", { userId: "u2", groups: ["g"] });
    const c3 = await env.connect("c3", { userId: "u3" });
    const g = env.service.group("g");
    for (const p of restPayloads(5)) {
      const name = `group(g).sendToAll ${p.name} excluding c2`;
      await expectOK(c, name, g.sendToAll(p.message, { ...p.options, excludedConnections: [c2.id] }));
      await expectMessage(c, c1, name, "group", { dataType: p.dataType, data: p.expectData, group: "g", fromUserId: undefined });
    }
    await expectAbsent(env, c, c2, "group send excluded member", (e) => e.kind === "group");
    await expectAbsent(env, c, c3, "group send non-member", (e) => e.kind === "group");
    for (const p of restPayloads(6)) {
      const name = `group(g).sendToAll ${p.name}`;
      await expectOK(c, name, g.sendToAll(p.message, p.options));
      await expectMessage(c, c1, name, "group", { dataType: p.dataType, data: p.expectData, group: "g", fromUserId: undefined });
      await expectMessage(c, c2, name, "group", { dataType: p.dataType, data: p.expectData, group: "g", fromUserId: undefined });
    }
    await expectOK(c, "group(empty).sendToAll", env.service.group("empty").sendToAll({ nobody: true }));
  },

  async membership(env, c) {
    const c1 = await env.connect("m1-a", { userId: "m1" });
    const c2 = await env.connect("m1-b", { userId: "m1" });
    const c3 = await env.connect("m2", { userId: "m2" });
    const s = env.service;
    const gm = s.group("gm");
    const isStep = (n) => (e) => e.kind === "group" && sameData(e.data, { step: n });
    const groupMsg = (n, group) => ({ dataType: "json", data: { step: n }, group, fromUserId: undefined });

    await expectOK(c, "group(gm).addConnection(m1-a)", gm.addConnection(c1.id));
    await expectExists(c, "groupExists(gm) after addConnection", s.groupExists("gm"), true);
    await gm.sendToAll({ step: 1 });
    await expectMessage(c, c1, "addConnection", "group", groupMsg(1, "gm"));
    await expectAbsent(env, c, c2, "addConnection adds only that connection", isStep(1));
    await expectAbsent(env, c, c3, "addConnection adds only that connection", isStep(1));

    await expectOK(c, "group(gm).removeConnection(m1-a)", gm.removeConnection(c1.id));
    await expectEventually(c, "groupExists(gm) after removeConnection", () => s.groupExists("gm"), false);
    await gm.sendToAll({ step: 2 });
    await expectAbsent(env, c, c1, "removeConnection", isStep(2));

    await expectOK(c, "group(gm).addUser(m1)", gm.addUser("m1"));
    await gm.sendToAll({ step: 3 });
    await expectMessage(c, c1, "addUser", "group", groupMsg(3, "gm"));
    await expectMessage(c, c2, "addUser", "group", groupMsg(3, "gm"));
    await expectAbsent(env, c, c3, "addUser skips other users", isStep(3));

    await expectOK(c, "group(gm).removeUser(m1)", gm.removeUser("m1"));
    await gm.sendToAll({ step: 4 });
    await expectAbsent(env, c, c1, "removeUser", isStep(4));
    await expectAbsent(env, c, c2, "removeUser", isStep(4));

    await expectOK(c, "group(ua).addUser(m1)", s.group("ua").addUser("m1"));
    await expectOK(c, "group(ub).addUser(m1)", s.group("ub").addUser("m1"));
    await s.group("ub").sendToAll({ step: 5 });
    await expectMessage(c, c2, "addUser to second group", "group", groupMsg(5, "ub"));
    await expectOK(c, "removeUserFromAllGroups(m1)", s.removeUserFromAllGroups("m1"));
    await s.group("ua").sendToAll({ step: 6 });
    await s.group("ub").sendToAll({ step: 6 });
    await expectAbsent(env, c, c1, "removeUserFromAllGroups", isStep(6));
    await expectAbsent(env, c, c2, "removeUserFromAllGroups", isStep(6));
    await expectEventually(c, "groupExists(ua) after removeUserFromAllGroups", () => s.groupExists("ua"), false);

    await expectOK(c, "group(ua).addConnection(m2)", s.group("ua").addConnection(c3.id));
    await expectOK(c, "group(ub).addConnection(m2)", s.group("ub").addConnection(c3.id));
    await expectExists(c, "groupExists(ub) after addConnection", s.groupExists("ub"), true);
    await expectOK(c, "removeConnectionFromAllGroups(m2)", s.removeConnectionFromAllGroups(c3.id));
    await s.group("ua").sendToAll({ step: 7 });
    await s.group("ub").sendToAll({ step: 7 });
    await expectAbsent(env, c, c3, "removeConnectionFromAllGroups", isStep(7));
    await expectEventually(c, "groupExists(ub) after removeConnectionFromAllGroups", () => s.groupExists("ub"), false);

    const r = await settle(gm.addConnection("no-such-connection"), "addConnection(unknown)");
    c.check("addConnection(unknown id) rejects with 404", !r.ok && r.error?.statusCode === 404, 404, r.ok ? "resolved" : errInfo(r.error));
    await expectOK(c, "removeConnection(unknown id)", gm.removeConnection("no-such-connection"));
    await expectOK(c, "addUser(user without connections)", gm.addUser("nobody"));
    await expectOK(c, "removeUserFromAllGroups(nobody)", s.removeUserFromAllGroups("nobody"));
    await expectOK(c, "removeConnectionFromAllGroups(unknown id)", s.removeConnectionFromAllGroups("no-such-connection"));
  },

  async exists(env, c) {
    const h = await env.connect("ex", { userId: "ex1", groups: ["exg"], autoReconnect: false });
    const s = env.service;
    await expectExists(c, "connectionExists(live)", s.connectionExists(h.id), true);
    await expectExists(c, "connectionExists(unknown)", s.connectionExists("no-such-connection"), false);
    await expectExists(c, "userExists(live)", s.userExists("ex1"), true);
    await expectExists(c, "userExists(unknown)", s.userExists("nobody"), false);
    await expectExists(c, "groupExists(with member)", s.groupExists("exg"), true);
    await expectExists(c, "groupExists(unknown)", s.groupExists("no-such-group"), false);
    await expectOK(c, "closeConnection", s.closeConnection(h.id));
    await expectEventually(c, "connectionExists after closeConnection", () => s.connectionExists(h.id), false);
    await expectEventually(c, "userExists after closeConnection", () => s.userExists("ex1"), false);
    await expectEventually(c, "groupExists after its last member closed", () => s.groupExists("exg"), false);
  },

  async closeConnection(env, c) {
    const c1 = await env.connect("c1", { userId: "u1", autoReconnect: false });
    const c2 = await env.connect("c2", { userId: "u1", autoReconnect: false });
    await expectOK(c, "closeConnection(c1, reason)", env.service.closeConnection(c1.id, { reason: "bye from e2e ✓" }));
    await expectDisconnected(c, c1, "closeConnection", "bye from e2e ✓");
    await expectEventually(c, "connectionExists(c1) after close", () => env.service.connectionExists(c1.id), false);
    await expectExists(c, "connectionExists(c2) untouched", env.service.connectionExists(c2.id), true);
    await expectAbsent(env, c, c2, "closeConnection leaves c2 connected", (e) => e.kind === "disconnected");
    await expectOK(c, "closeConnection(unknown id)", env.service.closeConnection("no-such-connection", { reason: "x" }));
    await expectOK(c, "closeConnection(c2) without reason", env.service.closeConnection(c2.id));
    await expectDisconnected(c, c2, "closeConnection without reason");
  },

  async closeAll(env, c) {
    const c1 = await env.connect("c1", { userId: "u1", autoReconnect: false });
    const c2 = await env.connect("c2", { userId: "u2", autoReconnect: false });
    const c3 = await env.connect("c3", { userId: "u3", autoReconnect: false });
    await expectOK(c, "closeAllConnections(excluded c3)", env.service.closeAllConnections({ reason: "closing all", excluded: [c3.id] }));
    await expectDisconnected(c, c1, "closeAllConnections", "closing all");
    await expectDisconnected(c, c2, "closeAllConnections", "closing all");
    await expectExists(c, "connectionExists(c3) excluded", env.service.connectionExists(c3.id), true);
    await expectAbsent(env, c, c3, "closeAllConnections excluded c3", (e) => e.kind === "disconnected");
    await expectOK(c, "closeAllConnections()", env.service.closeAllConnections({ reason: "now you" }));
    await expectDisconnected(c, c3, "closeAllConnections without excluded", "now you");
  },

  async closeUser(env, c) {
    const a1 = await env.connect("cu1-a", { userId: "cu1", autoReconnect: false });
    const a2 = await env.connect("cu1-b", { userId: "cu1", autoReconnect: false });
    const b = await env.connect("cu2", { userId: "cu2", autoReconnect: false });
    await expectOK(c, "closeUserConnections(cu1, excluded cu1-b)", env.service.closeUserConnections("cu1", { reason: "user closed", excluded: [a2.id] }));
    await expectDisconnected(c, a1, "closeUserConnections", "user closed");
    await expectAbsent(env, c, a2, "closeUserConnections excluded", (e) => e.kind === "disconnected");
    await expectAbsent(env, c, b, "closeUserConnections other user", (e) => e.kind === "disconnected");
    await expectOK(c, "closeUserConnections(cu1)", env.service.closeUserConnections("cu1", { reason: "rest of cu1" }));
    await expectDisconnected(c, a2, "closeUserConnections without excluded", "rest of cu1");
    await expectExists(c, "userExists(cu1) after close", env.service.userExists("cu2"), true);
    await expectEventually(c, "userExists(cu1) after close", () => env.service.userExists("cu1"), false);
    await expectOK(c, "closeUserConnections(nobody)", env.service.closeUserConnections("nobody"));
  },

  async closeGroup(env, c) {
    const c1 = await env.connect("c1", { userId: "u1", groups: ["cg"], autoReconnect: false });
    const c2 = await env.connect("c2", { userId: "u2", groups: ["cg"], autoReconnect: false });
    const c3 = await env.connect("c3", { userId: "u3", autoReconnect: false });
    const g = env.service.group("cg");
    await expectOK(c, "group(cg).closeAllConnections(excluded c2)", g.closeAllConnections({ reason: "group closed", excluded: [c2.id] }));
    await expectDisconnected(c, c1, "group closeAllConnections", "group closed");
    await expectAbsent(env, c, c2, "group closeAllConnections excluded member", (e) => e.kind === "disconnected");
    await expectAbsent(env, c, c3, "group closeAllConnections non-member", (e) => e.kind === "disconnected");
    await expectOK(c, "group(cg).closeAllConnections()", g.closeAllConnections({ reason: "all of cg" }));
    await expectDisconnected(c, c2, "group closeAllConnections without excluded", "all of cg");
    await expectExists(c, "connectionExists(non-member) after group close", env.service.connectionExists(c3.id), true);
    await expectOK(c, "group(empty).closeAllConnections()", env.service.group("empty").closeAllConnections());
  },

  // filters sends with OData filters (rest-api.md §5) through sendToAll, sendToUser and
  // group(...).sendToAll, and checks that exactly the matching connections receive each message.
  async filters(env, c) {
    const s = env.service;
    const alice = await env.connect("alice", { userId: "alice", groups: ["g1"] });
    const bob = await env.connect("bob", { userId: "bob", groups: ["g1", "g2"] });
    const bob2 = await env.connect("bob-2", { userId: "bob", groups: ["g3"] });
    const obrien = await env.connect("o'brien", { userId: "o'brien", groups: ["g2"] });
    const anon = await env.connect("anonymous", { groups: ["g1"] });
    const lis1 = await env.connect("listener-1", { userId: "listener-1" });
    const lis2 = await env.connect("listener-2", { userId: "listener-2", groups: ["g1", "g2", "g3"] });
    const all = [alice, bob, bob2, obrien, anon, lis1, lis2];

    const quoted = odata`userId eq ${"o'brien"}`;
    c.eq("odata doubles the quote", quoted, "userId eq 'o''brien'");
    const hubCases = [
      ["userId eq (odata, quoted)", { filter: quoted }, [obrien]],
      ["'g1' in groups", { filter: "'g1' in groups" }, [alice, bob, anon, lis2]],
      ["not ('g1' in groups)", { filter: "not ('g1' in groups)" }, [bob2, obrien, lis1]],
      ["userId eq null (odata)", { filter: odata`userId eq ${null}` }, [anon]],
      ["startswith", { filter: "startswith(userId, 'listener-')" }, [lis1, lis2]],
      ["length(groups) gt 1", { filter: "length(groups) gt 1" }, [bob, lis2]],
      ["connectionId eq (odata)", { filter: odata`connectionId eq ${bob2.id}` }, [bob2]],
      ["and / or", { filter: "userId eq 'alice' or ('g3' in groups and userId ne 'bob')" }, [alice, lis2]],
      ["eq is case-sensitive", { filter: "userId eq 'ALICE'" }, []],
      ["filter and excludedConnections", { filter: "'g1' in groups", excludedConnections: [bob.id, anon.id] }, [alice, lis2]],
    ];
    for (const [what, options, to] of hubCases) {
      const name = `sendToAll filter ${what}`;
      const data = { filter: what };
      const r = await expectOK(c, name, s.sendToAll(data, options));
      if (r.ok) await expectOnly(env, c, name, all, to, "server", { dataType: "json", data });
    }

    const userCases = [
      ["bob", "'g1' in groups", { filter: "'g1' in groups" }, [bob]],
      ["bob", "connectionId eq (odata)", { filter: odata`connectionId eq ${bob2.id}` }, [bob2]],
      ["bob", "userId eq null", { filter: "userId eq null" }, []],
      ["o'brien", "userId eq (odata, quoted)", { filter: quoted }, [obrien]],
    ];
    for (const [user, what, options, to] of userCases) {
      const name = `sendToUser(${user}) filter ${what}`;
      const data = { user, filter: what };
      const r = await expectOK(c, name, s.sendToUser(user, data, options));
      if (r.ok) await expectOnly(env, c, name, all, to, "server", { dataType: "json", data });
    }
    const text = "text to bob's connections in more than one group";
    const tr = await expectOK(c, "sendToUser(bob) text with filter", s.sendToUser("bob", text, { contentType: "text/plain", filter: "length(groups) gt 1" }));
    if (tr.ok) await expectOnly(env, c, "sendToUser(bob) text with filter", all, [bob], "server", { dataType: "text", data: text });

    const groupCases = [
      ["g1", "length(groups) gt 1", { filter: "length(groups) gt 1" }, [bob, lis2]],
      ["g2", "userId eq (odata, quoted)", { filter: quoted }, [obrien]],
      ["g3", "'g1' in groups", { filter: "'g1' in groups" }, [lis2]],
      ["g1", "userId eq null", { filter: "userId eq null" }, [anon]],
      ["g1", "userId ne null and excludedConnections", { filter: "userId ne null", excludedConnections: [alice.id] }, [bob, lis2]],
    ];
    for (const [group, what, options, to] of groupCases) {
      const name = `group(${group}).sendToAll filter ${what}`;
      const data = { group, filter: what };
      const r = await expectOK(c, name, s.group(group).sendToAll(data, options));
      if (r.ok) await expectOnly(env, c, name, all, to, "group", { dataType: "json", data, group, fromUserId: undefined });
    }

    const lost = { invalid: true };
    await expectBadFilter(c, "sendToAll filter 'userId eq'", s.sendToAll(lost, { filter: "userId eq" }));
    await expectBadFilter(c, "sendToUser filter 'startswith(userId'", s.sendToUser("bob", lost, { filter: "startswith(userId" }));
    await expectBadFilter(c, "group(g1).sendToAll filter 'userId eq 'a' extra'", s.group("g1").sendToAll(lost, { filter: "userId eq 'a' extra" }));
    for (const h of all) {
      await expectAbsent(env, c, h, "sends with an invalid filter deliver nothing", (e) => sameData(e.data, lost));
    }
  },

  // bulkGroups adds and removes the connections a filter selects to and from several groups at
  // once (rest-api.md §3.18) and checks the effect with group sends and groupExists.
  async bulkGroups(env, c) {
    const s = env.service;
    const p1 = await env.connect("player-1", { userId: "player-1" });
    const p2 = await env.connect("player-2", { userId: "player-2" });
    const w = await env.connect("watcher", { userId: "watcher" });
    const anon = await env.connect("anonymous", {});
    const all = [p1, p2, w, anon];
    let step = 0;
    /** groupReaches sends one message to group and checks that exactly `to` get it. */
    const groupReaches = async (name, group, to) => {
      const data = { step: ++step, group };
      const r = await expectOK(c, `${name}: group(${group}).sendToAll`, s.group(group).sendToAll(data));
      if (r.ok) await expectOnly(env, c, `${name}: group ${group}`, all, to, "group", { dataType: "json", data, group, fromUserId: undefined });
    };

    await expectOK(c, "addConnectionsToGroups([team, players], startswith)", s.addConnectionsToGroups(["team", "players"], "startswith(userId, 'player-')"));
    await expectExists(c, "groupExists(team) after addConnectionsToGroups", s.groupExists("team"), true);
    await expectExists(c, "groupExists(players) after addConnectionsToGroups", s.groupExists("players"), true);
    await groupReaches("addConnectionsToGroups", "team", [p1, p2]);
    await groupReaches("addConnectionsToGroups", "players", [p1, p2]);

    await expectOK(c, "addConnectionsToGroups([nouser], userId eq null)", s.addConnectionsToGroups(["nouser"], odata`userId eq ${null}`));
    await groupReaches("addConnectionsToGroups userId eq null", "nouser", [anon]);
    // Filters see the groups joined by earlier calls.
    await expectOK(c, "addConnectionsToGroups([vip], 'team' in groups and ...)", s.addConnectionsToGroups(["vip"], "'team' in groups and userId ne 'player-1'"));
    await groupReaches("addConnectionsToGroups on group membership", "vip", [p2]);
    await expectOK(c, "addConnectionsToGroups([empty], matches nobody)", s.addConnectionsToGroups(["empty"], "userId eq 'nobody'"));
    await expectExists(c, "groupExists(empty) when the filter matched nobody", s.groupExists("empty"), false);
    // rest-api.md §9.4: an empty filter selects every connection of the hub.
    await expectOK(c, "addConnectionsToGroups([everyone], empty filter)", s.addConnectionsToGroups(["everyone"], ""));
    await groupReaches("addConnectionsToGroups empty filter", "everyone", all);

    await expectOK(c, "removeConnectionsFromGroups([team], player-2)", s.removeConnectionsFromGroups(["team"], odata`userId eq ${"player-2"}`));
    await groupReaches("removeConnectionsFromGroups", "team", [p1]);
    await groupReaches("removeConnectionsFromGroups leaves other groups", "players", [p1, p2]);
    await expectOK(c, "removeConnectionsFromGroups([team, players, vip], startswith)", s.removeConnectionsFromGroups(["team", "players", "vip"], "startswith(userId, 'player-')"));
    for (const g of ["team", "players", "vip"]) {
      await expectEventually(c, `groupExists(${g}) after removeConnectionsFromGroups`, () => s.groupExists(g), false);
    }
    await groupReaches("removeConnectionsFromGroups emptied", "players", []);
    await expectOK(c, "removeConnectionsFromGroups([everyone], userId ne null)", s.removeConnectionsFromGroups(["everyone"], "userId ne null"));
    await groupReaches("removeConnectionsFromGroups userId ne null", "everyone", [anon]);

    // An invalid filter is refused before anything changes.
    await expectBadFilter(c, "addConnectionsToGroups filter 'userId eq'", s.addConnectionsToGroups(["bad", "everyone"], "userId eq"));
    await expectExists(c, "groupExists(bad) after a refused add", s.groupExists("bad"), false);
    await groupReaches("refused addConnectionsToGroups changes nothing", "everyone", [anon]);
    await expectBadFilter(c, "removeConnectionsFromGroups filter 'startswith(userId'", s.removeConnectionsFromGroups(["nouser", "everyone"], "startswith(userId"));
    await expectExists(c, "groupExists(nouser) after a refused remove", s.groupExists("nouser"), true);
    await groupReaches("refused removeConnectionsFromGroups changes nothing", "nouser", [anon]);
    await groupReaches("refused removeConnectionsFromGroups changes nothing", "everyone", [anon]);
  },

  // listConnections pages through group(...).listConnections (rest-api.md §3.17). The page size
  // always goes in the options of listConnections: the generated byPage() throws when its
  // settings carry maxPageSize. Pages after the first are the service's nextLink, fetched verbatim.
  async listConnections(env, c) {
    const s = env.service;
    const members = [];
    for (const [label, userId] of [["l1", "lu1"], ["l2", "lu2"], ["l3", "lu3"], ["l4", "lu4"], ["l5", "lu4"], ["l6", "lu6"], ["anonymous", undefined]]) {
      members.push(await env.connect(label, { userId, groups: ["lg"] }));
    }
    const outsider = await env.connect("outsider", { userId: "out", groups: ["other"] });
    const want = new Map(members.map((h) => [h.id, h.userId]));
    const sorted = [...want.keys()].sort();
    const g = s.group("lg");
    const endpoint = env.parsed.endpoint;
    /** run lists and reports an SDK failure as a failed check instead of aborting. */
    const run = async (name, options, how) => {
      const r = await settle(listGroup(g, options, how), name);
      c.check(`${name} completes`, r.ok, "listed", r.ok ? { items: r.value.items.length, requests: r.value.responses.length } : restError(r.error));
      return r.ok ? r.value : null;
    };

    let r = await run("listConnections()", {});
    if (r) {
      checkListing(c, "listConnections()", r.items, want);
      c.eq("listConnections(): one request", r.responses.length, 1);
      checkPaging(c, "listConnections()", r.responses, endpoint);
      const wire = r.responses[0]?.wire?.value?.find((m) => m.connectionId === members[6].id);
      c.check("listConnections(): userId omitted on the wire for a connection without a user", wire !== undefined && !("userId" in wire), { connectionId: members[6].id }, wire);
    }

    r = await run("listConnections({maxPageSize: 2})", { maxPageSize: 2 });
    if (r) {
      checkListing(c, "listConnections({maxPageSize: 2})", r.items, want);
      c.eq("listConnections({maxPageSize: 2}): page sizes", r.responses.map((x) => x.wire?.value?.length), [2, 2, 2, 1]);
      c.check("listConnections({maxPageSize: 2}): first request asks maxpagesize=2", new URL(r.responses[0].url).searchParams.get("maxpagesize") === "2", "maxpagesize=2", r.responses[0].url);
      checkPaging(c, "listConnections({maxPageSize: 2})", r.responses, endpoint);
    }

    r = await run("listConnections({maxPageSize: 2}).byPage()", { maxPageSize: 2 }, { byPage: true });
    if (r) {
      checkListing(c, "byPage() with maxPageSize 2", r.items, want);
      c.eq("byPage() with maxPageSize 2: page sizes", r.pages.map((p) => p.length), [2, 2, 2, 1]);
      checkPaging(c, "byPage() with maxPageSize 2", r.responses, endpoint);
    }

    r = await run("listConnections({maxPageSize: 3, top: 5})", { maxPageSize: 3, top: 5 });
    if (r) {
      checkListing(c, "listConnections({maxPageSize: 3, top: 5})", r.items, new Map(sorted.slice(0, 5).map((id) => [id, want.get(id)])));
      c.eq("listConnections({maxPageSize: 3, top: 5}): page sizes", r.responses.map((x) => x.wire?.value?.length), [3, 2]);
      checkPaging(c, "listConnections({maxPageSize: 3, top: 5})", r.responses, endpoint);
    }
    r = await run("listConnections({maxPageSize: 3, top: 5}).byPage()", { maxPageSize: 3, top: 5 }, { byPage: true });
    if (r) {
      c.eq("byPage() with maxPageSize 3, top 5: page sizes", r.pages.map((p) => p.length), [3, 2]);
      c.eq("byPage() with maxPageSize 3, top 5: the first five by connection id", r.items.map((m) => m.connectionId), sorted.slice(0, 5));
    }
    r = await run("listConnections({top: 4})", { top: 4 });
    if (r) c.eq("listConnections({top: 4}): the first four by connection id", r.items.map((m) => m.connectionId), sorted.slice(0, 4));

    // byPage resumes from a nextLink handed back as continuationToken.
    r = await run("byPage() to learn a nextLink", { maxPageSize: 2 }, { byPage: true });
    const link = r?.responses[0]?.wire?.nextLink;
    if (link) {
      const rest = await run("byPage({continuationToken: nextLink})", { maxPageSize: 2 }, { byPage: true, settings: { continuationToken: link } });
      if (rest) {
        c.eq("byPage({continuationToken}) lists the rest", rest.items.map((m) => m.connectionId), sorted.slice(2));
        c.eq("byPage({continuationToken}) first request is the nextLink", rest.responses[0]?.url, link);
      }
    }

    const unknown = s.group("no-such-group");
    const u1 = await settle(listGroup(unknown, { maxPageSize: 2 }), "unknown group");
    c.check("unknown group: listConnections yields nothing", u1.ok && u1.value.items.length === 0, [], u1.ok ? u1.value.items : restError(u1.error));
    const u2 = await settle(listGroup(unknown, {}, { byPage: true }), "unknown group byPage");
    c.check("unknown group: byPage yields one empty page", u2.ok && isDeepStrictEqual(u2.value.pages, [[]]), [[]], u2.ok ? u2.value.pages : restError(u2.error));
    if (u2.ok) checkPaging(c, "unknown group", u2.value.responses, endpoint);

    // Membership changes between pages: a listed connection leaves, one not yet listed leaves,
    // and the outsider joins. No connection may be listed twice, every member that stayed is
    // listed once, and the one that left before its turn is not listed.
    const listedLeaver = sorted[0];
    const unlistedLeaver = sorted[sorted.length - 1];
    r = await run("listConnections({maxPageSize: 2}) with leaves mid-iteration", { maxPageSize: 2 }, {
      byPage: true,
      onPage: async (_page, n) => {
        if (n !== 1) return;
        await expectOK(c, "mid-iteration: removeConnection(already listed)", g.removeConnection(listedLeaver));
        await expectOK(c, "mid-iteration: removeConnection(not yet listed)", g.removeConnection(unlistedLeaver));
        await expectOK(c, "mid-iteration: addConnection(outsider)", g.addConnection(outsider.id));
      },
    });
    if (r) {
      const ids = r.items.map((m) => m.connectionId);
      c.eq("mid-iteration: no connection listed twice", ids.length - new Set(ids).size, 0);
      c.eq("mid-iteration: page sizes stay within maxPageSize", r.pages.filter((p) => p.length > 2).length, 0);
      c.eq("mid-iteration: every member that stayed is listed once", sorted.slice(0, -1).filter((id) => ids.filter((x) => x === id).length !== 1), []);
      c.check("mid-iteration: a member that left before its turn is not listed", !ids.includes(unlistedLeaver), "absent", ids);
      c.info("mid-iteration: outsider (joined mid-iteration) listed", ids.includes(outsider.id));
    }
  },

  // clientAccessToken connects clients with tokens from getClientAccessToken with every option
  // of @azure/web-pubsub 1.2.0, and from the REST :generateToken operation (rest-api.md §3.20).
  // The SDK calls :generateToken itself only when built with a TokenCredential over https, so
  // the scenario calls it through the SDK's generated client (service.client, not public API).
  async clientAccessToken(env, c) {
    const s = env.service;
    const wsBase = new URL(`client/hubs/${env.hub}`, env.parsed.endpoint.replace(/^http/, "ws")).toString();
    const options = { userId: "tok-user", roles: ["webpubsub.joinLeaveGroup"], groups: ["tg1", "tg2"], expirationTimeInMinutes: 5, clientProtocol: "default" };
    const r = await expectOK(c, "getClientAccessToken(every option)", s.getClientAccessToken(options));
    if (r.ok) {
      const tok = r.value;
      c.eq("getClientAccessToken: baseUrl", tok.baseUrl, wsBase);
      c.eq("getClientAccessToken: url", tok.url, `${wsBase}?access_token=${tok.token}`);
      const cl = claimsOf(tok.token);
      c.eq("getClientAccessToken: claims", { sub: cl.sub, role: cl.role, group: cl["webpubsub.group"], lifetime: cl.exp - cl.iat }, { sub: "tok-user", role: ["webpubsub.joinLeaveGroup"], group: ["tg1", "tg2"], lifetime: 300 });
      const h = await env.connect("sdk-token", { url: tok.url });
      c.eq("sdk token: connected.userId", h.inbox.find((e) => e.kind === "connected").userId, "tok-user");
      for (const group of ["tg1", "tg2"]) {
        await expectOK(c, `sdk token: group(${group}).sendToAll`, s.group(group).sendToAll({ tokenGroup: group }));
        await expectMessage(c, h, `sdk token: joined ${group} at connect`, "group", { dataType: "json", data: { tokenGroup: group }, group, fromUserId: undefined });
      }
      await expectOK(c, "sdk token: joinGroup allowed by role", h.client.joinGroup("joined"));
      await expectOK(c, "sdk token: group(joined).sendToAll", s.group("joined").sendToAll({ joined: true }));
      await expectMessage(c, h, "sdk token: joinGroup took effect", "group", { dataType: "json", data: { joined: true }, group: "joined", fromUserId: undefined });
      await expectAckError(c, "sdk token: sendToGroup without its role", h.client.sendToGroup("joined", { x: 1 }, "json"), "Forbidden");
    }

    const gen = s.client.webPubSub;
    const g = await expectOK(c, "generateClientToken(every option)", gen.generateClientToken(env.hub, { userId: "gen-user", roles: ["webpubsub.sendToGroup"], groups: ["gg1", "gg2"], expirationTimeInMinutes: 7, clientType: "Default" }));
    if (g.ok) {
      const cl = claimsOf(g.value.token);
      c.eq("generateClientToken: claims", { sub: cl.sub, role: cl.role, group: cl["webpubsub.group"], lifetime: cl.exp - cl.iat }, { sub: "gen-user", role: ["webpubsub.sendToGroup"], group: ["gg1", "gg2"], lifetime: 420 });
      let audPath = null;
      try {
        audPath = new URL(cl.aud).pathname;
      } catch {
        // reported below
      }
      c.check("generateClientToken: aud is <endpoint>/client/hubs/<hub>", audPath?.toLowerCase() === `/client/hubs/${env.hub}`.toLowerCase(), `…/client/hubs/${env.hub}`, cl.aud);
      const h = await env.connect("rest-token", { url: `${wsBase}?access_token=${g.value.token}` });
      c.eq("rest token: connected.userId", h.inbox.find((e) => e.kind === "connected").userId, "gen-user");
      for (const group of ["gg1", "gg2"]) {
        await expectOK(c, `rest token: group(${group}).sendToAll`, s.group(group).sendToAll({ restGroup: group }));
        await expectMessage(c, h, `rest token: joined ${group} at connect`, "group", { dataType: "json", data: { restGroup: group }, group, fromUserId: undefined });
      }
      await expectOK(c, "rest token: sendToGroup allowed by role", h.client.sendToGroup("gg1", "from rest token", "text"));
      await expectMessage(c, h, "rest token: sendToGroup echo", "group", { dataType: "text", data: "from rest token", group: "gg1", fromUserId: "gen-user" });
      await expectAckError(c, "rest token: joinGroup without its role", h.client.joinGroup("elsewhere"), "Forbidden");
    }

    const bare = await expectOK(c, "generateClientToken() without options", gen.generateClientToken(env.hub));
    if (bare.ok) {
      const cl = claimsOf(bare.value.token);
      c.eq("generateClientToken(): claims", { sub: cl.sub, role: cl.role, group: cl["webpubsub.group"], lifetime: cl.exp - cl.iat }, { sub: undefined, role: undefined, group: undefined, lifetime: 3600 });
      const h = await env.connect("bare-token", { url: `${wsBase}?access_token=${bare.value.token}` });
      c.check("bare token: connected.userId is null or absent", h.inbox.find((e) => e.kind === "connected").userId == null, null, h.inbox.find((e) => e.kind === "connected").userId);
      await expectAckError(c, "bare token: joinGroup without a role", h.client.joinGroup("g"), "Forbidden");
    }
  },

  async badToken(env, c) {
    const wrongKey = "WRONGKEY" + env.parsed.key.slice(8).split("").reverse().join("");
    const otherSvc = env.serviceFor(env.hub, withAccessKey(env.cs, wrongKey));
    const good = await env.service.getClientAccessToken({ userId: "tok" });
    const wrong = await otherSvc.getClientAccessToken({ userId: "tok" });
    const tampered = tamperJWT(good.token, (cl) => {
      cl.sub = "mallory";
      cl.role = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
    });
    const now = Math.floor(Date.now() / 1000);
    const aud = new URL(`client/hubs/${env.hub}`, env.parsed.endpoint).toString();
    const expired = signJWT({ aud, iat: now - 7200, exp: now - 3600, sub: "tok" }, env.parsed.key);
    const otherHub = await env.serviceFor("someOtherHub").getClientAccessToken({ userId: "tok" });
    const cases = [
      ["wrong key", wrong.url],
      ["tampered claims", `${good.baseUrl}?access_token=${tampered}`],
      ["expired", `${good.baseUrl}?access_token=${expired}`],
      ["audience of another hub", `${good.baseUrl}?access_token=${otherHub.token}`],
      ["no token", good.baseUrl],
      ["garbage token", `${good.baseUrl}?access_token=not.a.jwt`],
    ];
    for (const [name, url] of cases) {
      const h = env.client(`bad:${name}`, { url, autoReconnect: false });
      const r = await settle(h.client.start(), `start() with ${name}`);
      c.check(`SDK start() rejects: ${name}`, !r.ok, "rejected", r.ok ? "resolved" : errInfo(r.error));
      if (!r.ok) c.info(`start() error: ${name}`, String(r.error?.message ?? r.error));
      const raw = await settle(rawHandshake(url), `raw handshake ${name}`);
      c.check(`raw upgrade gets HTTP 401: ${name}`, raw.ok && raw.value.status === 401, 401, raw.ok ? raw.value : errInfo(raw.error));
    }
    // Control: the same probe with a valid token is upgraded, echoing the subprotocol.
    const raw = await settle(rawHandshake(good.url, "json.webpubsub.azure.v1"), "raw handshake valid");
    c.check("raw upgrade with valid token gets 101", raw.ok && raw.value.status === 101, 101, raw.ok ? raw.value : errInfo(raw.error));
    if (raw.ok && raw.value.status === 101) {
      c.eq("raw upgrade echoes subprotocol", raw.value.protocol, "json.webpubsub.azure.v1");
      c.check("raw upgrade Sec-WebSocket-Accept", raw.value.acceptOK, true, raw.value.acceptOK);
    }
    const ok = await settle(env.connect("valid", { userId: "tok" }), "connect with valid token");
    c.check("SDK start() with valid token connects", ok.ok, "connected", ok.ok ? "connected" : errInfo(ok.error));
  },

  async restAuth(env, c) {
    const wrongKey = "WRONGKEY" + env.parsed.key.slice(8).split("").reverse().join("");
    const bad = env.serviceFor(env.hub, withAccessKey(env.cs, wrongKey));
    const calls = [
      ["sendToAll", () => bad.sendToAll({ x: 1 })],
      ["sendToUser", () => bad.sendToUser("u", "t", { contentType: "text/plain" })],
      ["connectionExists", () => bad.connectionExists("x")],
      ["groupExists", () => bad.groupExists("g")],
      ["closeAllConnections", () => bad.closeAllConnections()],
      ["group.addUser", () => bad.group("g").addUser("u")],
    ];
    for (const [name, fn] of calls) {
      const r = await settle(fn(), name);
      c.check(`${name} with wrong key rejects with 401`, !r.ok && r.error?.statusCode === 401, 401, r.ok ? { resolved: describe(r.value) } : errInfo(r.error));
    }
    await expectOK(c, "sendToAll with the right key", env.service.sendToAll({ x: 1 }));
  },

  // anonymous needs a server whose config allows anonymous connects on WEBPUBSUB_HUB.
  async anonymous(env, c) {
    const { baseUrl } = await env.service.getClientAccessToken();
    const h = env.client("anon", { url: baseUrl, autoReconnect: false });
    const r = await settle(h.client.start(), "start() without token");
    c.check("SDK start() without token on an anonymous hub", r.ok, "resolved", r.ok ? "resolved" : errInfo(r.error));
    if (r.ok) {
      const ev = await settle(h.inbox.wait((e) => e.kind === "connected", "connected"), "connected");
      c.check("anonymous connected event", ev.ok, "connected", ev.ok ? ev.value : String(ev.error.message));
      if (ev.ok) c.check("anonymous connected.userId is null or absent", ev.value.userId == null, null, ev.value.userId);
      if (ev.ok) await expectExists(c, "connectionExists(anonymous)", env.service.connectionExists(ev.value.connectionId), true);
    }
    const raw = await settle(rawHandshake(baseUrl), "raw anonymous handshake");
    c.check("raw anonymous upgrade gets 101", raw.ok && raw.value.status === 101, 101, raw.ok ? raw.value : errInfo(raw.error));
    // Hubs not listed keep the default policy, deny.
    const denied = (await env.serviceFor("notAnonymous").getClientAccessToken()).baseUrl;
    const d = env.client("denied", { url: denied, autoReconnect: false });
    const dr = await settle(d.client.start(), "start() without token on a denying hub");
    c.check("SDK start() without token on a denying hub rejects", !dr.ok, "rejected", dr.ok ? "resolved" : errInfo(dr.error));
    const draw = await settle(rawHandshake(denied), "raw denied handshake");
    c.check("raw upgrade without token on a denying hub gets 401", draw.ok && draw.value.status === 401, 401, draw.ok ? draw.value : errInfo(draw.error));
  },

  // cliToken connects with a URL printed by `webpubsub token` (WEBPUBSUB_CLIENT_URL), made
  // for user WEBPUBSUB_EXPECT_USER with role webpubsub.sendToGroup and group
  // WEBPUBSUB_EXPECT_GROUP, and checks that the server honours every claim.
  async cliToken(env, c) {
    const url = process.env.WEBPUBSUB_CLIENT_URL;
    const user = process.env.WEBPUBSUB_EXPECT_USER;
    const group = process.env.WEBPUBSUB_EXPECT_GROUP;
    if (!url || !user || !group) {
      throw new Error("cliToken needs WEBPUBSUB_CLIENT_URL, WEBPUBSUB_EXPECT_USER and WEBPUBSUB_EXPECT_GROUP");
    }
    const h = await env.connect("cli", { url, autoReconnect: false });
    c.eq("connected.userId from --user", h.inbox.find((e) => e.kind === "connected").userId, user);
    await expectOK(c, `REST group(${group}).sendToAll`, env.service.group(group).sendToAll({ cli: true }));
    await expectMessage(c, h, "--group joined at connect", "group", { dataType: "json", data: { cli: true }, group, fromUserId: undefined });
    await expectOK(c, "sendToGroup allowed by --role", h.client.sendToGroup(group, "from cli", "text"));
    await expectMessage(c, h, "sendToGroup echo", "group", { dataType: "text", data: "from cli", group, fromUserId: user });
    await expectAckError(c, "joinGroup without a joinLeaveGroup role", h.client.joinGroup("elsewhere"), "Forbidden");
  },

  // recovery needs json.reliable.webpubsub.azure.v1: it drops one client's socket without a
  // close frame and checks that the SDK recovers the same logical connection (same
  // connectionId, no disconnected event) and receives what was sent meanwhile, exactly once
  // (client-protocol.md §7.5). The SDK has no public API for either the reconnection token or
  // a hard drop, so this scenario reads _reconnectionToken and terminates the underlying `ws`
  // socket through private fields.
  async recovery(env, c) {
    if (!env.reliable) {
      throw new Error("the recovery scenario needs WEBPUBSUB_PROTOCOL=json.reliable.webpubsub.azure.v1");
    }
    const a = await env.connect("a", { userId: "r", groups: ["rg"] });
    const tok = a.client._reconnectionToken;
    c.check("connected carries reconnectionToken", typeof tok === "string" && tok.length > 0, "non-empty string", tok);
    await expectOK(c, "sendToConnection before drop", env.service.sendToConnection(a.id, { n: 0 }));
    await expectMessage(c, a, "before drop", "server", { dataType: "json", data: { n: 0 } });
    const id = a.id;
    const sock = a.client._wsClient?._socket;
    c.check("SDK exposes its ws socket (private)", typeof sock?.terminate === "function", "ws socket", typeof sock);
    if (typeof sock?.terminate !== "function") return;
    sock.terminate();
    await expectOK(c, "sendToConnection during recovery", env.service.sendToConnection(a.id, { n: 1 }));
    await expectOK(c, "group send during recovery", env.service.group("rg").sendToAll({ n: 2 }));
    await expectMessage(c, a, "sendToConnection during recovery", "server", { dataType: "json", data: { n: 1 } });
    await expectMessage(c, a, "group send during recovery", "group", { dataType: "json", data: { n: 2 }, group: "rg", fromUserId: undefined });
    await expectOK(c, "sendToConnection after recovery", env.service.sendToConnection(a.id, { n: 3 }));
    await expectMessage(c, a, "after recovery", "server", { dataType: "json", data: { n: 3 } });
    c.eq("connectionId kept across recovery", a.client._connectionId, id);
    c.eq("no disconnected event during recovery", a.inbox.events.filter((e) => e.kind === "disconnected").length, 0);
    c.eq("connected event raised once", a.inbox.events.filter((e) => e.kind === "connected").length, 1);
    for (const n of [0, 1, 2, 3]) {
      c.eq(`message ${n} delivered exactly once`, a.inbox.events.filter((e) => sameData(e.data, { n })).length, 1);
    }
    await expectExists(c, "connectionExists after recovery", env.service.connectionExists(id), true);
  },

  // shutdown connects clients, prints {"type":"ready"} and waits for the harness to stop the
  // server (SIGTERM): every client must see its socket closed with a close frame. A reliable
  // client may first try to recover (client-protocol.md §7.6) before it raises `disconnected`,
  // so the socket close itself is what is awaited; the SDK keeps it in a private field.
  async shutdown(env, c) {
    const hs = [];
    for (const label of ["s1", "s2"]) {
      hs.push(await env.connect(label, { userId: label, groups: ["sg"], autoReconnect: false }));
    }
    emit({ type: "ready", scenario: "shutdown" });
    for (const h of hs) {
      const r = await settle(pollUntil(() => h.client._lastCloseEvent != null, `${h.label} socket closed`, TIMEOUT_MS + 5000), "shutdown", TIMEOUT_MS + 6000);
      const close = h.client._lastCloseEvent ?? null;
      c.check(`${h.label} socket closed on server shutdown`, r.ok && r.value === true, "socket closed", r.ok ? close : String(r.error.message));
      c.info(`${h.label} close frame`, close);
      if (close) {
        // 1006 means the TCP connection ended without a close frame.
        c.check(`${h.label} got a close frame`, close.code !== 1006, "code != 1006", close.code);
      }
      if (!env.reliable) {
        const d = await settle(h.inbox.wait((e) => e.kind === "disconnected", "disconnected on shutdown"), "shutdown");
        c.check(`${h.label} disconnected event`, d.ok, "disconnected event", d.ok ? "disconnected event" : String(d.error.message));
        if (d.ok) c.info(`${h.label} disconnected message`, d.value.message ?? null);
      } else {
        c.info(`${h.label} disconnected message (so far)`, h.inbox.find((e) => e.kind === "disconnected")?.message ?? null);
      }
    }
  },
};

if (process.argv[2] === "--methods") {
  emit(sdkMethods().map((m) => m.qualified));
  process.exit(0);
}
recordSDKCalls();
await main(withCoverage(scenarios));
