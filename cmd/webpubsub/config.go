package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/goccy/go-yaml"

	"github.com/webpubsub/webpubsub/engine"
)

// fileInfo tells the caller what the configuration left open, for decisions that belong
// to main (the development-key fallback, the printed connection string).
type fileInfo struct {
	// Path is the file read; "" when none was given.
	Path string
	// KeyConfigured is true when keys.primary is set. When false, Config.Keys is empty
	// and the caller decides between the development key and refusing to start.
	KeyConfigured bool
	// TLSListeners counts listen entries with a tls block. Any is an error for now
	// (errTLSListener); the count is filled in before that error is returned.
	TLSListeners int
	// RequestOrigin is endpoint.requestOrigin (the WebHook-Request-Origin value). It has
	// no engine.Config field yet; "" means the host of endpoint.public.
	RequestOrigin string
	// Overrides names the WPS_* environment variables that changed the configuration,
	// sorted, for a startup log line. Their values are not kept.
	Overrides []string
	// Log is the log section (operations.md §5). It has no engine.Config field: main
	// builds the logger from it.
	Log logSettings
}

// logSettings is the log section: log.format and log.level.
type logSettings struct {
	// Format is "text" (the default) or "json": one object per line.
	Format string
	// Level is log.level; LevelSet is false when the file does not give one.
	Level    slog.Level
	LevelSet bool
}

// errTLSListener is wrapped when the configuration lists a TLS listener; TLS termination
// is left to a proxy until the server serves TLS itself.
var errTLSListener = errors.New("TLS listeners are not supported yet (terminate TLS in a proxy in front of the server)")

// envPrefix starts every environment override (config.md §3.2).
const envPrefix = "WPS_"

// hubNameRE is the REST hub-name rule (rest-api.md §1.3, client-protocol.md §1.2).
var hubNameRE = regexp.MustCompile("^[A-Za-z][A-Za-z0-9_`,.[\\]]{0,127}$")

// Schema key names, as written in config.md §3.1. Keys are matched case-insensitively and
// ignoring '_', so that WPS_LIMITS__MAX_MESSAGE_BYTES and WPS_LIMITS__MAXMESSAGEBYTES both
// reach limits.maxMessageBytes.
var topLevelKeys = []string{"endpoint", "listen", "keys", "auth", "hubs", "defaultHub", "upstream", "limits", "admin", "log", "shutdown"}

// loadConfig reads a YAML or JSON file (JSON when the content starts with '{'), expands
// ${VAR} in its string values from environ, applies WPS_* environment overrides,
// validates, and returns the engine configuration. path "" means no file; the overrides
// still apply. Every error is one line that names the offending key.
func loadConfig(path string, environ []string) (engine.Config, fileInfo, error) {
	info := fileInfo{Path: path}
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}

	root := map[string]any{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return engine.Config{}, info, fmt.Errorf("config: %w", err)
		}
		root, err = parseDocument(data)
		if err != nil {
			return engine.Config{}, info, fmt.Errorf("config: %s: %w", path, err)
		}
		expandTree(root, env)
	}
	var err error
	if info.Overrides, err = applyOverrides(root, env); err != nil {
		return engine.Config{}, info, err
	}
	cfg, err := buildConfig(root, &info)
	if err != nil {
		return engine.Config{}, info, err
	}
	return cfg, info, nil
}

// parseDocument decodes one JSON object or one YAML mapping. An empty document is an
// empty mapping.
func parseDocument(data []byte) (map[string]any, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var doc any
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				line := 1 + bytes.Count(data[:min(int(se.Offset), len(data))], []byte("\n"))
				return nil, fmt.Errorf("invalid JSON: line %d: %s", line, oneLine(err.Error()))
			}
			return nil, fmt.Errorf("invalid JSON: %s", oneLine(err.Error()))
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, errors.New("invalid JSON: data after the top-level object")
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("invalid YAML: %s", oneLine(yaml.FormatError(err, false, false)))
		}
		var more any
		if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
			return nil, errors.New("invalid YAML: more than one document")
		}
	}
	switch d := doc.(type) {
	case nil:
		return map[string]any{}, nil
	case map[string]any:
		return d, nil
	default:
		return nil, errors.New("the top level must be a mapping")
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// badValue stands in for a string whose ${VAR} expansion failed. Reading it is an error;
// an environment override may replace it first.
type badValue struct{ reason string }

// envValue is a scalar set by an environment override; errors about it name the variable.
type envValue struct{ name, value string }

// expandTree replaces ${VAR} and ${VAR:-default} in every string value (not in keys) with
// the variable's value; $${ stays a literal ${. An unset variable without a default
// becomes a badValue.
func expandTree(v any, env map[string]string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = expandTree(e, env)
		}
	case []any:
		for i, e := range x {
			x[i] = expandTree(e, env)
		}
	case string:
		s, err := expandString(x, env)
		if err != nil {
			return badValue{reason: err.Error()}
		}
		return s
	}
	return v
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func expandString(s string, env map[string]string) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", errors.New("unterminated ${ (write $${ for a literal)")
		}
		expr := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !envNameRE.MatchString(name) {
			return "", fmt.Errorf("invalid variable name %q in ${...}", name)
		}
		val, ok := env[name]
		switch {
		case ok:
			b.WriteString(val)
		case hasDef:
			b.WriteString(def)
		default:
			return "", fmt.Errorf("environment variable %s is not set (use ${%s:-} to allow empty)", name, name)
		}
		s = s[i+end+1:]
	}
}

