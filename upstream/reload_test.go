package upstream

import (
	"net/http"
	"testing"
	"time"
)

// TestSetKeysResignsSessions: after a key rotation every event, also of a session that
// already sent one, carries the signature of the new keys (config.md §4).
func TestSetKeysResignsSessions(t *testing.T) {
	st := newStub(t, nil)
	c := newTestClient(t, Config{Keys: []string{"old-key"}})
	s := c.NewSession(SessionInfo{Hub: "chat", HubKey: allHub(t, st.srv.URL), ConnectionID: "conn1"})
	s.Connected()
	waitFor(t, "connected event", func() bool { return len(st.requests(http.MethodPost)) == 1 })
	c.SetKeys([]string{"new-key", "second"})
	if r := userSync(t, s, "message", Text, []byte("hi")); r.Err != nil {
		t.Fatal(r.Err)
	}
	posts := st.requests(http.MethodPost)
	if got, want := posts[0].header.Get("ce-signature"), Signature("conn1", []string{"old-key"}); got != want {
		t.Errorf("before rotation: ce-signature %q, want %q", got, want)
	}
	if got, want := posts[1].header.Get("ce-signature"), Signature("conn1", []string{"new-key", "second"}); got != want {
		t.Errorf("after rotation: ce-signature %q, want %q", got, want)
	}
}

// TestSetHubMovesLaterEvents: a session's events after SetHub go to the new handlers.
func TestSetHubMovesLaterEvents(t *testing.T) {
	oldStub, newStubSrv := newStub(t, nil), newStub(t, nil)
	c := newTestClient(t, Config{Keys: []string{"k"}})
	s := c.NewSession(SessionInfo{Hub: "chat", HubKey: allHub(t, oldStub.srv.URL), ConnectionID: "c1"})
	if r := userSync(t, s, "a", Text, []byte("1")); r.Err != nil {
		t.Fatal(r.Err)
	}
	s.SetHub(allHub(t, newStubSrv.srv.URL))
	if r := userSync(t, s, "b", Text, []byte("2")); r.Err != nil {
		t.Fatal(r.Err)
	}
	if n := len(oldStub.requests(http.MethodPost)); n != 1 {
		t.Errorf("old handler got %d events, want 1", n)
	}
	if got := newStubSrv.requests(http.MethodPost); len(got) != 1 || got[0].path != "/chat/b" {
		t.Errorf("new handler got %+v, want one POST /chat/b", got)
	}
	s.SetHub(nil)
	if r := userSync(t, s, "c", Text, nil); r.Err != ErrNoHandler {
		t.Errorf("after SetHub(nil): %v, want ErrNoHandler", r.Err)
	}
}

// TestRetainValidations: a reload keeps the abuse-protection result of a handler URL that
// is still configured and forgets the others, so a URL that comes back is validated again.
func TestRetainValidations(t *testing.T) {
	a, b := newStub(t, nil), newStub(t, nil)
	c := newTestClient(t, Config{Keys: []string{"k"}})
	hubA, hubB := allHub(t, a.srv.URL), allHub(t, b.srv.URL)
	for _, hk := range []*Hub{hubA, hubB} {
		s := c.NewSession(SessionInfo{Hub: "chat", HubKey: hk, ConnectionID: "c"})
		if r := userSync(t, s, "e", Text, nil); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	// Recompiled from the same template, as a reload does: the result is kept.
	c.RetainValidations(allHub(t, a.srv.URL), nil)
	for _, hk := range []*Hub{hubA, hubB} {
		s := c.NewSession(SessionInfo{Hub: "chat", HubKey: hk, ConnectionID: "d"})
		if r := userSync(t, s, "e", Text, nil); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if n := len(a.requests(http.MethodOptions)); n != 1 {
		t.Errorf("kept handler validated %d times, want 1", n)
	}
	if n := len(b.requests(http.MethodOptions)); n != 2 {
		t.Errorf("dropped handler validated %d times, want 2 (again after the reload)", n)
	}
}

// TestRateLimit: with a fixed clock, N lines in one second let the first through; the
// first line of the next second reports the N-1 held back.
func TestRateLimit(t *testing.T) {
	var r rateLimit
	t0 := time.Unix(1000, 0)
	const n = 50
	passed := 0
	for i := range n {
		if _, ok := r.allow(t0.Add(time.Duration(i) * time.Millisecond)); ok {
			passed++
		}
	}
	if passed != 1 {
		t.Fatalf("%d lines passed within one second, want 1", passed)
	}
	suppressed, ok := r.allow(t0.Add(time.Second))
	if !ok || suppressed != n-1 {
		t.Fatalf("next second: ok=%v suppressed=%d, want true, %d", ok, suppressed, n-1)
	}
	if suppressed, ok := r.allow(t0.Add(3 * time.Second)); !ok || suppressed != 0 {
		t.Fatalf("after a quiet spell: ok=%v suppressed=%d, want true, 0", ok, suppressed)
	}
}
