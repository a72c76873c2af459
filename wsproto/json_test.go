package wsproto

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// describe renders a decoded message on one line, the "out:" form of the
// decode golden files.
func describe(m *ClientMessage) string {
	var b strings.Builder
	b.WriteString("type=" + m.Type.String())
	if m.HasAckID {
		fmt.Fprintf(&b, " ackId=%d", m.AckID)
	}
	if m.Group != "" {
		fmt.Fprintf(&b, " group=%q", m.Group)
	}
	if m.Event != "" {
		fmt.Fprintf(&b, " event=%q", m.Event)
	}
	if m.NoEcho {
		b.WriteString(" noEcho")
	}
	if m.HasData {
		fmt.Fprintf(&b, " dataType=%s data=%q", m.DataType, m.Data)
	}
	if m.SequenceID != 0 {
		fmt.Fprintf(&b, " sequenceId=%d", m.SequenceID)
	}
	if m.InvocationID != "" {
		fmt.Fprintf(&b, " invocationId=%q", m.InvocationID)
	}
	if m.Target != "" {
		fmt.Fprintf(&b, " target=%q", m.Target)
	}
	return b.String()
}

// describeErr renders a decode error, the "err:" form of the golden files.
func describeErr(err error) string {
	var me *MessageError
	switch {
	case errors.As(err, &me):
		ack := "noack"
		if me.HasAckID {
			ack = "ackId=" + strconv.FormatUint(me.AckID, 10)
		}
		return me.Name + " " + ack + " " + me.Message
	case errors.Is(err, ErrInvalidMessage):
		return "invalid"
	}
	return "unexpected " + err.Error()
}

type goldenCase struct {
	line     int
	in, want string // want is "out: …" or "err: …"
}

// readDecodeGolden reads "in:" lines each followed by an "out:" or "err:" line.
// '#' lines and blank lines are comments.
func readDecodeGolden(t *testing.T, path string) []goldenCase {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var cases []goldenCase
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "in:"):
			cases = append(cases, goldenCase{line: n, in: strings.TrimSpace(line[3:])})
		case strings.HasPrefix(line, "out:"), strings.HasPrefix(line, "err:"):
			if len(cases) == 0 || cases[len(cases)-1].want != "" {
				t.Fatalf("%s:%d: result without input", path, n)
			}
			cases[len(cases)-1].want = line[:4] + " " + strings.TrimSpace(line[4:])
		default:
			t.Fatalf("%s:%d: unexpected line %q", path, n, line)
		}
	}
	return cases
}

