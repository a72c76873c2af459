package engine

// Conformance with the machine-readable REST contract: the official OpenAPI document for
// api-version 2024-12-01 and its x-ms-examples, copied unchanged into testdata/openapi
// (testdata/openapi/README.md says where from). The tests read the JSON rather than a
// hand-copied route list, so an operation added to the document without a route fails here.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// oaSpecDir holds the OpenAPI document and its examples. They are part of the repository,
// so a missing document fails the test instead of skipping it.
const oaSpecDir = "testdata/openapi"

// oaDocument holds the parts of the Swagger 2.0 document the tests use.
type oaDocument struct {
	Info struct {
		Version string `json:"version"`
	} `json:"info"`
	Paths       map[string]map[string]json.RawMessage `json:"paths"`
	Definitions map[string]*oaSchema                  `json:"definitions"`
}

// oaOperation is one method under one path. Method (upper case) and Path are filled in
// from the keys of the document.
type oaOperation struct {
	Method      string
	Path        string
	OperationID string                `json:"operationId"`
	Consumes    []string              `json:"consumes"`
	Parameters  []oaParam             `json:"parameters"`
	Responses   map[string]oaResponse `json:"responses"`
	Examples    map[string]struct {
		Ref string `json:"$ref"`
	} `json:"x-ms-examples"`
}

type oaParam struct {
	Ref      string    `json:"$ref"`
	Name     string    `json:"name"`
	In       string    `json:"in"`
	Required bool      `json:"required"`
	Pattern  string    `json:"pattern"`
	Enum     []string  `json:"enum"`
	Schema   *oaSchema `json:"schema"`
}

type oaResponse struct {
	Schema *oaSchema `json:"schema"`
}

type oaSchema struct {
	Ref        string               `json:"$ref"`
	Type       string               `json:"type"`
	Required   []string             `json:"required"`
	Properties map[string]*oaSchema `json:"properties"`
	Items      *oaSchema            `json:"items"`
}

// oaMethods are the Swagger 2.0 operation keys of a path item.
var oaMethods = []string{"get", "put", "post", "delete", "options", "head", "patch"}

// oaOperations25 is the number of operations of api-version 2024-12-01 (rest-api.md §3).
const oaOperations25 = 25

// loadOpenAPI parses the document and returns its operations sorted by path and method.
// It fails the test on anything it does not understand (a $ref parameter, an unknown
// path-item key, a path placeholder without its parameter) and when the number of
// operations parsed differs from the number of "operationId" keys in the raw text, so a
// parse bug cannot make the conformance tests pass vacuously.
func loadOpenAPI(t *testing.T) (*oaDocument, []*oaOperation) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(oaSpecDir, "webpubsub-openapi.json"))
	if err != nil {
		t.Fatalf("read the OpenAPI document: %v", err)
	}
	var doc oaDocument
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse the OpenAPI document: %v", err)
	}
	if doc.Info.Version == "" {
		t.Fatal("OpenAPI document has no info.version")
	}
	var ops []*oaOperation
	for p, item := range doc.Paths {
		var shared []oaParam
		if rawShared, ok := item["parameters"]; ok {
			if err := json.Unmarshal(rawShared, &shared); err != nil {
				t.Fatalf("%s: path parameters: %v", p, err)
			}
		}
		for key, rawOp := range item {
			switch {
			case key == "parameters" || strings.HasPrefix(key, "x-"):
				continue
			case !slices.Contains(oaMethods, key):
				t.Fatalf("%s: unknown path-item key %q", p, key)
			}
			op := &oaOperation{Method: strings.ToUpper(key), Path: p}
			if err := json.Unmarshal(rawOp, op); err != nil {
				t.Fatalf("%s %s: %v", key, p, err)
			}
			op.Parameters = append(slices.Clone(shared), op.Parameters...)
			oaCheckOperation(t, op)
			ops = append(ops, op)
		}
	}
	slices.SortFunc(ops, func(a, b *oaOperation) int {
		return strings.Compare(a.Path+" "+a.Method, b.Path+" "+b.Method)
	})
	if n := bytes.Count(raw, []byte(`"operationId"`)); n != len(ops) {
		t.Fatalf("parsed %d operations but the document has %d operationId keys", len(ops), n)
	}
	return &doc, ops
}