// normKey folds a key for matching: lower case, '_' removed.
func normKey(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", ""))
}

// applyOverrides sets WPS_<PATH> variables into the tree. Path segments are separated by
// "__"; a numeric segment indexes a list (equal to its length appends). A variable without
// "__" whose name is not a top-level key is ignored: it may be a secret meant for ${VAR}
// (WPS_PRIMARY_KEY in config.md §3.1). A value starting with '[' or '{' is parsed as
// YAML/JSON flow; any other value is a string.
func applyOverrides(root map[string]any, env map[string]string) ([]string, error) {
	var names []string
	for name := range env {
		if strings.HasPrefix(name, envPrefix) && len(name) > len(envPrefix) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var applied []string
	for _, name := range names {
		segs := strings.Split(name[len(envPrefix):], "__")
		top := normKey(segs[0])
		known := slices.ContainsFunc(topLevelKeys, func(k string) bool { return normKey(k) == top })
		if !known {
			if len(segs) > 1 {
				return nil, fmt.Errorf("config: %s: unknown key %q", name, segs[0])
			}
			continue
		}
		if slices.Contains(segs, "") {
			return nil, fmt.Errorf("config: %s: empty path segment", name)
		}
		val := env[name]
		var leaf any = envValue{name: name, value: val}
		if t := strings.TrimSpace(val); strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{") {
			var parsed any
			if err := yaml.Unmarshal([]byte(t), &parsed); err != nil {
				return nil, fmt.Errorf("config: %s: invalid value: %s", name, oneLine(yaml.FormatError(err, false, false)))
			}
			leaf = parsed
		}
		if _, err := setPath(root, segs, 0, leaf, name); err != nil {
			return nil, err
		}
		applied = append(applied, name)
	}
	return applied, nil
}

// setPath stores leaf at segs below node and returns the node (a list may have grown).
// Missing mappings and lists are created; a numeric segment indexes a list, and an index
// equal to the list's length appends.
func setPath(node any, segs []string, depth int, leaf any, envName string) (any, error) {
	if depth == len(segs) {
		return leaf, nil
	}
	seg := segs[depth]
	if node == nil {
		if _, err := strconv.Atoi(seg); err == nil {
			node = []any{}
		} else {
			node = map[string]any{}
		}
	}
	switch n := node.(type) {
	case map[string]any:
		// Hub names are data, not schema: match them exactly (case-insensitively).
		exactOnly := depth == 1 && normKey(segs[0]) == "hubs"
		key := findKey(n, seg, exactOnly)
		if key == "" {
			key = seg // errors then show the key as the variable spelled it
		}
		child, err := setPath(n[key], segs, depth+1, leaf, envName)
		if err != nil {
			return nil, err
		}
		n[key] = child
		return n, nil
	case []any:
		idx, err := strconv.Atoi(seg)
		if err != nil || idx < 0 || idx > len(n) {
			return nil, fmt.Errorf("config: %s: %q is not an index into a list of %d", envName, seg, len(n))
		}
		if idx == len(n) {
			n = append(n, nil)
		}
		child, err := setPath(n[idx], segs, depth+1, leaf, envName)
		if err != nil {
			return nil, err
		}
		n[idx] = child
		return n, nil
	default:
		return nil, fmt.Errorf("config: %s: cannot set a key below a single value", envName)
	}
}

// findKey returns the key of m that seg names, or "".
func findKey(m map[string]any, seg string, exactOnly bool) string {
	for k := range m {
		if strings.EqualFold(k, seg) {
			return k
		}
	}
	if exactOnly {
		return ""
	}
	n := normKey(seg)
	for k := range m {
		if normKey(k) == n {
			return k
		}
	}
	return ""
}

// section is one mapping of the configuration being read.
type section struct {
	path string // canonical dotted path; "" at the top
	m    map[string]any
}

func (s section) sub(name string) string {
	if s.path == "" {
		return name
	}
	return s.path + "." + name
}

// asSection checks that v is a mapping; null is an empty one.
func asSection(path string, v any) (section, error) {
	switch x := v.(type) {
	case nil:
		return section{path: path, m: map[string]any{}}, nil
	case map[string]any:
		return section{path: path, m: x}, nil
	default:
		return section{}, bad(path, v, "must be a mapping")
	}
}

// fields returns the values of s by canonical key name, rejecting unknown and repeated keys.
func (s section) fields(allowed ...string) (map[string]any, error) {
	keys := make([]string, 0, len(s.m))
	for k := range s.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make(map[string]any, len(keys))
	for _, k := range keys {
		n := normKey(k)
		i := slices.IndexFunc(allowed, func(a string) bool { return normKey(a) == n })
		if i < 0 {
			err := fmt.Errorf("config: unknown key %q", s.sub(k))
			if ev, ok := s.m[k].(envValue); ok {
				err = fmt.Errorf("%w (from %s)", err, ev.name)
			}
			return nil, err
		}
		if _, dup := out[allowed[i]]; dup {
			return nil, fmt.Errorf("config: %s: given twice (keys are case-insensitive)", s.sub(allowed[i]))
		}
		out[allowed[i]] = s.m[k]
	}
	return out, nil
}

// bad formats a one-line error about the value at path, naming the environment variable
// it came from, if any.
func bad(path string, v any, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if ev, ok := v.(envValue); ok {
		msg += " (from " + ev.name + ")"
	}
	return fmt.Errorf("config: %s: %s", path, oneLine(msg))
}

// scalarText returns the text of a scalar: strings as they are, numbers and booleans
// rendered, nil as "". Mappings, lists and failed ${VAR} expansions are errors.
func scalarText(path string, v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case envValue:
		return x.value, nil
	case badValue:
		return "", bad(path, v, "%s", x.reason)
	case bool:
		return strconv.FormatBool(x), nil
	case json.Number:
		return x.String(), nil
	case int, int64, uint64, float64:
		return fmt.Sprint(x), nil
	default:
		return "", bad(path, v, "must be a single value, not a %s", kindName(v))
	}
}

