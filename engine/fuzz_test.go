package engine

import (
	"net/url"
	"testing"
)

// FuzzMatchRoute: any escaped path and method routes without panicking; a
// matched route always has a hub, and exactly one of an operation and an Allow
// list.
func FuzzMatchRoute(f *testing.F) {
	for _, p := range []string{
		"/api/hubs/chat/:send", "/api/hubs/chat/users/user%2F1%20x/:send",
		"/api/hubs/chat/groups/g/connections/c", "/api/hubs/chat/permissions/sendToGroup/connections/c",
		"/api/hubs//x", "/api/hubs/%zz/:send", "/api/hubs/a/b/c/d/e/f",
	} {
		f.Add(p, "POST")
	}
	f.Fuzz(func(t *testing.T, path, method string) {
		rt, allow, found := matchRoute(path, method)
		if found && rt.hub == "" {
			t.Fatalf("route %q matched with no hub", path)
		}
		if found && (rt.op == "") == (allow == "") {
			t.Fatalf("route %q %s: op %q, allow %q", path, method, rt.op, allow)
		}
	})
}

// FuzzChunkedEnd: the chunked-body scanner never claims more bytes than it has.
func FuzzChunkedEnd(f *testing.F) {
	for _, b := range []string{"0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n", "3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n", "zz\r\n", "5\r\nhel"} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := chunkedEnd(b)
		if ok && (n < 0 || n > len(b)) {
			t.Fatalf("chunkedEnd(%q) = %d beyond %d bytes", b, n, len(b))
		}
	})
}

// FuzzHubFromPath: client paths never panic and a found hub is decoded.
func FuzzHubFromPath(f *testing.F) {
	for _, p := range []string{"/client/hubs/hub1", "/client/", "/client", "/client/hubs/a%2Fb/", "/client/hubs/%"} {
		f.Add(p, "hub=x")
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		_, _ = hubFromPath(path, q)
	})
}