var oaPlaceholder = regexp.MustCompile(`\{([^}]*)\}`)

// oaCheckOperation checks that the test understands op: every placeholder of its path has
// a path parameter and the other way round, no parameter is a $ref, and it has exactly one
// success status.
func oaCheckOperation(t *testing.T, op *oaOperation) {
	t.Helper()
	if op.OperationID == "" {
		t.Fatalf("%s %s: no operationId", op.Method, op.Path)
	}
	var inPath []string
	for _, m := range oaPlaceholder.FindAllStringSubmatch(op.Path, -1) {
		inPath = append(inPath, m[1])
	}
	var declared []string
	for _, p := range op.Parameters {
		if p.Ref != "" {
			t.Fatalf("%s: parameter $ref %q is not supported by this test", op.OperationID, p.Ref)
		}
		if p.In == "path" {
			declared = append(declared, p.Name)
		}
	}
	slices.Sort(inPath)
	slices.Sort(declared)
	if !slices.Equal(inPath, declared) {
		t.Fatalf("%s: path placeholders %v, path parameters %v", op.OperationID, inPath, declared)
	}
	op.successStatus(t)
}

// successStatus is the one 2xx status the document lists for op.
func (op *oaOperation) successStatus(t *testing.T) int {
	t.Helper()
	var codes []int
	for k := range op.Responses {
		if n, err := strconv.Atoi(k); err == nil && n >= 200 && n < 300 {
			codes = append(codes, n)
		}
	}
	if len(codes) != 1 {
		t.Fatalf("%s: success statuses %v, want exactly one", op.OperationID, codes)
	}
	return codes[0]
}

// documentedStatuses are the numeric response keys of op ("default" is left out).
func (op *oaOperation) documentedStatuses() []int {
	var codes []int
	for k := range op.Responses {
		if n, err := strconv.Atoi(k); err == nil {
			codes = append(codes, n)
		}
	}
	slices.Sort(codes)
	return codes
}

func (op *oaOperation) param(in, name string) *oaParam {
	for i := range op.Parameters {
		if p := &op.Parameters[i]; p.In == in && p.Name == name {
			return p
		}
	}
	return nil
}

func (op *oaOperation) bodyParam() *oaParam {
	for i := range op.Parameters {
		if op.Parameters[i].In == "body" {
			return &op.Parameters[i]
		}
	}
	return nil
}

// target builds the escaped path and query of op. Path parameters come from vals and are
// encoded with encodeURIComponent, as the SDKs do (rest-api.md §1.1); a missing one fails
// the test. Query pairs are encoded the same way and kept in order.
func (op *oaOperation) target(t *testing.T, vals map[string]string, query [][2]string) string {
	t.Helper()
	p := op.Path
	for _, prm := range op.Parameters {
		if prm.In != "path" {
			continue
		}
		v, ok := vals[prm.Name]
		if !ok {
			t.Fatalf("%s: no value for path parameter %q", op.OperationID, prm.Name)
		}
		p = strings.ReplaceAll(p, "{"+prm.Name+"}", encodeURIComponent(v))
	}
	for i, kv := range query {
		if i == 0 {
			p += "?"
		} else {
			p += "&"
		}
		p += encodeURIComponent(kv[0]) + "=" + encodeURIComponent(kv[1])
	}
	return p
}

// resolve follows a "#/definitions/…" reference.
func (d *oaDocument) resolve(t *testing.T, s *oaSchema) *oaSchema {
	t.Helper()
	for s != nil && s.Ref != "" {
		name, ok := strings.CutPrefix(s.Ref, "#/definitions/")
		if !ok || d.Definitions[name] == nil {
			t.Fatalf("unresolvable schema reference %q", s.Ref)
		}
		s = d.Definitions[name]
	}
	return s
}

