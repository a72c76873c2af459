package upstream

import (
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// attempts records what Config.OnAttempt reports.
type attempts struct {
	mu  sync.Mutex
	got []string // "event/outcome"
}

func (a *attempts) on(at Attempt) {
	if at.Duration <= 0 {
		panic("attempt without a duration")
	}
	a.mu.Lock()
	a.got = append(a.got, at.Event+"/"+at.Outcome.String())
	a.mu.Unlock()
}

func (a *attempts) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.got)
}

// TestOnAttempt: one report per HTTP request, the last attempt of an event says how
// it ended and the ones before it say retried; validation requests report too.
func TestOnAttempt(t *testing.T) {
	cases := []struct {
		name     string
		statuses []int
		want     []string
	}{
		{"200", []int{200}, []string{"validate/success", "user/success"}},
		{"503-then-200", []int{503, 200}, []string{"validate/success", "user/retried", "user/success"}},
		{"500-always", []int{500}, []string{"validate/success", "user/retried", "user/retried", "user/retried", "user/failed"}},
		{"408", []int{408, 408, 408, 408}, []string{"validate/success", "user/retried", "user/retried", "user/retried", "user/failed"}},
		{"404", []int{404}, []string{"validate/success", "user/rejected"}},
		{"302", []int{302}, []string{"validate/success", "user/failed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			st := newStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
				i := int(n.Add(1)) - 1
				w.WriteHeader(tc.statuses[min(i, len(tc.statuses)-1)])
			})
			var rec attempts
			c := newTestClient(t, Config{OnAttempt: rec.on})
			s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c"})
			userSync(t, s, "message", Text, []byte("x"))
			if got := rec.list(); !slices.Equal(got, tc.want) {
				t.Fatalf("attempts %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("connect-rejected", func(t *testing.T) {
		st := newStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) { w.WriteHeader(401) })
		var rec attempts
		c := newTestClient(t, Config{OnAttempt: rec.on, ValidationDisabled: true})
		s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c"})
		connectSync(t, s, ConnectRequest{})
		if got := rec.list(); !slices.Equal(got, []string{"connect/rejected"}) {
			t.Fatalf("attempts %q", got)
		}
	})
	t.Run("validation-get-fallback-and-refusal", func(t *testing.T) {
		st := newStub(t, nil)
		st.setOptions(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodOptions {
				w.WriteHeader(404) // §9.1: then GET
				return
			}
			w.Header().Set("WebHook-Allowed-Origin", "someone.else")
		})
		var rec attempts
		c := newTestClient(t, Config{OnAttempt: rec.on})
		s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c"})
		if r := userSync(t, s, "message", Text, []byte("x")); r.Err == nil {
			t.Fatal("event sent to a handler that refused validation")
		}
		if got := rec.list(); !slices.Equal(got, []string{"validate/retried", "validate/rejected"}) {
			t.Fatalf("attempts %q", got)
		}
	})
}
