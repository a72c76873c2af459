package engine

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/webpubsub/webpubsub/registry"
)

// odataTestTargets are the connections every case of TestFilter is matched
// against; a case's want has one '1' or '0' per target, in this order.
var odataTestTargets = []*FilterTarget{
	odataTarget("c1", "user1", true, "group1"),
	odataTarget("123", "user1", true, "group2", "group3"),
	odataTarget("c3", "", false),
	odataTarget("c4", "USER1", true, "group1", "g2"),
	odataTarget("c5", "user'1", true),
	odataTarget("c6", "listener-ab-1", true, "group3"),
	odataTarget("c7", "chatbot", true),
	odataTarget("c8", " Zoë ", true, "zoë"),
}

func odataTarget(conn, user string, hasUser bool, groups ...string) *FilterTarget {
	m := make(map[string]struct{}, len(groups))
	for _, g := range groups {
		m[g] = struct{}{}
	}
	return &FilterTarget{
		ConnectionID: conn,
		UserID:       user,
		HasUser:      hasUser,
		InGroup:      func(g string) bool { _, ok := m[g]; return ok },
		GroupCount:   len(m),
	}
}

type odataCase struct {
	name    string
	filter  string
	max     int    // maxClauses; 0 means default
	want    string // match per odataTestTargets, or "" when an error is expected
	wantPos int    // error position when want == ""
}

func odataClauses(n int) string {
	return strings.TrimSuffix(strings.Repeat("userId eq 'a' or ", n), " or ")
}