// checkShape reports where the decoded JSON v does not fit schema s: a missing required
// property, a property the schema does not declare (the document's schemas are closed), or
// a value of the wrong JSON type. It returns nil when v fits.
func (d *oaDocument) checkShape(t *testing.T, where string, s *oaSchema, v any) []string {
	t.Helper()
	s = d.resolve(t, s)
	if s == nil {
		return nil
	}
	var bad []string
	switch s.Type {
	case "object", "":
		obj, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %T, want an object", where, v)}
		}
		for _, r := range s.Required {
			if _, ok := obj[r]; !ok {
				bad = append(bad, fmt.Sprintf("%s: required property %q missing", where, r))
			}
		}
		for k, pv := range obj {
			ps, ok := s.Properties[k]
			if !ok {
				bad = append(bad, fmt.Sprintf("%s: property %q is not in the schema", where, k))
				continue
			}
			bad = append(bad, d.checkShape(t, where+"."+k, ps, pv)...)
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %T, want an array", where, v)}
		}
		for i, e := range arr {
			bad = append(bad, d.checkShape(t, fmt.Sprintf("%s[%d]", where, i), s.Items, e)...)
		}
	case "string":
		if _, ok := v.(string); !ok {
			bad = append(bad, fmt.Sprintf("%s: %T, want a string", where, v))
		}
	}
	return bad
}

// encodeURIComponent escapes s as JavaScript's encodeURIComponent does: every UTF-8 byte
// except A–Z a–z 0–9 - _ . ! ~ * ' ( ) becomes %XX (upper-case hex). url.PathEscape differs
// both ways: it leaves $ & + : = @ alone and escapes ! ' ( ) *.
func encodeURIComponent(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-_.!~*'()", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func TestOpenAPIEncodeURIComponent(t *testing.T) {
	// Expected values are what encodeURIComponent returns in Node.js.
	for in, want := range map[string]string{
		"user/1 x":       "user%2F1%20x", // rest-api.md §1.1
		"a+b&c=d$e:f@g":  "a%2Bb%26c%3Dd%24e%3Af%40g",
		"it's!(x)*~-_.":  "it's!(x)*~-_.",
		"é,[y]`#?;%":     "%C3%A9%2C%5By%5D%60%23%3F%3B%25",
		"startswith(u)'": "startswith(u)'",
	} {
		if got := encodeURIComponent(in); got != want {
			t.Errorf("encodeURIComponent(%q) = %q, want %q", in, got, want)
		}
	}
}

// oaResult is a response with its body read.
type oaResult struct {
	status int
	header http.Header
	body   []byte
}

func (r oaResult) String() string {
	return fmt.Sprintf("status %d, x-ms-error-code %q, body %q", r.status, r.header.Get("x-ms-error-code"), r.body)
}

// errorDetail decodes the ErrorDetail body, if the body is one.
func (r oaResult) errorDetail() (code, message string, ok bool) {
	var e struct {
		Code    *string `json:"code"`
		Message *string `json:"message"`
	}
	if json.Unmarshal(r.body, &e) != nil || e.Code == nil || e.Message == nil {
		return "", "", false
	}
	return *e.Code, *e.Message, true
}

// unknownRoute reports whether r is the server's answer for a path it does not route:
// 404 Error.NotFound whose message starts with "no route for" (rest-api.md §4). A HEAD
// response has no body, so a HEAD operation is proven routed by its success status.
func (r oaResult) unknownRoute() bool {
	code, msg, ok := r.errorDetail()
	return r.status == 404 && ok && code == "Error.NotFound" && strings.HasPrefix(msg, "no route for")
}