func kindName(v any) string {
	switch v.(type) {
	case map[string]any:
		return "mapping"
	case []any:
		return "list"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func stringValue(path string, v any) (string, error) {
	return scalarText(path, v)
}

// intValue reads an integer in [lo, hi]. Quoted numbers and overrides are parsed.
func intValue(path string, v any, lo, hi int64) (int64, error) {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		if x > math.MaxInt64 {
			return 0, bad(path, v, "must be at most %d", hi)
		}
		n = int64(x)
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			return 0, bad(path, v, "must be an integer")
		}
		n = int64(x)
	default:
		s, err := scalarText(path, v)
		if err != nil {
			return 0, err
		}
		n, err = strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return 0, bad(path, v, "must be an integer")
		}
	}
	if n < lo || n > hi {
		if hi == math.MaxInt {
			return 0, bad(path, v, "must be at least %d", lo)
		}
		return 0, bad(path, v, "must be between %d and %d", lo, hi)
	}
	return n, nil
}

// secondsValue reads a non-negative number of seconds (fractions allowed).
func secondsValue(path string, v any) (time.Duration, error) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case uint64:
		f = float64(x)
	default:
		s, err := scalarText(path, v)
		if err != nil {
			return 0, err
		}
		f, err = strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return 0, bad(path, v, "must be a number of seconds")
		}
	}
	// A week bounds every timeout and delay here; it also keeps the Duration from overflowing.
	const maxSeconds = 7 * 24 * 3600
	if math.IsNaN(f) || f < 0 || f > maxSeconds {
		return 0, bad(path, v, "must be between 0 and %d seconds", maxSeconds)
	}
	return time.Duration(f * float64(time.Second)), nil
}

func boolValue(path string, v any) (bool, error) {
	if b, ok := v.(bool); ok {
		return b, nil
	}
	s, err := scalarText(path, v)
	if err != nil {
		return false, err
	}
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return false, bad(path, v, "must be true or false")
	}
	return b, nil
}

// listValue reads a list; a scalar string is split at commas, so overrides and the legacy
// systemEventPattern work. Null is an empty list.
func listValue(path string, v any) ([]any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		return x, nil
	case map[string]any:
		return nil, bad(path, v, "must be a list")
	default:
		s, err := scalarText(path, v)
		if err != nil {
			return nil, err
		}
		var out []any
		for part := range strings.SplitSeq(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, wrapLike(v, part))
			}
		}
		return out, nil
	}
}

