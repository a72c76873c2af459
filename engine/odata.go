package engine

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// OData filter language of the REST API (rest-api.md §5).
//
// CompileFilter parses a filter once into a flat expression tree; Match walks
// that tree for every candidate connection. Constant sub-expressions
// (tolower('X'), concat('a','b'), …) are folded at compile time. The only
// strings Match may have to build are tolower/toupper/concat results that
// depend on a connection; they are written into a pooled scratch buffer, so
// Match does not allocate in the steady state.

const (
	// FilterMaxBytes is the longest filter text CompileFilter accepts (§5.6).
	FilterMaxBytes = 4096
	// FilterDefaultMaxClauses is the clause limit used when CompileFilter is
	// given maxClauses <= 0 (§5.6).
	FilterDefaultMaxClauses = 100
	// odataMaxDepth bounds nesting of parentheses, not and function calls so
	// that neither the parser nor Match recurses without bound.
	odataMaxDepth = 128
)

// FilterError is a syntax, type or limit error in an OData filter. Pos is the
// 0-based byte offset of the offending token (len(filter) for "unexpected end").
// The REST layer answers it with 400 Error.BadRequest, target "filter".
type FilterError struct {
	Pos int
	Msg string
}

func (e *FilterError) Error() string {
	return "invalid filter at position " + strconv.Itoa(e.Pos) + ": " + e.Msg
}

// FilterTarget is what a filter sees of one connection (§5.1).
type FilterTarget struct {
	ConnectionID string
	// UserID is the user; it is null to the filter unless HasUser is set.
	UserID  string
	HasUser bool
	// InGroup reports membership for `'g' in groups`. Nil means no groups.
	// When the tested value is computed from the connection (for example
	// `tolower(userId) in groups`) Match has to convert it to a string,
	// which allocates; literals and plain identifiers never do.
	InGroup func(group string) bool
	// GroupCount is the number of groups the connection is in; it is the
	// value of length(groups). Callers may leave it unset when the filter's
	// CountsGroups is false.
	GroupCount int
}

// Filter is a compiled OData filter (rest-api.md §5). It is safe for
// concurrent use and Match does not allocate. Do not copy a Filter.
type Filter struct {
	src   string
	nodes []odataNode
	root  int32
	// arena is set when Match may need scratch space (tolower, toupper or
	// concat of a connection value survived constant folding).
	arena bool
	// countsGroups is set when Match reads FilterTarget.GroupCount.
	countsGroups bool
	pool         sync.Pool // of *odataScratch, only used when arena is set
}

// CountsGroups reports whether the filter reads FilterTarget.GroupCount
// (length(groups)), so callers can skip counting a connection's groups.
func (f *Filter) CountsGroups() bool { return f != nil && f.countsGroups }

// String returns the filter text as it was compiled.
func (f *Filter) String() string { return f.src }

// Match reports whether the connection t satisfies the filter. A nil filter
// matches everything; a nil target matches nothing. A filter whose value is
// null for t (for example `startswith(userId, 'a')` without a user) does not
// match.
func (f *Filter) Match(t *FilterTarget) bool {
	if f == nil {
		return true
	}
	if t == nil {
		return false
	}
	var sc *odataScratch
	if f.arena {
		sc = f.pool.Get().(*odataScratch)
		sc.buf = sc.buf[:0]
	}
	v := f.eval(f.root, t, sc)
	if sc != nil {
		f.pool.Put(sc)
	}
	return v.kind == odataKBool && v.b
}

// CompileFilter parses s (already URL-decoded, §5.3). maxClauses bounds the
// number of comparison, `in` and function-call clauses; <= 0 means
// FilterDefaultMaxClauses. Text longer than FilterMaxBytes is rejected. Every
// error is a *FilterError.
func CompileFilter(s string, maxClauses int) (*Filter, error) {
	if maxClauses <= 0 {
		maxClauses = FilterDefaultMaxClauses
	}
	if len(s) > FilterMaxBytes {
		return nil, &FilterError{Pos: FilterMaxBytes, Msg: fmt.Sprintf("filter longer than %d bytes", FilterMaxBytes)}
	}
	p := &odataParser{src: s, maxClauses: maxClauses}
	if err := p.next(); err != nil {
		return nil, err
	}
	root, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != odataTokEOF {
		return nil, p.errf(p.tok.pos, "unexpected %s", p.tok.describe())
	}
	if rn := &p.nodes[root]; rn.typ != odataTyBool {
		return nil, p.errf(rn.start, "filter must be a boolean expression, not %s", rn.typ)
	}
	f := &Filter{src: s, nodes: p.nodes, root: root}
	for i := range f.nodes {
		switch f.nodes[i].op {
		case odataOpToLower, odataOpToUpper, odataOpConcat:
			f.arena = true
		case odataOpLength:
			if f.nodes[f.nodes[i].args[0]].op == odataOpGroups {
				f.countsGroups = true
			}
		}
	}
	if f.arena {
		f.pool.New = func() any { return &odataScratch{buf: make([]byte, 0, 256)} }
	}
	return f, nil
}