// oaDo sends a signed request (restReq signs the full URL, as the JS SDK does) and reads
// the response.
func oaDo(t *testing.T, s *Server, method, target, contentType string, body []byte) oaResult {
	t.Helper()
	resp := restReq(t, s, method, target, contentType, body)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return oaResult{status: resp.StatusCode, header: resp.Header, body: b}
}

// oaConnect connects a json.webpubsub.azure.v1 client to hub as user, in groups, with the
// hub-wide roles of both permissions (so CheckPermission answers 200), and returns its
// connection id. The hub is percent-encoded in the client URL.
func oaConnect(t *testing.T, s *Server, hub, user string, groups ...string) string {
	t.Helper()
	roles := []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"}
	_, m := mustJSONClient(t, s, hub, user, roles, groups)
	id, _ := m["connectionId"].(string)
	if id == "" || m["userId"] != user {
		t.Fatalf("connected %v, want a connection id and user %q", m, user)
	}
	return id
}

// oaEnumVariants returns one value set per combination of the enum path parameters of op
// (the permission names), so each documented value is routed.
func oaEnumVariants(op *oaOperation) []map[string]string {
	variants := []map[string]string{{}}
	for _, p := range op.Parameters {
		if p.In != "path" || len(p.Enum) == 0 {
			continue
		}
		var next []map[string]string
		for _, v := range variants {
			for _, e := range p.Enum {
				m := map[string]string{p.Name: e}
				for k, x := range v {
					m[k] = x
				}
				next = append(next, m)
			}
		}
		variants = next
	}
	return variants
}

// oaSampleBody is a valid body for op: a text message for the send operations, and the
// AddToGroupsRequest/RemoveFromGroupsRequest object for the filtered group operations
// (rest-api.md §1.4, §3.18).
func oaSampleBody(t *testing.T, op *oaOperation) (contentType string, body []byte) {
	t.Helper()
	if op.bodyParam() == nil {
		return "", nil
	}
	switch {
	case slices.Contains(op.Consumes, "text/plain"):
		return "text/plain", []byte("hello from the OpenAPI test")
	case slices.Contains(op.Consumes, "application/json"):
		return "application/json", []byte(`{"groups":["g"],"filter":"userId ne null"}`)
	}
	t.Fatalf("%s: no sample body for media types %v", op.OperationID, op.Consumes)
	return "", nil
}