// wrapLike keeps the environment origin of a value split out of v.
func wrapLike(v any, part string) any {
	if ev, ok := v.(envValue); ok {
		return envValue{name: ev.name, value: part}
	}
	return part
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// buildConfig turns the tree into an engine.Config.
func buildConfig(root map[string]any, info *fileInfo) (engine.Config, error) {
	var cfg engine.Config
	top, err := section{m: root}.fields(topLevelKeys...)
	if err != nil {
		return cfg, err
	}
	steps := []func() error{
		func() error { return readEndpoint(top["endpoint"], &cfg, info) },
		func() error { return readListen(top["listen"], &cfg, info) },
		func() error { return readKeys(top["keys"], &cfg, info) },
		func() error { return readAuth(top["auth"], &cfg) },
		func() error { return readHubs(top["hubs"], &cfg) },
		func() error {
			var err error
			cfg.DefaultHub, err = readHub("defaultHub", top["defaultHub"])
			return err
		},
		func() error { return readUpstream(top["upstream"], &cfg) },
		func() error { return readLimits(top["limits"], &cfg) },
		func() error { return readAdmin(top["admin"], &cfg) },
		func() error { return readLog(top["log"], &info.Log) },
		func() error { return readShutdown(top["shutdown"], &cfg) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return engine.Config{}, err
		}
	}
	if cfg.Auth.StrictAudienceHost && cfg.PublicEndpoint == "" {
		// The strict check compares with endpoint.public; without it nothing would match.
		return engine.Config{}, errors.New("config: auth.strictAudienceHost: needs endpoint.public")
	}
	return cfg, nil
}

func readEndpoint(v any, cfg *engine.Config, info *fileInfo) error {
	s, err := asSection("endpoint", v)
	if err != nil {
		return err
	}
	f, err := s.fields("public", "basePath", "requestOrigin")
	if err != nil {
		return err
	}
	if cfg.PublicEndpoint, err = stringValue("endpoint.public", f["public"]); err != nil {
		return err
	}
	if cfg.PublicEndpoint != "" {
		u, err := url.Parse(cfg.PublicEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return bad("endpoint.public", f["public"], "must be an http:// or https:// URL with a host and no query (e.g. https://wps.example.com)")
		}
		cfg.PublicEndpoint = strings.TrimRight(cfg.PublicEndpoint, "/")
	}
	if cfg.BasePath, err = stringValue("endpoint.basePath", f["basePath"]); err != nil {
		return err
	}
	if bp := cfg.BasePath; bp != "" {
		if !strings.HasPrefix(bp, "/") || strings.HasSuffix(bp, "/") || strings.ContainsAny(bp, "?#") || hasSpaceOrControl(bp) {
			return bad("endpoint.basePath", f["basePath"], "must start with '/' and not end with '/' (e.g. /webpubsub)")
		}
	}
	if info.RequestOrigin, err = stringValue("endpoint.requestOrigin", f["requestOrigin"]); err != nil {
		return err
	}
	if ro := info.RequestOrigin; ro != "" && (strings.Contains(ro, "/") || hasSpaceOrControl(ro)) {
		return bad("endpoint.requestOrigin", f["requestOrigin"], "must be a host name such as wps.example.com")
	}
	return nil
}

func hasSpaceOrControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0
}

func readListen(v any, cfg *engine.Config, info *fileInfo) error {
	items, err := listValue("listen", v)
	if err != nil {
		return err
	}
	var plain []string
	for i, item := range items {
		path := index("listen", i)
		var addrV any
		switch item.(type) {
		case map[string]any, nil:
			s, _ := asSection(path, item)
			f, err := s.fields("address", "tls")
			if err != nil {
				return err
			}
			if f["tls"] != nil {
				info.TLSListeners++
				return fmt.Errorf("config: %s.tls: %w", path, errTLSListener)
			}
			addrV = f["address"]
			path += ".address"
		default:
			addrV = item // shorthand: listen: [":8080"] or WPS_LISTEN=:8080
		}
		addr, err := stringValue(path, addrV)
		if err != nil {
			return err
		}
		if err := checkListenAddress(addr); err != nil {
			return bad(path, addrV, "%v", err)
		}
		plain = append(plain, addr)
	}
	if len(plain) > 1 {
		return fmt.Errorf("config: listen: only one listener is supported, %d are listed", len(plain))
	}
	if len(plain) == 1 {
		cfg.Listen = plain[0]
	}
	return nil
}

func checkListenAddress(addr string) error {
	if addr == "" {
		return errors.New("required")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be host:port or :port (%s)", oneLine(err.Error()))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("port must be a number from 0 to 65535")
	}
	return nil
}

func readKeys(v any, cfg *engine.Config, info *fileInfo) error {
	s, err := asSection("keys", v)
	if err != nil {
		return err
	}
	f, err := s.fields("primary", "secondary")
	if err != nil {
		return err
	}
	for _, k := range []struct {
		name string
		dst  *string
	}{{"primary", &cfg.Keys.Primary}, {"secondary", &cfg.Keys.Secondary}} {
		path := "keys." + k.name
		val, err := stringValue(path, f[k.name])
		if err != nil {
			return err
		}
		// config.md §1.2: a key must survive every SDK's connection-string parser. The
		// value is never echoed.
		switch {
		case strings.TrimSpace(val) != val:
			return bad(path, f[k.name], "must not start or end with whitespace")
		case strings.Contains(val, ";"):
			return bad(path, f[k.name], "must not contain ';'")
		case strings.IndexFunc(val, unicode.IsControl) >= 0:
			return bad(path, f[k.name], "must not contain control characters")
		}
		*k.dst = val
	}
	if cfg.Keys.Primary == "" && cfg.Keys.Secondary != "" {
		return errors.New("config: keys.primary: required when keys.secondary is set")
	}
	info.KeyConfigured = cfg.Keys.Primary != ""
	return nil
}

