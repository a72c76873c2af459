package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// Constants of client-examples.md E0.
const (
	testPrimaryKey   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"
	testSecondaryKey = "SECONDARYKEY0123456789abcdefghijklmnopqrstu"
)

var testNow = time.Unix(1700000600, 0)

// Vectors of client-examples.md E1.2.
const (
	tokT1  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjpbIndlYnB1YnN1Yi5qb2luTGVhdmVHcm91cCIsIndlYnB1YnN1Yi5zZW5kVG9Hcm91cC5ncm91cDEiXSwid2VicHVic3ViLmdyb3VwIjpbImdyb3VwMSJdLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwiYXVkIjoiaHR0cDovL2xvY2FsaG9zdDo4MDgwL2NsaWVudC9odWJzL2h1YjEiLCJzdWIiOiJ1c2VyMSJ9.tTk2NpqAa0spEHOxcOBX187LVRmnx8Hbz9pEAvFtEUw"
	tokT2  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwiYXVkIjoiaHR0cDovL2xvY2FsaG9zdDo4MDgwL2NsaWVudC9odWJzL2h1YjEifQ.zK_Jktu0nUfq05YeIBXoxRhxR3AWOy-Ztyo5TV32Cdo"
	tokT3  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyMSIsInJvbGUiOlsid2VicHVic3ViLnNlbmRUb0dyb3VwIl0sIm5iZiI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAzNjAwLCJpYXQiOjE3MDAwMDAwMDAsImF1ZCI6Imh0dHA6Ly9sb2NhbGhvc3Q6ODA4MC9jbGllbnQvaHVicy9odWIxIn0.ArynfdNd5DS5cEEyvNdOVF9jmAHhxJ5TaLZEvuFw_cw"
	tokT4  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwiYXVkIjoiaHR0cDovL2xvY2FsaG9zdDo4MDgwL2NsaWVudC9odWJzL2h1YjEifQ.-CAo0Pl6XSu0GYx9wYPKDlrDyc2VqSq_cwoNPoZ2OW8"
	tokT5  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJodHRwOi8vbG9jYWxob3N0OjgwODAvY2xpZW50L2h1YnMvaHViMSIsImV4cCI6MTcwMDAwMzYwMCwic3ViIjoidXNlcjIiLCJyb2xlIjoid2VicHVic3ViLmpvaW5MZWF2ZUdyb3VwLnJvb20xIn0.skQeZZxjX8U5y2ueUcxet1HQv81tfcYaJO5X64NVtXM"
	tokT6  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJodHRwOi8vTE9DQUxIT1NUOjgwODAvY2xpZW50L2h1YnMvaHViMS8iLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMH0.WMqzQHwoMpZAgPXP4VTrwap52dRBnAw33QASw3dEoMM"
	tokT7  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJodHRwOi8vbG9jYWxob3N0OjgwODAvY2xpZW50L2h1YnMvaHViMiIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAzNjAwfQ.xCJVLXac9rsusoAJYR4jPtYYxMTaZ32Lcdj_zgH16C8"
	tokT8  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOlsiaHR0cHM6Ly9leGFtcGxlLmludmFsaWQveCIsImh0dHA6Ly9sb2NhbGhvc3Q6ODA4MC9jbGllbnQvaHVicy9odWIxIl0sImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAzNjAwfQ.afeRlCcYla1wR6C-W2k2Q3cb6BRKA1TP-69Tmv8xoIQ"
	tokT9  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJodHRwOi8vbG9jYWxob3N0OjgwODAvY2xpZW50L2h1YnMvaHViMSIsImlhdCI6MTcwMDAwMDAwMH0.mJ7p68gxmC7XkaLa3KExTWbSnWJmwUUnQD-GGaB1Vp0"
	tokT10 = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJodHRwOi8vbG9jYWxob3N0OjgwODAvY2xpZW50L2h1YnMvaHViMSIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAzNjAwfQ.a54Lc4KjAFdYHl805eLLP__ipZy40h4RG8zVND_-FQQ"
	tokT11 = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJhdWQiOiJodHRwOi8vbG9jYWxob3N0OjgwODAvY2xpZW50L2h1YnMvaHViMSIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAzNjAwfQ."

	// REST vector of rest-api.md §2.1.
	tokREST = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwiYXVkIjoiaHR0cDovL2xvY2FsaG9zdDo4MDgwL2FwaS9odWJzL2NoYXQvOnNlbmQ_YXBpLXZlcnNpb249MjAyNC0xMi0wMSJ9.md_kyvmghoXMP7fZ1djIXxMyhU63EnRPdKDq_Rhb6K0"
)