func oaKeys(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// TestOpenAPIReadsEveryOperation guards the other tests against a parse bug: the document
// must yield as many operations as it has distinct operationIds (25 in 2024-12-01).
func TestOpenAPIReadsEveryOperation(t *testing.T) {
	doc, ops := loadOpenAPI(t)
	ids := map[string]bool{}
	for _, op := range ops {
		if ids[op.OperationID] {
			t.Errorf("operationId %s appears twice", op.OperationID)
		}
		ids[op.OperationID] = true
	}
	if len(ops) != len(ids) {
		t.Errorf("%d operations, %d distinct operationIds", len(ops), len(ids))
	}
	if doc.Info.Version == "2024-12-01" && len(ids) != oaOperations25 {
		t.Errorf("api-version 2024-12-01: %d distinct operationIds, want %d", len(ids), oaOperations25)
	}
}

// TestOpenAPIEveryOperationRouted sends every method of every path of the document to a
// real server, with path parameters that need percent-encoding, and checks that each is
// routed (rest-api.md §4: neither the unknown-route 404 nor 405 nor 501) and answers its
// documented success status when the resource exists; then the same request with unknown
// ids, which may only answer a documented status or a resource 404.
func TestOpenAPIEveryOperationRouted(t *testing.T) {
	doc, ops := loadOpenAPI(t)
	s := testServer(t, nil)
	apiVersion := [][2]string{{"api-version", doc.Info.Version}}

	// Hub name with ',', '[' and ']', which encodeURIComponent escapes; it must match the
	// document's hub pattern. User ids and groups carry '/', a space and other characters
	// whose encoding differs between url.PathEscape and encodeURIComponent.
	const hub = "Hub_1.x,[y]"
	for _, op := range ops {
		if p := op.param("path", "hub"); p != nil && p.Pattern != "" {
			if !regexp.MustCompile(p.Pattern).MatchString(hub) {
				t.Fatalf("%s: sample hub %q does not match the hub pattern %s", op.OperationID, hub, p.Pattern)
			}
		}
	}

	routed := 0
	n := 0
	for _, op := range ops {
		for _, enumVals := range oaEnumVariants(op) {
			n++
			i := n
			name := op.OperationID
			if len(enumVals) > 0 {
				name += "/" + oaKeys(enumVals)
			}
			t.Run(name, func(t *testing.T) {
				// A fresh connection per case: close and revoke operations must not
				// change what a later case finds.
				user := fmt.Sprintf("u/%d x+&'é", i)
				group := fmt.Sprintf("room %d/&'x", i)
				id := oaConnect(t, s, hub, user, group)
				vals := map[string]string{"hub": hub, "userId": user, "group": group, "connectionId": id}
				for k, v := range enumVals {
					vals[k] = v
				}
				ct, body := oaSampleBody(t, op)
				target := op.target(t, vals, apiVersion)
				res := oaDo(t, s, op.Method, target, ct, body)
				oaRequireRouted(t, op, target, res)
				want := op.successStatus(t)
				if res.status != want {
					t.Errorf("%s %s (resource exists): %v, want %d", op.Method, target, res, want)
				} else {
					oaCheckSuccessBody(t, doc, op, want, res, id, user)
				}

				// Unknown ids: the route must still match; a 404 must be about the
				// resource (AddConnectionToGroup, GrantPermission name the connection).
				unknown := map[string]string{"hub": hub, "userId": "nobody/ x", "group": "no group/x", "connectionId": "no/such conn"}
				for k, v := range enumVals {
					unknown[k] = v
				}
				target = op.target(t, unknown, apiVersion)
				res = oaDo(t, s, op.Method, target, ct, body)
				oaRequireRouted(t, op, target, res)
				if !slices.Contains(op.documentedStatuses(), res.status) {
					code, msg, ok := res.errorDetail()
					switch {
					case res.status != 404 || !ok || code != "Error.NotFound":
						t.Errorf("%s %s (unknown ids): %v, want one of %v or a 404 ErrorDetail", op.Method, target, res, op.documentedStatuses())
					case op.param("path", "connectionId") != nil && !strings.Contains(msg, unknown["connectionId"]):
						t.Errorf("%s %s (unknown ids): 404 message %q does not name connection %q", op.Method, target, msg, unknown["connectionId"])
					}
				}
				if !t.Failed() {
					routed++
				}
			})
		}
	}
	if routed != n {
		t.Errorf("%d of %d operation cases routed as documented", routed, n)
	}
	if n < len(ops) {
		t.Errorf("exercised %d cases for %d operations", n, len(ops))
	}

	// Negative controls: these prove the checks above can fail.
	t.Run("negative/unknown-path", func(t *testing.T) {
		for _, tc := range []struct{ method, target string }{
			{"POST", "/api/hubs/h/nope"},
			{"GET", "/api/hubs/h/nope?api-version=" + doc.Info.Version},
			{"POST", "/api/hubs/h/users/u/:nope"},
			{"PUT", "/api/hubs/h/groups/g/connections/c/extra"},
			{"GET", "/api/hubs/h"},
		} {
			res := oaDo(t, s, tc.method, tc.target, "", nil)
			if !res.unknownRoute() {
				t.Errorf("%s %s: %v, want the unknown-route 404", tc.method, tc.target, res)
			}
		}
	})
	t.Run("negative/wrong-method", func(t *testing.T) {
		methods := map[string][]string{}
		for _, op := range ops {
			methods[op.Path] = append(methods[op.Path], op.Method)
		}
		vals := map[string]string{"hub": hub, "userId": "u", "group": "g", "connectionId": "c", "permission": "sendToGroup"}
		checked := 0
		for _, op := range ops {
			if methods[op.Path] == nil {
				continue // path done
			}
			target := op.target(t, vals, apiVersion)
			for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"} {
				if slices.Contains(methods[op.Path], m) {
					continue
				}
				if op.Path == "/api/health" && m == "GET" {
					continue // answered 200 for load balancers (rest-api.md §3.1)
				}
				if oaExtensions[m+" "+op.Path] {
					continue
				}
				res := oaDo(t, s, m, target, "", nil)
				if res.status != 405 {
					t.Errorf("%s %s (not in the document): %v, want 405", m, target, res)
				}
				checked++
			}
			methods[op.Path] = nil
		}
		if checked == 0 {
			t.Error("no wrong-method request was sent")
		}
	})
}

