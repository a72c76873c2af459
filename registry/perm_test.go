package registry

import (
	"strings"
	"testing"
	"time"
)

func TestPermissionString(t *testing.T) {
	for _, tc := range []struct {
		p    Permission
		name string
	}{
		{PermJoinLeaveGroup, "joinLeaveGroup"},
		{PermSendToGroup, "sendToGroup"},
	} {
		if got := tc.p.String(); got != tc.name {
			t.Errorf("String() = %q, want %q", got, tc.name)
		}
		if !tc.p.Valid() {
			t.Errorf("%v not Valid", tc.p)
		}
		for _, s := range []string{tc.name, strings.ToUpper(tc.name), strings.ToLower(tc.name)} {
			if p, ok := ParsePermission(s); !ok || p != tc.p {
				t.Errorf("ParsePermission(%q) = %v, %v", s, p, ok)
			}
		}
	}
	for _, s := range []string{"", "send", "sendToGroups", "joinLeaveGroups", "webpubsub.sendToGroup"} {
		if _, ok := ParsePermission(s); ok {
			t.Errorf("ParsePermission(%q) accepted", s)
		}
	}
	for _, p := range []Permission{0, 3, 4, 255} {
		if p.Valid() {
			t.Errorf("Permission(%d) Valid", p)
		}
		if got, want := p.String(), "Permission("; !strings.HasPrefix(got, want) {
			t.Errorf("String() = %q", got)
		}
	}
}

// roleCase: after SetRoles(roles), Can(perm, group) == want for each check.
type roleCheck struct {
	perm  Permission
	group string
	want  bool
}

const (
	join = PermJoinLeaveGroup
	send = PermSendToGroup
)