func testVerifier(t testing.TB) *TokenVerifier {
	t.Helper()
	return NewTokenVerifier(Keys{Primary: testPrimaryKey, Secondary: testSecondaryKey}, 300*time.Second, nil)
}

// signRaw signs an arbitrary header and payload with key, for malformed-token cases.
func signRaw(t testing.TB, key, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	return signed + "." + enc.EncodeToString(hmacSHA256(key, signed))
}

func hmacSHA256(key, msg string) []byte {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(msg))
	return mac.Sum(nil)
}

func TestVerifyClientVectorsE1(t *testing.T) {
	v := testVerifier(t)
	cases := []struct {
		name   string
		token  string
		hub    string
		now    time.Time
		ok     bool
		user   string
		roles  []string
		groups []string
	}{
		{name: "T1/js-style", token: tokT1, hub: "hub1", now: testNow, ok: true, user: "user1",
			roles: []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.group1"}, groups: []string{"group1"}},
		{name: "T1/hub-case-insensitive", token: tokT1, hub: "HUB1", now: testNow, ok: true, user: "user1",
			roles: []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.group1"}, groups: []string{"group1"}},
		{name: "T2/anonymous", token: tokT2, hub: "hub1", now: testNow, ok: true},
		{name: "T3/dotnet-nbf", token: tokT3, hub: "hub1", now: testNow, ok: true, user: "user1",
			roles: []string{"webpubsub.sendToGroup"}},
		{name: "T3/nbf-minus-skew", token: tokT3, hub: "hub1", now: time.Unix(1699999700, 0), ok: true, user: "user1",
			roles: []string{"webpubsub.sendToGroup"}},
		{name: "T3/before-nbf-minus-skew", token: tokT3, hub: "hub1", now: time.Unix(1699999699, 0)},
		{name: "T4/wrong-key", token: tokT4, hub: "hub1", now: testNow},
		{name: "T5/role-string-no-iat", token: tokT5, hub: "hub1", now: testNow, ok: true, user: "user2",
			roles: []string{"webpubsub.joinLeaveGroup.room1"}},
		{name: "T6/host-upper-trailing-slash", token: tokT6, hub: "hub1", now: testNow, ok: true},
		{name: "T7/other-hub", token: tokT7, hub: "hub1", now: testNow},
		{name: "T7/own-hub", token: tokT7, hub: "hub2", now: testNow, ok: true},
		{name: "T8/aud-array", token: tokT8, hub: "hub1", now: testNow, ok: true},
		{name: "T9/no-exp", token: tokT9, hub: "hub1", now: testNow},
		{name: "T10/secondary-key", token: tokT10, hub: "hub1", now: testNow, ok: true},
		{name: "T11/alg-none", token: tokT11, hub: "hub1", now: testNow},
		{name: "T1/exp+301s", token: tokT1, hub: "hub1", now: time.Unix(1700003901, 0)},
		{name: "T1/exp+300s", token: tokT1, hub: "hub1", now: time.Unix(1700003900, 0), ok: true, user: "user1",
			roles: []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.group1"}, groups: []string{"group1"}},
		{name: "T1/exp+299s", token: tokT1, hub: "hub1", now: time.Unix(1700003899, 0), ok: true, user: "user1",
			roles: []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.group1"}, groups: []string{"group1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cc, err := v.VerifyClient(tc.token, tc.hub, "", tc.now)
			if !tc.ok {
				if !errors.Is(err, ErrTokenInvalid) {
					t.Fatalf("err = %v, want ErrTokenInvalid", err)
				}
				if errors.Is(err, ErrTokenBadGroup) {
					t.Fatalf("err = %v, must not be ErrTokenBadGroup", err)
				}
				if strings.Contains(err.Error(), tc.token) {
					t.Fatal("error message contains the token")
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyClient: %v", err)
			}
			if cc.HasUser != (tc.user != "") || cc.UserID != tc.user {
				t.Errorf("user = %q (HasUser=%v), want %q", cc.UserID, cc.HasUser, tc.user)
			}
			if !slices.Equal(cc.Roles, tc.roles) {
				t.Errorf("roles = %q, want %q", cc.Roles, tc.roles)
			}
			if !slices.Equal(cc.Groups, tc.groups) {
				t.Errorf("groups = %q, want %q", cc.Groups, tc.groups)
			}
			if !cc.Expires.Equal(time.Unix(1700003600, 0)) {
				t.Errorf("Expires = %v", cc.Expires)
			}
		})
	}
}

func TestVerifyClientSecondaryKeyNotConfigured(t *testing.T) {
	v := NewTokenVerifier(Keys{Primary: testPrimaryKey}, 0, nil)
	if _, err := v.VerifyClient(tokT10, "hub1", "", testNow); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("T10 without secondary key: err = %v, want ErrTokenInvalid", err)
	}
	if _, err := v.VerifyClient(tokT1, "hub1", "", testNow); err != nil {
		t.Fatalf("T1: %v", err)
	}
}

func TestVerifyClientNoKeys(t *testing.T) {
	v := NewTokenVerifier(Keys{}, 0, nil)
	if _, err := v.VerifyClient(tokT1, "hub1", "", testNow); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("err = %v, want ErrTokenInvalid", err)
	}
}

func TestVerifyClientDefaultSkew(t *testing.T) {
	v := NewTokenVerifier(Keys{Primary: testPrimaryKey}, 0, nil)
	if _, err := v.VerifyClient(tokT1, "hub1", "", time.Unix(1700003900, 0)); err != nil {
		t.Fatalf("exp+300s with default skew: %v", err)
	}
	if _, err := v.VerifyClient(tokT1, "hub1", "", time.Unix(1700003901, 0)); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("exp+301s with default skew: err = %v", err)
	}
	strict := NewTokenVerifier(Keys{Primary: testPrimaryKey}, -1, nil)
	if _, err := strict.VerifyClient(tokT1, "hub1", "", time.Unix(1700003601, 0)); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("negative skew, exp+1s: err = %v", err)
	}
}

