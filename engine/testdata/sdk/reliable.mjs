// End-to-end scenarios for json.reliable.webpubsub.azure.v1 recovery (client-protocol.md §7.5,
// §7.6; client-examples.md E4), driven by engine/e2e_reliable_test.go.
//
// The client is @azure/web-pubsub-client with its default protocol (json.reliable); its access
// URL points at a TCP proxy run by the Go harness, which can cut the connection without a close
// frame and refuse or hold reconnects for a while. REST sends (@azure/web-pubsub) go to the server
// directly, so they keep coming while the client is cut off. The app server is an unchanged
// @azure/web-pubsub-express WebPubSubEventHandler on express, recording the system events.
//
//   node reliable.mjs <scenario>      (driven by engine/e2e_reliable_test.go)
//   node reliable.mjs --list
//
// Protocol with the harness, on top of the JSON lines of lib.mjs:
//   1. the script starts the express app on 127.0.0.1:0 and prints {"type":"listening","port":N};
//   2. the harness starts the server with hub `reliable`'s event handler at that port, then the
//      proxy, and writes {"connectionString":"...","proxy":"127.0.0.1:P"} to stdin;
//   3. the script prints checks and control lines
//        {"type":"control","id":I,"action":"cut","mode":"refuse"|"hold","ms":M}
//        {"type":"control","id":I,"action":"stats"}
//      and the harness answers each with one stdin line {"id":I,"ok":true,...}.
// Optional env: WEBPUBSUB_RECOVERY_WINDOW_MS (the server's window in windowExpired),
// WEBPUBSUB_TIMEOUT_MS, WEBPUBSUB_SCENARIO_TIMEOUT_MS (lib.mjs).
//
// What the SDK shows (dist/esm/webPubSubClient.js of 1.1.0): a successful recovery raises no
// event at all (no `disconnected`, no second `connected`); the client only passes through its
// Recovering state. A recovery the server closes with 1008 raises `disconnected` for the old
// connectionId, then (autoReconnect) the SDK fetches a fresh access URL, opens a new connection,
// rejoins its groups and raises `connected` with the new connectionId.

import { once } from "node:events";
import readline from "node:readline";

import { WebPubSubEventHandler } from "@azure/web-pubsub-express";
import express from "express";

import { Checker, Env, Inbox, TIMEOUT_MS, describe, emit, errInfo, settle, withTimeout } from "./lib.mjs";

const HUB = "reliable";
const GROUP = "g";
/** ACK_SETTLE_MS lets the SDK send at least one sequenceAck (it does so every second). */
const ACK_SETTLE_MS = 1300;

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Stdin hands out the harness's stdin lines in order. */
class Stdin {
  constructor() {
    this.lines = [];
    this.waiters = [];
    this.rl = readline.createInterface({ input: process.stdin });
    this.rl.on("line", (line) => {
      const w = this.waiters.shift();
      if (w) w(line);
      else this.lines.push(line);
    });
  }

  next(what, ms = TIMEOUT_MS) {
    if (this.lines.length > 0) return Promise.resolve(this.lines.shift());
    let waiter;
    const p = new Promise((resolve) => {
      waiter = resolve;
      this.waiters.push(resolve);
    });
    return withTimeout(p, what, ms).finally(() => {
      const i = this.waiters.indexOf(waiter);
      if (i >= 0) this.waiters.splice(i, 1);
    });
  }

  close() {
    this.rl.close();
  }
}

/** Harness sends control requests to the Go test and waits for the answers. */
class Harness {
  constructor(scenario, stdin, proxy) {
    this.scenario = scenario;
    this.stdin = stdin;
    this.proxy = proxy;
    this.seq = 0;
  }

  async control(action, args = {}) {
    const id = ++this.seq;
    emit({ type: "control", scenario: this.scenario, id, action, ...args });
    const line = await this.stdin.next(`answer to control ${action} #${id}`);
    const answer = JSON.parse(line);
    if (answer.id !== id || !answer.ok) {
      throw new Error(`control ${action} #${id} answered ${line}`);
    }
    return answer;
  }

  /** cut gates new connections (mode refuse|hold) for ms, then cuts every live one. */
  cut(mode, ms) {
    return this.control("cut", { mode, ms });
  }

