package upstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// connectBody is the connect request JSON (§4.1): all five keys always present.
type connectBody struct {
	Claims             map[string][]string `json:"claims"`
	Query              map[string][]string `json:"query"`
	Headers            map[string][]string `json:"headers"`
	Subprotocols       []string            `json:"subprotocols"`
	ClientCertificates []connectCert       `json:"clientCertificates"`
}

type connectCert struct {
	Thumbprint string `json:"thumbprint"`
	Content    string `json:"content"`
}

var emptyValues = map[string][]string{}

// encodeConnect renders the connect body with {} and [] for nil fields. A nil
// value list inside a map is sent as [].
func encodeConnect(r *ConnectRequest) []byte {
	b := connectBody{
		Claims:             nonNilMap(r.Claims),
		Query:              nonNilMap(r.Query),
		Headers:            nonNilMap(r.Headers),
		Subprotocols:       r.Subprotocols,
		ClientCertificates: make([]connectCert, len(r.ClientCertificates)),
	}
	if b.Subprotocols == nil {
		b.Subprotocols = []string{}
	}
	for i, cc := range r.ClientCertificates {
		b.ClientCertificates[i] = connectCert(cc)
	}
	out, err := json.Marshal(&b)
	if err != nil { // unreachable: strings and maps of strings always encode
		return []byte(`{"claims":{},"query":{},"headers":{},"subprotocols":[],"clientCertificates":[]}`)
	}
	return out
}

func nonNilMap(m map[string][]string) map[string][]string {
	if m == nil {
		return emptyValues
	}
	for _, v := range m {
		if v == nil {
			cp := make(map[string][]string, len(m))
			for k, v := range m {
				if v == nil {
					v = []string{}
				}
				cp[k] = v
			}
			return cp
		}
	}
	return m
}

// connectResponse is the §4.3 body. Pointers make null and absent the same;
// encoding/json matches names case-insensitively, so "subProtocol" works too.
type connectResponse struct {
	UserID      *string   `json:"userId"`
	Groups      *[]string `json:"groups"`
	Roles       *[]string `json:"roles"`
	Subprotocol *string   `json:"subprotocol"`
}

// parseConnectResponse applies §4.2/§4.3 to a 2xx connect body, whatever its
// Content-Type: empty, "null" and "{}" keep the token's values; anything else
// must be a JSON object. offered is the client's Sec-WebSocket-Protocol list.
func parseConnectResponse(body []byte, offered []string) (ConnectResult, error) {
	var res ConnectResult
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return res, nil
	}
	if body[0] != '{' && !bytes.Equal(body, []byte("null")) {
		return res, fmt.Errorf("%w: body is not a JSON object", ErrBadConnectResponse)
	}
	var r connectResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return res, fmt.Errorf("%w: %v", ErrBadConnectResponse, err)
	}
	res.UserID = r.UserID
	if r.Groups != nil && len(*r.Groups) > 0 {
		for _, g := range *r.Groups {
			if !validGroupName(g) {
				return ConnectResult{}, fmt.Errorf("%w: invalid group name %q", ErrBadConnectResponse, truncateString(g, 64))
			}
		}
		res.Groups = *r.Groups
	}
	if r.Roles != nil {
		res.HasRoles = true
		res.Roles = *r.Roles
		if res.Roles == nil {
			res.Roles = []string{}
		}
	}
	if r.Subprotocol != nil && *r.Subprotocol != "" {
		p := *r.Subprotocol
		ok := false
		for _, o := range offered {
			if o == p {
				ok = true
				break
			}
		}
		if !ok {
			return ConnectResult{}, fmt.Errorf("%w: subprotocol %q was not offered by the client", ErrBadConnectResponse, truncateString(p, 64))
		}
		res.Subprotocol = p
	}
	return res, nil
}

// validGroupName is the group-name rule (rest-api.md §8, client-protocol.md
// §4.4): 1 to 1024 code points, valid UTF-8, not only white space. Copied
// rather than imported (STYLE §1).
func validGroupName(s string) bool {
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > 1024 {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return !unicode.IsSpace(r) }) >= 0
}

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
