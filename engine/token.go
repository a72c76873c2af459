package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bytedance/sonic"
)

// ErrTokenInvalid is wrapped by every access-token verification failure (bad format,
// signature, audience, lifetime). The handshake answers 401 and the REST API 401 with
// WWW-Authenticate: Bearer. The wrapped reason is short and never contains the token.
var ErrTokenInvalid = errors.New("engine: invalid access token")

// ErrTokenBadGroup is wrapped, together with ErrTokenInvalid, when a correctly signed
// client token lists an invalid group name in webpubsub.group. The handshake answers 400
// for it (client-protocol.md §1.7), so check it before ErrTokenInvalid.
var ErrTokenBadGroup = errors.New("engine: invalid group in access token")

// DefaultClockSkew is the allowance on exp and nbf (client-protocol.md §2.4).
const DefaultClockSkew = 5 * time.Minute

// maxGroupNameChars bounds a group name (rest-api.md §1.3: 1–1024 characters).
const maxGroupNameChars = 1024

// roleClaimURI is the .NET role claim type, accepted as an alias of "role"
// (client-protocol.md §2.2).
const roleClaimURI = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"

// Claim names with a dedicated ClientClaims field.
const (
	claimSub   = "sub"
	claimRole  = "role"
	claimGroup = "webpubsub.group"
	claimAud   = "aud"
	claimExp   = "exp"
	claimNbf   = "nbf"
	claimIat   = "iat"
)

// hs256Header is base64url({"alg":"HS256","typ":"JWT"}), the header every key-based SDK
// emits (client-protocol.md §2.1). Seeing it lets verification skip the header decode.
const hs256Header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

// Verification failures. They are values so a rejected token costs no allocation.
var (
	errNoKey        = fmt.Errorf("%w: no access key configured", ErrTokenInvalid)
	errFormat       = fmt.Errorf("%w: not a compact JWS", ErrTokenInvalid)
	errHeader       = fmt.Errorf("%w: malformed header", ErrTokenInvalid)
	errAlg          = fmt.Errorf("%w: unsupported alg (want HS256)", ErrTokenInvalid)
	errCrit         = fmt.Errorf("%w: unsupported crit header", ErrTokenInvalid)
	errSignature    = fmt.Errorf("%w: signature mismatch", ErrTokenInvalid)
	errPayload      = fmt.Errorf("%w: malformed claims", ErrTokenInvalid)
	errNoAud        = fmt.Errorf("%w: missing aud", ErrTokenInvalid)
	errAud          = fmt.Errorf("%w: aud does not match this endpoint", ErrTokenInvalid)
	errNoExp        = fmt.Errorf("%w: missing exp", ErrTokenInvalid)
	errExp          = fmt.Errorf("%w: malformed exp", ErrTokenInvalid)
	errExpired      = fmt.Errorf("%w: expired", ErrTokenInvalid)
	errNbf          = fmt.Errorf("%w: malformed nbf", ErrTokenInvalid)
	errNotYetValid  = fmt.Errorf("%w: not yet valid", ErrTokenInvalid)
	errIat          = fmt.Errorf("%w: malformed iat", ErrTokenInvalid)
	errSub          = fmt.Errorf("%w: sub is not a string", ErrTokenInvalid)
	errRole         = fmt.Errorf("%w: role is not a string or an array of strings", ErrTokenInvalid)
	errGroupType    = fmt.Errorf("%w: webpubsub.group is not a string or an array of strings", ErrTokenInvalid)
	errGroupInvalid = fmt.Errorf("%w: %w (empty, whitespace only or longer than 1024 characters)", ErrTokenInvalid, ErrTokenBadGroup)
)

// claimsAPI decodes claims keeping numbers as json.Number, so custom numeric claims reach
// the upstream connect event with their original digits.
var claimsAPI = sonic.Config{UseNumber: true}.Froze()

var sigEncoding = base64.RawURLEncoding.Strict()