func TestVerifyClientExtraClaims(t *testing.T) {
	v := testVerifier(t)
	tok := signRaw(t, testPrimaryKey, `{"alg":"HS256","typ":"JWT"}`,
		`{"aud":"http://localhost:8080/client/hubs/hub1","exp":1700003600,"iat":1700000000,"sub":"u",`+
			`"http://schemas.microsoft.com/ws/2008/06/identity/claims/role":["r2"],"role":"r1",`+
			`"webpubsub.group":"g1","tenant":"contoso","n":12345678901234567890,"tags":["a","b"]}`)
	cc, err := v.VerifyClient(tok, "hub1", "", testNow)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cc.Roles, []string{"r1", "r2"}) {
		t.Errorf("roles = %q, want [r1 r2]", cc.Roles)
	}
	if !slices.Equal(cc.Groups, []string{"g1"}) {
		t.Errorf("groups = %q", cc.Groups)
	}
	for _, k := range []string{"sub", "role", "webpubsub.group", roleClaimURI} {
		if _, ok := cc.Extra[k]; ok {
			t.Errorf("Extra carries %q", k)
		}
	}
	cl := cc.ConnectClaims()
	want := map[string][]string{
		"sub": {"u"}, "role": {"r1", "r2"}, "webpubsub.group": {"g1"},
		"aud": {"http://localhost:8080/client/hubs/hub1"}, "exp": {"1700003600"}, "iat": {"1700000000"},
		"tenant": {"contoso"}, "n": {"12345678901234567890"}, "tags": {"a", "b"},
	}
	if len(cl) != len(want) {
		t.Errorf("ConnectClaims = %q, want %q", cl, want)
	}
	for k, w := range want {
		if !slices.Equal(cl[k], w) {
			t.Errorf("ConnectClaims[%q] = %q, want %q", k, cl[k], w)
		}
	}
}