func readAuth(v any, cfg *engine.Config) error {
	s, err := asSection("auth", v)
	if err != nil {
		return err
	}
	f, err := s.fields("disableAccessKeys", "clockSkewSeconds", "strictAudienceHost", "entra")
	if err != nil {
		return err
	}
	if f["disableAccessKeys"] != nil {
		if cfg.Auth.DisableAccessKeys, err = boolValue("auth.disableAccessKeys", f["disableAccessKeys"]); err != nil {
			return err
		}
	}
	if f["strictAudienceHost"] != nil {
		if cfg.Auth.StrictAudienceHost, err = boolValue("auth.strictAudienceHost", f["strictAudienceHost"]); err != nil {
			return err
		}
	}
	if f["clockSkewSeconds"] != nil {
		n, err := intValue("auth.clockSkewSeconds", f["clockSkewSeconds"], 0, 24*3600)
		if err != nil {
			return err
		}
		cfg.Auth.ClockSkew = time.Duration(n) * time.Second
	}
	es, err := asSection("auth.entra", f["entra"])
	if err != nil {
		return err
	}
	ef, err := es.fields("enabled", "issuer", "jwksUrl", "audience")
	if err != nil {
		return err
	}
	for _, k := range []string{"issuer", "jwksUrl", "audience"} {
		if _, err := stringValue("auth.entra."+k, ef[k]); err != nil {
			return err
		}
	}
	if ef["enabled"] != nil {
		on, err := boolValue("auth.entra.enabled", ef["enabled"])
		if err != nil {
			return err
		}
		if on {
			return bad("auth.entra.enabled", ef["enabled"], "Microsoft Entra ID tokens are not supported by this server; use access keys")
		}
	}
	return nil
}

func readHubs(v any, cfg *engine.Config) error {
	s, err := asSection("hubs", v)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(s.m))
	for name := range s.m {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		path := s.sub(name)
		if !hubNameRE.MatchString(name) {
			return fmt.Errorf("config: %s: invalid hub name (a letter, then up to 127 letters, digits or _`,.[])", path)
		}
		key := strings.ToLower(name)
		if _, dup := cfg.Hubs[key]; dup {
			return fmt.Errorf("config: %s: hub listed twice (hub names are case-insensitive)", path)
		}
		hs, err := readHub(path, s.m[name])
		if err != nil {
			return err
		}
		if cfg.Hubs == nil {
			cfg.Hubs = make(map[string]engine.HubSettings, len(names))
		}
		cfg.Hubs[key] = hs
	}
	return nil
}

// readHub reads WebPubSubHubProperties (config.md §2.1).
func readHub(path string, v any) (engine.HubSettings, error) {
	var hs engine.HubSettings
	s, err := asSection(path, v)
	if err != nil {
		return hs, err
	}
	f, err := s.fields("anonymousConnectPolicy", "webSocketKeepAliveIntervalInSeconds", "eventHandlers", "eventListeners")
	if err != nil {
		return hs, err
	}
	if pv := f["anonymousConnectPolicy"]; pv != nil {
		p, err := stringValue(s.sub("anonymousConnectPolicy"), pv)
		if err != nil {
			return hs, err
		}
		p = strings.ToLower(strings.TrimSpace(p))
		if p != "allow" && p != "deny" {
			return hs, bad(s.sub("anonymousConnectPolicy"), pv, "must be allow or deny")
		}
		hs.AnonymousConnectPolicy = p
	}
	if kv := f["webSocketKeepAliveIntervalInSeconds"]; kv != nil {
		n, err := intValue(s.sub("webSocketKeepAliveIntervalInSeconds"), kv, 1, 120)
		if err != nil {
			return hs, err
		}
		hs.KeepAliveInterval = time.Duration(n) * time.Second
	}
	listeners, err := listValue(s.sub("eventListeners"), f["eventListeners"])
	if err != nil {
		return hs, err
	}
	if len(listeners) > 0 {
		return hs, fmt.Errorf("config: %s: eventListeners are not supported by this server", s.sub("eventListeners"))
	}
	handlers, err := listValue(s.sub("eventHandlers"), f["eventHandlers"])
	if err != nil {
		return hs, err
	}
	for i, h := range handlers {
		eh, err := readEventHandler(index(s.sub("eventHandlers"), i), h)
		if err != nil {
			return hs, err
		}
		hs.EventHandlers = append(hs.EventHandlers, eh)
	}
	return hs, nil
}