// ClientClaims is what a verified client token grants.
type ClientClaims struct {
	// UserID is the sub claim; HasUser is false when sub is absent or empty.
	UserID  string
	HasUser bool
	// Roles come from role and its .NET alias, in token order (role first). Empty strings
	// are dropped.
	Roles []string
	// Groups come from webpubsub.group, in token order; every name is valid.
	Groups []string
	// Extra holds every claim without a field above, exactly as decoded (aud, iat, exp,
	// nbf and custom claims; numbers are json.Number). Nil when there are none. Together
	// with the fields above it renders the connect event's claims (ConnectClaims).
	Extra map[string]any
	// Expires is the exp claim (without skew).
	Expires time.Time
}

// ConnectClaims renders the claims as the upstream connect event sends them
// (upstream-protocol.md §4.1): every claim as a list of strings, arrays flattened,
// numbers in their original decimal form. Roles are listed under "role" and groups under
// "webpubsub.group". The result is freshly allocated.
func (c ClientClaims) ConnectClaims() map[string][]string {
	m := make(map[string][]string, len(c.Extra)+3)
	if c.HasUser {
		m[claimSub] = []string{c.UserID}
	}
	if len(c.Roles) > 0 {
		m[claimRole] = append([]string(nil), c.Roles...)
	}
	if len(c.Groups) > 0 {
		m[claimGroup] = append([]string(nil), c.Groups...)
	}
	for k, v := range c.Extra {
		if arr, ok := v.([]any); ok {
			vals := make([]string, 0, len(arr))
			for _, e := range arr {
				vals = append(vals, claimString(e))
			}
			m[k] = vals
			continue
		}
		m[k] = []string{claimString(v)}
	}
	return m
}

// claimString renders one decoded JSON value as a claim string.
func claimString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	default:
		b, err := claimsAPI.Marshal(x)
		if err != nil {
			return ""
		}
		return string(b)
	}
}

// TokenVerifier checks client access tokens (client-protocol.md §2) and REST bearer
// tokens (rest-api.md §2.1) signed with the access keys. It is immutable after
// NewTokenVerifier and safe for concurrent use.
type TokenVerifier struct {
	// keys are the UTF-8 bytes of the configured access keys, primary first. The key
	// string is the HMAC key; it is never base64-decoded (client-protocol.md §2.1).
	keys []verifyKey
	skew time.Duration
	// origins are normalised scheme://host[:port] values a token's aud must match when
	// non-empty (strict audience host, client-protocol.md §2.3 rule 3).
	origins []string
}

// NewTokenVerifier returns a verifier for the non-empty keys. skew is the allowance on
// exp and nbf: zero means 5 minutes, negative means none. strictHostEndpoints lists the
// public endpoints (such as "https://wps.example.com") whose scheme and host an aud must
// carry; empty strings are skipped, and no endpoint at all means the host is not checked,
// only the path. An endpoint that is not an http(s) or ws(s) URL matches nothing.
func NewTokenVerifier(keys Keys, skew time.Duration, strictHostEndpoints []string) *TokenVerifier {
	v := &TokenVerifier{skew: skew}
	if skew == 0 {
		v.skew = DefaultClockSkew
	} else if skew < 0 {
		v.skew = 0
	}
	for _, k := range []string{keys.Primary, keys.Secondary} {
		if k != "" {
			v.keys = append(v.keys, newVerifyKey(k))
		}
	}
	for _, ep := range strictHostEndpoints {
		if ep == "" {
			continue
		}
		scheme, authority, _, ok := splitURL(ep)
		if !ok {
			// Fail closed: an endpoint we cannot parse matches no token.
			v.origins = append(v.origins, "invalid endpoint")
			continue
		}
		v.origins = append(v.origins, normalizeOrigin(scheme, authority))
	}
	return v
}

// verifyKey is one access key with a pool of keyed HMAC states; hmac.New costs about ten
// allocations, Reset none.
type verifyKey struct {
	macs *sync.Pool // of hash.Hash from hmac.New(sha256.New, key)
}