func TestVerifyClientBadGroup(t *testing.T) {
	v := testVerifier(t)
	for name, groups := range map[string]string{
		"empty":      `[""]`,
		"whitespace": `"  \t"`,
		"too-long":   `["` + strings.Repeat("g", 1025) + `"]`,
		"second":     `["ok",""]`,
	} {
		t.Run(name, func(t *testing.T) {
			tok := signRaw(t, testPrimaryKey, `{"alg":"HS256","typ":"JWT"}`,
				`{"aud":"http://localhost:8080/client/hubs/hub1","exp":1700003600,"webpubsub.group":`+groups+`}`)
			_, err := v.VerifyClient(tok, "hub1", "", testNow)
			if !errors.Is(err, ErrTokenBadGroup) || !errors.Is(err, ErrTokenInvalid) {
				t.Fatalf("err = %v, want ErrTokenBadGroup and ErrTokenInvalid", err)
			}
		})
	}
	tok := signRaw(t, testPrimaryKey, `{"alg":"HS256","typ":"JWT"}`,
		`{"aud":"http://localhost:8080/client/hubs/hub1","exp":1700003600,"webpubsub.group":["`+strings.Repeat("é", 1024)+`"]}`)
	if _, err := v.VerifyClient(tok, "hub1", "", testNow); err != nil {
		t.Fatalf("1024-character group: %v", err)
	}
}