var odataCases = []odataCase{
	// Every example of rest-api.md §5.7.
	{name: "spec/groups-or", filter: "'group1' in groups or 'group2' in groups or 'group3' in groups", want: "11010100"},
	{name: "spec/in-list-and-group", filter: "userId in ('user1', 'user2', 'user3') and 'group1' in groups", want: "10000000"},
	{name: "spec/eq-and-ne", filter: "userId eq 'user1' and connectionId ne '123'", want: "10000000"},
	{name: "spec/and-not-in", filter: "userId eq 'user1' and (not ('group1' in groups))", want: "01000000"},
	{name: "spec/escaped-quote", filter: "userId eq 'user''1'", want: "00001000"},
	{name: "spec/startswith", filter: "startswith(userId, 'listener-')", want: "00000100"},
	{name: "spec/length-groups", filter: "length(groups) gt 1", want: "01010000"},
	{name: "spec/tolower", filter: "tolower(userId) eq 'user1'", want: "11010000"},
	{name: "spec/indexof", filter: "indexof(userId, '-ab-') ge 0", want: "00000100"},
	{name: "spec/ne-null-and-not-endswith", filter: "userId ne null and not endswith(userId, 'bot')", want: "11011101"},

	// Quoting.
	{name: "quote/only-quote", filter: "userId eq 'user''1' or userId eq ''''", want: "00001000"},
	{name: "quote/empty-string", filter: "userId eq ''", want: "00000000"},
	{name: "quote/keywords-inside", filter: "userId eq 'a and b) or (' or userId eq 'chatbot'", want: "00000010"},
	{name: "quote/unterminated", filter: "userId eq 'abc", wantPos: 10},
	{name: "quote/unterminated-after-escape", filter: "userId eq 'it''s", wantPos: 10},
	{name: "quote/unterminated-doubled-end", filter: "userId eq 'a''", wantPos: 10},

	// Case and whitespace.
	{name: "case/keywords-upper", filter: "USERID EQ 'user1' AND 'group1' IN GROUPS", want: "10000000"},
	{name: "case/function-mixed", filter: "StartsWith(UserId, 'listener-')", want: "00000100"},
	{name: "case/eq-is-case-sensitive", filter: "userId eq 'USER1'", want: "00010000"},
	{name: "case/toupper", filter: "toupper(userId) eq 'USER1'", want: "11010000"},
	{name: "space/tabs", filter: "userId\teq\t'user1'", want: "11000000"},
	{name: "space/none-around-parens", filter: "(userId eq'user1')and('group1' in groups)", want: "10000000"},

	// Precedence: not > comparison/in > and > or.
	{name: "prec/and-over-or", filter: "true or true and false", want: "11111111"},
	{name: "prec/parens", filter: "(true or true) and false", want: "00000000"},
	{name: "prec/not-over-and", filter: "not false and false", want: "00000000"},
	{name: "prec/not-not", filter: "not not true", want: "11111111"},
	{name: "prec/not", filter: "not true", want: "00000000"},
	{name: "prec/not-over-cmp", filter: "not userId eq 'user1'", wantPos: 4},
	{name: "prec/not-length-gt", filter: "not length(userId) gt 5", wantPos: 4},
	{name: "prec/not-over-in", filter: "not 'g1' in groups", wantPos: 4},
	{name: "prec/not-parens-length", filter: "not (length(userId) gt 5)", want: "11110001"},
	{name: "prec/ne-and-eq-or", filter: "userId eq 'chatbot' or userId eq 'user1' and connectionId eq '123'", want: "01000010"},

	// in.
	{name: "in/list", filter: "userId in ('user1', 'USER1')", want: "11010000"},
	{name: "in/singleton", filter: "userId in ('chatbot')", want: "00000010"},
	{name: "in/null-element", filter: "userId in (null, 'chatbot')", want: "00100010"},
	{name: "in/long-list", filter: "userId in ('a','b','c','d','e','f','g','h','chatbot','user1')", want: "11000010"},
	{name: "in/long-list-null", filter: "userId in ('a','b','c','d','e','f','g','h','chatbot',null)", want: "00100010"},
	{name: "in/computed-elements", filter: "'user1' in (userId, connectionId)", want: "11000000"},
	{name: "in/paren-collection", filter: "'group1' in ((groups))", want: "10010000"},
	{name: "in/computed-in-groups", filter: "trim(tolower(userId)) in groups", want: "00000001"},
	{name: "in/null-in-groups", filter: "null in groups", want: "00000000"},
	{name: "in/empty-list", filter: "userId in ()", wantPos: 11},
	{name: "in/trailing-comma", filter: "userId in ('a',)", wantPos: 15},
	{name: "in/missing-comma", filter: "userId in ('a' 'b')", wantPos: 15},
	{name: "in/not-collection", filter: "'g1' in userId", wantPos: 8},
	{name: "in/missing-target", filter: "'g1' in", wantPos: 7},
	{name: "in/element-type", filter: "'x' in ('a', 1)", wantPos: 13},
	{name: "in/groups-left", filter: "groups in groups", wantPos: 0},
	{name: "in/int-in-groups", filter: "1 in groups", wantPos: 0},

	// null (§5.5).
	{name: "null/eq", filter: "userId eq null", want: "00100000"},
	{name: "null/eq-reversed", filter: "null eq userId", want: "00100000"},
	{name: "null/ne", filter: "userId ne null", want: "11011111"},
	{name: "null/ordering-false", filter: "userId gt null or userId le null", want: "00000000"},
	{name: "null/connectionId-never-null", filter: "connectionId eq null", want: "00000000"},
	{name: "null/null-eq-null", filter: "null eq null", want: "11111111"},
	{name: "null/function-of-null", filter: "length(userId) eq null", want: "00100000"},
	{name: "null/function-null-arg", filter: "startswith(userId, null) eq null", want: "11111111"},
	{name: "null/not-null-is-null", filter: "not startswith(userId, 'x')", want: "11011111"},
	{name: "null/null-or-true", filter: "startswith(userId, 'x') or true", want: "11111111"},
	{name: "null/null-and-false", filter: "not (startswith(userId, 'u') and false)", want: "11111111"},
	{name: "null/null-or-false", filter: "not (startswith(userId, 'u') or false)", want: "00010111"},
	{name: "null/alone", filter: "null", wantPos: 0},

	// Functions (§5.4).
	{name: "fn/ordering", filter: "userId gt 'user'", want: "11001000"},
	{name: "fn/length-runes", filter: "length(userId) eq 5", want: "11010001"},
	{name: "fn/substring-from", filter: "substring(userId, 1) eq 'ser1'", want: "11000000"},
	{name: "fn/substring-len", filter: "substring(userId, 0, 4) eq 'list'", want: "00000100"},
	{name: "fn/substring-out-of-range", filter: "substring(userId, 100) eq ''", want: "11011111"},
	{name: "fn/substring-negative", filter: "substring(userId, -1) eq ''", want: "11011111"},
	{name: "fn/substring-at-end", filter: "substring(userId, 5) eq ''", want: "11010001"},
	{name: "fn/substring-of-computed", filter: "substring(tolower(userId), 0, 4) eq 'user'", want: "11011000"},
	{name: "fn/concat", filter: "concat(userId, '-x') eq 'user1-x'", want: "11000000"},
	{name: "fn/concat-const", filter: "concat(concat('a', 'b'), 'c') eq 'abc'", want: "11111111"},
	{name: "fn/concat-computed-cmp", filter: "startswith(concat(connectionId, userId), 'c7chat')", want: "00000010"},
	{name: "fn/contains", filter: "contains(userId, 'bot')", want: "00000010"},
	{name: "fn/endswith-connection", filter: "endswith(connectionId, '3')", want: "01100000"},
	{name: "fn/indexof-runes", filter: "indexof(userId, 'ë') eq 3", want: "00000001"},
	{name: "fn/indexof-computed", filter: "indexof(toupper(userId), 'ER') eq 2", want: "11011000"},
	{name: "fn/trim", filter: "trim(userId) eq 'Zoë'", want: "00000001"},
	{name: "fn/tolower-unicode", filter: "tolower(userId) eq ' zoë '", want: "00000001"},
	{name: "fn/tolower-const", filter: "tolower('ABC') eq 'abc'", want: "11111111"},
	{name: "fn/ints", filter: "-1 lt +1 and 2 ge 2", want: "11111111"},
	{name: "fn/bool-compare", filter: "true eq (userId eq 'user1')", want: "11000000"},
	{name: "fn/unknown", filter: "frob(userId)", wantPos: 0},
	{name: "fn/no-parens", filter: "startswith userId", wantPos: 11},
	{name: "fn/arity", filter: "tolower(userId, 'a') eq 'b'", wantPos: 0},
	{name: "fn/arity-zero", filter: "length() eq 0", wantPos: 0},
	{name: "fn/arg-type", filter: "length(1) eq 1", wantPos: 7},
	{name: "fn/substring-arg-type", filter: "substring(userId, 'a') eq 'b'", wantPos: 18},
	{name: "fn/bad-arg-list", filter: "contains(userId 'a')", wantPos: 16},

	// Identifiers, types and syntax.
	{name: "id/unknown", filter: "foo eq 'x'", wantPos: 0},
	{name: "id/unknown-right", filter: "userId eq foo", wantPos: 10},
	{name: "id/protocol-not-supported", filter: "protocol eq 'json'", wantPos: 0},
	{name: "type/int-vs-string", filter: "userId eq 1", wantPos: 7},
	{name: "type/not-boolean", filter: "userId", wantPos: 0},
	{name: "type/groups-compare", filter: "groups eq 'a'", wantPos: 0},
	{name: "type/and-operand", filter: "userId and true", wantPos: 0},
	{name: "type/or-right-operand", filter: "true or 'x'", wantPos: 8},
	{name: "syntax/empty", filter: "", wantPos: 0},
	{name: "syntax/only-spaces", filter: "   ", wantPos: 3},
	{name: "syntax/keyword-as-value", filter: "and", wantPos: 0},
	{name: "syntax/missing-right", filter: "userId eq", wantPos: 9},
	{name: "syntax/missing-and-operand", filter: "userId eq 'a' and", wantPos: 17},
	{name: "syntax/missing-or-operand", filter: "userId eq 'a' or", wantPos: 16},
	{name: "syntax/trailing-token", filter: "userId eq 'a' 'b'", wantPos: 14},
	{name: "syntax/chained-cmp", filter: "userId eq 'a' eq 'b'", wantPos: 14},
	{name: "syntax/unclosed-paren", filter: "(userId eq 'a'", wantPos: 14},
	{name: "syntax/extra-paren", filter: "userId eq 'a')", wantPos: 13},
	{name: "syntax/bad-char", filter: "userId eq @", wantPos: 10},
	{name: "syntax/int-overflow", filter: "length(userId) eq 99999999999999999999", wantPos: 18},
	{name: "syntax/bad-number", filter: "length(userId) eq 12abc", wantPos: 18},
	{name: "syntax/non-ascii-word", filter: "userId eq 'a' é", wantPos: 14},
	{name: "syntax/too-deep", filter: strings.Repeat("(", 200) + "true" + strings.Repeat(")", 200), wantPos: 128},

	// Limits (§5.6).
	{name: "limit/clauses-at-max", filter: odataClauses(3), max: 3, want: "00000000"},
	{name: "limit/clauses-over", filter: odataClauses(4), max: 3, wantPos: 58},
	{name: "limit/default-100", filter: odataClauses(100), want: "00000000"},
	{name: "limit/default-101", filter: odataClauses(101), wantPos: 1707},
	{name: "limit/functions-count", filter: "startswith(userId, 'a') and length(userId) gt 1", max: 2, wantPos: 43},
	{name: "limit/4KiB-ok", filter: "true" + strings.Repeat(" ", FilterMaxBytes-4), want: "11111111"},
	{name: "limit/over-4KiB", filter: "true" + strings.Repeat(" ", FilterMaxBytes-3), wantPos: FilterMaxBytes},
}