// oaExtensions are methods this server serves on document paths beyond the document:
// its own listings of the groups of a user and of a connection (restlist.go). The
// wrong-method check leaves them out.
var oaExtensions = map[string]bool{
	"GET /api/hubs/{hub}/users/{userId}/groups":             true,
	"GET /api/hubs/{hub}/connections/{connectionId}/groups": true,
}

// oaRequireRouted fails when res says the route of op is unknown or not implemented.
func oaRequireRouted(t *testing.T, op *oaOperation, target string, res oaResult) {
	t.Helper()
	switch {
	case res.unknownRoute():
		t.Errorf("%s %s (%s): route not found: %v", op.Method, target, op.OperationID, res)
	case res.status == 405 || res.status == 501:
		t.Errorf("%s %s (%s): %v", op.Method, target, op.OperationID, res)
	}
}

// oaCheckSuccessBody checks a success response: empty unless the document gives it a
// schema (rest-api.md §1.5), otherwise JSON that fits the schema. The group list must
// also contain the connection that is in the group.
func oaCheckSuccessBody(t *testing.T, doc *oaDocument, op *oaOperation, status int, res oaResult, connID, user string) {
	t.Helper()
	schema := op.Responses[strconv.Itoa(status)].Schema
	if schema == nil {
		if len(res.body) > 0 {
			t.Errorf("%s: success body %q, want empty", op.OperationID, res.body)
		}
		return
	}
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", op.OperationID, ct)
	}
	var v any
	if err := json.Unmarshal(res.body, &v); err != nil {
		t.Errorf("%s: body %q is not JSON: %v", op.OperationID, res.body, err)
		return
	}
	for _, e := range doc.checkShape(t, "body", schema, v) {
		t.Errorf("%s: %s", op.OperationID, e)
	}
	if op.Method == "GET" && strings.HasSuffix(op.Path, "/groups/{group}/connections") {
		var page struct {
			Value []struct {
				ConnectionID string `json:"connectionId"`
				UserID       string `json:"userId"`
			} `json:"value"`
		}
		_ = json.Unmarshal(res.body, &page)
		if len(page.Value) != 1 || page.Value[0].ConnectionID != connID || page.Value[0].UserID != user {
			t.Errorf("%s: body %s, want the one member %q (user %q)", op.OperationID, res.body, connID, user)
		}
	}
}

