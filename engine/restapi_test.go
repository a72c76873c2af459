package engine

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// filterFleet connects five JSON clients to hub "fh" and returns them by label
// with their connection ids:
//
//	label   user        groups
//	alice   alice       g1
//	bob     bob         g1, g2
//	bot     chat-bot    g2
//	quote   o'brien     -
//	anon    (none)      g1
type filterClient struct {
	c  *wsClient
	id string
}

func filterFleet(t *testing.T, s *Server) map[string]filterClient {
	t.Helper()
	specs := []struct {
		label, user string
		groups      []string
	}{
		{"alice", "alice", []string{"g1"}},
		{"bob", "bob", []string{"g1", "g2"}},
		{"bot", "chat-bot", []string{"g2"}},
		{"quote", "o'brien", nil},
		{"anon", "", []string{"g1"}},
	}
	out := make(map[string]filterClient, len(specs))
	for _, sp := range specs {
		c, m := mustJSONClient(t, s, "fh", sp.user, nil, sp.groups)
		out[sp.label] = filterClient{c: c, id: m["connectionId"].(string)}
	}
	return out
}

// expectDelivery checks that exactly the clients in want receive a message whose
// data is data, and the others receive nothing within a short wait.
func expectDelivery(t *testing.T, fleet map[string]filterClient, data string, want ...string) {
	t.Helper()
	for label, fc := range fleet {
		if slices.Contains(want, label) {
			m := fc.c.readJSON()
			if m["data"] != data {
				t.Fatalf("%s got %v, want data %q", label, m, data)
			}
			continue
		}
		fc.c.expectSilence(100 * time.Millisecond)
	}
}

func filterQuery(f string) string { return "filter=" + url.QueryEscape(f) }

func TestRESTFilteredSends(t *testing.T) {
	s := testServer(t, nil)
	fleet := filterFleet(t, s)
	cases := []struct {
		name, path, filter string
		want               []string
	}{
		{"all/user-eq", "/api/hubs/fh/:send?", "userId eq 'alice'", []string{"alice"}},
		{"all/in-groups", "/api/hubs/fh/:send?", "'g2' in groups", []string{"bob", "bot"}},
		{"all/null-user", "/api/hubs/fh/:send?", "userId eq null", []string{"anon"}},
		{"all/escaped-quote", "/api/hubs/fh/:send?", "userId eq 'o''brien'", []string{"quote"}},
		{"all/not-endswith", "/api/hubs/fh/:send?", "userId ne null and not endswith(userId, 'bot')", []string{"alice", "bob", "quote"}},
		{"all/length-groups", "/api/hubs/fh/:send?", "length(groups) gt 1", []string{"bob"}},
		{"all/filter-and-excluded", "/api/hubs/fh/:send?excluded=" + fleet["bob"].id + "&", "'g1' in groups", []string{"alice", "anon"}},
		{"all/connection-id", "/api/hubs/fh/:send?", "connectionId eq '" + fleet["bot"].id + "'", []string{"bot"}},
		{"all/empty-filter-is-none", "/api/hubs/fh/:send?", "", []string{"alice", "bob", "bot", "quote", "anon"}},
		{"group/filter", "/api/hubs/fh/groups/g1/:send?", "userId ne null", []string{"alice", "bob"}},
		{"group/filter-and-excluded", "/api/hubs/fh/groups/g2/:send?excluded=" + fleet["bob"].id + "&", "startswith(userId, 'chat')", []string{"bot"}},
		{"user/filter-matches", "/api/hubs/fh/users/bob/:send?", "'g2' in groups", []string{"bob"}},
		{"user/filter-excludes", "/api/hubs/fh/users/bob/:send?", "not ('g2' in groups)", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus(t, restReq(t, s, "POST", tc.path+filterQuery(tc.filter), "text/plain", []byte(tc.name)), 202)
			expectDelivery(t, fleet, tc.name, tc.want...)
		})
	}
}

// errorDetail reads an ErrorDetail body and checks x-ms-error-code matches it.
type errorDetail struct {
	Code, Message, Target string
	Inner                 struct{ Code string }
}

func readErrorDetail(t *testing.T, resp *http.Response) errorDetail {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	var d errorDetail
	if err := json.Unmarshal(body, &d); err != nil || d.Code == "" || d.Message == "" {
		t.Fatalf("error body %q is not an ErrorDetail", body)
	}
	if got := resp.Header.Get("x-ms-error-code"); got != d.Code {
		t.Fatalf("x-ms-error-code %q, body code %q", got, d.Code)
	}
	return d
}