func TestVerifyClientMalformed(t *testing.T) {
	v := testVerifier(t)
	const hdr = `{"alg":"HS256","typ":"JWT"}`
	const aud = `"aud":"http://localhost:8080/client/hubs/hub1"`
	t1Parts := strings.Split(tokT1, ".")
	tamperedPayload := base64.RawURLEncoding.EncodeToString([]byte(
		`{"role":["webpubsub.joinLeaveGroup","webpubsub.sendToGroup"],"webpubsub.group":["group1"],"iat":1700000000,"exp":1700003600,"aud":"http://localhost:8080/client/hubs/hub1","sub":"user1"}`))
	// The last character of a 43-character signature carries 4 unused bits.
	sig := []byte(t1Parts[2])
	sig[len(sig)-1] ^= 1
	cases := map[string]string{
		"empty":              "",
		"one-part":           "abc",
		"two-parts":          t1Parts[0] + "." + t1Parts[1],
		"four-parts":         tokT1 + ".x",
		"tampered-payload":   t1Parts[0] + "." + tamperedPayload + "." + t1Parts[2],
		"non-canonical-sig":  t1Parts[0] + "." + t1Parts[1] + "." + string(sig),
		"short-sig":          t1Parts[0] + "." + t1Parts[1] + "." + t1Parts[2][:40],
		"padded-sig":         tokT1 + "=",
		"alg-HS512":          signRaw(t, testPrimaryKey, `{"alg":"HS512","typ":"JWT"}`, `{`+aud+`,"exp":1700003600}`),
		"alg-RS256":          signRaw(t, testPrimaryKey, `{"alg":"RS256","typ":"JWT"}`, `{`+aud+`,"exp":1700003600}`),
		"alg-missing":        signRaw(t, testPrimaryKey, `{"typ":"JWT"}`, `{`+aud+`,"exp":1700003600}`),
		"alg-number":         signRaw(t, testPrimaryKey, `{"alg":1}`, `{`+aud+`,"exp":1700003600}`),
		"header-not-json":    signRaw(t, testPrimaryKey, `HS256`, `{`+aud+`,"exp":1700003600}`),
		"crit":               signRaw(t, testPrimaryKey, `{"alg":"HS256","crit":["b64"],"b64":false}`, `{`+aud+`,"exp":1700003600}`),
		"payload-array":      signRaw(t, testPrimaryKey, hdr, `[1]`),
		"payload-null":       signRaw(t, testPrimaryKey, hdr, `null`),
		"payload-not-json":   signRaw(t, testPrimaryKey, hdr, `{`),
		"exp-string":         signRaw(t, testPrimaryKey, hdr, `{`+aud+`,"exp":"1700003600"}`),
		"nbf-string":         signRaw(t, testPrimaryKey, hdr, `{`+aud+`,"exp":1700003600,"nbf":"x"}`),
		"iat-string":         signRaw(t, testPrimaryKey, hdr, `{`+aud+`,"exp":1700003600,"iat":"x"}`),
		"no-aud":             signRaw(t, testPrimaryKey, hdr, `{"exp":1700003600}`),
		"aud-number":         signRaw(t, testPrimaryKey, hdr, `{"aud":1,"exp":1700003600}`),
		"aud-path-only":      signRaw(t, testPrimaryKey, hdr, `{"aud":"/client/hubs/hub1","exp":1700003600}`),
		"aud-ftp":            signRaw(t, testPrimaryKey, hdr, `{"aud":"ftp://h/client/hubs/hub1","exp":1700003600}`),
		"aud-no-host":        signRaw(t, testPrimaryKey, hdr, `{"aud":"http:///client/hubs/hub1","exp":1700003600}`),
		"aud-hub-prefix":     signRaw(t, testPrimaryKey, hdr, `{"aud":"http://h/client/hubs/hub10","exp":1700003600}`),
		"aud-mqtt":           signRaw(t, testPrimaryKey, hdr, `{"aud":"http://h/clients/mqtt/hubs/hub1","exp":1700003600}`),
		"aud-array-none":     signRaw(t, testPrimaryKey, hdr, `{"aud":["http://h/x",2],"exp":1700003600}`),
		"sub-number":         signRaw(t, testPrimaryKey, hdr, `{`+aud+`,"exp":1700003600,"sub":1}`),
		"role-number":        signRaw(t, testPrimaryKey, hdr, `{`+aud+`,"exp":1700003600,"role":[1]}`),
		"role-object":        signRaw(t, testPrimaryKey, hdr, `{`+aud+`,"exp":1700003600,"role":{}}`),
		"group-number":       signRaw(t, testPrimaryKey, hdr, `{`+aud+`,"exp":1700003600,"webpubsub.group":[1]}`),
		"key-base64-decoded": signWithDecodedKey(t),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := v.VerifyClient(tok, "hub1", "", testNow)
			if !errors.Is(err, ErrTokenInvalid) {
				t.Fatalf("err = %v, want ErrTokenInvalid", err)
			}
			if errors.Is(err, ErrTokenBadGroup) {
				t.Fatalf("err = %v, must not be ErrTokenBadGroup", err)
			}
		})
	}
}

// signWithDecodedKey signs T2's payload with the base64-decoded primary key, which
// client-protocol.md §2.1 says is wrong.
func signWithDecodedKey(t *testing.T) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(testPrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	return signRaw(t, string(raw), `{"alg":"HS256","typ":"JWT"}`,
		`{"iat":1700000000,"exp":1700003600,"aud":"http://localhost:8080/client/hubs/hub1"}`)
}

func TestVerifyClientUnknownKid(t *testing.T) {
	v := testVerifier(t)
	tok := signRaw(t, testSecondaryKey, `{"alg":"HS256","typ":"JWT","kid":"no-such-key"}`,
		`{"aud":"http://localhost:8080/client/hubs/hub1","exp":1700003600}`)
	if _, err := v.VerifyClient(tok, "hub1", "", testNow); err != nil {
		t.Fatalf("unknown kid: %v", err)
	}
}