func TestFilter(t *testing.T) {
	for _, tc := range odataCases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := CompileFilter(tc.filter, tc.max)
			if tc.want == "" {
				var fe *FilterError
				if !errors.As(err, &fe) {
					t.Fatalf("CompileFilter(%q) = %v, want a *FilterError at %d", tc.filter, err, tc.wantPos)
				}
				if fe.Pos != tc.wantPos {
					t.Fatalf("CompileFilter(%q): error %q at %d, want position %d", tc.filter, fe.Msg, fe.Pos, tc.wantPos)
				}
				return
			}
			if err != nil {
				t.Fatalf("CompileFilter(%q): %v", tc.filter, err)
			}
			var got strings.Builder
			for _, tg := range odataTestTargets {
				if f.Match(tg) {
					got.WriteByte('1')
				} else {
					got.WriteByte('0')
				}
			}
			if got.String() != tc.want {
				t.Fatalf("%q: matches %s, want %s", tc.filter, got.String(), tc.want)
			}
		})
	}
}

func TestFilterErrorString(t *testing.T) {
	_, err := CompileFilter("userId eq", 0)
	if got, want := err.Error(), "invalid filter at position 9: "; !strings.HasPrefix(got, want) {
		t.Fatalf("Error() = %q, want prefix %q", got, want)
	}
}