func newVerifyKey(key string) verifyKey {
	k := []byte(key)
	return verifyKey{macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}}
}

// sumTo appends HMAC-SHA256(key, msg) to dst and reports success; pass a slice with
// room for 32 bytes to avoid an allocation.
func (k verifyKey) sumTo(dst, msg []byte) bool {
	mac, ok := k.macs.Get().(hash.Hash)
	if !ok {
		return false
	}
	mac.Reset()
	mac.Write(msg)
	mac.Sum(dst)
	mac.Reset()
	k.macs.Put(mac) // returned here, by its only taker
	return true
}

// VerifyClient checks a client access token for hub at time now. The aud path must be
// /client/hubs/{hub}, optionally behind basePath ("" or a prefix such as "/webpubsub"),
// compared case-insensitively after percent-decoding. A failure wraps ErrTokenInvalid,
// and also ErrTokenBadGroup for an invalid initial group. Safe for concurrent use; the
// returned claims are owned by the caller.
func (v *TokenVerifier) VerifyClient(token, hub, basePath string, now time.Time) (ClientClaims, error) {
	var cc ClientClaims
	claims, err := v.verify(token)
	if err != nil {
		return cc, err
	}
	if err := v.checkTimes(claims, now, &cc); err != nil {
		return cc, err
	}
	if err := v.checkAudience(claims, func(path string) bool { return clientPathMatches(path, hub, basePath) }); err != nil {
		return cc, err
	}
	if err := fillIdentity(claims, &cc); err != nil {
		return cc, err
	}
	for k, val := range claims {
		switch k {
		case claimSub, claimRole, roleClaimURI, claimGroup:
			continue
		}
		if cc.Extra == nil {
			cc.Extra = make(map[string]any, len(claims))
		}
		cc.Extra[k] = val
	}
	return cc, nil
}

// VerifyREST checks a REST bearer token against the escaped request path (such as
// "/api/hubs/chat/:send", any query is ignored) at time now. Paths are compared
// case-insensitively on their escaped form with trailing slashes removed
// (rest-api.md §2.1 rule 3). A failure wraps ErrTokenInvalid. Safe for concurrent use.
func (v *TokenVerifier) VerifyREST(token, escapedPath string, now time.Time) error {
	claims, err := v.verify(token)
	if err != nil {
		return err
	}
	var cc ClientClaims
	if err := v.checkTimes(claims, now, &cc); err != nil {
		return err
	}
	want := escapedPath
	if i := strings.IndexAny(want, "?#"); i >= 0 {
		want = want[:i]
	}
	want = strings.TrimRight(want, "/")
	return v.checkAudience(claims, func(path string) bool {
		return strings.EqualFold(strings.TrimRight(path, "/"), want)
	})
}

// verify checks the JOSE header and the signature, then decodes the claims.
func (v *TokenVerifier) verify(token string) (map[string]any, error) {
	if len(v.keys) == 0 {
		return nil, errNoKey
	}
	dot1 := strings.IndexByte(token, '.')
	if dot1 < 0 {
		return nil, errFormat
	}
	dot2 := strings.IndexByte(token[dot1+1:], '.')
	if dot2 < 0 {
		return nil, errFormat
	}
	dot2 += dot1 + 1
	headerB64, payloadB64, sigB64 := token[:dot1], token[dot1+1:dot2], token[dot2+1:]
	if strings.IndexByte(sigB64, '.') >= 0 {
		return nil, errFormat // JWE (five parts) or garbage
	}
	if headerB64 != hs256Header {
		if err := checkHeader(headerB64); err != nil {
			return nil, err
		}
	}

	// Strict decoding: with lax decoding the unused low bits of the last character could
	// be flipped and the token would still verify.
	var sig [sha256.Size]byte
	if sigEncoding.DecodedLen(len(sigB64)) != sha256.Size {
		return nil, errSignature
	}
	if n, err := sigEncoding.Decode(sig[:], []byte(sigB64)); err != nil || n != sha256.Size {
		return nil, errSignature
	}
	signed := []byte(token[:dot2])
	matched := false
	var sum [sha256.Size]byte
	for i := range v.keys {
		if v.keys[i].sumTo(sum[:0], signed) && hmac.Equal(sum[:], sig[:]) {
			// hmac.Equal is constant time: a mismatch must not reveal how many leading
			// bytes matched. Every key is tried so timing does not tell which one signed.
			matched = true
		}
	}
	if !matched {
		return nil, errSignature
	}

	payload, err := base64.RawURLEncoding.DecodeString(payloadB64)
	if err != nil {
		return nil, errPayload
	}
	var claims map[string]any
	if err := claimsAPI.Unmarshal(payload, &claims); err != nil || claims == nil {
		return nil, errPayload
	}
	return claims, nil
}

