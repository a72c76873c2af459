// Package upstream will call the application's event handlers with CloudEvents over
// HTTP (azure.webpubsub.sys.connect, …sys.connected, …sys.disconnected,
// …user.<event>) on its own bounded workers, with a pooled fasthttp client,
// retries and timeouts (../shared/spec/upstream-protocol.md). It defines its own
// request and result types; engine converts to them. It imports no package of
// ours. It is empty until the upstream issue is built.
package upstream
