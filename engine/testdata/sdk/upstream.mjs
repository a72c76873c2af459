// End-to-end scenarios for the upstream (event handler) protocol, upstream-protocol.md.
//
// The app server is an unchanged express app that mounts the official
// @azure/web-pubsub-express WebPubSubEventHandler (handler.getMiddleware()); the clients are
// @azure/web-pubsub-client and plain WebSocket clients (the `ws` package, no subprotocol).
// Each scenario checks both sides: what the clients saw and what the app was sent.
//
//   node upstream.mjs <scenario>      (driven by engine/e2e_upstream_test.go)
//   node upstream.mjs --list
//
// Protocol with the harness, on top of the JSON lines of lib.mjs:
//   1. the script starts the express app on 127.0.0.1:0 and prints {"type":"listening","port":N};
//   2. the harness starts the server with event handlers pointing at that port, then writes one
//      JSON line {"connectionString": "..."} to the script's stdin;
//   3. the script runs the scenario on hub `chat` and prints checks and a summary.
// Optional env: WEBPUBSUB_PROTOCOL, WEBPUBSUB_TIMEOUT_MS, WEBPUBSUB_SCENARIO_TIMEOUT_MS (lib.mjs).

import { createHmac } from "node:crypto";
import { once } from "node:events";
import readline from "node:readline";
import { isDeepStrictEqual } from "node:util";

import { WebPubSubEventHandler } from "@azure/web-pubsub-express";
import express from "express";
import WebSocket from "ws";

import { Checker, Env, Inbox, TIMEOUT_MS, describe, emit, errInfo, rawHandshake, settle, withTimeout } from "./lib.mjs";

const HUB = "chat";
/** DENIED_HUB's handler only allows an origin the server never sends (abuseProtection). */
const DENIED_HUB = "denied";
/** HOSTPORT_HUB's handler allows the connection string's endpoint, i.e. host:port (abuseProtection). */
const HOSTPORT_HUB = "hostport";

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function sameData(a, b) {
  return isDeepStrictEqual(describe(a), describe(b));
}

/** copy snapshots a value so later mutation (res.setState mutates context.states) is not seen. */
function copy(v) {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}

/** headerValues finds a header of the connect body by case-insensitive name. */
function headerValues(headers, name) {
  for (const [k, v] of Object.entries(headers ?? {})) {
    if (k.toLowerCase() === name.toLowerCase()) return v;
  }
  return undefined;
}

/** signature computes ce-signature for one access key (upstream-protocol.md §7). */
function signature(connectionId, key) {
  return "sha256=" + createHmac("sha256", Buffer.from(key, "utf8")).update(connectionId, "utf8").digest("hex");
}

/**
 * reply is what the default handleUserEvent answers, so a test can tell the app's reply from
 * an echo by the server: text gets a prefix, JSON is wrapped, binary is reversed.
 */
function reply(dataType, data) {
  switch (dataType) {
    case "text":
      return { dataType: "text", data: `echo:${data}` };
    case "json":
      return { dataType: "json", data: { echo: data } };
    default:
      return { dataType: "binary", data: Buffer.from(data).reverse() };
  }
}

/**
 * defaultUserEvent drives the app by event name (subprotocol clients) or by text content
 * (plain clients, whose event is always `message`): fail → res.fail(500), silent →
 * res.success() (empty), json → a JSON reply, badjson → an application/json body that is not
 * JSON, anything else → reply() above.
 */
function defaultUserEvent(req, res) {
  const name = req.context.eventName;
  const text = req.dataType === "text" ? req.data : undefined;
  if (name === "fail" || text === "fail") return res.fail(500, "boom");
  if (name === "silent" || text === "silent") return res.success();
  if (text === "json") return res.success(JSON.stringify({ a: 1, echo: "json" }), "json");
  if (name === "badjson" || text === "badjson") return res.success("{not json", "json");
  const r = reply(req.dataType, req.data);
  // res.success takes a string or bytes; a JSON reply is passed already serialized.
  return res.success(r.dataType === "json" ? JSON.stringify(r.data) : r.data, r.dataType);
}

/**
 * App is the application server: express with one WebPubSubEventHandler per hub. It records
 * every raw request (to check the wire), every handler call (in an Inbox, so scenarios can
 * wait on them), every request the SDK passed on (a 404 here means the SDK did not recognise
 * the request), and every error.
 */
class App {
  constructor(hubs) {
    this.events = new Inbox("app");
    this.requests = [];
    this.unhandled = [];
    this.errors = [];
    this.app = express();
    this.app.use((req, res, next) => {
      this.requests.push({ method: req.method, path: req.path, query: req.query, headers: { ...req.headers } });
      next();
    });
    // The handlers are made by bind(), once the connection string is known (an app passes its
    // endpoint to allowedEndpoints); until then requests fall through to the 404 below.
    this.hubs = hubs;
    this.middlewares = [];
    this.app.use((req, res, next) => {
      const run = (i) => (i < this.middlewares.length ? this.middlewares[i](req, res, (err) => (err ? next(err) : run(i + 1))) : next());
      run(0);
    });
    this.app.use((req, res) => {
      this.unhandled.push({ method: req.method, path: req.path, headers: pickHeaders(req.headers) });
      res.status(404).end();
    });
    this.app.use((err, req, res, _next) => {
      this.errors.push({ path: req.path, error: String(err?.stack ?? err) });
      res.status(500).end();
    });
  }

  /** bind creates one WebPubSubEventHandler per hub and mounts its middleware. */
  bind(env) {
    for (const [hub, spec] of Object.entries(this.hubs)) {
      this.middlewares.push(this.handler(hub, spec, env).getMiddleware());
    }
  }