// jwsHeader is the part of a JOSE header we look at.
type jwsHeader struct {
	Alg  string          `json:"alg"`
	Crit json.RawMessage `json:"crit"`
	// typ and kid are not checked: an unknown kid is not an error (client-protocol.md §2.1).
}

// checkHeader accepts only HS256 (client-protocol.md §2.1: reject none and asymmetric
// algorithms) and no critical extensions (RFC 7515 §4.1.11).
func checkHeader(headerB64 string) error {
	raw, err := base64.RawURLEncoding.DecodeString(headerB64)
	if err != nil {
		return errHeader
	}
	var h jwsHeader
	if err := claimsAPI.Unmarshal(raw, &h); err != nil {
		return errHeader
	}
	if h.Alg != "HS256" {
		return errAlg
	}
	if len(h.Crit) > 0 && string(h.Crit) != "null" {
		return errCrit
	}
	return nil
}

// checkTimes applies exp (required), nbf and iat (client-protocol.md §2.4) and records
// the expiry in cc.
func (v *TokenVerifier) checkTimes(claims map[string]any, now time.Time, cc *ClientClaims) error {
	expV, ok := claims[claimExp]
	if !ok {
		return errNoExp
	}
	exp, ok := numericDate(expV)
	if !ok {
		return errExp
	}
	if now.After(exp.Add(v.skew)) {
		return errExpired
	}
	if nbfV, ok := claims[claimNbf]; ok {
		nbf, ok := numericDate(nbfV)
		if !ok {
			return errNbf
		}
		if now.Before(nbf.Add(-v.skew)) {
			return errNotYetValid
		}
	}
	if iatV, ok := claims[claimIat]; ok {
		if _, ok := numericDate(iatV); !ok {
			return errIat
		}
	}
	cc.Expires = exp
	return nil
}