func TestVerifyClientAudience(t *testing.T) {
	sign := func(aud string) string {
		return signRaw(t, testPrimaryKey, `{"alg":"HS256","typ":"JWT"}`, `{"aud":`+aud+`,"exp":1700003600}`)
	}
	cases := []struct {
		name     string
		aud      string
		hub      string
		basePath string
		strict   []string
		ok       bool
	}{
		{name: "https", aud: `"https://contoso.webpubsub.azure.com/client/hubs/hub1"`, hub: "hub1", ok: true},
		{name: "wss-scheme", aud: `"wss://h/client/hubs/hub1"`, hub: "hub1", ok: true},
		{name: "path-upper", aud: `"http://h/CLIENT/Hubs/Hub1"`, hub: "hub1", ok: true},
		{name: "query-ignored", aud: `"http://h/client/hubs/hub1?x=1"`, hub: "hub1", ok: true},
		{name: "two-trailing-slashes", aud: `"http://h/client/hubs/hub1//"`, hub: "hub1"},
		{name: "escaped-hub", aud: "\"http://h/client/hubs/a%60b\"", hub: "a`b", ok: true},
		{name: "bad-escape", aud: `"http://h/client/hubs/hub1%zz"`, hub: "hub1"},
		{name: "base-path", aud: `"https://h/webpubsub/client/hubs/hub1"`, hub: "hub1", basePath: "/webpubsub", ok: true},
		{name: "base-path-case", aud: `"https://h/WebPubSub/client/hubs/hub1/"`, hub: "hub1", basePath: "/webpubsub", ok: true},
		{name: "base-path-absent-in-aud", aud: `"https://h/client/hubs/hub1"`, hub: "hub1", basePath: "/webpubsub", ok: true},
		{name: "other-prefix", aud: `"https://h/other/client/hubs/hub1"`, hub: "hub1", basePath: "/webpubsub"},
		{name: "strict-match", aud: `"http://LOCALHOST:8080/client/hubs/hub1"`, hub: "hub1",
			strict: []string{"http://localhost:8080"}, ok: true},
		{name: "strict-default-port", aud: `"https://wps.example.com:443/client/hubs/hub1"`, hub: "hub1",
			strict: []string{"http://localhost:8080", "https://wps.example.com/"}, ok: true},
		{name: "strict-ws-equals-http", aud: `"ws://localhost:8080/client/hubs/hub1"`, hub: "hub1",
			strict: []string{"http://localhost:8080"}, ok: true},
		{name: "strict-other-host", aud: `"http://evil:8080/client/hubs/hub1"`, hub: "hub1",
			strict: []string{"http://localhost:8080"}},
		{name: "strict-other-port", aud: `"http://localhost:8081/client/hubs/hub1"`, hub: "hub1",
			strict: []string{"http://localhost:8080"}},
		{name: "strict-other-scheme", aud: `"https://localhost:8080/client/hubs/hub1"`, hub: "hub1",
			strict: []string{"http://localhost:8080"}},
		{name: "strict-array", aud: `["http://evil/client/hubs/hub1","http://localhost:8080/client/hubs/hub1"]`, hub: "hub1",
			strict: []string{"http://localhost:8080"}, ok: true},
		{name: "strict-empty-entry-ignored", aud: `"http://any/client/hubs/hub1"`, hub: "hub1",
			strict: []string{""}, ok: true},
		{name: "strict-invalid-entry-fails-closed", aud: `"http://any/client/hubs/hub1"`, hub: "hub1",
			strict: []string{"not a url"}},
		{name: "strict-ipv6", aud: `"http://[::1]:80/client/hubs/hub1"`, hub: "hub1",
			strict: []string{"http://[::1]"}, ok: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := NewTokenVerifier(Keys{Primary: testPrimaryKey}, 0, tc.strict)
			_, err := v.VerifyClient(sign(tc.aud), tc.hub, tc.basePath, testNow)
			if tc.ok && err != nil {
				t.Fatalf("VerifyClient: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrTokenInvalid) {
				t.Fatalf("err = %v, want ErrTokenInvalid", err)
			}
		})
	}
}