// TestDecodeJSONMessageGolden runs testdata/json/decode/<type>.golden, one file
// per message kind, with frames taken from client-examples.md.
func TestDecodeJSONMessageGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/json/decode/*.golden")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	var m ClientMessage // reused across cases, as an event loop does
	for _, path := range files {
		kind := strings.TrimSuffix(filepath.Base(path), ".golden")
		for _, tc := range readDecodeGolden(t, path) {
			t.Run(fmt.Sprintf("%s/line=%d", kind, tc.line), func(t *testing.T) {
				in := []byte(tc.in)
				err := DecodeJSONMessage(&m, in)
				got := "out: " + describe(&m)
				if err != nil {
					got = "err: " + describeErr(err)
				}
				if got != tc.want {
					t.Fatalf("input %s\n got %s\nwant %s", tc.in, got, tc.want)
				}
				if err == nil && m.Type.String() != kind && kind != "invalid" {
					t.Fatalf("golden file %s holds a %s", kind, m.Type)
				}
			})
		}
	}
}

// TestDecodeJSONMessageRawBytes covers inputs the text golden files cannot
// hold: invalid UTF-8 and raw control characters inside strings.
func TestDecodeJSONMessageRawBytes(t *testing.T) {
	var m ClientMessage
	for _, in := range []string{
		"{\"type\":\"sendToGroup\",\"group\":\"g\",\"dataType\":\"text\",\"data\":\"\xff\"}",
		"{\"type\":\"sendToGroup\",\"group\":\"g\",\"dataType\":\"text\",\"data\":\"a\tb\"}",
		"{\"type\":\"ping\",\"x\":{\"y\":\"\x00\"}}",
	} {
		if err := DecodeJSONMessage(&m, []byte(in)); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%q: err = %v", in, err)
		}
	}
}

// TestDecodeJSONMessageDataAliasing pins the lifetime contract of Data: a view
// into the payload when no copy is needed, else into m's scratch space.
func TestDecodeJSONMessageDataAliasing(t *testing.T) {
	var m ClientMessage
	payload := []byte(`{"type":"sendToGroup","group":"g","dataType":"text","data":"plain"}`)
	if err := DecodeJSONMessage(&m, payload); err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(payload, []byte("plain"))
	payload[i] = 'P'
	if string(m.Data) != "Plain" {
		t.Fatalf("text without escapes should alias the payload, got %q", m.Data)
	}
	payload = []byte(`{"type":"sendToGroup","group":"g\n","dataType":"text","data":"a\tb"}`)
	if err := DecodeJSONMessage(&m, payload); err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "a\tb" || m.Group != "g\n" {
		t.Fatalf("got %q %q", m.Data, m.Group)
	}
}

// encodeCases produce the outputs in testdata/json/encode/<file>.golden.
var encodeCases = map[string]map[string]func([]byte) []byte{
	"ack": {
		"success": func(b []byte) []byte { return AppendAck(b, 1, "", "") },
		"forbidden": func(b []byte) []byte {
			return AppendAck(b, 2, "Forbidden", "The connection has no permission to send to group 'group2'.")
		},
		"duplicate": func(b []byte) []byte {
			return AppendAck(b, 3, "Duplicate", "Message with ack-id: 3 has been processed")
		},
		"failed": func(b []byte) []byte {
			return AppendAck(b, 6, "InvocationFailed", "The event handler returned a failure status.")
		},
		"bad-request": func(b []byte) []byte {
			return AppendAck(b, 7, "BadRequest", "'data' must be a string when 'dataType' is 'text'.")
		},
		"escaped": func(b []byte) []byte {
			return AppendAck(b, 1<<64-1, `X"Y`, "tab\there\n\x01\\ \u2028 \xff é")
		},
	},
	"pong": {
		"pong": AppendPong,
	},
	"system": {
		"connected": func(b []byte) []byte { return AppendConnected(b, "user1", true, "Q2x1c3Rlci0xOjAwMDE", "") },
		"connected-anonymous": func(b []byte) []byte {
			return AppendConnected(b, "", false, "Q2x1c3Rlci0xOjAwMDE", "")
		},
		"connected-reliable": func(b []byte) []byte {
			return AppendConnected(b, "user1", true, "Q2x1c3Rlci0xOjAwMDI", "<opaque-token-A>")
		},
		"disconnected": func(b []byte) []byte {
			return AppendDisconnected(b, "SendEventFailed: the event handler returned a failure status.")
		},
		"disconnected-format": func(b []byte) []byte { return AppendDisconnected(b, "BadRequest: invalid message format") },
		"disconnected-kicked": func(b []byte) []byte { return AppendDisconnected(b, "kicked") },
	},
	"message": {
		"group-json": func(b []byte) []byte {
			return AppendGroupMessage(b, "group1", "user1", DataJSON, []byte(`{"hello":"world"}`), 0)
		},
		"group-text": func(b []byte) []byte { return AppendGroupMessage(b, "group1", "user1", DataText, []byte("quiet"), 0) },
		"group-binary": func(b []byte) []byte {
			return AppendGroupMessage(b, "group1", "user1", DataBinary, []byte{1, 2, 3}, 0)
		},
		"group-protobuf": func(b []byte) []byte {
			return AppendGroupMessage(b, "group1", "user1", DataProtobuf, []byte("\n/type.googleapis.com/azure.webpubsub.TestMessage\x12\x02\b\x01"), 0)
		},
		"group-array":    func(b []byte) []byte { return AppendGroupMessage(b, "group1", "user1", DataJSON, []byte("[1,2,3]"), 0) },
		"group-rest":     func(b []byte) []byte { return AppendGroupMessage(b, "group1", "", DataText, []byte("x"), 0) },
		"group-reliable": func(b []byte) []byte { return AppendGroupMessage(b, "group1", "user2", DataText, []byte("m1"), 1) },
		"server-text":    func(b []byte) []byte { return AppendServerMessage(b, DataText, []byte("Hello World"), 0) },
		"server-json-object": func(b []byte) []byte {
			return AppendServerMessage(b, DataJSON, []byte(`{"Hello":"World"}`), 0)
		},
		"server-json-string": func(b []byte) []byte {
			return AppendServerMessage(b, DataJSON, []byte(`"Hello World"`), 0)
		},
		"server-binary":    func(b []byte) []byte { return AppendServerMessage(b, DataBinary, []byte{1, 2, 3}, 0) },
		"server-binary-hi": func(b []byte) []byte { return AppendServerMessage(b, DataBinary, []byte("hi"), 0) },
		"server-echo": func(b []byte) []byte {
			return AppendServerMessage(b, DataJSON, []byte(`{"echo":"ping me"}`), 0)
		},
		"server-reliable":     func(b []byte) []byte { return AppendServerMessage(b, DataText, []byte("m2"), 2) },
		"server-text-escaped": func(b []byte) []byte { return AppendServerMessage(b, DataText, []byte("a\"b\\c\nd"), 0) },
	},
}

// TestAppendJSONGolden checks each encoder against
// testdata/json/encode/<kind>.golden ("name: json" lines) and that the output
// is valid JSON that encoding/json reads back.
func TestAppendJSONGolden(t *testing.T) {
	for file, cases := range encodeCases {
		golden := readEncodeGolden(t, filepath.Join("testdata/json/encode", file+".golden"))
		for name, fn := range cases {
			t.Run(file+"/"+name, func(t *testing.T) {
				want, ok := golden[name]
				if !ok {
					t.Fatalf("no golden line %q", name)
				}
				delete(golden, name)
				got := fn([]byte("prefix"))
				if string(got) != "prefix"+want {
					t.Fatalf("\n got %s\nwant %s", got[len("prefix"):], want)
				}
				var v map[string]any
				if err := json.Unmarshal(got[len("prefix"):], &v); err != nil {
					t.Fatalf("not JSON: %v", err)
				}
			})
		}
		for name := range golden {
			t.Errorf("%s.golden: %q has no test case", file, name)
		}
	}
}

func readEncodeGolden(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("%s: bad line %q", path, line)
		}
		out[name] = strings.TrimSpace(val)
	}
	return out
}

// TestJSONRoundTrip decodes what a client sends, re-encodes it as the group
// message receivers get, and checks that the data survives for every type.
func TestJSONRoundTrip(t *testing.T) {
	for _, in := range []string{
		`{"type":"sendToGroup","group":"g","dataType":"text","data":"h\u00e9\"llo\n"}`,
		`{"type":"sendToGroup","group":"g","dataType":"json","data":{"a":[1,2,{"b":null}]}}`,
		`{"type":"sendToGroup","group":"g","dataType":"binary","data":"AAEC/w=="}`,
		`{"type":"sendToGroup","group":"g","dataType":"protobuf","data":"AAEC/w"}`,
	} {
		var m, back ClientMessage
		if err := DecodeJSONMessage(&m, []byte(in)); err != nil {
			t.Fatal(err)
		}
		out := AppendGroupMessage(nil, m.Group, "u", m.DataType, m.Data, 0)
		// A group message has the fields of a sendToGroup apart from its type.
		resend := bytes.Replace(out, []byte(`"type":"message"`), []byte(`"type":"sendToGroup"`), 1)
		if err := DecodeJSONMessage(&back, resend); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		if back.DataType != m.DataType || !bytes.Equal(back.Data, m.Data) {
			t.Fatalf("%s: data %q != %q", out, back.Data, m.Data)
		}
	}
}

func TestDataTypeNames(t *testing.T) {
	for _, s := range []string{"json", "Json", "TEXT", "binary", "Protobuf"} {
		dt, ok := ParseDataType(s)
		if !ok || !strings.EqualFold(dt.String(), s) {
			t.Errorf("ParseDataType(%q) = %v, %v", s, dt, ok)
		}
	}
	if _, ok := ParseDataType("xml"); ok {
		t.Error("xml accepted")
	}
}