// readEventHandler reads one EventHandler (config.md §2.2), in either the current shape
// (systemEvents array) or the legacy one (systemEventPattern comma string).
func readEventHandler(path string, v any) (engine.EventHandler, error) {
	var eh engine.EventHandler
	s, err := asSection(path, v)
	if err != nil {
		return eh, err
	}
	f, err := s.fields("urlTemplate", "userEventPattern", "systemEvents", "systemEventPattern", "auth", "groupPresenceEvents")
	if err != nil {
		return eh, err
	}
	if f["groupPresenceEvents"] != nil {
		return eh, fmt.Errorf("config: %s: groupPresenceEvents are not supported by this server", s.sub("groupPresenceEvents"))
	}
	if f["urlTemplate"] == nil {
		return eh, fmt.Errorf("config: %s: required", s.sub("urlTemplate"))
	}
	if eh.URLTemplate, err = stringValue(s.sub("urlTemplate"), f["urlTemplate"]); err != nil {
		return eh, err
	}
	if err := checkURLTemplate(eh.URLTemplate); err != nil {
		return eh, bad(s.sub("urlTemplate"), f["urlTemplate"], "%v", err)
	}
	pattern, err := stringValue(s.sub("userEventPattern"), f["userEventPattern"])
	if err != nil {
		return eh, err
	}
	if eh.UserEventPattern, err = normalizeUserEventPattern(pattern); err != nil {
		return eh, bad(s.sub("userEventPattern"), f["userEventPattern"], "%v", err)
	}
	evName := "systemEvents"
	if f["systemEventPattern"] != nil {
		if f["systemEvents"] != nil {
			return eh, fmt.Errorf("config: %s: give systemEvents or the legacy systemEventPattern, not both", s.sub("systemEventPattern"))
		}
		evName = "systemEventPattern"
	}
	events, err := listValue(s.sub(evName), f[evName])
	if err != nil {
		return eh, err
	}
	for i, ev := range events {
		name, err := stringValue(index(s.sub(evName), i), ev)
		if err != nil {
			return eh, err
		}
		name = strings.ToLower(strings.TrimSpace(name))
		switch name {
		case "connect", "connected", "disconnected":
		default:
			return eh, bad(s.sub(evName), ev, "unknown system event %q (want connect, connected or disconnected)", name)
		}
		if !slices.Contains(eh.SystemEvents, name) {
			eh.SystemEvents = append(eh.SystemEvents, name)
		}
	}
	if eh.Auth, err = readUpstreamAuth(s.sub("auth"), f["auth"]); err != nil {
		return eh, err
	}
	return eh, nil
}

// checkURLTemplate applies config.md §3.2 to an event handler URL. Errors never quote the
// template: it may carry a secret (?code=...).
func checkURLTemplate(tmpl string) error {
	lower := strings.ToLower(tmpl)
	if strings.Contains(lower, "@microsoft.keyvault(") {
		return errors.New("key vault references are not supported; use ${VAR} expansion from the environment")
	}
	if strings.HasPrefix(lower, "tunnel:") {
		return errors.New("tunnel: URLs are not supported; give the app's reachable http(s) URL")
	}
	if hasSpaceOrControl(tmpl) {
		return errors.New("must not contain whitespace or control characters")
	}
	scheme, rest, ok := strings.Cut(tmpl, "://")
	if !ok || (!strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https")) {
		return errors.New("must be an http:// or https:// URL")
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if strings.ContainsAny(authority, "{}") {
		return errors.New("placeholders are not allowed in the host")
	}
	// Only {hub} and {event} exist (upstream-protocol.md §10).
	var b strings.Builder
	for s := rest; s != ""; {
		open := strings.IndexAny(s, "{}")
		if open < 0 {
			b.WriteString(s)
			break
		}
		if s[open] == '}' {
			return errors.New("unbalanced '}'")
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			return errors.New("unbalanced '{'")
		}
		name := s[open+1 : open+end]
		if !strings.EqualFold(name, "hub") && !strings.EqualFold(name, "event") {
			return fmt.Errorf("unknown placeholder {%s} (only {hub} and {event})", name)
		}
		b.WriteString(s[:open])
		b.WriteString("x")
		s = s[open+end+1:]
	}
	u, err := url.Parse(scheme + "://" + b.String())
	if err != nil || u.Host == "" {
		return errors.New("must be an http:// or https:// URL with a host")
	}
	return nil
}

// normalizeUserEventPattern accepts "", "*", a name, or a comma-separated list of names,
// and returns it without blanks around the commas.
func normalizeUserEventPattern(p string) (string, error) {
	p = strings.TrimSpace(p)
	if p == "" || p == "*" {
		return p, nil
	}
	var names []string
	for name := range strings.SplitSeq(p, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "":
			return "", errors.New("empty event name in the list")
		case strings.Contains(name, "*"):
			return "", errors.New("'*' must be the whole pattern")
		case hasSpaceOrControl(name):
			return "", fmt.Errorf("event name %q contains whitespace", name)
		}
		names = append(names, name)
	}
	return strings.Join(names, ","), nil
}