// numericDate converts a JWT NumericDate (seconds, possibly fractional) to a time.
// Values beyond ±2^53 seconds are clamped; they are far outside any real lifetime.
func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return time.Time{}, false
	}
	const limit = 1 << 53
	switch {
	case math.IsNaN(f):
		return time.Time{}, false
	case f > limit:
		f = limit
	case f < -limit:
		f = -limit
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// checkAudience accepts when aud (a string, or an array with at least one passing
// element) is an http(s) or ws(s) URL whose path satisfies pathOK and, in strict mode,
// whose origin is configured (client-protocol.md §2.3, rest-api.md §2.1).
func (v *TokenVerifier) checkAudience(claims map[string]any, pathOK func(string) bool) error {
	audV, ok := claims[claimAud]
	if !ok {
		return errNoAud
	}
	switch aud := audV.(type) {
	case string:
		if v.audienceMatches(aud, pathOK) {
			return nil
		}
	case []any:
		for _, e := range aud {
			if s, ok := e.(string); ok && v.audienceMatches(s, pathOK) {
				return nil
			}
		}
	}
	return errAud
}

func (v *TokenVerifier) audienceMatches(aud string, pathOK func(string) bool) bool {
	scheme, authority, path, ok := splitURL(aud)
	if !ok || !pathOK(path) {
		return false
	}
	if len(v.origins) == 0 {
		return true
	}
	origin := normalizeOrigin(scheme, authority)
	for _, o := range v.origins {
		if o == origin {
			return true
		}
	}
	return false
}

// splitURL splits an absolute http, https, ws or wss URL into its scheme, authority and
// raw (still escaped) path without query or fragment. It does not allocate.
func splitURL(s string) (scheme, authority, path string, ok bool) {
	i := strings.Index(s, "://")
	if i <= 0 {
		return "", "", "", false
	}
	scheme = s[:i]
	switch {
	case strings.EqualFold(scheme, "http"), strings.EqualFold(scheme, "https"),
		strings.EqualFold(scheme, "ws"), strings.EqualFold(scheme, "wss"):
	default:
		return "", "", "", false
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		return scheme, rest, "", rest != ""
	}
	authority = rest[:end]
	if authority == "" {
		return "", "", "", false
	}
	rest = rest[end:]
	if q := strings.IndexAny(rest, "?#"); q >= 0 {
		rest = rest[:q]
	}
	return scheme, authority, rest, true
}

// normalizeOrigin lower-cases scheme and host, maps ws/wss to http/https (an aud keeps
// the http(s) scheme, client-protocol.md §2.3), drops user info and default ports.
func normalizeOrigin(scheme, authority string) string {
	scheme = strings.ToLower(scheme)
	switch scheme {
	case "ws":
		scheme = "http"
	case "wss":
		scheme = "https"
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		authority = authority[at+1:]
	}
	authority = strings.ToLower(authority)
	// A port follows the last ':' unless that colon is inside an IPv6 literal.
	if c := strings.LastIndexByte(authority, ':'); c >= 0 && c > strings.LastIndexByte(authority, ']') {
		port := authority[c+1:]
		if port == "" || (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
			authority = authority[:c]
		}
	}
	return scheme + "://" + authority
}

// clientPathMatches reports whether an aud path is /client/hubs/{hub}, optionally behind
// basePath, ignoring case and one trailing slash (client-protocol.md §2.3 rule 2).
func clientPathMatches(path, hub, basePath string) bool {
	if strings.IndexByte(path, '%') >= 0 {
		p, err := url.PathUnescape(path)
		if err != nil {
			return false
		}
		path = p
	}
	path = strings.TrimSuffix(path, "/")
	if basePath != "" && len(path) > len(basePath) && strings.EqualFold(path[:len(basePath)], basePath) &&
		hubPathMatches(path[len(basePath):], hub) {
		return true
	}
	// Without the prefix too: a proxy in front may strip it before the SDK's URL is built.
	return hubPathMatches(path, hub)
}

func hubPathMatches(path, hub string) bool {
	const prefix = "/client/hubs/"
	return len(path) == len(prefix)+len(hub) &&
		strings.EqualFold(path[:len(prefix)], prefix) &&
		strings.EqualFold(path[len(prefix):], hub)
}

// fillIdentity copies sub, role (and its .NET alias) and webpubsub.group into cc.
func fillIdentity(claims map[string]any, cc *ClientClaims) error {
	if subV, ok := claims[claimSub]; ok {
		sub, ok := subV.(string)
		if !ok {
			return errSub
		}
		// REST rule: a userId has at least one character (rest-api.md §1.3).
		cc.UserID, cc.HasUser = sub, sub != ""
	}
	var ok bool
	if cc.Roles, ok = appendStrings(cc.Roles, claims[claimRole]); !ok {
		return errRole
	}
	if cc.Roles, ok = appendStrings(cc.Roles, claims[roleClaimURI]); !ok {
		return errRole
	}
	if cc.Groups, ok = appendStrings(cc.Groups, claims[claimGroup]); !ok {
		return errGroupType
	}
	for _, g := range cc.Groups {
		if !validGroupName(g) {
			return errGroupInvalid
		}
	}
	return nil
}

// appendStrings appends a claim that is absent, a string, or an array of strings
// (client-protocol.md §2.2). Empty strings are skipped for roles; group names are
// validated by the caller, so the empty-string check happens there.
func appendStrings(dst []string, v any) ([]string, bool) {
	switch x := v.(type) {
	case nil:
		return dst, true
	case string:
		return append(dst, x), true
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return dst, false
			}
			dst = append(dst, s)
		}
		return dst, true
	default:
		return dst, false
	}
}