// ---- values ----

type odataKind uint8

const (
	odataKNull odataKind = iota
	odataKBool
	odataKInt
	odataKStr
)

// odataVal is a runtime value. A string lives either in s or, when inArena is
// set, at buf[off:off+n] of the Match's scratch buffer.
type odataVal struct {
	kind    odataKind
	b       bool
	inArena bool
	i       int64
	s       string
	off, n  int
}

func odataStr(s string) odataVal { return odataVal{kind: odataKStr, s: s} }
func odataInt(i int64) odataVal  { return odataVal{kind: odataKInt, i: i} }
func odataBool(b bool) odataVal  { return odataVal{kind: odataKBool, b: b} }

type odataScratch struct{ buf []byte }

func (sc *odataScratch) bytesOf(v odataVal) []byte { return sc.buf[v.off : v.off+v.n] }

// put moves a string value into the arena.
func (sc *odataScratch) put(v odataVal) odataVal {
	if v.inArena {
		return v
	}
	off := len(sc.buf)
	sc.buf = append(sc.buf, v.s...)
	return odataVal{kind: odataKStr, inArena: true, off: off, n: len(v.s)}
}

// pair returns two string values as byte slices of the arena.
func (sc *odataScratch) pair(a, b odataVal) ([]byte, []byte) {
	a = sc.put(a)
	b = sc.put(b)
	return sc.bytesOf(a), sc.bytesOf(b)
}

func (sc *odataScratch) appendVal(v odataVal) {
	if v.inArena {
		sc.buf = append(sc.buf, sc.buf[v.off:v.off+v.n]...)
	} else {
		sc.buf = append(sc.buf, v.s...)
	}
}

// ---- static types ----

type odataType uint8

const (
	odataTyNull odataType = iota
	odataTyBool
	odataTyInt
	odataTyString
	odataTyColl
)

func (t odataType) String() string {
	switch t {
	case odataTyNull:
		return "null"
	case odataTyBool:
		return "a boolean"
	case odataTyInt:
		return "an integer"
	case odataTyString:
		return "a string"
	default:
		return "a collection"
	}
}

// ---- tree ----

type odataOp uint8

const (
	odataOpConst odataOp = iota
	odataOpUserID
	odataOpConnID
	odataOpGroups
	odataOpEq
	odataOpNe
	odataOpGt
	odataOpGe
	odataOpLt
	odataOpLe
	odataOpAnd
	odataOpOr
	odataOpNot
	odataOpInList
	odataOpInGroups
	odataOpToLower
	odataOpToUpper
	odataOpTrim
	odataOpSubstring
	odataOpConcat
	odataOpIndexOf
	odataOpLength
	odataOpStartsWith
	odataOpEndsWith
	odataOpContains
)

type odataNode struct {
	op    odataOp
	typ   odataType
	start int // first byte of the expression
	a, b  int32
	args  []int32 // call arguments or the `in` list
	// set replaces a linear scan for long lists of constant strings.
	set     map[string]struct{}
	setNull bool
	val     odataVal // odataOpConst
}

// odataFuncs lists the functions of §5.4: op, min and max argument count.
var odataFuncs = map[string]struct {
	op       odataOp
	min, max int
}{
	"tolower":    {odataOpToLower, 1, 1},
	"toupper":    {odataOpToUpper, 1, 1},
	"trim":       {odataOpTrim, 1, 1},
	"substring":  {odataOpSubstring, 2, 3},
	"concat":     {odataOpConcat, 2, 2},
	"indexof":    {odataOpIndexOf, 2, 2},
	"length":     {odataOpLength, 1, 1},
	"startswith": {odataOpStartsWith, 2, 2},
	"endswith":   {odataOpEndsWith, 2, 2},
	"contains":   {odataOpContains, 2, 2},
}