func TestSetRoles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		roles  []string
		checks []roleCheck
	}{
		{"none", nil, []roleCheck{
			{join, "g", false}, {send, "g", false}, {join, "", false},
		}},
		{"joinLeaveGroup/any", []string{"webpubsub.joinLeaveGroup"}, []roleCheck{
			{join, "g", true}, {join, "a.b", true}, {join, "", true}, {send, "g", false},
		}},
		{"sendToGroup/any", []string{"webpubsub.sendToGroup"}, []roleCheck{
			{send, "g", true}, {send, "", true}, {join, "g", false},
		}},
		{"literal", []string{"webpubsub.sendToGroup.group1"}, []roleCheck{
			{send, "group1", true}, {send, "Group1", false}, {send, "group", false},
			{send, "group12", false}, {send, "", false}, {join, "group1", false},
		}},
		{"literal/dots", []string{"webpubsub.joinLeaveGroup.a.b.c"}, []roleCheck{
			{join, "a.b.c", true}, {join, "a", false}, {join, "a.b", false}, {join, "b.c", false},
		}},
		{"literal/wildcards are verbatim", []string{"webpubsub.joinLeaveGroup.chat-*"}, []roleCheck{
			{join, "chat-*", true}, {join, "chat-1", false},
		}},
		{"literal/empty group ignored", []string{"webpubsub.joinLeaveGroup."}, []roleCheck{
			{join, "", false}, {join, "g", false},
		}},
		{"token example T1", []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.group1"}, []roleCheck{
			{join, "anything", true}, {send, "group1", true}, {send, "group2", false},
		}},
		{"both perms on one group", []string{"webpubsub.joinLeaveGroup.g", "webpubsub.sendToGroup.g"}, []roleCheck{
			{join, "g", true}, {send, "g", true},
		}},
		{"unknown roles ignored", []string{
			"webpubsub.joinLeaveGroupx", "webpubsub.joinLeaveGroups", "webpubsub.sendToGroups",
			"WebPubSub.JoinLeaveGroup", "webpubsub.sendtogroup", "admin", "", "webpubsub.",
		}, []roleCheck{
			{join, "g", false}, {send, "g", false}, {join, "", false}, {send, "", false},
		}},
		// Pattern roles: examples of concept-wildcard-group-roles, cited in §2.5.
		{"pattern chat-*", []string{"webpubsub.sendToGroups.chat-*"}, []roleCheck{
			{send, "chat-1", true}, {send, "chat-room", true}, {send, "chat-", true},
			{send, "chat.1", false}, {send, "xchat-1", false}, {send, "chat-1.x", false},
			{join, "chat-1", false},
		}},
		{"pattern clientA.*", []string{"webpubsub.joinLeaveGroups.clientA.*"}, []roleCheck{
			{join, "clientA.alpha", true}, {join, "clientA.1", true}, {join, "clientA.", true},
			{join, "clientA.alpha.room1", false}, {join, "clientB.alpha", false}, {join, "clientA", false},
		}},
		{"pattern clientA.**", []string{"webpubsub.joinLeaveGroups.clientA.**"}, []roleCheck{
			{join, "clientA.alpha", true}, {join, "clientA.alpha.room1", true},
			{join, "clientB.anything", false}, {join, "clientA", false},
		}},
		{"pattern ?", []string{"webpubsub.sendToGroups.clientA.rooms.?1"}, []roleCheck{
			{send, "clientA.rooms.a1", true}, {send, "clientA.rooms.11", true},
			{send, "clientA.rooms.1", false}, {send, "clientA.rooms.a.1", false},
			{send, "clientA.rooms..1", false}, {send, "clientA.rooms.ab1", false},
			{send, "clientA.rooms.é1", true}, // ? is one character, not one byte
		}},
		{"pattern escape *", []string{`webpubsub.sendToGroups.literal\*star`}, []roleCheck{
			{send, "literal*star", true}, {send, "literalXstar", false}, {send, `literal\*star`, false},
		}},
		{"pattern escape ?", []string{`webpubsub.sendToGroups.project\?1`}, []roleCheck{
			{send, "project?1", true}, {send, "projectX1", false},
		}},
		{"pattern escape backslash", []string{`webpubsub.sendToGroups.a\\*`}, []roleCheck{
			{send, `a\`, true}, {send, `a\bc`, true}, {send, `a\b.c`, false}, {send, "a", false},
		}},
		{"pattern escape then star", []string{`webpubsub.sendToGroups.project\*123`}, []roleCheck{
			{send, "project*123", true}, {send, "project123", false}, {send, "projectX123", false},
		}},
		{"pattern bad escape grants nothing", []string{`webpubsub.sendToGroups.a\b*`, `webpubsub.sendToGroups.a*\`}, []roleCheck{
			{send, `a\b`, false}, {send, "ab", false}, {send, "a", false}, {send, `a\`, false},
		}},
		{"pattern **", []string{"webpubsub.sendToGroups.**"}, []roleCheck{
			{send, "a", true}, {send, "a.b.c", true}, {send, ".", true}, {send, "", false},
		}},
		{"pattern * alone", []string{"webpubsub.sendToGroups.*"}, []roleCheck{
			{send, "abc", true}, {send, "a.b", false}, {send, ".", false},
		}},
		{"pattern middle **", []string{"webpubsub.sendToGroups.t1.**.room"}, []roleCheck{
			{send, "t1.x.room", true}, {send, "t1.x.y.room", true}, {send, "t1..room", true},
			{send, "t1.room", false}, {send, "t1.x.rooms", false}, {send, "t2.x.room", false},
		}},
		{"pattern ** then * needs a later split", []string{"webpubsub.sendToGroups.x**y*z"}, []roleCheck{
			// "y" at 1 would leave ".y" for the '*': only y at 3 works.
			{send, "xy.yz", true}, {send, "xyz", true}, {send, "xy.z", false}, {send, "x.yq.z", false},
		}},
		{"pattern *.*", []string{"webpubsub.joinLeaveGroups.*.*"}, []roleCheck{
			{join, "a.b", true}, {join, ".", true}, {join, "a", false}, {join, "a.b.c", false},
		}},
		{"pattern five stars allowed", []string{"webpubsub.sendToGroups.**.**.*"}, []roleCheck{
			{send, "a.b.c.d", true}, {send, "..", true}, {send, "x", false}, {send, "a.b", false},
		}},
		{"pattern five single stars", []string{"webpubsub.sendToGroups.*-*-*-*-*"}, []roleCheck{
			{send, "a-b-c-d-e", true}, {send, "----", true}, {send, "a-b-c-d", false},
		}},
		{"pattern six stars grants nothing", []string{"webpubsub.sendToGroups.*-*-*-*-*-*", "webpubsub.joinLeaveGroups.***.***"}, []roleCheck{
			{send, "a-b-c-d-e-f", false}, {send, "-----", false}, {join, "a.b", false},
		}},
		{"pattern escaped stars do not count", []string{`webpubsub.sendToGroups.\*\*\*\*\*\**`}, []roleCheck{
			{send, "******", true}, {send, "******x", true}, {send, "*****", false},
		}},
		{"pattern three stars", []string{"webpubsub.sendToGroups.a***b"}, []roleCheck{
			{send, "ab", true}, {send, "a.x.b", true},
		}},
		{"pattern without wildcard is literal", []string{"webpubsub.sendToGroups.exact.name"}, []roleCheck{
			{send, "exact.name", true}, {send, "exact.names", false}, {send, "exact", false},
		}},
		{"pattern empty matches nothing", []string{"webpubsub.sendToGroups."}, []roleCheck{
			{send, "", false}, {send, "a", false},
		}},
		{"pattern and literal mixed", []string{"webpubsub.sendToGroups.a.*", "webpubsub.sendToGroup.b", "webpubsub.joinLeaveGroups.**"}, []roleCheck{
			{send, "a.x", true}, {send, "b", true}, {send, "c", false}, {join, "c.d", true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Conn{ID: "c", Hub: "h"}
			c.SetRoles(tc.roles)
			for _, ck := range tc.checks {
				if got := c.Can(ck.perm, ck.group); got != ck.want {
					t.Errorf("roles %q: Can(%v, %q) = %v, want %v", tc.roles, ck.perm, ck.group, got, ck.want)
				}
			}
		})
	}
}

func TestSetRolesReplaces(t *testing.T) {
	c := &Conn{}
	c.SetRoles([]string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.a", "webpubsub.sendToGroups.b.*"})
	c.SetRoles([]string{"webpubsub.sendToGroup.z"})
	if c.Can(join, "x") || c.Can(send, "a") || c.Can(send, "b.c") || !c.Can(send, "z") {
		t.Error("SetRoles must replace earlier roles (upstream connect roles replace token roles)")
	}
	c.SetRoles([]string{})
	if c.Can(send, "z") {
		t.Error("empty roles must remove all")
	}
}

func TestGrantRevoke(t *testing.T) {
	c := &Conn{}
	c.Grant(send, "g1")
	c.Grant(send, "g1") // idempotent
	c.Grant(join, "g1")
	c.Grant(send, "g2")
	if !c.Can(send, "g1") || !c.Can(join, "g1") || !c.Can(send, "g2") || c.Can(send, "g3") || c.Can(send, "") {
		t.Fatal("literal grants wrong")
	}
	c.Grant(send, "g*") // REST grants are literal only
	if c.Can(send, "gx") || !c.Can(send, "g*") {
		t.Fatal("REST grant treated as a pattern")
	}

	c.Revoke(send, "g1")
	if c.Can(send, "g1") || !c.Can(join, "g1") || !c.Can(send, "g2") {
		t.Fatal("Revoke(send, g1) must remove only that grant")
	}
	c.Revoke(send, "g1") // idempotent
	c.Revoke(send, "nope")

	c.Grant(send, "")
	if !c.Can(send, "anything") || !c.Can(send, "") {
		t.Fatal("hub-wide grant")
	}
	c.Revoke(send, "g2")
	if !c.Can(send, "g2") {
		t.Fatal("hub-wide grant still covers a revoked literal")
	}
	c.Revoke(send, "")
	if c.Can(send, "g2") || c.Can(send, "anything") || c.Can(send, "g*") {
		t.Fatal("Revoke(send, \"\") must clear hub-wide and group-specific grants (rest-api.md §9.3)")
	}
	if !c.Can(join, "g1") {
		t.Fatal("Revoke(send, \"\") touched joinLeaveGroup")
	}

	// Revoke without a group also clears wildcard roles of that permission.
	c.SetRoles([]string{"webpubsub.sendToGroups.t.*", "webpubsub.joinLeaveGroups.t.*"})
	c.Revoke(send, "t.x")
	if !c.Can(send, "t.x") {
		t.Fatal("literal revoke does not override a matching pattern role")
	}
	c.Revoke(send, "")
	if c.Can(send, "t.x") || !c.Can(join, "t.x") {
		t.Fatal("Revoke(send, \"\") must drop send patterns only")
	}

	// Invalid permissions are ignored.
	c.Grant(0, "")
	c.Grant(3, "g")
	c.Revoke(0, "")
	if c.Can(0, "g") || c.Can(3, "g") {
		t.Fatal("invalid permission granted")
	}
}

func TestCompilePattern(t *testing.T) {
	for _, tc := range []struct {
		in    string
		ok    bool
		stars int
	}{
		{"", true, 0},
		{"a", true, 0},
		{"*", true, 1},
		{"**", true, 1},
		{"***", true, 2},
		{"*****", true, 3},
		{"******", false, 0},
		{`\*\*\*\*\*\*`, true, 0},
		{`\`, false, 0},
		{`a\x`, false, 0},
		{"a\xffb", false, 0},
	} {
		p, ok := compilePattern(tc.in)
		if ok != tc.ok {
			t.Errorf("compilePattern(%q) ok = %v, want %v", tc.in, ok, tc.ok)
			continue
		}
		if ok && len(p.doubles) != tc.stars {
			t.Errorf("compilePattern(%q): %d star tokens, want %d", tc.in, len(p.doubles), tc.stars)
		}
	}
}

// A hostile group name must not make matching slow: the matcher never backtracks.
func TestPatternNoBacktracking(t *testing.T) {
	p, ok := compilePattern("*a**a**b")
	if !ok {
		t.Fatal("compile")
	}
	name := strings.Repeat("a", 1024)
	start := time.Now()
	for range 100 {
		if p.match(name) {
			t.Fatal("matched")
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("100 matches took %v", d)
	}
	long := strings.Repeat("a.", 5000) + "b"
	if !p.match(long) {
		t.Error("long name (heap bitsets) did not match")
	}
}
