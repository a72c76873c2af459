// Helpers shared by the end-to-end scenarios. Everything here drives the server through the
// official SDKs (@azure/web-pubsub for REST, @azure/web-pubsub-client for clients) or through
// node built-ins; nothing talks the wire protocol by hand except the raw handshake probe, which
// exists only to observe the HTTP status of a refused upgrade.
//
// Output contract (read by engine/e2e_test.go): one JSON object per line on stdout.
//   {"type":"check","scenario":S,"name":N,"ok":bool,"expected":...,"actual":...}
//   {"type":"info","scenario":S,"name":N,"value":...}
//   {"type":"ready","scenario":S}            (only scenarios that wait for the harness)
//   {"type":"summary","scenario":S,"passed":P,"failed":F,"error":E?}
// The process exits 0 only when every check passed.

import { createHash, createHmac, randomBytes } from "node:crypto";
import http from "node:http";
import { isDeepStrictEqual } from "node:util";

import { WebPubSubServiceClient } from "@azure/web-pubsub";
import {
  WebPubSubClient,
  WebPubSubJsonProtocol,
  WebPubSubJsonReliableProtocol,
} from "@azure/web-pubsub-client";

/** TIMEOUT_MS bounds every single wait in a scenario. */
export const TIMEOUT_MS = Number(process.env.WEBPUBSUB_TIMEOUT_MS || 10000);

/** emit writes one machine-readable observation line. */
export function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

/** describe turns a payload into something JSON can show: binary becomes {"base64": ...}. */
export function describe(v) {
  if (v instanceof ArrayBuffer) {
    return { base64: Buffer.from(v).toString("base64") };
  }
  if (ArrayBuffer.isView(v)) {
    return { base64: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
  }
  if (v === undefined) {
    return "<undefined>";
  }
  return v;
}

/** errInfo extracts what an SDK error tells the application. */
export function errInfo(err) {
  if (err == null) {
    return null;
  }
  const out = { name: err.name, message: String(err.message ?? err) };
  if (err.statusCode !== undefined) out.statusCode = err.statusCode;
  if (err.code !== undefined) out.code = err.code;
  if (err.errorDetail !== undefined) out.errorDetail = err.errorDetail;
  return out;
}

/** Checker records pass/fail observations for one scenario. */
export class Checker {
  constructor(scenario) {
    this.scenario = scenario;
    this.passed = 0;
    this.failed = 0;
  }

  check(name, ok, expected, actual) {
    emit({
      type: "check",
      scenario: this.scenario,
      name,
      ok: !!ok,
      expected: describe(expected),
      actual: describe(actual),
    });
    if (ok) this.passed++;
    else this.failed++;
    return !!ok;
  }

  /** eq compares with deep strict equality; binary payloads compare by bytes. */
  eq(name, actual, expected) {
    return this.check(name, isDeepStrictEqual(describe(actual), describe(expected)), expected, actual);
  }

  info(name, value) {
    emit({ type: "info", scenario: this.scenario, name, value: describe(value) });
  }
}

/** withTimeout rejects when p has not settled within ms. */
export function withTimeout(p, label, ms = TIMEOUT_MS) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms}ms waiting for ${label}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** settle runs an async call with a deadline and reports how it ended instead of throwing. */
export async function settle(p, label, ms = TIMEOUT_MS) {
  try {
    return { ok: true, value: await withTimeout(p, label, ms) };
  } catch (err) {
    return { ok: false, error: err };
  }
}