func TestFilterCountsGroups(t *testing.T) {
	for text, want := range map[string]bool{
		"length(groups) gt 1":                  true,
		"userId eq 'a' or length(groups) eq 0": true,
		"length(userId) gt 1":                  false,
		"'g' in groups":                        false,
	} {
		f, err := CompileFilter(text, 0)
		if err != nil {
			t.Fatal(err)
		}
		if f.CountsGroups() != want {
			t.Errorf("%q: CountsGroups = %v, want %v", text, !want, want)
		}
	}
}

func TestFilterNilAndEmptyTarget(t *testing.T) {
	f, err := CompileFilter("userId eq null and 'g' in groups or length(groups) eq 0", 0)
	if err != nil {
		t.Fatal(err)
	}
	if f.Match(nil) {
		t.Fatal("nil target matched")
	}
	if !f.Match(&FilterTarget{}) {
		t.Fatal("empty target (no groups, nil InGroup) did not match length(groups) eq 0")
	}
	var nf *Filter
	if !nf.Match(&FilterTarget{}) {
		t.Fatal("nil filter must match everything")
	}
}

// TestFilterConcurrent runs one filter that needs scratch space from many
// goroutines; run it with -race.
func TestFilterConcurrent(t *testing.T) {
	f, err := CompileFilter("concat(tolower(userId), connectionId) eq 'user1c1' or toupper(userId) eq 'USER1'", 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				tg := odataTestTargets[i%len(odataTestTargets)]
				want := tg.UserID == "user1" || tg.UserID == "USER1"
				if got := f.Match(tg); got != want {
					t.Errorf("Match(%q) = %v, want %v", tg.UserID, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzCompileFilter(f *testing.F) {
	for _, tc := range odataCases {
		if len(tc.filter) < 512 {
			f.Add(tc.filter, "user1", "c1", "group1")
		}
	}
	f.Add("substring(userId, 2, 3) eq concat(trim(userId), 'x')", "\xff\xfe Zoë", "", "")
	f.Fuzz(func(t *testing.T, s, user, conn, group string) {
		flt, err := CompileFilter(s, 0)
		if err != nil {
			var fe *FilterError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FilterError", err)
			}
			if fe.Pos < 0 || fe.Pos > len(s) {
				t.Fatalf("error position %d outside input of %d bytes", fe.Pos, len(s))
			}
			return
		}
		targets := []*FilterTarget{
			{},
			{ConnectionID: conn, UserID: user, HasUser: true, GroupCount: 1,
				InGroup: func(g string) bool { return g == group }},
			{ConnectionID: user, UserID: conn, HasUser: len(group)%2 == 0, GroupCount: -1},
		}
		targets = append(targets, odataTestTargets...)
		for _, tg := range targets {
			a := flt.Match(tg)
			if b := flt.Match(tg); a != b {
				t.Fatalf("Match is not deterministic for %q", s)
			}
		}
	})
}

func BenchmarkFilterMatch(b *testing.B) {
	for _, bc := range []struct{ name, filter string }{
		{"eq", "userId eq 'user1'"},
		{"groups-or", "'group1' in groups or 'group2' in groups or 'group3' in groups"},
		{"in-list-and-group", "userId in ('user1', 'user2', 'user3') and 'group1' in groups"},
		{"not-endswith", "userId ne null and not endswith(userId, 'bot')"},
		{"tolower", "tolower(userId) eq 'user1'"},
		{"concat", "concat(userId, connectionId) eq 'user1c1'"},
	} {
		f, err := CompileFilter(bc.filter, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for i := 0; b.Loop(); i++ {
				if f.Match(odataTestTargets[i%len(odataTestTargets)]) {
					n++
				}
			}
			_ = n
		})
	}
}

// BenchmarkSendFilter is the per-recipient cost a filter adds to a REST send:
// connTarget.match over registry connections (locks included), per connection.
func BenchmarkSendFilter(b *testing.B) {
	reg, err := registry.New(registry.Config{})
	if err != nil {
		b.Fatal(err)
	}
	const n = 10000
	conns := make([]*registry.Conn, n)
	for i := range conns {
		rc := &registry.Conn{ID: "conn-" + strconv.Itoa(i), Hub: "h", UserID: "user-" + strconv.Itoa(i)}
		if err := reg.Add(rc); err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 {
			reg.Join(rc, "g1")
		}
		conns[i] = rc
	}
	for _, bc := range []struct{ name, filter string }{
		{"none", ""},
		{"user-ne-null", "userId ne null"},
		{"in-groups", "'g1' in groups"},
		{"startswith", "startswith(userId, 'user-1')"},
		{"complex", "'g1' in groups or (startswith(userId, 'u') and length(groups) gt 0)"},
	} {
		var f *Filter
		if bc.filter != "" {
			if f, err = CompileFilter(bc.filter, 0); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var ct connTarget
			for i := 0; b.Loop(); i++ {
				ct.match(f, conns[i%n])
			}
		})
	}
}