  async stats() {
    return (await this.control("stats")).stats;
  }

  /** viaProxy rewrites a client access URL to reach the server through the proxy. */
  viaProxy(url) {
    const u = new URL(url);
    u.host = this.proxy;
    return u.toString();
  }
}

/** App is the express app with the official event handler for HUB; it records system events. */
class App {
  constructor() {
    this.events = new Inbox("app");
    this.app = express();
    const rec = (kind, req) =>
      this.events.push({ kind, connectionId: req.context.connectionId, userId: req.context.userId, at: Date.now() });
    const handler = new WebPubSubEventHandler(HUB, {
      path: `/api/webpubsub/hubs/${HUB}/`,
      handleConnect: (req, res) => {
        rec("connect", req);
        res.success();
      },
      onConnected: (req) => rec("connected", req),
      onDisconnected: (req) => rec("disconnected", req),
    });
    this.app.use(handler.getMiddleware());
  }

  async listen() {
    this.server = this.app.listen(0, "127.0.0.1");
    await once(this.server, "listening");
    return this.server.address().port;
  }

  count(kind, connectionId) {
    return this.events.events.filter((e) => e.kind === kind && e.connectionId === connectionId).length;
  }
}

/**
 * reliableClient creates and starts an SDK client whose access URLs (the first and any fresh
 * one after a failed recovery) come from getClientAccessToken with the proxy's host:port. It
 * also taps the SDK's protocol parser, so the scenario sees every frame the server sent
 * (the SDK silently drops redelivered messages it already has, §7.2), tagged with the socket
 * it came on.
 */
async function reliableClient(env, h, label, opts) {
  const fetched = [];
  const service = {
    getClientAccessToken: async (o) => {
      const tok = await env.service.getClientAccessToken(o);
      fetched.push(Date.now());
      return { ...tok, url: h.viaProxy(tok.url) };
    },
  };
  const a = env.client(label, { ...opts, service });
  a.fetched = fetched;
  a.raw = [];
  a.closes = [];
  const sockets = new WeakMap();
  let nextSocket = 0;
  const proto = a.client._protocol;
  if (typeof proto?.parseMessages !== "function") {
    throw new Error("the SDK has no _protocol.parseMessages to tap (private API changed)");
  }
  const parse = proto.parseMessages.bind(proto);
  proto.parseMessages = (data) => {
    const out = parse(data);
    const ws = a.client._wsClient;
    if (!sockets.has(ws)) sockets.set(ws, ++nextSocket);
    for (const m of [out ?? []].flat()) {
      a.raw.push({ socket: sockets.get(ws), kind: m.kind, sequenceId: m.sequenceId, data: m.data, connectionId: m.connectionId, reconnectionToken: m.reconnectionToken, message: m.message });
    }
    return out;
  };
  // The close that ended the socket, read when the SDK gives the connection up.
  a.client.on("disconnected", () => a.closes.push(a.client._lastCloseEvent ?? null));
  await withTimeout(a.client.start(), `${label}: start()`);
  await a.inbox.wait((e) => e.kind === "connected", "connected event");
  return a;
}

/** expectOK checks that a call resolved within the deadline. */
async function expectOK(c, name, p, ms = TIMEOUT_MS) {
  const r = await settle(p, name, ms);
  c.check(`${name} resolves`, r.ok, "resolved", r.ok ? describe(r.value) : errInfo(r.error));
  return r;
}

/** highestN is the largest payload counter a has received on GROUP. */
function highestN(a) {
  let max = 0;
  for (const e of a.inbox.events) {
    if (e.kind === "group" && typeof e.data?.n === "number" && e.data.n > max) max = e.data.n;
  }
  return max;
}

/** waitN waits until a has received a group message with counter >= n. */
function waitN(a, n, what, ms = TIMEOUT_MS) {
  return a.inbox.wait((e) => e.kind === "group" && typeof e.data?.n === "number" && e.data.n >= n, `${what}: message n>=${n}`, ms);
}

/**
 * Sender publishes {n: 1}, {n: 2}, ... to GROUP through REST, one after the other with a short
 * pause, until stop() is called. sent is the counter of the last accepted send.
 */