/** pollUntil re-evaluates fn until it returns true or the deadline passes. */
export async function pollUntil(fn, label, ms = TIMEOUT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await withTimeout(Promise.resolve(fn()), label, Math.max(1, deadline - Date.now()));
    if (last === true) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** parseConnectionString reads Endpoint and AccessKey the way the JS SDK does (first '='). */
export function parseConnectionString(cs) {
  const out = {};
  for (const part of cs.split(";")) {
    const i = part.indexOf("=");
    if (i < 0) continue;
    out[part.slice(0, i).toLowerCase()] = part.slice(i + 1);
  }
  if (!out.endpoint || !out.accesskey) {
    throw new Error("WEBPUBSUB_CONNECTION_STRING lacks Endpoint or AccessKey");
  }
  const url = new URL(out.endpoint);
  if (out.port) url.port = out.port;
  return { endpoint: url.toString(), key: out.accesskey };
}

/** withAccessKey returns cs with its AccessKey replaced. */
export function withAccessKey(cs, key) {
  return cs
    .split(";")
    .map((p) => (p.toLowerCase().startsWith("accesskey=") ? `AccessKey=${key}` : p))
    .join(";");
}

function b64url(buf) {
  return Buffer.from(buf).toString("base64url");
}

/** signJWT makes an HS256 token from claims, for cases the SDK cannot produce (expired ones). */
export function signJWT(claims, key) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac("sha256", Buffer.from(key, "utf8")).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64url(sig)}`;
}

/** tamperJWT rewrites the claims of a token but keeps its original signature. */
export function tamperJWT(token, change) {
  const [head, body, sig] = token.split(".");
  const claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8"));
  change(claims);
  return `${head}.${b64url(JSON.stringify(claims))}.${sig}`;
}

/**
 * rawHandshake sends one WebSocket upgrade request with node:http and reports the HTTP status
 * the server answered with. A 101 is closed right away.
 */
export function rawHandshake(wsUrl, subprotocol = "json.webpubsub.azure.v1", ms = TIMEOUT_MS) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  const key = randomBytes(16).toString("base64");
  const headers = {
    Connection: "Upgrade",
    Upgrade: "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": key,
  };
  if (subprotocol) headers["Sec-WebSocket-Protocol"] = subprotocol;
  const expectAccept = createHash("sha1")
    .update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
    .digest("base64");
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = http.request(u, { method: "GET", headers });
      req.on("upgrade", (res, socket) => {
        socket.destroy();
        resolve({
          status: res.statusCode,
          protocol: res.headers["sec-websocket-protocol"] ?? null,
          acceptOK: res.headers["sec-websocket-accept"] === expectAccept,
        });
      });
      req.on("response", (res) => {
        res.resume();
        resolve({ status: res.statusCode, protocol: null, acceptOK: false });
      });
      req.on("error", reject);
      req.end();
    }),
    `raw handshake to ${u.pathname}`,
    ms,
  );
}

/** Inbox collects every event one client raised, in order, and lets a scenario wait on them. */
export class Inbox {
  constructor(label) {
    this.label = label;
    this.events = [];
    this.waiters = [];
  }

  push(ev) {
    this.events.push(ev);
    for (const w of [...this.waiters]) {
      if (w.pred(ev)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(ev);
      }
    }
  }

  /** find returns the first recorded event matching pred, or undefined. */
  find(pred) {
    return this.events.find(pred);
  }

  /** wait resolves with the first event (recorded or future) matching pred, within ms. */
  wait(pred, what, ms = TIMEOUT_MS) {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    let waiter;
    const p = new Promise((resolve) => {
      waiter = { pred, resolve };
      this.waiters.push(waiter);
    });
    return withTimeout(p, `${this.label}: ${what}`, ms).finally(() => {
      const i = this.waiters.indexOf(waiter);
      if (i >= 0) this.waiters.splice(i, 1);
    });
  }
}

/** Env is what every scenario gets: the connection string, its hub and a REST client. */
export class Env {
  constructor(scenario) {
    const cs = process.env.WEBPUBSUB_CONNECTION_STRING;
    if (!cs) {
      throw new Error("WEBPUBSUB_CONNECTION_STRING is not set");
    }
    this.cs = cs;
    this.parsed = parseConnectionString(cs);
    this.hub = process.env.WEBPUBSUB_HUB || `e2e_${scenario.replace(/[^A-Za-z0-9_]/g, "_")}`;
    this.protocolName = process.env.WEBPUBSUB_PROTOCOL || "json.reliable.webpubsub.azure.v1";
    if (
      this.protocolName !== "json.reliable.webpubsub.azure.v1" &&
      this.protocolName !== "json.webpubsub.azure.v1"
    ) {
      throw new Error(`WEBPUBSUB_PROTOCOL ${this.protocolName} is not one the JS client speaks`);
    }
    this.service = this.serviceFor(this.hub);
    this.clients = [];
    this.sentinelSeq = 0;
  }

  get reliable() {
    return this.protocolName === "json.reliable.webpubsub.azure.v1";
  }

  /** serviceFor builds a REST client for hub (optionally with another connection string). */
  serviceFor(hub, cs = this.cs) {
    return new WebPubSubServiceClient(cs, hub, { allowInsecureConnection: true });
  }

  /**
   * client creates (but does not start) an SDK client whose access URL comes from
   * getClientAccessToken, and records its events in an Inbox.
   */
  client(label, { userId, roles, groups, autoReconnect = true, url, service } = {}) {
    const svc = service ?? this.service;
    const credential = url
      ? { getClientAccessUrl: async () => url }
      : {
          getClientAccessUrl: async () =>
            (await svc.getClientAccessToken({ userId, roles, groups })).url,
        };
    const client = new WebPubSubClient(credential, {
      protocol: this.reliable ? WebPubSubJsonReliableProtocol() : WebPubSubJsonProtocol(),
      autoReconnect,
      // Fail fast: a retried request would hide a server that answered wrongly the first time.
      messageRetryOptions: { maxRetries: 0 },
    });
    const inbox = new Inbox(label);
    const h = { label, client, inbox, userId, id: undefined };
    client.on("connected", (e) => {
      h.id = e.connectionId;
      inbox.push({ kind: "connected", connectionId: e.connectionId, userId: e.userId });
    });
    client.on("disconnected", (e) =>
      inbox.push({ kind: "disconnected", connectionId: e.connectionId, message: e.message }),
    );
    client.on("stopped", () => inbox.push({ kind: "stopped" }));
    client.on("server-message", (e) => inbox.push({ ...e.message, kind: "server" }));
    client.on("group-message", (e) => inbox.push({ ...e.message, kind: "group" }));
    client.on("rejoin-group-failed", (e) =>
      inbox.push({ kind: "rejoin-group-failed", group: e.group, error: errInfo(e.error) }),
    );
    this.clients.push(h);
    return h;
  }

  /** connect starts a client and waits for its `connected` event. */
  async connect(label, opts = {}) {
    const h = this.client(label, opts);
    await withTimeout(h.client.start(), `${label}: start()`);
    await h.inbox.wait((e) => e.kind === "connected", "connected event");
    return h;
  }

  /**
   * sentinel sends a unique server message to h's connection and waits until it arrives.
   * Messages accepted for a connection are delivered in acceptance order (rest-api.md §3), so
   * anything sent to h before the sentinel has arrived by the time this returns.
   */
  async sentinel(h) {
    const mark = { sentinel: ++this.sentinelSeq, to: h.label };
    await withTimeout(this.service.sendToConnection(h.id, mark), `sendToConnection sentinel to ${h.label}`);
    await h.inbox.wait(
      (e) => e.kind === "server" && isDeepStrictEqual(e.data, mark),
      `sentinel ${mark.sentinel}`,
    );
  }

  /** stopAll stops every client that is still running, waiting a bounded time for each. */
  async stopAll() {
    await Promise.all(
      this.clients.map(async (h) => {
        const connected = h.inbox.find((e) => e.kind === "connected");
        const stopped = h.inbox.find((e) => e.kind === "stopped");
        if (!connected || stopped) return; // never started, or already stopped
        try {
          h.client.stop();
          await h.inbox.wait((e) => e.kind === "stopped", "stopped after stop()", 3000);
        } catch {
          // best effort: the process exits right after
        }
      }),
    );
  }
}

/**
 * main runs the scenario named by argv[2] from the table, prints the summary line and exits.
 * `--list` prints the scenario names as one JSON array.
 */
export async function main(scenarios) {
  const name = process.argv[2];
  if (name === "--list") {
    emit(Object.keys(scenarios));
    process.exit(0);
  }
  if (!name || !scenarios[name]) {
    process.stderr.write(
      `usage: node scenarios.mjs <scenario>|--list\nscenarios: ${Object.keys(scenarios).join(", ")}\n`,
    );
    process.exit(2);
  }
  const c = new Checker(name);
  const hardLimitMs = Number(process.env.WEBPUBSUB_SCENARIO_TIMEOUT_MS || 60000);
  const watchdog = setTimeout(() => {
    emit({ type: "summary", scenario: name, passed: c.passed, failed: c.failed + 1, error: `scenario exceeded ${hardLimitMs}ms` });
    process.stderr.write(`FAIL ${name}: scenario exceeded ${hardLimitMs}ms\n`);
    process.exit(1);
  }, hardLimitMs);
  let env;
  let error;
  try {
    env = new Env(name);
    c.info("hub", env.hub);
    c.info("protocol", env.protocolName);
    await scenarios[name](env, c);
  } catch (err) {
    error = err?.stack ?? String(err);
  }
  if (env) await env.stopAll();
  clearTimeout(watchdog);
  const failed = c.failed + (error ? 1 : 0);
  emit({ type: "summary", scenario: name, passed: c.passed, failed, ...(error ? { error } : {}) });
  if (failed > 0) {
    process.stderr.write(`FAIL ${name}: ${failed} failed check(s)${error ? `; aborted: ${error}` : ""}\n`);
  }
  process.exit(failed > 0 ? 1 : 0);
}