  /**
   * handler builds the official event handler for hub; spec.connect/user decide the answers and
   * spec.allowedEndpoints (a function of env) the abuse-protection answer.
   */
  handler(hub, spec, env) {
    const rec = (kind, req, extra) =>
      this.events.push({
        kind,
        hub: req.context.hub,
        connectionId: req.context.connectionId,
        userId: req.context.userId,
        eventName: req.context.eventName,
        origin: req.context.origin,
        signature: req.context.signature,
        states: copy(req.context.states),
        ...extra,
      });
    // The default path, /api/webpubsub/hubs/<hub>/, is what the harness's urlTemplate
    // /api/webpubsub/hubs/{hub}/{event} resolves under; it is spelled out to make that visible.
    return new WebPubSubEventHandler(hub, {
      path: `/api/webpubsub/hubs/${hub}/`,
      allowedEndpoints: spec.allowedEndpoints?.(env),
      handleConnect: (req, res) => {
        rec("connect", req, {
          claims: copy(req.claims),
          query: copy(req.query),
          queries: copy(req.queries),
          headers: copy(req.headers),
          subprotocols: copy(req.subprotocols),
          clientCertificates: copy(req.clientCertificates),
        });
        (spec.connect ?? ((_q, r) => r.success()))(req, res);
      },
      onConnected: (req) => rec("connected", req, {}),
      onDisconnected: (req) => rec("disconnected", req, { reason: req.reason, hasReason: "reason" in req }),
      handleUserEvent: (req, res) => {
        rec("user", req, { dataType: req.dataType, data: req.dataType === "json" ? copy(req.data) : req.data });
        (spec.user ?? defaultUserEvent)(req, res);
      },
    });
  }

  async listen() {
    this.server = this.app.listen(0, "127.0.0.1");
    await once(this.server, "listening");
    return this.server.address().port;
  }

  /** wait resolves with the first handler call matching pred. */
  wait(pred, what, ms = TIMEOUT_MS) {
    return this.events.wait(pred, what, ms);
  }

  all(pred) {
    return this.events.events.filter(pred);
  }

  /** rawFor lists the POSTs for one connection, in arrival order. */
  rawFor(connectionId) {
    return this.requests.filter((r) => r.method === "POST" && r.headers["ce-connectionid"] === connectionId);
  }
}

function pickHeaders(h) {
  const out = {};
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith("ce-") || k.startsWith("webhook-") || k === "content-type" || k === "authorization") out[k] = v;
  }
  return out;
}

/** briefRaw shortens a raw request for a failure report. */
function briefRaw(r) {
  return { method: r.method, path: r.path, headers: pickHeaders(r.headers) };
}

/**
 * PlainClient is a WebSocket client without a subprotocol (a "simple" client): every frame it
 * sends is a `message` event for the app, and the app's reply comes back as a bare frame.
 */
class PlainClient {
  constructor(label, url, headers = {}) {
    this.label = label;
    this.url = url;
    this.headers = headers;
    this.inbox = new Inbox(label);
  }

  /** open resolves on the 101, rejects with ws's error (e.g. "Unexpected server response: 401"). */
  open(ms = TIMEOUT_MS) {
    this.ws = new WebSocket(this.url, { headers: this.headers });
    this.ws.on("message", (data, isBinary) =>
      this.inbox.push({ kind: "frame", binary: isBinary, data: isBinary ? Buffer.from(data) : data.toString("utf8") }),
    );
    this.ws.on("close", (code, reason) => this.inbox.push({ kind: "close", code, reason: reason.toString("utf8") }));
    this.ws.on("error", (err) => this.inbox.push({ kind: "error", message: err.message }));
    return withTimeout(
      new Promise((resolve, reject) => {
        this.ws.once("open", resolve);
        this.ws.once("error", reject);
      }),
      `${this.label}: open`,
      ms,
    );
  }

  /** frames lists the frames received so far. */
  frames() {
    return this.inbox.events.filter((e) => e.kind === "frame");
  }

  /** nextFrame waits for frame number i (0-based, in arrival order). */
  nextFrame(i, what) {
    let n = -1;
    return this.inbox.wait((e) => e.kind === "frame" && ++n === i, what).catch((err) => {
      throw new Error(`${err.message}; frames so far: ${JSON.stringify(this.frames().map((f) => describe(f.data)))}`);
    });
  }

  close(code = 1000, reason = "") {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.close(code, reason);
  }
}

/** clientURL returns a fresh client access URL with extra query parameters. */
async function clientURL(env, { userId, roles, groups, query = {} } = {}) {
  const tok = await env.service.getClientAccessToken({ userId, roles, groups });
  const u = new URL(tok.url);
  for (const [k, vs] of Object.entries(query)) {
    for (const v of [].concat(vs)) u.searchParams.append(k, v);
  }
  return u.toString();
}

/** startSDK connects an @azure/web-pubsub-client (no auto-reconnect) and waits for `connected`. */
async function startSDK(env, label, opts = {}) {
  const h = env.client(label, { url: await clientURL(env, opts), autoReconnect: false });
  await withTimeout(h.client.start(), `${label}: start()`);
  await h.inbox.wait((e) => e.kind === "connected", "connected event");
  return h;
}

/** startPlain opens a plain WebSocket client tagged with ?tag=label and finds its connect event. */
async function startPlain(env, app, label, opts = {}) {
  const p = new PlainClient(label, await clientURL(env, { ...opts, query: { ...(opts.query ?? {}), tag: label } }), opts.headers);
  await p.open();
  const ev = await app.wait((e) => e.kind === "connect" && e.query?.tag?.[0] === label, `connect event of ${label}`);
  p.id = ev.connectionId;
  return p;
}

/** expectOK checks that a call resolved within the deadline. */
async function expectOK(c, name, p) {
  const r = await settle(p, name);
  c.check(`${name} resolves`, r.ok, "resolved", r.ok ? describe(r.value) : errInfo(r.error));
  return r;
}

async function expectAckError(c, name, p, errorName) {
  const r = await settle(p, name);
  c.check(`${name} rejects with ${errorName}`, !r.ok && r.error?.errorDetail?.name === errorName, errorName, r.ok ? { resolved: describe(r.value) } : errInfo(r.error));
}

/** expectAppEvent waits for an app handler call and reports what the app did get on timeout. */
async function expectAppEvent(c, app, name, pred) {
  const r = await settle(app.wait(pred, name), name);
  c.check(`app: ${name}`, r.ok, "handler called", r.ok ? "handler called" : {
    error: String(r.error.message),
    appSaw: app.events.events.slice(-8).map((e) => ({ kind: e.kind, connectionId: e.connectionId, eventName: e.eventName, dataType: e.dataType, data: describe(e.data) })),
    unhandled: app.unhandled.slice(-3),
  });
  return r.ok ? r.value : undefined;
}

