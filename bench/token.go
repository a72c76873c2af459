package bench

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"time"
)

// jwtHeader is base64url({"alg":"HS256","typ":"JWT"}).
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

type clientClaims struct {
	Aud    string   `json:"aud"`
	Iat    int64    `json:"iat"`
	Exp    int64    `json:"exp"`
	Sub    string   `json:"sub,omitempty"`
	Roles  []string `json:"role,omitempty"`
	Groups []string `json:"webpubsub.group,omitempty"`
}

type restClaims struct {
	Aud string `json:"aud"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

// signClientToken signs a client access token for hub: aud is the hub's client URL, the
// user is sub, and groups are joined at connect (webpubsub.group).
func signClientToken(s Service, hub, user string, roles, groups []string, now time.Time, ttl time.Duration) string {
	iat := now.Unix()
	return signJWT(s.AccessKey, clientClaims{
		Aud: s.clientURL(hub), Iat: iat, Exp: iat + int64(ttl/time.Second),
		Sub: user, Roles: roles, Groups: groups,
	})
}

// signRESTToken signs a REST bearer token whose aud is the full request URL.
func signRESTToken(s Service, url string, now time.Time, ttl time.Duration) string {
	iat := now.Unix()
	return signJWT(s.AccessKey, restClaims{Aud: url, Iat: iat, Exp: iat + int64(ttl/time.Second)})
}

func signJWT(key string, claims any) string {
	payload, err := json.Marshal(claims)
	if err != nil {
		panic("bench: claims do not marshal: " + err.Error()) // fixed struct types: cannot happen
	}
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(jwtHeader)+2+enc.EncodedLen(len(payload))+enc.EncodedLen(sha256.Size))
	buf = append(buf, jwtHeader...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(buf)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, mac.Sum(nil))
	return string(buf)
}
