package wsproto

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAppendUpgradeResponseGolden replays the handshakes of client-examples.md
// E2 and E4.2 byte for byte.
func TestAppendUpgradeResponseGolden(t *testing.T) {
	for _, tc := range []struct {
		name     string
		protocol string
	}{
		{"E2.1-simple", ""},
		{"E2.2-json", ProtocolJSON},
		{"E4.2-recovery", ProtocolJSONReliable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := readGolden(t, "handshake/"+tc.name+".request")
			want := readGolden(t, "handshake/"+tc.name+".response")
			n, err := HeadLength(req)
			if err != nil || n != len(req) {
				t.Fatalf("HeadLength = %d, %v; want %d", n, err, len(req))
			}
			got, err := AppendUpgradeResponse([]byte("prefix"), req, tc.protocol)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "prefix"+string(want) {
				t.Fatalf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestRFC6455_4_2_1_OpeningHandshake checks that invalid upgrades are
// answered with an HTTP error and an error that says which check failed.
func TestRFC6455_4_2_1_OpeningHandshake(t *testing.T) {
	good := string(readGolden(t, "handshake/E2.1-simple.request"))
	for _, tc := range []struct {
		name       string
		req        string
		wantStatus string
		wantErr    error
	}{
		{"no-upgrade-header", strings.Replace(good, "Upgrade: websocket\r\n", "", 1), "HTTP/1.1 400 ", ws.ErrHandshakeBadUpgrade},
		{"no-connection-header", strings.Replace(good, "Connection: Upgrade\r\n", "", 1), "HTTP/1.1 400 ", ws.ErrHandshakeBadConnection},
		{"no-host", strings.Replace(good, "Host: localhost:8080\r\n", "", 1), "HTTP/1.1 400 ", ws.ErrHandshakeBadHost},
		{"bad-key", strings.Replace(good, "dGhlIHNhbXBsZSBub25jZQ==", "short", 1), "HTTP/1.1 400 ", ws.ErrHandshakeBadSecKey},
		{"version-8", strings.Replace(good, "Version: 13", "Version: 8", 1), "HTTP/1.1 426 ", ws.ErrHandshakeUpgradeRequired},
		{"post", strings.Replace(good, "GET ", "POST ", 1), "HTTP/1.1 405 ", ws.ErrHandshakeBadMethod},
		{"http-1.0", strings.Replace(good, "HTTP/1.1", "HTTP/1.0", 1), "HTTP/1.1 505 ", ws.ErrHandshakeBadProtocol},
		{"truncated", good[:40], "HTTP/1.1 400 ", nil},
		{"garbage", "hello\r\n\r\n", "HTTP/1.1 400 ", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendUpgradeResponse(nil, []byte(tc.req), "")
			if err == nil {
				t.Fatalf("no error; response:\n%s", got)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !strings.HasPrefix(string(got), tc.wantStatus) {
				t.Fatalf("response:\n%s\nwant status %q", got, tc.wantStatus)
			}
		})
	}
}

func TestAppendUpgradeResponseRejectsBadProtocolName(t *testing.T) {
	req := readGolden(t, "handshake/E2.1-simple.request")
	got, err := AppendUpgradeResponse(nil, req, "a\r\nSet-Cookie: x")
	if err == nil || !bytes.HasPrefix(got, []byte("HTTP/1.1 400 ")) {
		t.Fatalf("err=%v response:\n%s", err, got)
	}
}

func TestHeadLength(t *testing.T) {
	req := readGolden(t, "handshake/E2.1-simple.request")
	for i := 0; i < len(req); i++ {
		if _, err := HeadLength(req[:i]); err != ErrNeedMore {
			t.Fatalf("prefix %d: %v", i, err)
		}
	}
	if n, err := HeadLength(append(req, "extra"...)); n != len(req) || err != nil {
		t.Fatalf("got %d %v", n, err)
	}
}

func TestAppendHTTPResponse(t *testing.T) {
	got := AppendHTTPResponse(nil, 403, "text/plain", []byte("no"), true)
	want := "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"
	if string(got) != want {
		t.Fatalf("got %q", got)
	}
	got = AppendHTTPResponse(nil, 401, "", nil, false)
	want = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
	if string(got) != want {
		t.Fatalf("got %q", got)
	}
}

func TestSplitProtocols(t *testing.T) {
	var got []string
	got = SplitProtocols(got, "chat.v2, protobuf.webpubsub.azure.v1 ,json.webpubsub.azure.v1")
	got = SplitProtocols(got, " , x ,")
	got = SplitProtocols(got, "")
	want := []string{"chat.v2", "protobuf.webpubsub.azure.v1", "json.webpubsub.azure.v1", "x"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q", got)
	}
}

// TestSelectProtocol follows client-protocol.md §1.6 and client-examples.md
// E2.1, E2.2, E2.5 and E2.6.
func TestSelectProtocol(t *testing.T) {
	for _, tc := range []struct {
		name    string
		offered string
		want    string
		kind    Kind
	}{
		{"E2.1/none", "", "", KindSimple},
		{"E2.2/json", "json.webpubsub.azure.v1", ProtocolJSON, KindJSON},
		{"E2.3/json-reliable", "json.reliable.webpubsub.azure.v1", ProtocolJSONReliable, KindJSONReliable},
		{"protobuf-reliable", "protobuf.reliable.webpubsub.azure.v1", ProtocolProtobufReliable, KindProtobufReliable},
		{"E2.5/unknown-echoed", "chat.v2", "chat.v2", KindSimple},
		{"E2.6/first-predefined", "chat.v2, protobuf.webpubsub.azure.v1, json.webpubsub.azure.v1", ProtocolProtobuf, KindProtobuf},
		{"case-sensitive", "JSON.webpubsub.azure.v1", "JSON.webpubsub.azure.v1", KindSimple},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, kind := SelectProtocol(SplitProtocols(nil, tc.offered))
			if got != tc.want || kind != tc.kind {
				t.Fatalf("got (%q, %v), want (%q, %v)", got, kind, tc.want, tc.kind)
			}
		})
	}
}

func TestKind(t *testing.T) {
	for _, tc := range []struct {
		k                      Kind
		pubsub, reliable, json bool
		name                   string
	}{
		{KindSimple, false, false, false, "simple"},
		{KindJSON, true, false, true, ProtocolJSON},
		{KindJSONReliable, true, true, true, ProtocolJSONReliable},
		{KindProtobuf, true, false, false, ProtocolProtobuf},
		{KindProtobufReliable, true, true, false, ProtocolProtobufReliable},
	} {
		if tc.k.IsPubSub() != tc.pubsub || tc.k.IsReliable() != tc.reliable || tc.k.IsJSON() != tc.json || tc.k.String() != tc.name {
			t.Errorf("%v: pubsub=%v reliable=%v json=%v", tc.k, tc.k.IsPubSub(), tc.k.IsReliable(), tc.k.IsJSON())
		}
		if tc.k != KindSimple && KindOf(tc.name) != tc.k {
			t.Errorf("KindOf(%q) = %v", tc.name, KindOf(tc.name))
		}
	}
}

func TestValidHubName(t *testing.T) {
	for s, want := range map[string]bool{
		"hub1": true, "H": true, "a_b`c,d.e[f]": true, strings.Repeat("a", 128): true,
		"": false, "1hub": false, "_hub": false, "hub-1": false, "hub 1": false, "hüb": false,
		strings.Repeat("a", 129): false,
	} {
		if got := ValidHubName(s); got != want {
			t.Errorf("ValidHubName(%q) = %v", s, got)
		}
	}
}

func TestValidGroupName(t *testing.T) {
	valid := []string{"group1", " g ", "é", strings.Repeat("é", 1024), strings.Repeat("a", 1024)}
	invalid := []string{"", " ", "\t\n\u3000", strings.Repeat("a", 1025), strings.Repeat("é", 1025), "\xff"}
	for _, s := range valid {
		if !ValidGroupName(s) {
			t.Errorf("ValidGroupName(%.20q) = false", s)
		}
	}
	for _, s := range invalid {
		if ValidGroupName(s) {
			t.Errorf("ValidGroupName(%.20q) = true", s)
		}
	}
}