func TestRESTInvalidFilter(t *testing.T) {
	s := testServer(t, nil)
	fleet := filterFleet(t, s)
	for _, tc := range []struct{ filter, pos string }{
		{"userId eq", "position 9"},
		{"userId eq 'a' and", "position 17"},
		{"'g1' in ()", "position"},
		{"not length(userId) gt 5", "position"},
		{"userId eq 'unterminated", "position 10"},
		{strings.Repeat("userId eq 'a' or ", 120) + "true", "100"},
	} {
		for _, path := range []string{"/api/hubs/fh/:send?", "/api/hubs/fh/groups/g1/:send?", "/api/hubs/fh/users/alice/:send?"} {
			resp := restReq(t, s, "POST", path+filterQuery(tc.filter), "text/plain", []byte("never"))
			wantStatus(t, resp, 400)
			d := readErrorDetail(t, resp)
			if d.Code != "Error.BadRequest" || d.Target != "filter" || d.Inner.Code != "InvalidFilter" || !strings.Contains(d.Message, tc.pos) {
				t.Errorf("%s %q: got %+v, want Error.BadRequest, target filter, message with %q", path, tc.filter, d, tc.pos)
			}
		}
	}
	expectDelivery(t, fleet, "") // nothing was sent
}

func bulkBody(groups []string, filter string) []byte {
	b, _ := json.Marshal(map[string]any{"groups": groups, "filter": filter})
	return b
}

func TestRESTBulkGroups(t *testing.T) {
	s := testServer(t, nil)
	fleet := filterFleet(t, s)
	groupSend := func(group, data string, want ...string) {
		t.Helper()
		wantStatus(t, restReq(t, s, "POST", "/api/hubs/fh/groups/"+group+"/:send", "text/plain", []byte(data)), 202)
		expectDelivery(t, fleet, data, want...)
	}
	add := "/api/hubs/fh/:addToGroups?api-version=2024-12-01"
	remove := "/api/hubs/fh/:removeFromGroups?api-version=2024-12-01"

	// The filter sees the state before the change, so adding to g1 by a g1 test
	// does not cascade.
	wantStatus(t, restReq(t, s, "POST", add, "application/json", bulkBody([]string{"x", "y"}, "userId ne null and not ('g2' in groups)")), 200)
	groupSend("x", "x1", "alice", "quote")
	groupSend("y", "y1", "alice", "quote")

	wantStatus(t, restReq(t, s, "POST", remove, "application/json", bulkBody([]string{"y"}, "userId eq 'alice'")), 200)
	groupSend("y", "y2", "quote")
	groupSend("x", "x2", "alice", "quote")

	// No filter: every connection of the hub.
	wantStatus(t, restReq(t, s, "POST", add, "application/json; charset=utf-8", []byte(`{"groups":["z"]}`)), 200)
	groupSend("z", "z1", "alice", "bob", "bot", "quote", "anon")
	wantStatus(t, restReq(t, s, "POST", remove, "application/json", []byte(`{"groups":["z","x"],"filter":""}`)), 200)
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/fh/groups/z", "", nil), 404)
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/fh/groups/x", "", nil), 404)

	// Invalid requests change nothing.
	for _, tc := range []struct {
		name, ctype, body, target string
	}{
		{"bad-filter", "application/json", string(bulkBody([]string{"w"}, "userId eq")), "filter"},
		{"no-groups", "application/json", `{"filter":"true"}`, "groups"},
		{"empty-groups", "application/json", `{"groups":[]}`, "groups"},
		{"blank-group", "application/json", `{"groups":["ok","  "]}`, "groups"},
		{"long-group", "application/json", string(bulkBody([]string{strings.Repeat("g", 1025)}, "")), "groups"},
		{"not-json", "application/json", `{"groups":`, "body"},
		{"wrong-type", "application/json", `{"groups":"w"}`, "body"},
		{"text-body", "text/plain", `{"groups":["w"]}`, "Content-Type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := restReq(t, s, "POST", add, tc.ctype, []byte(tc.body))
			wantStatus(t, resp, 400)
			if d := readErrorDetail(t, resp); d.Target != tc.target {
				t.Fatalf("target %q, want %q (%s)", d.Target, tc.target, d.Message)
			}
		})
	}
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/fh/groups/w", "", nil), 404)
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/fh/groups/ok", "", nil), 404)
}

