package upstream

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// §4.1 request body, §4.2/§4.3 response handling.
func TestConnect(t *testing.T) {
	offered := []string{"json.webpubsub.azure.v1", "custom"}
	str := func(s string) *string { return &s }
	cases := []struct {
		name     string
		status   int
		ct       string
		body     string
		want     ConnectResult
		reject   int // RejectError status
		err      error
		anyError bool
	}{
		{name: "204", status: 204},
		{name: "200-empty", status: 200},
		{name: "200-empty-object", status: 200, body: "{}"},
		{name: "200-null", status: 200, body: "null"},
		{name: "null-fields", status: 200, body: `{"userId":null,"groups":null,"roles":null,"subprotocol":null}`},
		{name: "full", status: 200, ct: "application/json", body: `{"userId":"u2","groups":["g1","g2"],"roles":["webpubsub.joinLeaveGroup"],"subprotocol":"custom","unknown":{"x":1}}`,
			want: ConnectResult{UserID: str("u2"), Groups: []string{"g1", "g2"}, Roles: []string{"webpubsub.joinLeaveGroup"}, HasRoles: true, Subprotocol: "custom"}},
		{name: "no-content-type", status: 200, ct: "-", body: `{"userId":""}`, want: ConnectResult{UserID: str("")}},
		{name: "text-content-type", status: 201, ct: "text/plain", body: `{"subProtocol":"json.webpubsub.azure.v1"}`, want: ConnectResult{Subprotocol: "json.webpubsub.azure.v1"}},
		{name: "empty-arrays", status: 200, body: `{"groups":[],"roles":[]}`, want: ConnectResult{Roles: []string{}, HasRoles: true}},
		{name: "401-with-body", status: 401, body: "go away", reject: 401},
		{name: "403", status: 403, reject: 403},
		{name: "400", status: 400, body: strings.Repeat("z", 5000), reject: 400},
		{name: "500", status: 500, anyError: true},
		{name: "invalid-json", status: 200, body: `{"userId":`, err: ErrBadConnectResponse},
		{name: "not-object", status: 200, body: `["a"]`, err: ErrBadConnectResponse},
		{name: "wrong-type", status: 200, body: `{"groups":"g"}`, err: ErrBadConnectResponse},
		{name: "invalid-group", status: 200, body: `{"groups":["ok","  "]}`, err: ErrBadConnectResponse},
		{name: "unoffered-subprotocol", status: 200, body: `{"subprotocol":"mqtt"}`, err: ErrBadConnectResponse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
				switch tc.ct {
				case "-":
					w.Header()["Content-Type"] = nil
				case "":
				default:
					w.Header().Set("Content-Type", tc.ct)
				}
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			})
			c := newTestClient(t, Config{})
			s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c", UserID: "u1"})
			r := connectSync(t, s, ConnectRequest{Subprotocols: offered})
			switch {
			case tc.reject != 0:
				var re *RejectError
				if !errors.As(r.Err, &re) || re.Status != tc.reject {
					t.Fatalf("err %v, want reject %d", r.Err, tc.reject)
				}
				if want := tc.body[:min(len(tc.body), 4096)]; string(re.Body) != want {
					t.Fatalf("reject body %d bytes, want %d", len(re.Body), len(want))
				}
				if n := len(st.requests(http.MethodPost)); n != 1 {
					t.Fatalf("%d posts", n)
				}
				return
			case tc.anyError:
				var re *RejectError
				if r.Err == nil || errors.As(r.Err, &re) {
					t.Fatalf("err %v, want a non-reject error", r.Err)
				}
				return
			case tc.err != nil:
				if !errors.Is(r.Err, tc.err) {
					t.Fatalf("err %v, want %v", r.Err, tc.err)
				}
				return
			}
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			if (r.UserID == nil) != (tc.want.UserID == nil) || (r.UserID != nil && *r.UserID != *tc.want.UserID) ||
				!slices.Equal(r.Groups, tc.want.Groups) || (r.Groups == nil) != (tc.want.Groups == nil) ||
				!slices.Equal(r.Roles, tc.want.Roles) || r.HasRoles != tc.want.HasRoles || r.Subprotocol != tc.want.Subprotocol {
				t.Fatalf("result %+v, want %+v", r, tc.want)
			}
		})
	}
}

// The connect response's userId becomes the session's ce-userId; the body has
// all five keys.
func TestConnectBodyAndUserID(t *testing.T) {
	st := newStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if r.Header.Get("ce-eventName") == "connect" {
			w.Write([]byte(`{"userId":"u2"}`))
		}
	})
	c := newTestClient(t, Config{})
	s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c", UserID: "u1"})
	req := ConnectRequest{
		Claims:             map[string][]string{"sub": {"u1"}, "role": {"a", "b"}, "empty": nil},
		Query:              map[string][]string{"id": {"42"}},
		Headers:            map[string][]string{"User-Agent": {"Mozilla/5.0"}},
		ClientCertificates: []ClientCertificate{{Thumbprint: "ab", Content: "-----BEGIN CERTIFICATE-----"}},
	}
	if r := connectSync(t, s, req); r.Err != nil {
		t.Fatal(r.Err)
	}
	s.Connected()
	waitFor(t, "connected", func() bool { return len(st.requests(http.MethodPost)) == 2 })
	posts := st.requests(http.MethodPost)
	if posts[0].header.Get("ce-userId") != "u1" || posts[1].header.Get("ce-userId") != "u2" {
		t.Fatalf("ce-userId %q then %q", posts[0].header.Get("ce-userId"), posts[1].header.Get("ce-userId"))
	}
	var got map[string]any
	if err := json.Unmarshal(posts[0].body, &got); err != nil {
		t.Fatal(err)
	}
	want := `{"claims":{"empty":[],"role":["a","b"],"sub":["u1"]},"clientCertificates":[{"content":"-----BEGIN CERTIFICATE-----","thumbprint":"ab"}],"headers":{"User-Agent":["Mozilla/5.0"]},"query":{"id":["42"]},"subprotocols":[]}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Fatalf("body\n got %s\nwant %s", b, want)
	}
}

func FuzzParseConnectResponse(f *testing.F) {
	for _, s := range []string{"", "null", "{}", `{"userId":"u","groups":["a"],"roles":[],"subprotocol":"p"}`,
		`{"userId":null}`, `{"subProtocol":"x"}`, `{"groups":[null]}`, `[`, `{"roles":"x"}`, " \n{} "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := parseConnectResponse(body, []string{"p", "x"})
		if err != nil {
			if !errors.Is(err, ErrBadConnectResponse) {
				t.Fatalf("error %v does not wrap ErrBadConnectResponse", err)
			}
			if r.UserID != nil || r.Groups != nil || r.HasRoles || r.Subprotocol != "" {
				t.Fatalf("failed parse returned values %+v", r)
			}
			return
		}
		if r.Groups != nil && len(r.Groups) == 0 {
			t.Fatal("empty non-nil Groups")
		}
		for _, g := range r.Groups {
			if !validGroupName(g) {
				t.Fatalf("invalid group %q accepted", g)
			}
		}
		if r.Subprotocol != "" && r.Subprotocol != "p" && r.Subprotocol != "x" {
			t.Fatalf("unoffered subprotocol %q", r.Subprotocol)
		}
		if r.HasRoles != (r.Roles != nil) {
			t.Fatalf("HasRoles %v with Roles %v", r.HasRoles, r.Roles)
		}
	})
}