class Sender {
  constructor(env, pauseMs) {
    this.sent = 0;
    this.errors = [];
    this.stopped = false;
    this.done = (async () => {
      while (!this.stopped) {
        const n = this.sent + 1;
        try {
          await withTimeout(env.service.group(GROUP).sendToAll({ n }), `REST send n=${n}`);
          this.sent = n;
        } catch (err) {
          this.errors.push({ n, error: errInfo(err) });
          if (this.errors.length > 5) break;
        }
        await sleep(pauseMs);
      }
    })();
  }

  async stop() {
    this.stopped = true;
    await this.done;
    return this.sent;
  }
}

/**
 * checkRawSequence checks the frames of one logical connection: each redelivered message kept
 * its sequenceId, ids are consecutive on every socket, and a recovered socket starts no later
 * than right after the highest id seen before (a gap would be a lost message, §7.5 step 5).
 */
function checkRawSequence(c, a, label) {
  const data = a.raw.filter((m) => m.kind === "groupData" || m.kind === "serverData");
  const idOf = new Map();
  const mismatched = [];
  for (const m of data) {
    const key = JSON.stringify(m.data);
    if (idOf.has(key) && idOf.get(key) !== m.sequenceId) mismatched.push({ data: m.data, first: idOf.get(key), again: m.sequenceId });
    if (!idOf.has(key)) idOf.set(key, m.sequenceId);
  }
  c.check(`${label}: a redelivered message keeps its sequenceId`, mismatched.length === 0, [], mismatched.slice(0, 5));
  const gaps = [];
  let high = 0;
  let socket = 0;
  let prev = 0;
  for (const m of data) {
    if (typeof m.sequenceId !== "number") {
      gaps.push({ missingSequenceId: m.data });
      continue;
    }
    if (m.socket !== socket) {
      if (m.sequenceId > high + 1) gaps.push({ socket: m.socket, firstId: m.sequenceId, highestBefore: high });
      socket = m.socket;
    } else if (m.sequenceId !== prev + 1) {
      gaps.push({ socket, after: prev, got: m.sequenceId });
    }
    prev = m.sequenceId;
    high = Math.max(high, m.sequenceId);
  }
  c.check(`${label}: every message has a sequenceId, consecutive, continuing across sockets`, gaps.length === 0, [], gaps.slice(0, 5));
  const redelivered = data.length - idOf.size;
  const perSocket = new Map();
  for (const m of data) {
    const s = perSocket.get(m.socket) ?? { socket: m.socket, messages: 0, firstId: m.sequenceId, lastId: m.sequenceId };
    s.messages++;
    s.lastId = m.sequenceId;
    perSocket.set(m.socket, s);
  }
  c.info(`${label}: frames per socket`, [...perSocket.values()]);
  c.info(`${label}: redelivered copies the SDK dropped`, redelivered);
}

