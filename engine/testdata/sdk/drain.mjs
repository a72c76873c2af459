// The official client's side of the drain test (operations.md §2), driven by
// engine/e2e_drain_test.go: many @azure/web-pubsub-client clients, half on
// json.reliable.webpubsub.azure.v1 (the SDK's default) and half on json.webpubsub.azure.v1,
// record every server message and the close that ends their socket while the harness sends
// REST messages and stops the server with SIGTERM.
//
//   node drain.mjs        (driven by engine/e2e_drain_test.go)
//
// Env: WEBPUBSUB_CONNECTION_STRING and WEBPUBSUB_HUB (lib.mjs), DRAIN_CLIENTS (how many),
// DRAIN_PROXY (host:port the access URLs are rewritten to, so the harness sees the reliable
// clients' recovery attempts), DRAIN_LINGER_MS (how long to let clients try to recover after the
// last close before stopping them).
// Output, JSON lines: {"type":"ready","clients":[{label,connectionId,reliable}]} once every client
// is connected, then {"type":"result","clients":[{label,connectionId,reliable,messages:[{data,at}],
// close:{code,reason,at}|null,disconnected:[message]}]} and exit 0.
//
// The SDK keeps the close of its socket in a private field (_lastCloseEvent, as scenarios.mjs
// shutdown reads it). A json client raises `disconnected` at the close and clears the field when
// it reconnects, so it is read then; a reliable client raises `disconnected` only when it gives
// recovery up, after up to 30 s, so its field is polled.

import { WebPubSubClient, WebPubSubJsonProtocol, WebPubSubJsonReliableProtocol } from "@azure/web-pubsub-client";

import { Env, emit, errInfo, withTimeout } from "./lib.mjs";

const N = Number(process.env.DRAIN_CLIENTS || 100);
const PROXY = process.env.DRAIN_PROXY;
const LINGER_MS = Number(process.env.DRAIN_LINGER_MS || 2500);
const WATCHDOG_MS = 90000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function run() {
  const env = new Env("drain");
  const clients = [];
  for (let i = 0; i < N; i++) {
    const reliable = i % 2 === 0;
    const label = `sdk${i}`;
    const h = { label, reliable, connectionId: null, messages: [], close: null, disconnected: [] };
    const credential = {
      getClientAccessUrl: async () => {
        const url = new URL((await env.service.getClientAccessToken({ userId: label })).url);
        if (PROXY) url.host = PROXY;
        return url.toString();
      },
    };
    h.client = new WebPubSubClient(credential, {
      protocol: reliable ? WebPubSubJsonReliableProtocol() : WebPubSubJsonProtocol(),
      autoReconnect: true,
      messageRetryOptions: { maxRetries: 0 },
    });
    h.client.on("connected", (e) => {
      if (h.connectionId === null) h.connectionId = e.connectionId;
    });
    h.client.on("server-message", (e) => h.messages.push({ data: e.message.data, at: Date.now() }));
    h.client.on("disconnected", (e) => {
      h.disconnected.push(e.message?.message ?? null); // e.message is the DisconnectedMessage
      // A non-reliable client raises this at the close, then clears the field as it reconnects.
      const ev = h.client._lastCloseEvent;
      if (!h.close && ev) h.close = { code: ev.code, reason: ev.reason, at: Date.now() };
    });
    clients.push(h);
  }
  await Promise.all(clients.map((h) => withTimeout(h.client.start(), `${h.label}: start()`, 30000)));
  emit({
    type: "ready",
    clients: clients.map((h) => ({ label: h.label, connectionId: h.connectionId, reliable: h.reliable })),
  });

  // Poll for the close of each client's first socket; the SDK replaces the field on later ones.
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const now = Date.now();
      let open = 0;
      for (const h of clients) {
        if (h.close) continue;
        const ev = h.client._lastCloseEvent;
        if (ev) h.close = { code: ev.code, reason: ev.reason, at: now };
        else open++;
      }
      if (open === 0) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
  await sleep(LINGER_MS); // the reliable ones try to recover meanwhile (the harness counts it)
  for (const h of clients) {
    try {
      h.client.stop();
    } catch {
      // the process exits right after
    }
  }
  emit({
    type: "result",
    clients: clients.map(({ label, connectionId, reliable, messages, close, disconnected }) => ({
      label, connectionId, reliable, messages, close, disconnected,
    })),
  });
}

const watchdog = setTimeout(() => {
  emit({ type: "result", error: `watchdog: no result within ${WATCHDOG_MS} ms` });
  process.exit(1);
}, WATCHDOG_MS);
try {
  await run();
  clearTimeout(watchdog);
  // The result line is larger than a pipe's buffer: exit only once it is written.
  await new Promise((resolve) => process.stdout.write("", resolve));
  process.exit(0);
} catch (err) {
  emit({ type: "result", error: JSON.stringify(errInfo(err)) });
  process.exit(1);
}
