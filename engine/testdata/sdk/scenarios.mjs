// End-to-end scenarios run through the official SDKs.
//
//   WEBPUBSUB_CONNECTION_STRING=... node scenarios.mjs <scenario>
//   node scenarios.mjs --list
//
// Optional env: WEBPUBSUB_HUB (default e2e_<scenario>), WEBPUBSUB_PROTOCOL
// (json.reliable.webpubsub.azure.v1, the SDK default, or json.webpubsub.azure.v1),
// WEBPUBSUB_TIMEOUT_MS (each wait, default 10000), WEBPUBSUB_SCENARIO_TIMEOUT_MS (whole run,
// default 60000). Output: JSON lines, see lib.mjs.

import { isDeepStrictEqual } from "node:util";

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

await main(scenarios);