/** expectServerMessage waits for a server-message carrying want.data on SDK client h. */
async function expectServerMessage(c, h, name, want) {
  const r = await settle(h.inbox.wait((e) => e.kind === "server" && sameData(e.data, want.data), name), name);
  c.check(`${name}: ${h.label} gets server-message`, r.ok, describe(want.data), r.ok ? describe(r.value.data) : {
    error: String(r.error.message),
    recent: h.inbox.events.filter((e) => e.kind === "server").slice(-5).map((e) => ({ dataType: e.dataType, data: describe(e.data) })),
  });
  if (r.ok) c.eq(`${name}: server-message dataType`, r.value.dataType, want.dataType);
  return r.ok ? r.value : undefined;
}

/** sentinel sends a REST message to h and waits for it: all earlier messages have arrived. */
let sentinelSeq = 0;
async function sentinel(env, h) {
  const mark = { sentinel: ++sentinelSeq };
  await withTimeout(env.service.sendToConnection(h.id, mark), "sentinel send");
  await h.inbox.wait((e) => e.kind === "server" && isDeepStrictEqual(e.data, mark), "sentinel");
}

/**
 * checkWire checks the CloudEvents headers of every request the app got (upstream-protocol.md
 * §3, §9) and that the SDK recognised all of them.
 */
function checkWire(c, app, env) {
  const none = (name, bad) => c.check(`wire: ${name}`, bad.length === 0, [], bad.slice(0, 5).map(briefRaw));
  const posts = app.requests.filter((r) => r.method === "POST");
  const h = (r, k) => r.headers[k];
  c.check("wire: the app got event POSTs", posts.length > 0, "> 0", posts.length);
  none("ce-specversion is 1.0", posts.filter((r) => h(r, "ce-specversion") !== "1.0"));
  none("ce-awpsversion is 1.0", posts.filter((r) => h(r, "ce-awpsversion") !== "1.0"));
  none("WebHook-Request-Origin is set", posts.filter((r) => !h(r, "webhook-request-origin")));
  none("ce-source is /hubs/{hub}/client/{connectionId}", posts.filter((r) => h(r, "ce-source") !== `/hubs/${h(r, "ce-hub")}/client/${h(r, "ce-connectionid")}`));
  none("ce-signature is sha256=HMAC(key, connectionId)", posts.filter((r) => h(r, "ce-signature") !== signature(h(r, "ce-connectionid") ?? "", env.parsed.key)));
  none("ce-time is RFC 3339 UTC", posts.filter((r) => !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(h(r, "ce-time") ?? "")));
  none("ce-id is a decimal string", posts.filter((r) => !/^\d+$/.test(h(r, "ce-id") ?? "")));
  none("ce-type matches ce-eventName", posts.filter((r) => {
    const t = h(r, "ce-type") ?? "";
    const n = h(r, "ce-eventname") ?? "";
    const sys = ["connect", "connected", "disconnected"].includes(n);
    return t !== (sys ? `azure.webpubsub.sys.${n}` : `azure.webpubsub.user.${n}`);
  }));
  none("system events are application/json", posts.filter((r) => (h(r, "ce-type") ?? "").startsWith("azure.webpubsub.sys.") && (h(r, "content-type") ?? "").split(";")[0].trim() !== "application/json"));
  none("no Authorization header (auth None)", posts.filter((r) => h(r, "authorization") !== undefined));
  none("no ce-subprotocol on connect", posts.filter((r) => h(r, "ce-type") === "azure.webpubsub.sys.connect" && h(r, "ce-subprotocol") !== undefined));
  // Retries reuse the id, so one id must never name two different events of a connection.
  const idType = new Map();
  none("ce-id never names two events of one connection", posts.filter((r) => {
    const k = `${h(r, "ce-connectionid")}/${h(r, "ce-id")}`;
    const t = h(r, "ce-type");
    if (!idType.has(k)) {
      idType.set(k, t);
      return false;
    }
    return idType.get(k) !== t;
  }));
  const options = app.requests.filter((r) => r.method === "OPTIONS");
  none("abuse-protection OPTIONS carries ce-awpsversion and WebHook-Request-Origin", options.filter((r) => !h(r, "ce-awpsversion") || !h(r, "webhook-request-origin")));
  none("abuse-protection OPTIONS goes to {event}=validate", options.filter((r) => !r.path.endsWith("/validate")));
  // Validation is on by default (§9.4): every hub's first POST comes after an OPTIONS for it.
  const firstPost = new Map();
  const firstOptions = new Map();
  app.requests.forEach((r, i) => {
    const hub = r.path.split("/")[4];
    if (r.method === "POST" && !firstPost.has(hub)) firstPost.set(hub, i);
    if (r.method === "OPTIONS" && !firstOptions.has(hub)) firstOptions.set(hub, i);
  });
  const unvalidated = [...firstPost].filter(([hub, i]) => !(firstOptions.get(hub) < i)).map(([hub]) => hub);
  c.check("wire: abuse-protection OPTIONS precedes the first POST of each hub", unvalidated.length === 0, [], unvalidated);
  c.info("WebHook-Request-Origin values", [...new Set(app.requests.map((r) => h(r, "webhook-request-origin")))]);
  c.check("wire: the express handler recognised every request (none fell through to 404)", app.unhandled.length === 0, [], app.unhandled.slice(0, 5));
  c.check("wire: no handler error", app.errors.length === 0, [], app.errors.slice(0, 3));
}