const scenarios = {
  // cutMidStream: a reader in group g; REST publishes {n} to g in a steady stream; the proxy cuts
  // the reader's connection twice while the stream goes on, first refusing its reconnects for
  // 1.5 s (the SDK retries every second), then holding its reconnect for 0.8 s. Every message
  // must arrive exactly once, in order, on the same logical connection, without any
  // connected/disconnected event in the SDK or upstream.
  async cutMidStream(env, c, h, app) {
    const a = await reliableClient(env, h, "reader", { userId: "reader", roles: [`webpubsub.joinLeaveGroup.${GROUP}`] });
    const id = a.id;
    const token = a.client._reconnectionToken;
    c.check("connected carries a reconnectionToken", typeof token === "string" && token.length > 0, "non-empty string", token ?? null);
    await expectOK(c, `joinGroup(${GROUP})`, a.client.joinGroup(GROUP));

    const sender = new Sender(env, 8);
    const phases = [
      { mode: "refuse", ms: 1500 },
      { mode: "hold", ms: 800 },
    ];
    let aborted;
    try {
      // Each socket carries traffic for longer than the SDK's 1 s sequenceAck period before it
      // is cut, so the server has trimmed part of its buffer and redelivers only the rest.
      await waitN(a, 30, "stream started");
      await sleep(ACK_SETTLE_MS);
      for (const [i, { mode, ms }] of phases.entries()) {
        const label = `cut ${i + 1} (${mode} ${ms} ms)`;
        const cut = await h.cut(mode, ms);
        const sentAtCut = sender.sent;
        const receivedAtCut = highestN(a);
        c.eq(`${label}: the proxy cut the reader's one connection`, cut.cut, 1);
        await sleep(ms);
        const sentAtRelease = sender.sent;
        c.check(`${label}: REST sends went on while the reader was cut off`, sentAtRelease - sentAtCut >= 5, ">= 5 sends", { sentAtCut, sentAtRelease, receivedAtCut });
        const r = await settle(waitN(a, sentAtRelease, label), label);
        c.check(`${label}: the reader recovers and gets what was sent while it was cut`, r.ok, `n >= ${sentAtRelease}`, r.ok ? r.value.data : { error: String(r.error.message), highest: highestN(a), state: a.client._state });
        if (!r.ok) {
          aborted = label;
          break;
        }
        // Traffic on the recovered socket, and a sequenceAck, before the next phase.
        await waitN(a, sender.sent + 20, `${label}: flowing again`).catch(() => {});
        await sleep(ACK_SETTLE_MS);
      }
    } finally {
      await sender.stop();
    }
    const last = sender.sent;
    c.eq("every REST send succeeded", sender.errors, []);
    c.info("messages sent", last);
    if (!aborted) {
      const r = await settle(waitN(a, last, "the last message"), "the last message");
      c.check("the reader gets the last message", r.ok, { n: last }, r.ok ? r.value.data : { highest: highestN(a) });
    }

    const got = a.inbox.events.filter((e) => e.kind === "group" && typeof e.data?.n === "number").map((e) => e.data.n);
    const counts = new Map();
    for (const n of got) counts.set(n, (counts.get(n) ?? 0) + 1);
    const missing = [];
    for (let n = 1; n <= last; n++) if (!counts.has(n)) missing.push(n);
    const dups = [...counts].filter(([, k]) => k > 1).map(([n, k]) => ({ n, times: k }));
    const disorder = got.filter((n, i) => i > 0 && n <= got[i - 1]).slice(0, 5);
    c.check(`all ${last} messages received`, missing.length === 0, [], { missing: missing.slice(0, 20), count: missing.length });
    c.check("no message received twice", dups.length === 0, [], dups.slice(0, 20));
    c.check("messages received in order", disorder.length === 0, "increasing n", { outOfOrder: disorder });
    c.eq("group messages carry the group and dataType", a.inbox.events.filter((e) => e.kind === "group" && (e.group !== GROUP || e.dataType !== "json")).length, 0);
    checkRawSequence(c, a, "reader");

    c.eq("connectionId kept across both recoveries", a.client._connectionId, id);
    c.eq("SDK raised connected once", a.inbox.events.filter((e) => e.kind === "connected").length, 1);
    c.eq("SDK raised no disconnected", a.inbox.events.filter((e) => e.kind === "disconnected").length, 0);
    c.eq("SDK fetched the access URL once (recovery, not a new connection)", a.fetched.length, 1);
    const connectedAgain = a.raw.filter((m) => m.kind === "connected");
    c.info("connected frames (re-sent on recovery is optional, §7.5 step 4)", connectedAgain.map((m) => ({ socket: m.socket, connectionId: m.connectionId, sameToken: m.reconnectionToken === token })));
    c.eq("every connected frame names the same connectionId", connectedAgain.filter((m) => m.connectionId !== id).length, 0);
    const ex = await settle(env.service.connectionExists(id), "connectionExists");
    c.eq("REST connectionExists after recovery", ex.ok ? ex.value : errInfo(ex.error), true);

    const s = await h.stats();
    c.info("proxy", s);
    c.check("both recoveries went through the proxy", s.forwarded >= 3, ">= 3 forwarded connections", s.forwarded);
    c.check("the proxy refused at least one recovery attempt", s.refused >= 1, ">= 1", s.refused);
    c.check("the proxy held a recovery attempt", s.held >= 1, ">= 1", s.held);

    // Upstream: one connect and one connected for the logical connection, no disconnected.
    c.eq("app got connect once", app.count("connect", id), 1);
    c.eq("app got connected once", app.count("connected", id), 1);
    c.eq("app got no disconnected while the connection recovered", app.count("disconnected", id), 0);
  },

  // windowExpired: the proxy refuses reconnects for longer than the server's recovery window.
  // The window ends: the app gets `disconnected` for the connection. The SDK's next recovery
  // attempt is upgraded and closed with 1008 (E4.3); the SDK raises `disconnected`, starts a
  // new connection with a fresh access URL, rejoins g and raises `connected` with a new id.
  async windowExpired(env, c, h, app) {
    const windowMs = Number(process.env.WEBPUBSUB_RECOVERY_WINDOW_MS || 0);
    if (!(windowMs > 0)) throw new Error("WEBPUBSUB_RECOVERY_WINDOW_MS is not set");
    const a = await reliableClient(env, h, "reader", { userId: "reader", roles: [`webpubsub.joinLeaveGroup.${GROUP}`] });
    const oldId = a.id;
    await expectOK(c, `joinGroup(${GROUP})`, a.client.joinGroup(GROUP));
    await expectOK(c, "REST send before the cut", env.service.group(GROUP).sendToAll({ phase: "before" }));
    await a.inbox.wait((e) => e.kind === "group" && e.data?.phase === "before", "message before the cut");

    const gateMs = windowMs + 2500;
    const cutAt = Date.now();
    const cut = await h.cut("refuse", gateMs);
    c.eq("the proxy cut the reader's one connection", cut.cut, 1);
    await expectOK(c, "REST send while cut (buffered for the lost connection)", env.service.group(GROUP).sendToAll({ phase: "during" }));
    const kept = await settle(env.service.connectionExists(oldId), "connectionExists(old) during the window");
    c.eq("REST connectionExists(old) while the window runs (§7.5: kept)", kept.ok ? kept.value : errInfo(kept.error), true);

    const gone = await settle(app.events.wait((e) => e.kind === "disconnected" && e.connectionId === oldId, "app disconnected for the old connection", windowMs + 5000), "app disconnected", windowMs + 6000);
    c.check("app gets disconnected for the old connection when the window expires", gone.ok, "disconnected", gone.ok ? "disconnected" : String(gone.error.message));
    if (gone.ok) {
      const after = gone.value.at - cutAt;
      c.info("ms from the cut to the app's disconnected", after);
      c.check("disconnected not before the recovery window", after >= windowMs - 250, `>= ${windowMs - 250} ms`, after);
    }
    const exOld = await settle(env.service.connectionExists(oldId), "connectionExists(old)");
    c.eq("REST connectionExists(old) after the window", exOld.ok ? exOld.value : errInfo(exOld.error), false);

    const sdkGone = await settle(a.inbox.wait((e) => e.kind === "disconnected", "SDK disconnected", gateMs + 5000), "SDK disconnected", gateMs + 6000);
    c.check("SDK raises disconnected after its recovery attempt is refused", sdkGone.ok, "disconnected", sdkGone.ok ? "disconnected" : String(sdkGone.error.message));
    if (sdkGone.ok) c.eq("SDK disconnected names the old connection", sdkGone.value.connectionId, oldId);
    c.eq("SDK raised disconnected once", a.inbox.events.filter((e) => e.kind === "disconnected").length, 1);
    c.eq("the failed recovery was closed with 1008", a.closes[0]?.code ?? null, 1008);
    c.info("close of the failed recovery", a.closes[0] ?? null);
    c.info("disconnected frame before the close (optional, E4.3)", a.raw.filter((m) => m.kind === "disconnected").map((m) => m.message));

    const fresh = await settle(a.inbox.wait((e) => e.kind === "connected" && e.connectionId !== oldId, "connected with a new connectionId"), "new connection");
    c.check("SDK opens a new connection with a new connectionId", fresh.ok, "connected", fresh.ok ? fresh.value.connectionId : String(fresh.error.message));
    if (!fresh.ok) return;
    const newId = fresh.value.connectionId;
    c.eq("SDK fetched a fresh access URL", a.fetched.length, 2);
    c.eq("no rejoin-group-failed", a.inbox.events.filter((e) => e.kind === "rejoin-group-failed"), []);

    await expectOK(c, "REST send after the new connection", env.service.group(GROUP).sendToAll({ phase: "after" }));
    const after = await settle(a.inbox.wait((e) => e.kind === "group" && e.data?.phase === "after", "message after rejoin"), "after");
    c.check("the new connection rejoined the group", after.ok, { phase: "after" }, after.ok ? after.value.data : String(after.error.message));
    c.eq("the message sent during the cut died with the old connection", a.inbox.events.filter((e) => e.kind === "group" && e.data?.phase === "during").length, 0);
    const firstNew = a.raw.find((m) => m.kind === "groupData" && m.data?.phase === "after");
    c.eq("sequence ids restart at 1 on the new connection", firstNew?.sequenceId ?? null, 1);

    const exNew = await settle(env.service.connectionExists(newId), "connectionExists(new)");
    c.eq("REST connectionExists(new)", exNew.ok ? exNew.value : errInfo(exNew.error), true);
    const exOld2 = await settle(env.service.connectionExists(oldId), "connectionExists(old)");
    c.eq("REST connectionExists(old) after the new connection", exOld2.ok ? exOld2.value : errInfo(exOld2.error), false);

    c.eq("app got disconnected for the old connection once", app.count("disconnected", oldId), 1);
    c.eq("app got connected for the old connection once", app.count("connected", oldId), 1);
    c.eq("app got connect for the new connection", app.count("connect", newId), 1);
    const conn = await settle(app.events.wait((e) => e.kind === "connected" && e.connectionId === newId, "app connected for the new connection"), "app connected");
    c.check("app gets connected for the new connection", conn.ok, "connected", conn.ok ? "connected" : String(conn.error.message));
    const s = await h.stats();
    c.info("proxy", s);
    c.check("the proxy refused recovery attempts", s.refused >= 1, ">= 1", s.refused);
  },
};