// readUpstreamAuth reads UpstreamAuthSettings plus the self-hosted bearerToken
// (upstream-protocol.md §13).
func readUpstreamAuth(path string, v any) (engine.UpstreamAuth, error) {
	var ua engine.UpstreamAuth
	s, err := asSection(path, v)
	if err != nil {
		return ua, err
	}
	f, err := s.fields("type", "managedIdentity", "bearerToken")
	if err != nil {
		return ua, err
	}
	typ, err := stringValue(s.sub("type"), f["type"])
	if err != nil {
		return ua, err
	}
	switch strings.ToLower(strings.TrimSpace(typ)) {
	case "", "none":
		ua.Type = "None"
	case "managedidentity":
		ua.Type = "ManagedIdentity"
	default:
		return ua, bad(s.sub("type"), f["type"], "must be None or ManagedIdentity")
	}
	mi, err := asSection(s.sub("managedIdentity"), f["managedIdentity"])
	if err != nil {
		return ua, err
	}
	mf, err := mi.fields("resource")
	if err != nil {
		return ua, err
	}
	if ua.ManagedIdentityResource, err = stringValue(mi.sub("resource"), mf["resource"]); err != nil {
		return ua, err
	}
	if ua.BearerToken, err = stringValue(s.sub("bearerToken"), f["bearerToken"]); err != nil {
		return ua, err
	}
	if strings.TrimSpace(ua.BearerToken) != ua.BearerToken || strings.IndexFunc(ua.BearerToken, unicode.IsControl) >= 0 {
		return ua, bad(s.sub("bearerToken"), f["bearerToken"], "must not contain control characters or start or end with whitespace")
	}
	switch ua.Type {
	case "ManagedIdentity":
		if ua.BearerToken == "" {
			return ua, fmt.Errorf("config: %s: required for ManagedIdentity (no Azure identity is available to this server)", s.sub("bearerToken"))
		}
	default:
		if ua.BearerToken != "" || ua.ManagedIdentityResource != "" {
			return ua, fmt.Errorf("config: %s: must be ManagedIdentity when managedIdentity or bearerToken is given", s.sub("type"))
		}
	}
	return ua, nil
}

func readUpstream(v any, cfg *engine.Config) error {
	s, err := asSection("upstream", v)
	if err != nil {
		return err
	}
	f, err := s.fields("validation", "timeoutSeconds", "retry", "maxResponseBytes", "maxConnectionStateBytes")
	if err != nil {
		return err
	}
	up := &cfg.Upstream
	// Azure always validates handlers (upstream-protocol.md §9): absent means enabled.
	vs, err := asSection("upstream.validation", f["validation"])
	if err != nil {
		return err
	}
	vf, err := vs.fields("enabled", "timeoutSeconds", "successCacheSeconds")
	if err != nil {
		return err
	}
	if vf["enabled"] != nil {
		enabled, err := boolValue("upstream.validation.enabled", vf["enabled"])
		if err != nil {
			return err
		}
		up.ValidationDisabled = !enabled
	}
	durations := []struct {
		path string
		v    any
		dst  *time.Duration
	}{
		{"upstream.validation.timeoutSeconds", vf["timeoutSeconds"], &up.ValidationTimeout},
		{"upstream.validation.successCacheSeconds", vf["successCacheSeconds"], &up.ValidationSuccessCache},
		{"upstream.timeoutSeconds", f["timeoutSeconds"], &up.Timeout},
	}
	for _, d := range durations {
		if d.v == nil {
			continue
		}
		if *d.dst, err = secondsValue(d.path, d.v); err != nil {
			return err
		}
	}
	rs, err := asSection("upstream.retry", f["retry"])
	if err != nil {
		return err
	}
	rf, err := rs.fields("delaysSeconds")
	if err != nil {
		return err
	}
	if rf["delaysSeconds"] != nil {
		delays, err := listValue("upstream.retry.delaysSeconds", rf["delaysSeconds"])
		if err != nil {
			return err
		}
		// An explicit empty list means no retries; nil (absent) leaves the default.
		up.RetryDelays = make([]time.Duration, 0, len(delays))
		for i, d := range delays {
			dur, err := secondsValue(index("upstream.retry.delaysSeconds", i), d)
			if err != nil {
				return err
			}
			up.RetryDelays = append(up.RetryDelays, dur)
		}
	}
	return readInts(s, f, []intField{
		{"maxResponseBytes", &up.MaxResponseBytes},
		{"maxConnectionStateBytes", &up.MaxConnectionStateBytes},
	})
}