const scenarios = {
  // 1. handleConnect sets userId, groups and roles.
  connectRoles: {
    hubs: {
      [HUB]: {
        connect(req, res) {
          switch (req.query.case?.[0]) {
            case "grant":
              return res.success({ userId: "app-user", groups: ["app-g1", "app-g2"], roles: ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.app-g1"] });
            case "revoke":
              return res.success({ roles: [] });
            default:
              return res.success();
          }
        },
      },
    },
    async run(env, c, app) {
      const a = await startSDK(env, "a", { groups: ["tok-g"], query: { case: "grant", x: ["1", "2 ✓"] } });
      c.eq("a: connected.userId is the one handleConnect set", a.inbox.find((e) => e.kind === "connected").userId, "app-user");
      const conn = await expectAppEvent(c, app, "handleConnect called for a", (e) => e.kind === "connect" && e.connectionId === a.id);
      if (conn) {
        c.eq("connect: context.hub", conn.hub, HUB);
        c.eq("connect: no userId without sub", conn.userId, undefined);
        c.eq("connect: query (no access_token, repeated and decoded values)", conn.query, { case: ["grant"], x: ["1", "2 ✓"] });
        c.eq("connect: queries (the SDK's copy of query)", conn.queries, conn.query);
        c.eq("connect: claims webpubsub.group", conn.claims?.["webpubsub.group"], ["tok-g"]);
        c.check("connect: claims exp is a decimal string", /^\d+$/.test(conn.claims?.exp?.[0] ?? ""), ["<decimal>"], conn.claims?.exp);
        c.check("connect: claims has no sub", conn.claims?.sub === undefined, undefined, conn.claims?.sub);
        c.check("connect: headers is an object", conn.headers && typeof conn.headers === "object" && !Array.isArray(conn.headers), "object", conn.headers);
        c.info("connect: header names", Object.keys(conn.headers ?? {}));
        c.eq("connect: headers carry no Authorization", headerValues(conn.headers, "authorization"), undefined);
        c.eq("connect: subprotocols offered", conn.subprotocols, [env.protocolName]);
        c.eq("connect: clientCertificates", conn.clientCertificates, []);
        c.eq("connect: states empty", conn.states, {});
        c.eq("connect: origin (WebHook-Request-Origin)", conn.origin, "127.0.0.1");
      }
      const cd = await expectAppEvent(c, app, "onConnected called for a", (e) => e.kind === "connected" && e.connectionId === a.id);
      if (cd) c.eq("connected: userId from handleConnect", cd.userId, "app-user");
      const exists = await settle(env.service.userExists("app-user"), "userExists");
      c.check("REST userExists(app-user)", exists.ok && exists.value === true, true, exists.ok ? exists.value : errInfo(exists.error));

      for (const g of ["app-g1", "app-g2"]) {
        await expectOK(c, `REST group(${g}).sendToAll`, env.service.group(g).sendToAll({ to: g }));
        const r = await settle(a.inbox.wait((e) => e.kind === "group" && sameData(e.data, { to: g }), g), g);
        c.check(`a is in group ${g} set by handleConnect`, r.ok, { group: g, data: { to: g } }, r.ok ? { group: r.value.group, data: r.value.data } : String(r.error.message));
      }
      await expectOK(c, "REST group(tok-g).sendToAll", env.service.group("tok-g").sendToAll({ to: "tok-g" }));
      await settle(sentinel(env, a), "sentinel");
      const leaked = a.inbox.find((e) => e.kind === "group" && e.group === "tok-g");
      c.check("a is not in the token's group (non-empty groups replace it)", leaked === undefined, "no message", leaked && leaked.data);
      await expectOK(c, "a joinGroup(extra) with role joinLeaveGroup from handleConnect", a.client.joinGroup("extra"));
      await expectOK(c, "a sendToGroup(app-g1) with role sendToGroup.app-g1", a.client.sendToGroup("app-g1", "hi", "text"));
      await expectAckError(c, "a sendToGroup(app-g2) without that role", a.client.sendToGroup("app-g2", "hi", "text"), "Forbidden");

      // roles: [] removes the token's roles; the token's user id stays.
      const b = await startSDK(env, "b", { userId: "tok-user", roles: ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"], query: { case: "revoke" } });
      c.eq("b: connected.userId is the token's", b.inbox.find((e) => e.kind === "connected").userId, "tok-user");
      const bc = await expectAppEvent(c, app, "handleConnect called for b", (e) => e.kind === "connect" && e.connectionId === b.id);
      if (bc) {
        c.eq("connect b: context.userId is the token's sub", bc.userId, "tok-user");
        c.eq("connect b: claims sub", bc.claims?.sub, ["tok-user"]);
        c.eq("connect b: claims role", bc.claims?.role, ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]);
      }
      await expectAckError(c, "b joinGroup after roles: [] removed the token roles", b.client.joinGroup("x"), "Forbidden");
      await expectAckError(c, "b sendToGroup after roles: [] removed the token roles", b.client.sendToGroup("x", "hi", "text"), "Forbidden");

      // Control: res.success() with no body (204) keeps the token's roles.
      const d = await startSDK(env, "d", { userId: "tok-d", roles: ["webpubsub.joinLeaveGroup"], query: { case: "none" } });
      c.eq("d: connected.userId", d.inbox.find((e) => e.kind === "connected").userId, "tok-d");
      await expectOK(c, "d joinGroup with the token role after a 204 connect", d.client.joinGroup("x"));
      checkWire(c, app, env);
    },
  },

  // 2. onConnected and onDisconnected.
  lifecycle: {
    hubs: { [HUB]: {} },
    async run(env, c, app) {
      const a = await startSDK(env, "a", { userId: "alice" });
      const ac = await expectAppEvent(c, app, "onConnected for a", (e) => e.kind === "connected" && e.connectionId === a.id);
      if (ac) c.eq("connected a: userId", ac.userId, "alice");
      const rawA = app.rawFor(a.id).find((r) => r.headers["ce-type"] === "azure.webpubsub.sys.connected");
      c.eq("connected a: ce-subprotocol", rawA?.headers["ce-subprotocol"], env.protocolName);
      a.client.stop();
      await settle(a.inbox.wait((e) => e.kind === "stopped", "stopped"), "stopped");
      const ad = await expectAppEvent(c, app, "onDisconnected for a after stop()", (e) => e.kind === "disconnected" && e.connectionId === a.id);
      if (ad) {
        c.eq("disconnected a: userId", ad.userId, "alice");
        c.check("disconnected a: has a reason string", ad.hasReason && typeof ad.reason === "string", "string", ad.reason);
        c.info("disconnected a: reason after stop()", ad.reason);
      }

      const b = await startSDK(env, "b", { userId: "bob" });
      await expectAppEvent(c, app, "onConnected for b", (e) => e.kind === "connected" && e.connectionId === b.id);
      await expectOK(c, "REST closeConnection(b, reason)", env.service.closeConnection(b.id, { reason: "kicked by e2e" }));
      const bd = await expectAppEvent(c, app, "onDisconnected for b after REST close", (e) => e.kind === "disconnected" && e.connectionId === b.id);
      if (bd) {
        c.eq("disconnected b: userId", bd.userId, "bob");
        c.eq("disconnected b: reason is the REST reason", bd.reason, "kicked by e2e");
      }
      const bcl = await settle(b.inbox.wait((e) => e.kind === "disconnected", "disconnected"), "b disconnected");
      c.check("b: client sees disconnected", bcl.ok, "disconnected", bcl.ok ? "disconnected" : String(bcl.error.message));

      const p = await startPlain(env, app, "plain", { userId: "carol", headers: { "X-E2E-Probe": "probe-1" } });
      const pc = await expectAppEvent(c, app, "onConnected for the plain client", (e) => e.kind === "connected" && e.connectionId === p.id);
      if (pc) c.eq("connected plain: userId", pc.userId, "carol");
      const rawP = app.rawFor(p.id).find((r) => r.headers["ce-type"] === "azure.webpubsub.sys.connected");
      c.eq("connected plain: no ce-subprotocol", rawP?.headers["ce-subprotocol"], undefined);
      const pconn = app.events.find((e) => e.kind === "connect" && e.connectionId === p.id);
      c.eq("connect plain: subprotocols", pconn?.subprotocols, []);
      c.eq("connect plain: the client's own header is in headers", headerValues(pconn?.headers, "x-e2e-probe"), ["probe-1"]);
      c.eq("connect plain: header names keep the client's spelling (§4.1)", Object.keys(pconn?.headers ?? {}).find((k) => k.toLowerCase() === "x-e2e-probe"), "X-E2E-Probe");
      p.close(1000, "bye");
      const pd = await expectAppEvent(c, app, "onDisconnected for the plain client after close", (e) => e.kind === "disconnected" && e.connectionId === p.id);
      if (pd) {
        c.eq("disconnected plain: userId", pd.userId, "carol");
        c.eq("disconnected plain: reason is the client's close reason", pd.reason, "bye");
      }

      // Exactly one connected and one disconnected per connection, connected first.
      await sleep(300);
      for (const [label, id] of [["a", a.id], ["b", b.id], ["plain", p.id]]) {
        const kinds = app.all((e) => e.connectionId === id).map((e) => e.kind);
        c.eq(`${label}: app calls in order`, kinds, ["connect", "connected", "disconnected"]);
      }
      checkWire(c, app, env);
    },
  },

  // 3. handleUserEvent for a plain WebSocket client.
  plainClient: {
    hubs: { [HUB]: {} },
    async run(env, c, app) {
      const p = await startPlain(env, app, "p", { userId: "plain-user" });
      let n = 0;
      const step = async (name, send, wantApp, wantFrame) => {
        p.ws.send(send);
        const ev = await expectAppEvent(c, app, `${name}: handleUserEvent`, (e) => e.kind === "user" && e.connectionId === p.id && sameData(e.data, wantApp.data));
        if (ev) {
          c.eq(`${name}: app eventName`, ev.eventName, "message");
          c.eq(`${name}: app dataType`, ev.dataType, wantApp.dataType);
          c.eq(`${name}: app userId`, ev.userId, "plain-user");
        }
        if (!wantFrame) return;
        const r = await settle(p.nextFrame(n, `frame ${n}`), name);
        n++;
        c.check(`${name}: client gets the reply frame`, r.ok, wantFrame, r.ok ? { binary: r.value.binary, data: describe(r.value.data) } : String(r.error.message));
        if (!r.ok) return;
        c.eq(`${name}: reply frame is ${wantFrame.binary ? "binary" : "text"}`, r.value.binary, wantFrame.binary);
        if (wantFrame.json !== undefined) {
          let parsed;
          try {
            parsed = JSON.parse(r.value.data);
          } catch {
            parsed = { notJSON: r.value.data };
          }
          c.eq(`${name}: reply frame JSON`, parsed, wantFrame.json);
        } else {
          c.eq(`${name}: reply frame data`, r.value.data, wantFrame.data);
        }
      };
      await step("text", "hello ✓", { dataType: "text", data: "hello ✓" }, { binary: false, data: "echo:hello ✓" });
      const bin = Buffer.from([0, 1, 2, 254, 255]);
      await step("binary", bin, { dataType: "binary", data: bin }, { binary: true, data: Buffer.from(bin).reverse() });
      await step("json reply", "json", { dataType: "text", data: "json" }, { binary: false, json: { a: 1, echo: "json" } });
      // res.success() answers 200 application/octet-stream with an empty body: no frame.
      await step("empty reply", "silent", { dataType: "text", data: "silent" }, null);
      await step("after the empty reply", "after", { dataType: "text", data: "after" }, { binary: false, data: "echo:after" });
      // An application/json reply that is not JSON goes to a simple client as-is (§6.2).
      await step("invalid JSON reply", "badjson", { dataType: "text", data: "badjson" }, { binary: false, data: "{not json" });
      const stray = p.frames().find((f) => f.binary && f.data.length === 0);
      c.check("no empty frame for res.success()", stray === undefined, "none", stray && "empty binary frame");

      // Blocking events are sequential per connection: replies keep the send order.
      const burst = ["o1", "o2", "o3", "o4", "o5"];
      for (const m of burst) p.ws.send(m);
      const got = [];
      for (let i = 0; i < burst.length; i++) {
        const r = await settle(p.nextFrame(n + i, `burst frame ${i}`), "burst");
        got.push(r.ok ? r.value.data : `<${r.error.message}>`);
      }
      n += burst.length;
      c.eq("burst: replies in send order", got, burst.map((m) => `echo:${m}`));
      const order = app.all((e) => e.kind === "user" && e.connectionId === p.id && burst.includes(e.data)).map((e) => e.data);
      c.eq("burst: app got the messages in send order", order, burst);

      // A failing upstream closes a simple client with 1011 (upstream-protocol.md §6.2).
      p.ws.send("fail");
      const cl = await settle(p.inbox.wait((e) => e.kind === "close", "close after res.fail(500)"), "close");
      c.check("res.fail(500): the server closes the plain client", cl.ok, { code: 1011 }, cl.ok ? cl.value : String(cl.error.message));
      if (cl.ok) c.eq("res.fail(500): close code", cl.value.code, 1011);
      await expectAppEvent(c, app, "onDisconnected after the failed event", (e) => e.kind === "disconnected" && e.connectionId === p.id);
      checkWire(c, app, env);
    },
  },

  // 4. sendEvent from @azure/web-pubsub-client.
  sendEvent: {
    hubs: { [HUB]: {} },
    async run(env, c, app) {
      const a = await startSDK(env, "a", { userId: "ev" });
      // tag makes the payloads of the two passes differ, so a reply is never mistaken for
      // the other pass's.
      const cases = (tag) => [
        { name: "text", dataType: "text", content: `hi ✓ ${tag}`, appData: `hi ✓ ${tag}` },
        { name: "json-object", dataType: "json", content: { a: tag, b: [true, null], s: "ü" }, appData: { a: tag, b: [true, null], s: "ü" } },
        { name: "json-string", dataType: "json", content: `a string ${tag}`, appData: `a string ${tag}` },
        { name: "binary", dataType: "binary", content: new Uint8Array([9, 0, 255, tag]).buffer, appData: Buffer.from([9, 0, 255, tag]) },
      ];
      for (const ack of [true, false]) {
        for (const k of cases(ack ? 1 : 2)) {
          const event = `echo_${k.name.replace("-", "_")}_${ack ? "ack" : "ff"}`;
          const label = `${k.name} ${ack ? "with ack" : "fire-and-forget"}`;
          const r = await expectOK(c, `sendEvent ${label}`, a.client.sendEvent(event, k.content, k.dataType, { fireAndForget: !ack }));
          const want = reply(k.dataType, k.appData);
          const wantData = want.dataType === "binary" ? new Uint8Array(want.data).buffer : want.data;
          if (ack && r.ok) {
            // The reply is written before the ack (§6.2), so it is already there.
            const early = a.inbox.find((e) => e.kind === "server" && sameData(e.data, wantData));
            c.check(`${label}: reply arrived before the ack`, early !== undefined, "reply before ack", early ? "reply before ack" : "no reply yet when sendEvent resolved");
          }
          const ev = await expectAppEvent(c, app, `${label}: handleUserEvent`, (e) => e.kind === "user" && e.eventName === event);
          if (ev) {
            c.eq(`${label}: app dataType`, ev.dataType, k.dataType);
            c.eq(`${label}: app data`, ev.data, k.appData);
            c.eq(`${label}: app connectionId`, ev.connectionId, a.id);
            c.eq(`${label}: app userId`, ev.userId, "ev");
          }
          await expectServerMessage(c, a, label, { dataType: want.dataType, data: wantData });
        }
      }

      // res.success() with no data: the ack succeeds and nothing is sent.
      await expectOK(c, "sendEvent silent (empty 200)", a.client.sendEvent("silent", "quiet", "text"));
      const before = a.inbox.events.filter((e) => e.kind === "server").length;
      await settle(sentinel(env, a), "sentinel");
      const extra = a.inbox.events.filter((e) => e.kind === "server").slice(before, -1);
      c.check("sendEvent silent: no server-message", extra.length === 0, [], extra.map((e) => ({ dataType: e.dataType, data: describe(e.data) })));

      // res.fail(500): the ack reports failure and the connection stays.
      const f = await settle(a.client.sendEvent("fail", "x", "text"), "sendEvent fail");
      c.check("sendEvent with ack rejects when the app calls res.fail(500)", !f.ok, "rejected", f.ok ? { resolved: describe(f.value) } : errInfo(f.error));
      if (!f.ok) c.eq("failed ack error name", f.error?.errorDetail?.name, "InvocationFailed");
      const fa = app.all((e) => e.kind === "user" && e.eventName === "fail" && e.connectionId === a.id);
      c.check("the app got the failing event (with any retries)", fa.length >= 1, ">= 1", fa.length);
      // An application/json reply that is not JSON fails the event for a subprotocol client.
      const bj = await settle(a.client.sendEvent("badjson", "x", "text"), "sendEvent badjson");
      c.check("sendEvent with ack rejects when the app replies invalid JSON", !bj.ok, "rejected", bj.ok ? { resolved: describe(bj.value) } : errInfo(bj.error));
      await expectOK(c, "sendEvent after a failed one", a.client.sendEvent("echo_after_fail", "again", "text"));
      await expectServerMessage(c, a, "after a failed event", { dataType: "text", data: "echo:again" });

      // An ackId already acknowledged is a Duplicate and is not sent to the app again.
      const d1 = await expectOK(c, "sendEvent ackId 4242", a.client.sendEvent("echo_dup", "d", "text", { ackId: 4242 }));
      if (d1.ok) c.eq("first ackId 4242 isDuplicated", d1.value?.isDuplicated, false);
      const d2 = await expectOK(c, "sendEvent ackId 4242 again", a.client.sendEvent("echo_dup", "d", "text", { ackId: 4242 }));
      if (d2.ok) c.eq("second ackId 4242 isDuplicated", d2.value?.isDuplicated, true);
      c.eq("the app got the duplicate once", app.all((e) => e.kind === "user" && e.eventName === "echo_dup").length, 1);

      // Fire-and-forget to a failing app: disconnected, then the connection closes (§6.2).
      const b = await startSDK(env, "b", { userId: "ff" });
      await expectOK(c, "fire-and-forget sendEvent fail", b.client.sendEvent("fail", "x", "text", { fireAndForget: true }));
      const bd = await settle(b.inbox.wait((e) => e.kind === "disconnected", "disconnected"), "b disconnected");
      c.check("fire-and-forget failure disconnects the client", bd.ok, "disconnected", bd.ok ? bd.value.message ?? "disconnected" : String(bd.error.message));
      await expectAppEvent(c, app, "onDisconnected for b", (e) => e.kind === "disconnected" && e.connectionId === b.id);
      c.eq("a is unaffected by b's failure", (await settle(env.service.connectionExists(a.id), "exists")).value, true);
      checkWire(c, app, env);
    },
  },

  // 5. Connection state set by handleConnect and user events, read back on later events.
  state: {
    hubs: {
      [HUB]: {
        connect(req, res) {
          res.setState("k", "v");
          res.success({ userId: req.query.tag?.[0] ?? "st" });
        },
        user(req, res) {
          const step = req.context.eventName === "message" ? req.data : req.context.eventName;
          switch (step) {
            case "s1":
              res.setState("k2", "v2");
              return res.success("ok1", "text");
            case "big":
              // Beyond the 8 KiB default limit (§8): an upstream failure, state unchanged.
              res.setState("big", "x".repeat(9000));
              return res.success("big", "text");
            default:
              return res.success(`ok:${step}`, "text");
          }
        },
      },
    },
    async run(env, c, app) {
      const a = await startSDK(env, "a", { query: { tag: "sdk" } });
      const conn = await expectAppEvent(c, app, "handleConnect for a", (e) => e.kind === "connect" && e.connectionId === a.id);
      if (conn) c.eq("connect: no state yet", conn.states, {});
      const rawConnect = app.rawFor(a.id).find((r) => r.headers["ce-type"] === "azure.webpubsub.sys.connect");
      c.eq("connect: no ce-connectionState header", rawConnect?.headers["ce-connectionstate"], undefined);
      const cd = await expectAppEvent(c, app, "onConnected for a", (e) => e.kind === "connected" && e.connectionId === a.id);
      if (cd) c.eq("connected: states from handleConnect", cd.states, { k: "v" });

      const ev = async (name, wantStates) => {
        await expectOK(c, `sendEvent ${name}`, a.client.sendEvent(name, "x", "text"));
        const e = await expectAppEvent(c, app, `handleUserEvent ${name}`, (x) => x.kind === "user" && x.connectionId === a.id && x.eventName === name);
        if (e) c.eq(`${name}: states`, e.states, wantStates);
      };
      await ev("s1", { k: "v" });
      await ev("s2", { k: "v", k2: "v2" });
      await ev("s3", { k: "v", k2: "v2" });
      const raw = app.rawFor(a.id).find((r) => r.headers["ce-eventname"] === "s3");
      c.info("ce-connectionState sent with s3", raw?.headers["ce-connectionstate"]);

      const big = await settle(a.client.sendEvent("big", "x", "text"), "sendEvent big");
      c.check("a state over the size limit fails the event (ack rejects)", !big.ok, "rejected", big.ok ? { resolved: describe(big.value) } : errInfo(big.error));
      await ev("s4", { k: "v", k2: "v2" });

      // The same for a plain client, whose events are all `message`.
      const p = await startPlain(env, app, "plain");
      const pcd = await expectAppEvent(c, app, "onConnected for plain", (e) => e.kind === "connected" && e.connectionId === p.id);
      if (pcd) c.eq("plain connected: states", pcd.states, { k: "v" });
      for (const [i, [msg, want]] of [["s1", { k: "v" }], ["p2", { k: "v", k2: "v2" }]].entries()) {
        p.ws.send(msg);
        const e = await expectAppEvent(c, app, `plain message ${msg}`, (x) => x.kind === "user" && x.connectionId === p.id && x.data === msg);
        if (e) c.eq(`plain ${msg}: states`, e.states, want);
        const fr = await settle(p.nextFrame(i, `reply ${i}`), "reply");
        c.check(`plain ${msg}: reply frame`, fr.ok, msg === "s1" ? "ok1" : `ok:${msg}`, fr.ok ? fr.value.data : String(fr.error.message));
      }
      p.close(1000, "done");
      const pd = await expectAppEvent(c, app, "onDisconnected for plain", (e) => e.kind === "disconnected" && e.connectionId === p.id);
      if (pd) c.eq("plain disconnected: states", pd.states, { k: "v", k2: "v2" });
      if (!env.reliable) {
        a.client.stop();
        const d = await expectAppEvent(c, app, "onDisconnected for a", (e) => e.kind === "disconnected" && e.connectionId === a.id);
        if (d) c.eq("disconnected: states", d.states, { k: "v", k2: "v2" });
      }
      checkWire(c, app, env);
    },
  },

  // 6. Connect rejected by the upstream.
  connectRejected: {
    hubs: {
      [HUB]: {
        connect(req, res) {
          const k = req.query.case?.[0];
          if (k === "401") return res.fail(401, "no");
          if (k === "403") return res.fail(403, "forbidden by the app");
          if (k === "500") return res.fail(500, "app broke");
          return res.success();
        },
      },
    },
    async run(env, c, app) {
      const sdk = env.client("sdk401", { url: await clientURL(env, { userId: "r1", query: { case: "401" } }), autoReconnect: false });
      const s = await settle(sdk.client.start(), "start() rejected by the app");
      c.check("SDK start() rejects when handleConnect fails 401", !s.ok, "rejected", s.ok ? "resolved" : errInfo(s.error));
      c.check("SDK never connected", sdk.inbox.find((e) => e.kind === "connected") === undefined, "no connected event", sdk.inbox.events.map((e) => e.kind));

      for (const code of ["401", "403", "500"]) {
        const p = new PlainClient(`plain${code}`, await clientURL(env, { userId: `r${code}`, query: { case: code, tag: `plain${code}` } }));
        const r = await settle(p.open(20000), `plain ${code}`, 20000);
        c.check(`plain ws refused with HTTP ${code}`, !r.ok && String(r.error?.message).includes(`Unexpected server response: ${code}`), `Unexpected server response: ${code}`, r.ok ? "opened" : String(r.error?.message));
        const raw = await settle(rawHandshake(await clientURL(env, { query: { case: code } }), null, 20000), `raw ${code}`, 20000);
        c.check(`raw upgrade status ${code}`, raw.ok && raw.value.status === Number(code), Number(code), raw.ok ? raw.value.status : errInfo(raw.error));
      }

      // Retries (the harness sets upstream.retry.delaysSeconds [0.2]): 5xx is retried once,
      // 4xx never (§11).
      const attempts = (code) => {
        const ids = app.all((e) => e.kind === "connect" && e.query?.tag?.[0] === `plain${code}`).map((e) => e.connectionId);
        return ids;
      };
      c.eq("401 connect sent once (no retry on 4xx)", attempts("401").length, 1);
      c.eq("403 connect sent once (no retry on 4xx)", attempts("403").length, 1);
      const a500 = attempts("500");
      c.eq("500 connect sent twice (one retry)", a500.length, 2);
      c.check("the retry keeps the connection id", new Set(a500).size === 1, 1, [...new Set(a500)]);

      // Control, and a marker: a good connection's whole life runs after the rejections.
      const good = await startSDK(env, "good", { query: { case: "ok" } });
      good.client.stop();
      await expectAppEvent(c, app, "onDisconnected for the good client", (e) => e.kind === "disconnected" && e.connectionId === good.id);
      await sleep(300);
      const rejected = new Set(app.all((e) => e.kind === "connect" && e.query?.case?.[0] !== "ok").map((e) => e.connectionId));
      c.check("the app saw the rejected connects", rejected.size >= 7, ">= 7", rejected.size);
      const leaked = app.all((e) => (e.kind === "connected" || e.kind === "disconnected") && rejected.has(e.connectionId));
      c.check("no onConnected/onDisconnected for rejected connections", leaked.length === 0, [], leaked.map((e) => ({ kind: e.kind, connectionId: e.connectionId })));
      for (const id of [...rejected].slice(0, 2)) {
        const ex = await settle(env.service.connectionExists(id), "exists");
        c.eq(`connectionExists(rejected ${id})`, ex.ok ? ex.value : errInfo(ex.error), false);
      }
      checkWire(c, app, env);
    },
  },

  // Abuse protection with an express app that lists its allowed endpoints (§9.2).
  abuseProtection: {
    hubs: {
      // Allowed by the WebHook-Request-Origin value itself (a host name).
      [HUB]: { allowedEndpoints: () => ["http://127.0.0.1"] },
      // Allowed as an app usually does it: the endpoint of its connection string, whose
      // host:port is what express answers.
      [HOSTPORT_HUB]: { allowedEndpoints: (env) => [env.parsed.endpoint] },
      [DENIED_HUB]: { allowedEndpoints: () => ["https://elsewhere.example.com"] },
    },
    async run(env, c, app) {
      const a = await startSDK(env, "a", { userId: "allowed" });
      c.eq("connected through a handler that allows 127.0.0.1", a.inbox.find((e) => e.kind === "connected").userId, "allowed");
      await expectAppEvent(c, app, "handleConnect on the allowed hub", (e) => e.kind === "connect" && e.connectionId === a.id);

      const hp = env.serviceFor(HOSTPORT_HUB);
      const hpTok = await hp.getClientAccessToken({ userId: "hostport" });
      const h = env.client("hostport", { url: hpTok.url, autoReconnect: false });
      const hs = await settle(h.client.start(), "start() on the host:port hub");
      c.check("connected through a handler that allows the endpoint's host:port", hs.ok, "connected", hs.ok ? "connected" : errInfo(hs.error));
      if (hs.ok) await h.inbox.wait((e) => e.kind === "connected", "connected").catch(() => {});
      const hpOptions = app.requests.find((r) => r.method === "OPTIONS" && r.path.includes(`/hubs/${HOSTPORT_HUB}/`));
      c.info("WebHook-Allowed-Origin the host:port hub answers", new URL(env.parsed.endpoint).host);
      c.check("the host:port hub was validated", hpOptions !== undefined, "OPTIONS", hpOptions ? "OPTIONS" : "none");
      if (hs.ok) await expectAppEvent(c, app, "handleConnect on the host:port hub", (e) => e.kind === "connect" && e.hub === HOSTPORT_HUB);

      const deniedSvc = env.serviceFor(DENIED_HUB);
      const tok = await deniedSvc.getClientAccessToken({ userId: "denied" });
      const raw = await settle(rawHandshake(tok.url, null, 20000), "raw denied", 20000);
      c.check("a hub whose handler failed validation refuses connects with 500", raw.ok && raw.value.status === 500, 500, raw.ok ? raw.value.status : errInfo(raw.error));
      const sdk = env.client("denied", { url: tok.url, autoReconnect: false });
      const s = await settle(sdk.client.start(), "start() on the denied hub", 20000);
      c.check("SDK start() on the denied hub rejects", !s.ok, "rejected", s.ok ? "resolved" : errInfo(s.error));
      const options = app.requests.filter((r) => r.method === "OPTIONS" && r.path.includes(`/hubs/${DENIED_HUB}/`));
      c.check("the server validated the denied hub's handler", options.length >= 1, ">= 1 OPTIONS", options.length);
      const posts = app.requests.filter((r) => r.method === "POST" && r.path.includes(`/hubs/${DENIED_HUB}/`));
      c.check("no event was POSTed to the handler that failed validation", posts.length === 0, [], posts.slice(0, 3).map(briefRaw));
      checkWire(c, app, env);
    },
  },
};

/** readConnectionString reads the harness's one JSON line from stdin. */
async function readConnectionString(ms) {
  const rl = readline.createInterface({ input: process.stdin });
  try {
    const [line] = await withTimeout(once(rl, "line"), "the connection string on stdin", ms);
    const cs = JSON.parse(line).connectionString;
    if (!cs) throw new Error(`stdin line has no connectionString: ${line}`);
    return cs;
  } finally {
    rl.close();
  }
}

async function mainUpstream() {
  const name = process.argv[2];
  if (name === "--list") {
    emit(Object.keys(scenarios));
    process.exit(0);
  }
  if (!name || !scenarios[name]) {
    process.stderr.write(`usage: node upstream.mjs <scenario>|--list\nscenarios: ${Object.keys(scenarios).join(", ")}\n`);
    process.exit(2);
  }
  const sc = scenarios[name];
  const c = new Checker(name);
  const hardLimitMs = Number(process.env.WEBPUBSUB_SCENARIO_TIMEOUT_MS || 60000);
  const watchdog = setTimeout(() => {
    emit({ type: "summary", scenario: name, passed: c.passed, failed: c.failed + 1, error: `scenario exceeded ${hardLimitMs}ms` });
    process.stderr.write(`FAIL ${name}: scenario exceeded ${hardLimitMs}ms\n`);
    process.exit(1);
  }, hardLimitMs);
  let env;
  let app;
  let error;
  try {
    app = new App(sc.hubs);
    const port = await app.listen();
    emit({ type: "listening", scenario: name, port });
    process.env.WEBPUBSUB_CONNECTION_STRING = await readConnectionString(30000);
    process.env.WEBPUBSUB_HUB = HUB;
    env = new Env(name);
    app.bind(env);
    c.info("protocol", env.protocolName);
    await sc.run(env, c, app);
  } catch (err) {
    error = err?.stack ?? String(err);
  }
  if (env) await env.stopAll();
  if (error && app) {
    c.info("app events at abort", app.events.events.map((e) => ({ kind: e.kind, hub: e.hub, connectionId: e.connectionId, eventName: e.eventName, dataType: e.dataType })));
    c.info("requests the express handler passed on", app.unhandled);
  }
  clearTimeout(watchdog);
  const failed = c.failed + (error ? 1 : 0);
  emit({ type: "summary", scenario: name, passed: c.passed, failed, ...(error ? { error } : {}) });
  if (failed > 0) {
    process.stderr.write(`FAIL ${name}: ${failed} failed check(s)${error ? `; aborted: ${error}` : ""}\n`);
  }
  process.exit(failed > 0 ? 1 : 0);
}

await mainUpstream();