async function mainReliable() {
  const name = process.argv[2];
  if (name === "--list") {
    emit(Object.keys(scenarios));
    process.exit(0);
  }
  if (!name || !scenarios[name]) {
    process.stderr.write(`usage: node reliable.mjs <scenario>|--list\nscenarios: ${Object.keys(scenarios).join(", ")}\n`);
    process.exit(2);
  }
  const c = new Checker(name);
  const hardLimitMs = Number(process.env.WEBPUBSUB_SCENARIO_TIMEOUT_MS || 60000);
  const watchdog = setTimeout(() => {
    emit({ type: "summary", scenario: name, passed: c.passed, failed: c.failed + 1, error: `scenario exceeded ${hardLimitMs}ms` });
    process.stderr.write(`FAIL ${name}: scenario exceeded ${hardLimitMs}ms\n`);
    process.exit(1);
  }, hardLimitMs);
  const stdin = new Stdin();
  let env;
  let app;
  let error;
  try {
    app = new App();
    const port = await app.listen();
    emit({ type: "listening", scenario: name, port });
    const setup = JSON.parse(await stdin.next("the connection string on stdin", 30000));
    if (!setup.connectionString || !setup.proxy) throw new Error(`stdin setup line lacks connectionString or proxy: ${JSON.stringify(setup)}`);
    process.env.WEBPUBSUB_CONNECTION_STRING = setup.connectionString;
    process.env.WEBPUBSUB_HUB = HUB;
    env = new Env(name);
    if (!env.reliable) throw new Error(`reliable.mjs needs json.reliable.webpubsub.azure.v1, not ${env.protocolName}`);
    c.info("protocol", env.protocolName);
    await scenarios[name](env, c, new Harness(name, stdin, setup.proxy), app);
  } catch (err) {
    error = err?.stack ?? String(err);
  }
  if (env) await env.stopAll();
  if (error && app) c.info("app events at abort", app.events.events);
  stdin.close();
  app?.server?.close();
  clearTimeout(watchdog);
  const failed = c.failed + (error ? 1 : 0);
  emit({ type: "summary", scenario: name, passed: c.passed, failed, ...(error ? { error } : {}) });
  if (failed > 0) {
    process.stderr.write(`FAIL ${name}: ${failed} failed check(s)${error ? `; aborted: ${error}` : ""}\n`);
  }
  process.exit(failed > 0 ? 1 : 0);
}

await mainReliable();