var odataCmpOps = map[string]odataOp{
	"eq": odataOpEq, "ne": odataOpNe, "gt": odataOpGt,
	"ge": odataOpGe, "lt": odataOpLt, "le": odataOpLe,
}

// ---- lexer ----

type odataTokKind uint8

const (
	odataTokEOF odataTokKind = iota
	odataTokLParen
	odataTokRParen
	odataTokComma
	odataTokString
	odataTokInt
	odataTokWord
)

type odataTok struct {
	kind odataTokKind
	pos  int
	text string // word as written, or the unescaped string literal
	word string // lower-cased word
	ival int64
}

func (t *odataTok) describe() string {
	switch t.kind {
	case odataTokEOF:
		return "end of filter"
	case odataTokLParen:
		return "'('"
	case odataTokRParen:
		return "')'"
	case odataTokComma:
		return "','"
	case odataTokString:
		return "string literal"
	case odataTokInt:
		return "integer literal"
	default:
		return strconv.Quote(t.text)
	}
}

func (t *odataTok) isWord(w string) bool { return t.kind == odataTokWord && t.word == w }

func odataWordByte(c byte) bool {
	return c == '_' || c >= 0x80 || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

type odataParser struct {
	src        string
	off        int
	tok        odataTok
	nodes      []odataNode
	clauses    int
	maxClauses int
	depth      int
}

func (p *odataParser) errf(pos int, format string, args ...any) error {
	return &FilterError{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// next lexes the next token into p.tok.
func (p *odataParser) next() error {
	s := p.src
	for p.off < len(s) && (s[p.off] == ' ' || s[p.off] == '\t' || s[p.off] == '\r' || s[p.off] == '\n') {
		p.off++
	}
	start := p.off
	p.tok = odataTok{pos: start}
	if start >= len(s) {
		p.tok.kind = odataTokEOF
		return nil
	}
	switch c := s[start]; {
	case c == '(':
		p.tok.kind = odataTokLParen
		p.off++
	case c == ')':
		p.tok.kind = odataTokRParen
		p.off++
	case c == ',':
		p.tok.kind = odataTokComma
		p.off++
	case c == '\'':
		var sb strings.Builder
		i := start + 1
		for {
			j := strings.IndexByte(s[i:], '\'')
			if j < 0 {
				return p.errf(start, "unterminated string literal")
			}
			sb.WriteString(s[i : i+j])
			i += j + 1
			if i < len(s) && s[i] == '\'' {
				sb.WriteByte('\'')
				i++
				continue
			}
			break
		}
		p.tok.kind = odataTokString
		p.tok.text = sb.String()
		p.off = i
	case ('0' <= c && c <= '9') || ((c == '+' || c == '-') && start+1 < len(s) && '0' <= s[start+1] && s[start+1] <= '9'):
		i := start + 1
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		if i < len(s) && odataWordByte(s[i]) {
			return p.errf(start, "invalid number")
		}
		n, err := strconv.ParseInt(s[start:i], 10, 64)
		if err != nil {
			return p.errf(start, "integer out of range")
		}
		p.tok.kind = odataTokInt
		p.tok.ival = n
		p.off = i
	case odataWordByte(c):
		i := start + 1
		for i < len(s) && odataWordByte(s[i]) {
			i++
		}
		p.tok.kind = odataTokWord
		p.tok.text = s[start:i]
		p.tok.word = strings.ToLower(p.tok.text)
		p.off = i
	default:
		return p.errf(start, "unexpected character %q", rune(c))
	}
	return nil
}

func (p *odataParser) clause(pos int) error {
	p.clauses++
	if p.clauses > p.maxClauses {
		return p.errf(pos, "too many clauses (limit %d)", p.maxClauses)
	}
	return nil
}

func (p *odataParser) enter(pos int) error {
	p.depth++
	if p.depth > odataMaxDepth {
		return p.errf(pos, "expression nested too deeply (limit %d)", odataMaxDepth)
	}
	return nil
}

// add appends n and folds it to a constant when all its operands are.
func (p *odataParser) add(n odataNode) int32 {
	foldable := true
	switch n.op {
	case odataOpConst, odataOpUserID, odataOpConnID, odataOpGroups, odataOpInGroups:
		foldable = false
	case odataOpEq, odataOpNe, odataOpGt, odataOpGe, odataOpLt, odataOpLe, odataOpAnd, odataOpOr:
		foldable = p.nodes[n.a].op == odataOpConst && p.nodes[n.b].op == odataOpConst
	case odataOpNot:
		foldable = p.nodes[n.a].op == odataOpConst
	case odataOpInList:
		foldable = p.nodes[n.a].op == odataOpConst
	}
	for _, c := range n.args {
		if p.nodes[c].op != odataOpConst {
			foldable = false
		}
	}
	p.nodes = append(p.nodes, n)
	idx := int32(len(p.nodes) - 1)
	if foldable {
		tmp := Filter{nodes: p.nodes}
		sc := &odataScratch{}
		v := tmp.eval(idx, &FilterTarget{}, sc)
		if v.inArena {
			v = odataStr(string(sc.bytesOf(v)))
		}
		p.nodes[idx] = odataNode{op: odataOpConst, typ: n.typ, start: n.start, val: v}
	}
	return idx
}

func (p *odataParser) needBool(i int32, what string) error {
	if n := &p.nodes[i]; n.typ != odataTyBool {
		return p.errf(n.start, "operand of '%s' must be a boolean, not %s", what, n.typ)
	}
	return nil
}

// parseOr: orExpr = andExpr { "or" andExpr }.
func (p *odataParser) parseOr() (int32, error) {
	return p.parseChain("or", odataOpOr, p.parseAnd)
}

// parseAnd: andExpr = cmpExpr { "and" cmpExpr }.
func (p *odataParser) parseAnd() (int32, error) {
	return p.parseChain("and", odataOpAnd, p.parseCmp)
}

// parseChain parses operand { word operand } for the boolean operator word, left
// associative, both sides checked to be booleans.
func (p *odataParser) parseChain(word string, op odataOp, operand func() (int32, error)) (int32, error) {
	l, err := operand()
	if err != nil {
		return 0, err
	}
	for p.tok.isWord(word) {
		if err := p.next(); err != nil {
			return 0, err
		}
		r, err := operand()
		if err != nil {
			return 0, err
		}
		if err := p.needBool(l, word); err != nil {
			return 0, err
		}
		if err := p.needBool(r, word); err != nil {
			return 0, err
		}
		l = p.add(odataNode{op: op, typ: odataTyBool, start: p.nodes[l].start, a: l, b: r})
	}
	return l, nil
}

// parseCmp: cmpExpr = unary [ cmpOp unary | "in" inTarget ]. `not` binds
// tighter than comparisons (§5.2 precedence), so its operand is a unary.
func (p *odataParser) parseCmp() (int32, error) {
	l, err := p.parseUnary()
	if err != nil {
		return 0, err
	}
	if p.tok.kind != odataTokWord {
		return l, nil
	}
	opPos, word := p.tok.pos, p.tok.word
	if op, ok := odataCmpOps[word]; ok {
		if err := p.clause(opPos); err != nil {
			return 0, err
		}
		if err := p.next(); err != nil {
			return 0, err
		}
		r, err := p.parseUnary()
		if err != nil {
			return 0, err
		}
		lt, rt := p.nodes[l].typ, p.nodes[r].typ
		if lt == odataTyColl {
			return 0, p.errf(p.nodes[l].start, "groups can only be used with 'in' or length()")
		}
		if rt == odataTyColl {
			return 0, p.errf(p.nodes[r].start, "groups can only be used with 'in' or length()")
		}
		if lt != rt && lt != odataTyNull && rt != odataTyNull {
			return 0, p.errf(opPos, "cannot compare %s with %s", lt, rt)
		}
		return p.add(odataNode{op: op, typ: odataTyBool, start: p.nodes[l].start, a: l, b: r}), nil
	}
	if word == "in" {
		if err := p.clause(opPos); err != nil {
			return 0, err
		}
		if err := p.next(); err != nil {
			return 0, err
		}
		return p.parseInTarget(l)
	}
	return l, nil
}

// parseInTarget: inTarget = "(" value { "," value } ")" | collection.
func (p *odataParser) parseInTarget(x int32) (int32, error) {
	xn := p.nodes[x]
	if xn.typ == odataTyColl {
		return 0, p.errf(xn.start, "groups cannot be the left operand of 'in'")
	}
	if p.tok.isWord("groups") {
		if err := p.next(); err != nil {
			return 0, err
		}
		return p.inGroups(x, xn)
	}
	if p.tok.kind != odataTokLParen {
		return 0, p.errf(p.tok.pos, "expected '(' or groups after 'in', found %s", p.tok.describe())
	}
	if err := p.enter(p.tok.pos); err != nil {
		return 0, err
	}
	if err := p.next(); err != nil {
		return 0, err
	}
	if p.tok.kind == odataTokRParen {
		return 0, p.errf(p.tok.pos, "empty list after 'in'")
	}
	var list []int32
	for {
		v, err := p.parseValue()
		if err != nil {
			return 0, err
		}
		list = append(list, v)
		if p.tok.kind == odataTokComma {
			if err := p.next(); err != nil {
				return 0, err
			}
			continue
		}
		if p.tok.kind != odataTokRParen {
			return 0, p.errf(p.tok.pos, "expected ',' or ')' in list, found %s", p.tok.describe())
		}
		break
	}
	p.depth--
	if err := p.next(); err != nil {
		return 0, err
	}
	if len(list) == 1 && p.nodes[list[0]].op == odataOpGroups {
		// `x in (groups)`: collection = "(" collection ")".
		return p.inGroups(x, xn)
	}
	allConst := true
	for _, e := range list {
		en := &p.nodes[e]
		if en.typ == odataTyColl {
			return 0, p.errf(en.start, "groups can only be used with 'in' or length()")
		}
		if en.typ != xn.typ && en.typ != odataTyNull && xn.typ != odataTyNull {
			return 0, p.errf(en.start, "list element is %s, left operand of 'in' is %s", en.typ, xn.typ)
		}
		if en.op != odataOpConst {
			allConst = false
		}
	}
	n := odataNode{op: odataOpInList, typ: odataTyBool, start: xn.start, a: x, args: list}
	if allConst && xn.typ == odataTyString && len(list) > 8 {
		n.set = make(map[string]struct{}, len(list))
		for _, e := range list {
			if v := p.nodes[e].val; v.kind == odataKStr {
				n.set[v.s] = struct{}{}
			} else {
				n.setNull = true
			}
		}
	}
	return p.add(n), nil
}

func (p *odataParser) inGroups(x int32, xn odataNode) (int32, error) {
	if xn.typ != odataTyString && xn.typ != odataTyNull {
		return 0, p.errf(xn.start, "left operand of 'in groups' must be a string, not %s", xn.typ)
	}
	return p.add(odataNode{op: odataOpInGroups, typ: odataTyBool, start: xn.start, a: x}), nil
}

// parseUnary: "not" unary | value.
func (p *odataParser) parseUnary() (int32, error) {
	if !p.tok.isWord("not") {
		return p.parseValue()
	}
	pos := p.tok.pos
	if err := p.enter(pos); err != nil {
		return 0, err
	}
	if err := p.next(); err != nil {
		return 0, err
	}
	x, err := p.parseUnary()
	if err != nil {
		return 0, err
	}
	p.depth--
	if err := p.needBool(x, "not"); err != nil {
		return 0, err
	}
	return p.add(odataNode{op: odataOpNot, typ: odataTyBool, start: pos, a: x}), nil
}

// parseValue: literal | identifier | call | "(" filter ")".
func (p *odataParser) parseValue() (int32, error) {
	t := p.tok
	switch t.kind {
	case odataTokLParen:
		if err := p.enter(t.pos); err != nil {
			return 0, err
		}
		if err := p.next(); err != nil {
			return 0, err
		}
		x, err := p.parseOr()
		if err != nil {
			return 0, err
		}
		if p.tok.kind != odataTokRParen {
			return 0, p.errf(p.tok.pos, "expected ')', found %s", p.tok.describe())
		}
		p.depth--
		return x, p.next()
	case odataTokString:
		return p.add(odataNode{op: odataOpConst, typ: odataTyString, start: t.pos, val: odataStr(t.text)}), p.next()
	case odataTokInt:
		return p.add(odataNode{op: odataOpConst, typ: odataTyInt, start: t.pos, val: odataInt(t.ival)}), p.next()
	case odataTokWord:
	default:
		return 0, p.errf(t.pos, "expected a value, found %s", t.describe())
	}
	n := odataNode{start: t.pos}
	switch t.word {
	case "true", "false":
		n.op, n.typ, n.val = odataOpConst, odataTyBool, odataBool(t.word == "true")
	case "null":
		n.op, n.typ = odataOpConst, odataTyNull
	case "userid":
		n.op, n.typ = odataOpUserID, odataTyString
	case "connectionid":
		n.op, n.typ = odataOpConnID, odataTyString
	case "groups":
		n.op, n.typ = odataOpGroups, odataTyColl
	default:
		if fn, ok := odataFuncs[t.word]; ok {
			return p.parseCall(t, fn.op, fn.min, fn.max)
		}
		if _, ok := odataCmpOps[t.word]; ok || t.word == "and" || t.word == "or" || t.word == "in" || t.word == "not" {
			return 0, p.errf(t.pos, "expected a value, found %s", t.describe())
		}
		if err := p.next(); err == nil && p.tok.kind == odataTokLParen {
			return 0, p.errf(t.pos, "unknown function %q", t.text)
		}
		return 0, p.errf(t.pos, "unknown identifier %q", t.text)
	}
	return p.add(n), p.next()
}

// parseCall: name "(" [ value { "," value } ] ")".
func (p *odataParser) parseCall(name odataTok, op odataOp, minArgs, maxArgs int) (int32, error) {
	if err := p.next(); err != nil {
		return 0, err
	}
	if p.tok.kind != odataTokLParen {
		return 0, p.errf(p.tok.pos, "expected '(' after %s, found %s", name.text, p.tok.describe())
	}
	if err := p.clause(name.pos); err != nil {
		return 0, err
	}
	if err := p.enter(p.tok.pos); err != nil {
		return 0, err
	}
	if err := p.next(); err != nil {
		return 0, err
	}
	var args []int32
	if p.tok.kind != odataTokRParen {
		for {
			v, err := p.parseValue()
			if err != nil {
				return 0, err
			}
			args = append(args, v)
			if p.tok.kind == odataTokComma {
				if err := p.next(); err != nil {
					return 0, err
				}
				continue
			}
			if p.tok.kind != odataTokRParen {
				return 0, p.errf(p.tok.pos, "expected ',' or ')' in arguments of %s, found %s", name.text, p.tok.describe())
			}
			break
		}
	}
	p.depth--
	if len(args) < minArgs || len(args) > maxArgs {
		want := strconv.Itoa(minArgs)
		if maxArgs != minArgs {
			want += " or " + strconv.Itoa(maxArgs)
		}
		return 0, p.errf(name.pos, "%s takes %s arguments, got %d", name.text, want, len(args))
	}
	n := odataNode{op: op, start: name.pos, args: args}
	switch op {
	case odataOpToLower, odataOpToUpper, odataOpTrim, odataOpSubstring, odataOpConcat:
		n.typ = odataTyString
	case odataOpIndexOf, odataOpLength:
		n.typ = odataTyInt
	default:
		n.typ = odataTyBool
	}
	for i, a := range args {
		want := odataTyString
		if op == odataOpSubstring && i > 0 {
			want = odataTyInt
		}
		at := p.nodes[a].typ
		if at == want || at == odataTyNull || (op == odataOpLength && at == odataTyColl) {
			continue
		}
		return 0, p.errf(p.nodes[a].start, "argument %d of %s must be %s, not %s", i+1, name.text, want, at)
	}
	return p.add(n), p.next()
}

// ---- evaluation ----

var odataNull = odataVal{}

func (f *Filter) eval(i int32, t *FilterTarget, sc *odataScratch) odataVal {
	n := &f.nodes[i]
	switch n.op {
	case odataOpConst:
		return n.val
	case odataOpUserID:
		if t.HasUser {
			return odataStr(t.UserID)
		}
		return odataNull
	case odataOpConnID:
		return odataStr(t.ConnectionID)
	case odataOpEq, odataOpNe, odataOpGt, odataOpGe, odataOpLt, odataOpLe:
		return odataBool(f.compare(n.op, f.eval(n.a, t, sc), f.eval(n.b, t, sc), sc))
	case odataOpAnd:
		a := f.eval(n.a, t, sc)
		if a.kind == odataKBool && !a.b {
			return a
		}
		b := f.eval(n.b, t, sc)
		if b.kind == odataKBool && !b.b {
			return b
		}
		if a.kind == odataKBool && b.kind == odataKBool {
			return a
		}
		return odataNull
	case odataOpOr:
		a := f.eval(n.a, t, sc)
		if a.kind == odataKBool && a.b {
			return a
		}
		b := f.eval(n.b, t, sc)
		if b.kind == odataKBool && b.b {
			return b
		}
		if a.kind == odataKBool && b.kind == odataKBool {
			return a
		}
		return odataNull
	case odataOpNot:
		a := f.eval(n.a, t, sc)
		if a.kind != odataKBool {
			return odataNull
		}
		return odataBool(!a.b)
	case odataOpInGroups:
		x := f.eval(n.a, t, sc)
		if x.kind != odataKStr || t.InGroup == nil {
			return odataBool(false)
		}
		if x.inArena {
			return odataBool(t.InGroup(string(sc.bytesOf(x))))
		}
		return odataBool(t.InGroup(x.s))
	case odataOpInList:
		x := f.eval(n.a, t, sc)
		if n.set != nil {
			switch {
			case x.kind == odataKNull:
				return odataBool(n.setNull)
			case x.inArena:
				_, ok := n.set[string(sc.bytesOf(x))]
				return odataBool(ok)
			default:
				_, ok := n.set[x.s]
				return odataBool(ok)
			}
		}
		for _, e := range n.args {
			if f.compare(odataOpEq, x, f.eval(e, t, sc), sc) {
				return odataBool(true)
			}
		}
		return odataBool(false)
	case odataOpLength:
		if f.nodes[n.args[0]].op == odataOpGroups {
			return odataInt(int64(t.GroupCount))
		}
		s := f.eval(n.args[0], t, sc)
		switch {
		case s.kind != odataKStr:
			return odataNull
		case s.inArena:
			return odataInt(int64(utf8.RuneCount(sc.bytesOf(s))))
		default:
			return odataInt(int64(utf8.RuneCountInString(s.s)))
		}
	case odataOpToLower, odataOpToUpper:
		s := f.eval(n.args[0], t, sc)
		if s.kind != odataKStr {
			return odataNull
		}
		return sc.mapCase(s, n.op == odataOpToLower)
	case odataOpTrim:
		s := f.eval(n.args[0], t, sc)
		switch {
		case s.kind != odataKStr:
			return odataNull
		case s.inArena:
			x := sc.bytesOf(s)
			l := len(x) - len(bytes.TrimLeftFunc(x, unicode.IsSpace))
			s.off += l
			s.n = len(bytes.TrimRightFunc(x[l:], unicode.IsSpace))
			return s
		default:
			return odataStr(strings.TrimSpace(s.s))
		}
	case odataOpSubstring:
		return f.substring(n, t, sc)
	case odataOpConcat:
		a, b := f.eval(n.args[0], t, sc), f.eval(n.args[1], t, sc)
		if a.kind != odataKStr || b.kind != odataKStr {
			return odataNull
		}
		off := len(sc.buf)
		sc.appendVal(a)
		sc.appendVal(b)
		return odataVal{kind: odataKStr, inArena: true, off: off, n: len(sc.buf) - off}
	case odataOpIndexOf, odataOpStartsWith, odataOpEndsWith, odataOpContains:
		a, b := f.eval(n.args[0], t, sc), f.eval(n.args[1], t, sc)
		if a.kind != odataKStr || b.kind != odataKStr {
			return odataNull
		}
		return odataStrFunc(n.op, a, b, sc)
	}
	return odataNull
}

// compare applies a comparison operator with the null rules of §5.5.
func (f *Filter) compare(op odataOp, a, b odataVal, sc *odataScratch) bool {
	if a.kind == odataKNull || b.kind == odataKNull {
		switch op {
		case odataOpEq:
			return a.kind == b.kind
		case odataOpNe:
			return a.kind != b.kind
		}
		return false
	}
	if a.kind != b.kind {
		return op == odataOpNe
	}
	var c int
	switch a.kind {
	case odataKBool:
		c = odataB2i(a.b) - odataB2i(b.b)
	case odataKInt:
		switch {
		case a.i < b.i:
			c = -1
		case a.i > b.i:
			c = 1
		}
	default:
		if !a.inArena && !b.inArena {
			c = strings.Compare(a.s, b.s)
		} else {
			x, y := sc.pair(a, b)
			c = bytes.Compare(x, y)
		}
	}
	switch op {
	case odataOpEq:
		return c == 0
	case odataOpNe:
		return c != 0
	case odataOpGt:
		return c > 0
	case odataOpGe:
		return c >= 0
	case odataOpLt:
		return c < 0
	default:
		return c <= 0
	}
}

func odataB2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func odataStrFunc(op odataOp, a, b odataVal, sc *odataScratch) odataVal {
	if !a.inArena && !b.inArena {
		switch op {
		case odataOpStartsWith:
			return odataBool(strings.HasPrefix(a.s, b.s))
		case odataOpEndsWith:
			return odataBool(strings.HasSuffix(a.s, b.s))
		case odataOpContains:
			return odataBool(strings.Contains(a.s, b.s))
		default:
			i := strings.Index(a.s, b.s)
			if i < 0 {
				return odataInt(-1)
			}
			return odataInt(int64(utf8.RuneCountInString(a.s[:i])))
		}
	}
	x, y := sc.pair(a, b)
	switch op {
	case odataOpStartsWith:
		return odataBool(bytes.HasPrefix(x, y))
	case odataOpEndsWith:
		return odataBool(bytes.HasSuffix(x, y))
	case odataOpContains:
		return odataBool(bytes.Contains(x, y))
	default:
		i := bytes.Index(x, y)
		if i < 0 {
			return odataInt(-1)
		}
		return odataInt(int64(utf8.RuneCount(x[:i])))
	}
}

// mapCase implements tolower/toupper. A string that does not change is
// returned as is; otherwise the result is written to the arena.
func (sc *odataScratch) mapCase(s odataVal, lower bool) odataVal {
	conv := unicode.ToUpper
	if lower {
		conv = unicode.ToLower
	}
	if !s.inArena {
		changed := false
		for i := 0; i < len(s.s); {
			r, size := utf8.DecodeRuneInString(s.s[i:])
			if (r == utf8.RuneError && size == 1) || conv(r) != r {
				changed = true
				break
			}
			i += size
		}
		if !changed {
			return s
		}
		s = sc.put(s)
	}
	off := len(sc.buf)
	for i := 0; i < s.n; {
		r, size := utf8.DecodeRune(sc.buf[s.off+i : s.off+s.n])
		sc.buf = utf8.AppendRune(sc.buf, conv(r))
		i += size
	}
	return odataVal{kind: odataKStr, inArena: true, off: off, n: len(sc.buf) - off}
}

// substring(s, start[, length]) counts runes; an out-of-range start or a
// negative length gives the empty string (§5.4).
func (f *Filter) substring(n *odataNode, t *FilterTarget, sc *odataScratch) odataVal {
	s := f.eval(n.args[0], t, sc)
	st := f.eval(n.args[1], t, sc)
	if s.kind != odataKStr || st.kind != odataKInt {
		return odataNull
	}
	hasLen, length := false, int64(0)
	if len(n.args) == 3 {
		l := f.eval(n.args[2], t, sc)
		if l.kind != odataKInt {
			return odataNull
		}
		hasLen, length = true, l.i
	}
	if st.i < 0 || (hasLen && length < 0) {
		return odataStr("")
	}
	if s.inArena {
		lo, hi, ok := odataRuneSpanBytes(sc.bytesOf(s), st.i, length, hasLen)
		if !ok {
			return odataStr("")
		}
		s.off += lo
		s.n = hi - lo
		return s
	}
	lo, hi, ok := odataRuneSpan(s.s, st.i, length, hasLen)
	if !ok {
		return odataStr("")
	}
	return odataStr(s.s[lo:hi])
}

func odataRuneSpan(s string, start, length int64, hasLen bool) (lo, hi int, ok bool) {
	lo, hi = -1, len(s)
	k := int64(0)
	for bi := range s {
		if k == start {
			lo = bi
		}
		if lo >= 0 && hasLen && k-start == length {
			hi = bi
			break
		}
		k++
	}
	if lo < 0 {
		if k != start {
			return 0, 0, false
		}
		lo = len(s)
	}
	return lo, hi, true
}

func odataRuneSpanBytes(b []byte, start, length int64, hasLen bool) (lo, hi int, ok bool) {
	lo, hi = -1, len(b)
	k := int64(0)
	for bi := range string(b) {
		if k == start {
			lo = bi
		}
		if lo >= 0 && hasLen && k-start == length {
			hi = bi
			break
		}
		k++
	}
	if lo < 0 {
		if k != start {
			return 0, 0, false
		}
		lo = len(b)
	}
	return lo, hi, true
}