type intField struct {
	name string
	dst  *int
}

// readInts reads non-negative integers of a section; absent leaves zero (the default).
func readInts(s section, f map[string]any, fields []intField) error {
	for _, fd := range fields {
		if f[fd.name] == nil {
			continue
		}
		n, err := intValue(s.sub(fd.name), f[fd.name], 0, math.MaxInt)
		if err != nil {
			return err
		}
		*fd.dst = int(n)
	}
	return nil
}

func readLimits(v any, cfg *engine.Config) error {
	s, err := asSection("limits", v)
	if err != nil {
		return err
	}
	l := &cfg.Limits
	fields := []intField{
		{"maxMessageBytes", &l.MaxMessageBytes},
		{"maxConnections", &l.MaxConnections},
		{"restRequestsPerSecond", &l.RESTRequestsPerSecond},
		{"filterMaxClauses", &l.FilterMaxClauses},
		{"maxOutboundBytes", &l.MaxOutboundBytes},
		{"maxHeaderBytes", &l.MaxHeaderBytes},
	}
	names := make([]string, len(fields), len(fields)+1)
	for i, fd := range fields {
		names[i] = fd.name
	}
	f, err := s.fields(append(names, "recoveryWindowSeconds")...)
	if err != nil {
		return err
	}
	if v := f["recoveryWindowSeconds"]; v != nil {
		if l.RecoveryWindow, err = secondsValue("limits.recoveryWindowSeconds", v); err != nil {
			return err
		}
	}
	return readInts(s, f, fields)
}

// readAdmin reads the admin listener (operations.md §2): address "" (the default)
// means none.
func readAdmin(v any, cfg *engine.Config) error {
	s, err := asSection("admin", v)
	if err != nil {
		return err
	}
	f, err := s.fields("address", "pprof")
	if err != nil {
		return err
	}
	if cfg.Admin.Address, err = stringValue("admin.address", f["address"]); err != nil {
		return err
	}
	if cfg.Admin.Address != "" {
		if err := checkListenAddress(cfg.Admin.Address); err != nil {
			return bad("admin.address", f["address"], "%v", err)
		}
	}
	if f["pprof"] != nil {
		if cfg.Admin.Pprof, err = boolValue("admin.pprof", f["pprof"]); err != nil {
			return err
		}
	}
	return nil
}

// readLog reads the log section (operations.md §5): format text or json, level debug,
// info, warn or error.
func readLog(v any, ls *logSettings) error {
	s, err := asSection("log", v)
	if err != nil {
		return err
	}
	f, err := s.fields("format", "level")
	if err != nil {
		return err
	}
	format, err := stringValue("log.format", f["format"])
	if err != nil {
		return err
	}
	switch format = strings.ToLower(strings.TrimSpace(format)); format {
	case "", "text":
		ls.Format = "text"
	case "json":
		ls.Format = "json"
	default:
		return bad("log.format", f["format"], "must be text or json")
	}
	if f["level"] == nil {
		return nil
	}
	level, err := stringValue("log.level", f["level"])
	if err != nil {
		return err
	}
	if ls.Level, err = parseLevel(level); err != nil {
		return bad("log.level", f["level"], "%v", err)
	}
	ls.LevelSet = true
	return nil
}

// parseLevel reads debug, info, warn or error (case-insensitively).
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, errors.New("must be debug, info, warn or error")
}

// readShutdown reads the drain settings (operations.md §2). Absent keys keep the engine's
// defaults; an explicit 0 delay or rate means none, which the engine spells negative.
func readShutdown(v any, cfg *engine.Config) error {
	s, err := asSection("shutdown", v)
	if err != nil {
		return err
	}
	f, err := s.fields("drainDelaySeconds", "closeRatePerSecond", "timeoutSeconds")
	if err != nil {
		return err
	}
	sh := &cfg.Shutdown
	if v := f["drainDelaySeconds"]; v != nil {
		if sh.DrainDelay, err = secondsValue("shutdown.drainDelaySeconds", v); err != nil {
			return err
		}
		if sh.DrainDelay == 0 {
			sh.DrainDelay = -1
		}
	}
	if v := f["closeRatePerSecond"]; v != nil {
		n, err := intValue("shutdown.closeRatePerSecond", v, 0, math.MaxInt32)
		if err != nil {
			return err
		}
		sh.CloseRatePerSecond = int(n)
		if n == 0 {
			sh.CloseRatePerSecond = -1
		}
	}
	if v := f["timeoutSeconds"]; v != nil {
		if sh.Timeout, err = secondsValue("shutdown.timeoutSeconds", v); err != nil {
			return err
		}
		if sh.Timeout == 0 {
			return bad("shutdown.timeoutSeconds", v, "must be more than 0 seconds")
		}
	}
	return nil
}