func TestVerifyREST(t *testing.T) {
	v := testVerifier(t)
	cases := []struct {
		name string
		tok  string
		path string
		now  time.Time
		ok   bool
	}{
		{name: "vector", tok: tokREST, path: "/api/hubs/chat/:send", now: testNow, ok: true},
		{name: "vector/with-query", tok: tokREST, path: "/api/hubs/chat/:send?api-version=2024-12-01", now: testNow, ok: true},
		{name: "vector/trailing-slash", tok: tokREST, path: "/api/hubs/chat/:send/", now: testNow, ok: true},
		{name: "vector/case", tok: tokREST, path: "/API/Hubs/Chat/:SEND", now: testNow, ok: true},
		{name: "vector/other-path", tok: tokREST, path: "/api/hubs/chat/:closeConnections", now: testNow},
		{name: "vector/other-hub", tok: tokREST, path: "/api/hubs/chat2/:send", now: testNow},
		{name: "vector/expired", tok: tokREST, path: "/api/hubs/chat/:send", now: time.Unix(1700003901, 0)},
		{name: "vector/within-skew", tok: tokREST, path: "/api/hubs/chat/:send", now: time.Unix(1700003899, 0), ok: true},
		{name: "client-token", tok: tokT1, path: "/api/hubs/chat/:send", now: testNow},
		{name: "escaped-user", path: "/api/hubs/chat/users/user%2F1%20x/:send", now: testNow, ok: true,
			tok: mustSignREST(t, testSecondaryKey, "http://localhost:8080/api/hubs/chat/users/user%2F1%20x/:send?api-version=2024-12-01")},
		{name: "escaped-vs-decoded", path: "/api/hubs/chat/users/user/1 x/:send", now: testNow,
			tok: mustSignREST(t, testPrimaryKey, "http://localhost:8080/api/hubs/chat/users/user%2F1%20x/:send")},
		{name: "escape-hex-case", path: "/api/hubs/chat/users/user%2f1/:send", now: testNow, ok: true,
			tok: mustSignREST(t, testPrimaryKey, "http://localhost:8080/api/hubs/chat/users/user%2F1/:send")},
		{name: "base-path", path: "/prefix/api/hubs/chat/:send", now: testNow, ok: true,
			tok: mustSignREST(t, testPrimaryKey, "https://h/prefix/api/hubs/chat/:send")},
		{name: "base-path-missing", path: "/prefix/api/hubs/chat/:send", now: testNow,
			tok: mustSignREST(t, testPrimaryKey, "https://h/api/hubs/chat/:send")},
		{name: "wrong-key", path: "/api/hubs/chat/:send", now: testNow,
			tok: mustSignREST(t, "wrong-key", "http://localhost:8080/api/hubs/chat/:send")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := v.VerifyREST(tc.tok, tc.path, tc.now)
			if tc.ok && err != nil {
				t.Fatalf("VerifyREST: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrTokenInvalid) {
				t.Fatalf("err = %v, want ErrTokenInvalid", err)
			}
		})
	}
}

func TestVerifyRESTStrictHost(t *testing.T) {
	v := NewTokenVerifier(Keys{Primary: testPrimaryKey}, 0, []string{"http://localhost:8080"})
	if err := v.VerifyREST(tokREST, "/api/hubs/chat/:send", testNow); err != nil {
		t.Fatalf("vector: %v", err)
	}
	other := mustSignREST(t, testPrimaryKey, "http://proxy:8080/api/hubs/chat/:send")
	if err := v.VerifyREST(other, "/api/hubs/chat/:send", testNow); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("other host: err = %v, want ErrTokenInvalid", err)
	}
}