// validGroupName applies the group-name rule: 1–1024 characters, not only whitespace
// (rest-api.md §1.3).
func validGroupName(g string) bool {
	if g == "" || utf8.RuneCountInString(g) > maxGroupNameChars {
		return false
	}
	return strings.IndexFunc(g, func(r rune) bool { return !unicode.IsSpace(r) }) >= 0
}

// clientTokenClaims is the payload of a client token in the JS SDK's claim order
// (client-examples.md E1.1), so the bytes match what getClientAccessToken emits.
type clientTokenClaims struct {
	Role  []string `json:"role,omitempty"`
	Group []string `json:"webpubsub.group,omitempty"`
	Iat   int64    `json:"iat"`
	Nbf   int64    `json:"nbf,omitempty"`
	Exp   int64    `json:"exp"`
	Aud   string   `json:"aud"`
	Sub   string   `json:"sub,omitempty"`
}

// restTokenClaims is the payload jsonwebtoken emits for the REST bearer token.
type restTokenClaims struct {
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
	Aud string `json:"aud"`
}

// SignClientToken makes a client token exactly as the JS SDK's getClientAccessToken does:
// header {"alg":"HS256","typ":"JWT"}; role and webpubsub.group omitted when empty; iat;
// exp = iat + ttl (whole seconds; ttl <= 0 means 60 minutes, the SDK default); aud =
// endpoint with a trailing '/' ensured + "client/hubs/" + hub; sub omitted when userID is
// "". Safe for concurrent use.
func SignClientToken(key, endpoint, hub, userID string, roles, groups []string, now time.Time, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		ttl = time.Hour
	}
	if !strings.HasSuffix(endpoint, "/") {
		endpoint += "/"
	}
	iat := now.Unix()
	return signJWT(key, clientTokenClaims{
		Role:  roles,
		Group: groups,
		Iat:   iat,
		Exp:   iat + int64(ttl/time.Second),
		Aud:   endpoint + "client/hubs/" + hub,
		Sub:   userID,
	})
}

// signGeneratedToken signs the token of the :generateToken operation (rest-api.md
// §3.20): like SignClientToken's but with nbf and a given audience URL.
func signGeneratedToken(key, aud, userID string, roles, groups []string, now time.Time, ttl time.Duration) (string, error) {
	iat := now.Unix()
	return signJWT(key, clientTokenClaims{
		Role:  roles,
		Group: groups,
		Iat:   iat,
		Nbf:   iat,
		Exp:   iat + int64(ttl/time.Second),
		Aud:   aud,
		Sub:   userID,
	})
}

// SignRESTToken signs a REST bearer token for the full request URL as the SDKs do
// (rest-api.md §2.1): aud = url, iat = now, exp = iat + 1h. Safe for concurrent use.
func SignRESTToken(key, url string, now time.Time) (string, error) {
	iat := now.Unix()
	return signJWT(key, restTokenClaims{Iat: iat, Exp: iat + 3600, Aud: url})
}

func signJWT(key string, claims any) (string, error) {
	if key == "" {
		return "", errors.New("engine: sign token: empty access key")
	}
	payload, err := claimsAPI.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("engine: sign token: %w", err)
	}
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(hs256Header)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(sha256.Size))
	buf = append(buf, hs256Header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(buf)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, mac.Sum(nil))
	return string(buf), nil
}