// TestOpenAPIExamples replays every x-ms-example of the document against a real server
// with the example's own parameters and api-version, and checks that the status is one the
// example lists and that a body the example shows has the same shape.
//
// Substitution: the examples name connection "connection1", which does not exist here.
// Where an operation takes a connectionId and its example lists no 404 (AddConnectionToGroup,
// GrantPermission, CloseConnection, RemoveConnectionFromGroup, RemoveConnectionFromAllGroups,
// RevokePermission, SendToConnection), the id is replaced by a real connection's id, because
// the example's success status presumes the connection exists. Where the example lists 404
// (ConnectionExists, CheckPermission) it is replayed twice: as written (404) and with a
// real connection (200). Every case first connects a fresh client in the example's hub as
// "user1" in "group1", the names the examples use, so exists checks and the group list see
// a member.
func TestOpenAPIExamples(t *testing.T) {
	doc, ops := loadOpenAPI(t)
	s := testServer(t, nil)

	files, err := filepath.Glob(filepath.Join(oaSpecDir, "examples", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example files in %s/examples: %v", oaSpecDir, err)
	}
	unused := map[string]bool{}
	for _, f := range files {
		unused[filepath.Base(f)] = true
	}

	cases := 0
	for _, op := range ops {
		if len(op.Examples) == 0 {
			t.Errorf("%s has no x-ms-examples", op.OperationID)
		}
		for exName, ref := range op.Examples {
			// The document refers to ./examples/<file>, as the copy beside it is laid out.
			file := path.Base(ref.Ref)
			raw, err := os.ReadFile(filepath.Join(oaSpecDir, "examples", file))
			if err != nil {
				t.Errorf("%s: example %s refers to %q: %v", op.OperationID, exName, ref.Ref, err)
				continue
			}
			delete(unused, file)
			var ex oaExample
			if err := json.Unmarshal(raw, &ex); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			withConn := op.param("path", "connectionId") != nil
			_, lists404 := ex.Responses["404"]
			runs := []bool{withConn && !lists404} // substitute the connection id?
			if withConn && lists404 {
				runs = append(runs, true)
			}
			for _, substitute := range runs {
				name := strings.TrimSuffix(file, ".json")
				if substitute {
					name += "/real-connection"
				}
				cases++
				t.Run(name, func(t *testing.T) {
					oaReplayExample(t, s, doc, op, &ex, substitute)
				})
			}
		}
	}
	for f := range unused {
		t.Errorf("example file %s is not referenced by any operation", f)
	}
	if cases < len(ops) {
		t.Errorf("replayed %d example cases for %d operations", cases, len(ops))
	}
}

// oaExample is one x-ms-examples file.
type oaExample struct {
	Parameters map[string]json.RawMessage `json:"parameters"`
	Responses  map[string]struct {
		Body json.RawMessage `json:"body"`
	} `json:"responses"`
}

// oaReplayExample sends ex to s and checks the answer against it. With substitute, the
// connectionId is a real connection's.
func oaReplayExample(t *testing.T, s *Server, doc *oaDocument, op *oaOperation, ex *oaExample, substitute bool) {
	t.Helper()
	params, responses := ex.Parameters, ex.Responses
	for name := range params {
		if op.param("path", name) == nil && op.param("query", name) == nil &&
			(op.bodyParam() == nil || op.bodyParam().Name != name) {
			t.Errorf("example parameter %q is not a parameter of %s", name, op.OperationID)
		}
	}
	hub := "hub1"
	if raw, ok := params["hub"]; ok {
		if err := json.Unmarshal(raw, &hub); err != nil {
			t.Fatalf("hub: %v", err)
		}
	}
	connID := oaConnect(t, s, hub, "user1", "group1")

	vals := map[string]string{}
	var query [][2]string
	var contentType string
	var body []byte
	for _, p := range op.Parameters {
		raw, ok := params[p.Name]
		if !ok {
			if p.Required {
				t.Errorf("example lacks required parameter %q", p.Name)
			}
			continue
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("parameter %q: %v", p.Name, err)
		}
		switch p.In {
		case "path":
			vals[p.Name] = oaScalar(t, p.Name, v)
		case "query":
			if arr, ok := v.([]any); ok { // collectionFormat multi: repeated keys (rest-api.md §1.1)
				for _, e := range arr {
					query = append(query, [2]string{p.Name, oaScalar(t, p.Name, e)})
				}
			} else {
				query = append(query, [2]string{p.Name, oaScalar(t, p.Name, v)})
			}
		case "body":
			if str, ok := v.(string); ok && slices.Contains(op.Consumes, "text/plain") {
				contentType, body = "text/plain", []byte(str)
			} else {
				contentType, body = "application/json", raw
			}
		default:
			t.Fatalf("parameter %q in %q is not supported by this test", p.Name, p.In)
		}
	}
	if substitute {
		vals["connectionId"] = connID
	}

	target := op.target(t, vals, query)
	res := oaDo(t, s, op.Method, target, contentType, body)
	var listed []int
	for k := range responses {
		if n, err := strconv.Atoi(k); err == nil {
			listed = append(listed, n)
		}
	}
	slices.Sort(listed)
	if !slices.Contains(listed, res.status) {
		t.Fatalf("%s %s: %v, want one of %v", op.Method, target, res, listed)
	}
	if substitute && slices.Contains(listed, op.successStatus(t)) && res.status != op.successStatus(t) {
		// The connection exists and holds both permissions: the "yes" answer is due.
		t.Errorf("%s %s with a real connection: %v, want %d", op.Method, target, res, op.successStatus(t))
	}
	want := responses[strconv.Itoa(res.status)].Body
	if len(want) == 0 {
		return
	}
	var got, exBody any
	if err := json.Unmarshal(res.body, &got); err != nil {
		t.Fatalf("%s %s: body %q is not JSON: %v", op.Method, target, res.body, err)
	}
	if err := json.Unmarshal(want, &exBody); err != nil {
		t.Fatal(err)
	}
	// The example body must fit the schema too, else the shape comparison means nothing.
	schema := op.Responses[strconv.Itoa(res.status)].Schema
	for _, e := range doc.checkShape(t, "example body", schema, exBody) {
		t.Errorf("%s: %s", op.OperationID, e)
	}
	for _, e := range doc.checkShape(t, "body", schema, got) {
		t.Errorf("%s: %s", op.OperationID, e)
	}
	for _, e := range doc.sameShape(t, "body", exBody, got, schema) {
		t.Errorf("%s %s: %s (example %s, got %s)", op.Method, target, e, want, res.body)
	}
}

// sameShape compares a response with the example's body: every property of the example
// is present with the same JSON kind, except properties the schema makes optional (such as
// nextLink, present only when more pages remain); array elements are compared with the
// example's first element. Values are not compared: ids and tokens differ by design.
func (d *oaDocument) sameShape(t *testing.T, where string, example, got any, s *oaSchema) []string {
	t.Helper()
	s = d.resolve(t, s)
	kind := func(v any) string {
		switch v.(type) {
		case map[string]any:
			return "object"
		case []any:
			return "array"
		case string:
			return "string"
		case float64:
			return "number"
		case bool:
			return "boolean"
		}
		return "null"
	}
	if kind(example) != kind(got) {
		return []string{fmt.Sprintf("%s is %s, want %s", where, kind(got), kind(example))}
	}
	var bad []string
	switch ex := example.(type) {
	case map[string]any:
		g := got.(map[string]any)
		for k, ev := range ex {
			gv, ok := g[k]
			if !ok {
				if s != nil && len(s.Required) > 0 && !slices.Contains(s.Required, k) {
					continue // optional by the schema
				}
				bad = append(bad, fmt.Sprintf("%s.%s missing", where, k))
				continue
			}
			var ps *oaSchema
			if s != nil {
				ps = s.Properties[k]
			}
			bad = append(bad, d.sameShape(t, where+"."+k, ev, gv, ps)...)
		}
	case []any:
		g := got.([]any)
		if len(ex) > 0 && len(g) == 0 {
			bad = append(bad, fmt.Sprintf("%s is empty, the example shows elements", where))
		}
		if len(ex) > 0 {
			var items *oaSchema
			if s != nil {
				items = s.Items
			}
			for i, gv := range g {
				bad = append(bad, d.sameShape(t, fmt.Sprintf("%s[%d]", where, i), ex[0], gv, items)...)
			}
		}
	}
	return bad
}

// oaScalar renders an example parameter value as it travels in a URL.
func oaScalar(t *testing.T, name string, v any) string {
	t.Helper()
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	t.Fatalf("parameter %q: unsupported value %v (%T)", name, v, v)
	return ""
}