func mustSignREST(t *testing.T, key, url string) string {
	t.Helper()
	tok, err := SignRESTToken(key, url, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestSignRESTTokenVector(t *testing.T) {
	got := mustSignREST(t, testPrimaryKey, "http://localhost:8080/api/hubs/chat/:send?api-version=2024-12-01")
	if got != tokREST {
		t.Fatalf("SignRESTToken =\n%s\nwant\n%s", got, tokREST)
	}
}

func TestSignClientTokenMatchesJSSDK(t *testing.T) {
	iat := time.Unix(1700000000, 0)
	roles := []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.group1"}
	for _, endpoint := range []string{"http://localhost:8080", "http://localhost:8080/"} {
		got, err := SignClientToken(testPrimaryKey, endpoint, "hub1", "user1", roles, []string{"group1"}, iat, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if got != tokT1 {
			t.Errorf("endpoint %q: SignClientToken =\n%s\nwant T1\n%s", endpoint, got, tokT1)
		}
	}
	got, err := SignClientToken(testPrimaryKey, "http://localhost:8080", "hub1", "", nil, nil, iat, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got != tokT2 {
		t.Errorf("minimal SignClientToken =\n%s\nwant T2\n%s", got, tokT2)
	}
	if _, err := SignClientToken("", "http://localhost:8080", "hub1", "", nil, nil, iat, 0); err == nil {
		t.Error("empty key: want error")
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	v := testVerifier(t)
	cases := []struct {
		name           string
		key, user, hub string
		roles, groups  []string
	}{
		{name: "primary/full", key: testPrimaryKey, user: "u1", hub: "Chat", roles: []string{"webpubsub.sendToGroup"}, groups: []string{"g 1", "a.b"}},
		{name: "secondary/anonymous", key: testSecondaryKey, hub: "chat"},
		{name: "unicode", key: testPrimaryKey, user: "用户<&>", hub: "hub_1", groups: []string{"组\u2028"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := SignClientToken(tc.key, "https://wps.example.com", tc.hub, tc.user, tc.roles, tc.groups, testNow, 10*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			cc, err := v.VerifyClient(tok, strings.ToLower(tc.hub), "", testNow.Add(10*time.Minute))
			if err != nil {
				t.Fatalf("VerifyClient: %v", err)
			}
			if cc.UserID != tc.user || cc.HasUser != (tc.user != "") {
				t.Errorf("user = %q, want %q", cc.UserID, tc.user)
			}
			if !slices.Equal(cc.Roles, tc.roles) || !slices.Equal(cc.Groups, tc.groups) {
				t.Errorf("roles %q groups %q, want %q %q", cc.Roles, cc.Groups, tc.roles, tc.groups)
			}
			if !cc.Expires.Equal(time.Unix(testNow.Unix()+600, 0)) {
				t.Errorf("Expires = %v", cc.Expires)
			}
			if _, err := v.VerifyClient(tok, tc.hub, "", testNow.Add(16*time.Minute)); !errors.Is(err, ErrTokenInvalid) {
				t.Errorf("after exp+skew: err = %v", err)
			}
		})
	}
	rt, err := SignRESTToken(testSecondaryKey, "https://wps.example.com/api/hubs/chat/groups/g%201/:send?api-version=2024-12-01", testNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyREST(rt, "/api/hubs/chat/groups/g%201/:send", testNow); err != nil {
		t.Fatalf("REST round trip: %v", err)
	}
}

func FuzzVerifyClient(f *testing.F) {
	for _, tok := range []string{tokT1, tokT2, tokT3, tokT4, tokT5, tokT6, tokT7, tokT8, tokT9, tokT10, tokT11, tokREST, "", "a.b.c", ".."} {
		f.Add(tok, "hub1")
	}
	v := testVerifier(f)
	f.Fuzz(func(t *testing.T, token, hub string) {
		cc, err := v.VerifyClient(token, hub, "/base", testNow)
		if err != nil {
			if !errors.Is(err, ErrTokenInvalid) {
				t.Fatalf("error does not wrap ErrTokenInvalid: %v", err)
			}
			return
		}
		for _, g := range cc.Groups {
			if !validGroupName(g) {
				t.Fatalf("accepted invalid group %q", g)
			}
		}
		_ = cc.ConnectClaims()
		_ = v.VerifyREST(token, hub, testNow)
	})
}

func BenchmarkVerifyClient(b *testing.B) {
	v := testVerifier(b)
	for _, bc := range []struct{ name, tok string }{{"sdk=js/claims=full", tokT1}, {"sdk=js/claims=min", tokT2}, {"reject=signature", tokT4}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = v.VerifyClient(bc.tok, "hub1", "", testNow)
			}
		})
	}
}
