package bench

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ErrConnectionString means the connection string lacks Endpoint or AccessKey or has a bad
// Endpoint; the caller should fix the --connection-string flag.
var ErrConnectionString = errors.New("bench: bad connection string")

// Service is where a server is and the key that signs its tokens.
type Service struct {
	// Endpoint is the service URL without a trailing '/', e.g. http://127.0.0.1:8080.
	Endpoint string
	// AccessKey signs client and REST tokens (HS256 over its UTF-8 bytes).
	AccessKey string
}

// ParseConnectionString reads "Endpoint=...;AccessKey=...;Version=1.0;[Port=...]".
// Keys are case-insensitive, a value runs from the first '=' to the next ';', and Port
// overrides the endpoint's port, as the Azure SDKs do.
func ParseConnectionString(cs string) (Service, error) {
	var endpoint, key, port string
	for _, part := range strings.Split(cs, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "endpoint":
			endpoint = v
		case "accesskey":
			key = v
		case "port":
			port = v
		}
	}
	if endpoint == "" || key == "" {
		return Service{}, fmt.Errorf("%w: it needs both Endpoint and AccessKey", ErrConnectionString)
	}
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return Service{}, fmt.Errorf("%w: Endpoint %q", ErrConnectionString, endpoint)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Service{}, fmt.Errorf("%w: Endpoint scheme %q (want http or https)", ErrConnectionString, u.Scheme)
	}
	if port != "" {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	u.RawQuery, u.Fragment = "", ""
	return Service{Endpoint: strings.TrimSuffix(u.String(), "/"), AccessKey: key}, nil
}

// hostPort returns the TCP address of the endpoint, adding the scheme's default port.
func (s Service) hostPort() (string, error) {
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		return "", err
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443"), nil
	}
	return net.JoinHostPort(u.Hostname(), "80"), nil
}

// clientURL returns the client endpoint of hub: {Endpoint}/client/hubs/{hub}, also the aud
// of a client token.
func (s Service) clientURL(hub string) string {
	return s.Endpoint + "/client/hubs/" + url.PathEscape(hub)
}

// groupSendURL returns the REST URL that sends to every connection in group of hub.
func (s Service) groupSendURL(hub, group string) string {
	return s.Endpoint + "/api/hubs/" + url.PathEscape(hub) + "/groups/" + url.PathEscape(group) + "/:send?api-version=2024-01-01"
}

// allSendURL returns the REST URL that sends to every connection of hub (rest-api.md §3.2).
func (s Service) allSendURL(hub string) string {
	return s.Endpoint + "/api/hubs/" + url.PathEscape(hub) + "/:send?api-version=2024-12-01"
}

// withFilter adds an OData filter to a send URL that has a query already, percent-encoded
// as the JS SDK's encodeURIComponent does (a space is %20, not +; rest-api.md §5.3).
func withFilter(sendURL, filter string) string {
	if filter == "" {
		return sendURL
	}
	// QueryEscape writes a space as + and a + as %2B, so every + left is a space.
	return sendURL + "&filter=" + strings.ReplaceAll(url.QueryEscape(filter), "+", "%20")
}