// TestRESTValidationOrder: route, then token, then names and query, then body
// (rest-api.md §4), including for bodies too large to read.
func TestRESTValidationOrder(t *testing.T) {
	s := testServer(t, func(c *Config) { c.Limits.MaxMessageBytes = 1024 })
	big := strings.Repeat("x", 2000)
	unsigned := func(method, path, ctype, body string) *http.Response {
		req, _ := http.NewRequest(method, s.testURL()+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("Authorization", "Bearer not-a-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	cases := []struct {
		name   string
		resp   func() *http.Response
		status int
		code   string
	}{
		{"unknown-route-bad-token", func() *http.Response { return unsigned("POST", "/api/hubs/h/nope", "text/plain", "x") }, 404, "Error.NotFound"},
		{"wrong-method-bad-token", func() *http.Response { return unsigned("PUT", "/api/hubs/h/:send", "text/plain", "x") }, 405, "Error.MethodNotAllowed"},
		{"bad-hub-bad-token", func() *http.Response { return unsigned("POST", "/api/hubs/1h/:send", "text/plain", "x") }, 401, "Error.Unauthorized"},
		{"large-body-bad-token", func() *http.Response { return unsigned("POST", "/api/hubs/h/:send", "text/plain", big) }, 401, "Error.Unauthorized"},
		{"large-body-unknown-route", func() *http.Response { return unsigned("POST", "/api/hubs/h/nope", "text/plain", big) }, 404, "Error.NotFound"},
		{"large-body-signed", func() *http.Response { return restReq(t, s, "POST", "/api/hubs/h/:send", "text/plain", []byte(big)) }, 413, "Error.PayloadTooLarge"},
		{"bad-hub-bad-body", func() *http.Response { return restReq(t, s, "POST", "/api/hubs/1h/:send", "text/html", nil) }, 400, "Error.BadRequest"},
		{"bad-filter-bad-body", func() *http.Response {
			return restReq(t, s, "POST", "/api/hubs/h/:send?"+filterQuery("userId eq"), "text/html", nil)
		}, 400, "Error.BadRequest"},
		{"bad-maxpagesize", func() *http.Response {
			return restReq(t, s, "GET", "/api/hubs/h/groups/g/connections?maxpagesize=201", "", nil)
		}, 400, "Error.BadRequest"},
		{"bad-client-type", func() *http.Response {
			return restReq(t, s, "POST", "/api/hubs/h/:generateToken?clientType=Telnet", "", nil)
		}, 400, "Error.BadRequest"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := tc.resp()
			wantStatus(t, resp, tc.status)
			if d := readErrorDetail(t, resp); d.Code != tc.code {
				t.Fatalf("code %q, want %q (%s)", d.Code, tc.code, d.Message)
			}
		})
	}
	t.Run("bad-filter-before-body", func(t *testing.T) {
		resp := restReq(t, s, "POST", "/api/hubs/h/:send?"+filterQuery("userId eq"), "text/html", nil)
		if d := readErrorDetail(t, resp); d.Target != "filter" {
			t.Fatalf("the filter is checked before the content type; got %+v", d)
		}
	})
	t.Run("405-allow", func(t *testing.T) {
		resp := restReq(t, s, "POST", "/api/hubs/h/connections/c1", "", nil)
		wantStatus(t, resp, 405)
		if got := resp.Header.Get("Allow"); got != "HEAD, DELETE" {
			t.Fatalf("Allow %q", got)
		}
	})
	for _, v := range []string{"2021-10-01", "2024-12-01", "1999-01-01", ""} {
		q := ""
		if v != "" {
			q = "?api-version=" + v
		}
		wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/h/users/nobody"+q, "", nil), 404)
		wantStatus(t, restReq(t, s, "POST", "/api/hubs/h/:send"+q, "text/plain", []byte("v")), 202)
	}
}

func TestRESTGenerateTokenClientTypes(t *testing.T) {
	s := testServer(t, nil)
	for _, tc := range []struct{ clientType, path string }{
		{"", "/client/hubs/hub1"},
		{"default", "/client/hubs/hub1"},
		{"MQTT", "/clients/mqtt/hubs/hub1"},
		{"socketio", "/clients/socketio/hubs/hub1"},
	} {
		resp := restReq(t, s, "POST", "/api/hubs/hub1/:generateToken?clientType="+tc.clientType+"&minutesToExpire=2", "", nil)
		wantStatus(t, resp, 200)
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("Content-Type %q", ct)
		}
		var out struct{ Token string }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		claims := decodeClaims(t, out.Token)
		if claims["aud"] != s.testURL()+tc.path {
			t.Errorf("clientType %q: aud %v, want %s", tc.clientType, claims["aud"], s.testURL()+tc.path)
		}
		iat, nbf, exp := claims["iat"].(float64), claims["nbf"].(float64), claims["exp"].(float64)
		if nbf != iat || exp-iat != 120 {
			t.Errorf("iat %v nbf %v exp %v, want nbf = iat and 2 minutes", iat, nbf, exp)
		}
		for _, absent := range []string{"sub", "role", "webpubsub.group"} {
			if _, ok := claims[absent]; ok {
				t.Errorf("claim %s present without its parameter", absent)
			}
		}
	}
}

func decodeClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
