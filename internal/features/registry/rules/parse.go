package rules

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is a problem at a position of an expression source. Line and Col
// are 1-based; Col counts runes.
type Error struct {
	Offset    int // byte offset into the source
	Line, Col int
	Msg       string
	Err       error // ErrSyntax, ErrLimit or ErrType
}

func (e *Error) Error() string {
	if e.Line == 1 {
		return fmt.Sprintf("%v at column %d: %s", e.Err, e.Col, e.Msg)
	}
	return fmt.Sprintf("%v at line %d column %d: %s", e.Err, e.Line, e.Col, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// Ref names a feature of the same entity. Version 0 means the latest
// servable version, resolved by the registry when it loads the rule.
type Ref struct {
	Name    string
	Version int
}

func (r Ref) String() string {
	if r.Version == 0 {
		return r.Name
	}
	return r.Name + "@" + strconv.Itoa(r.Version)
}

// RefUse is one reference to a feature in a source, with its position.
type RefUse struct {
	Ref       Ref
	Line, Col int
}

// Expr is a parsed expression.
type Expr struct {
	src  string
	root *node
	refs []RefUse // distinct refs, in order of first use
	ctx  []string // distinct context keys, in order of first use
}

type op uint8

const (
	opNum op = iota
	opStr
	opBool
	opNull
	opRef
	opCtx
	opNeg
	opNot
	opAdd
	opSub
	opMul
	opDiv
	opEq
	opNe
	opLt
	opLe
	opGt
	opGe
	opAnd
	opOr
	opCase
	opCoalesce
	opMin
	opMax
	opClamp
)

// opText is the source text of an operator or function.
func opText(o op) string {
	switch o {
	case opNeg, opSub:
		return "-"
	case opNot:
		return "!"
	case opAdd:
		return "+"
	case opMul:
		return "*"
	case opDiv:
		return "/"
	case opEq:
		return "=="
	case opNe:
		return "!="
	case opLt:
		return "<"
	case opLe:
		return "<="
	case opGt:
		return ">"
	case opGe:
		return ">="
	case opAnd:
		return "&&"
	case opOr:
		return "||"
	case opCase:
		return "case"
	case opCoalesce:
		return "coalesce"
	case opMin:
		return "min"
	case opMax:
		return "max"
	case opClamp:
		return "clamp"
	}
	return "?"
}

// function returns the op of a function name and whether n arguments fit
// it; want describes the arity for error messages.
func function(name string, n int) (o op, ok bool, want string, known bool) {
	switch name {
	case "case":
		return opCase, n >= 3 && n%2 == 1, "an odd number of arguments, at least 3", true
	case "coalesce":
		return opCoalesce, n >= 2, "at least 2 arguments", true
	case "min":
		return opMin, n >= 2, "at least 2 arguments", true
	case "max":
		return opMax, n >= 2, "at least 2 arguments", true
	case "clamp":
		return opClamp, n == 3, "3 arguments", true
	}
	return 0, false, "", false
}

// node is one syntax tree node. Which fields are set depends on op.
type node struct {
	op     op
	off    int     // byte offset of the token that made the node
	num    float64 // opNum
	str    string  // opStr: the value; opRef: the name; opCtx: the key
	b      bool    // opBool
	ver    int     // opRef
	kids   []*node
	height int // 1 for a leaf
}

// IsReserved reports whether name cannot be a feature name in an expression
// because it is a literal or the context prefix.
func IsReserved(name string) bool {
	switch name {
	case "true", "false", "null", "context":
		return true
	}
	return false
}

// Parse parses src. Errors are *Error wrapping ErrSyntax or ErrLimit.
func Parse(src string) (*Expr, error) {
	p := &parser{src: src}
	if len(src) > MaxExprBytes {
		return nil, p.err(0, ErrLimit, "expression is %d bytes; limit %d", len(src), MaxExprBytes)
	}
	if !utf8.ValidString(src) {
		return nil, p.err(0, ErrSyntax, "expression is not valid UTF-8")
	}
	if err := p.next(); err != nil {
		return nil, err
	}
	if p.tok.kind == tEOF {
		return nil, p.err(0, ErrSyntax, "empty expression")
	}
	root, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.unexpected()
	}
	e := &Expr{src: src, root: root}
	seenRef := map[Ref]bool{}
	seenCtx := map[string]bool{}
	walk(root, func(n *node) {
		switch n.op {
		case opRef:
			r := Ref{n.str, n.ver}
			if !seenRef[r] {
				seenRef[r] = true
				line, col := position(src, n.off)
				e.refs = append(e.refs, RefUse{Ref: r, Line: line, Col: col})
			}
		case opCtx:
			if !seenCtx[n.str] {
				seenCtx[n.str] = true
				e.ctx = append(e.ctx, n.str)
			}
		}
	})
	return e, nil
}

func walk(n *node, f func(*node)) {
	f(n)
	for _, k := range n.kids {
		walk(k, f)
	}
}

// Source returns the source as written.
func (e *Expr) Source() string { return e.src }

// Refs returns the distinct feature references in order of first use.
func (e *Expr) Refs() []RefUse { return append([]RefUse(nil), e.refs...) }

// ContextKeys returns the distinct context keys read, in order of first use.
func (e *Expr) ContextKeys() []string { return append([]string(nil), e.ctx...) }

// String returns the canonical form: fully parenthesized, numbers in
// shortest form, strings double-quoted, single spaces. Two sources with the
// same canonical form mean the same thing; the form parses back to itself.
func (e *Expr) String() string {
	var b strings.Builder
	format(&b, e.root)
	return b.String()
}

func format(b *strings.Builder, n *node) {
	switch n.op {
	case opNum:
		b.WriteString(strconv.FormatFloat(n.num, 'g', -1, 64))
	case opStr:
		b.WriteByte('"')
		for _, r := range n.str {
			if r == '"' || r == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		b.WriteByte('"')
	case opBool:
		b.WriteString(strconv.FormatBool(n.b))
	case opNull:
		b.WriteString("null")
	case opRef:
		b.WriteString(Ref{n.str, n.ver}.String())
	case opCtx:
		b.WriteString("context.")
		b.WriteString(n.str)
	case opNeg, opNot:
		b.WriteString(opText(n.op))
		format(b, n.kids[0])
	case opCase, opCoalesce, opMin, opMax, opClamp:
		b.WriteString(opText(n.op))
		b.WriteByte('(')
		for i, k := range n.kids {
			if i > 0 {
				b.WriteString(", ")
			}
			format(b, k)
		}
		b.WriteByte(')')
	default: // binary
		b.WriteByte('(')
		format(b, n.kids[0])
		b.WriteByte(' ')
		b.WriteString(opText(n.op))
		b.WriteByte(' ')
		format(b, n.kids[1])
		b.WriteByte(')')
	}
}

type parser struct {
	src  string
	pos  int
	tok  token
	nest int
}

func (p *parser) err(off int, kind error, format string, args ...any) *Error {
	line, col := position(p.src, off)
	return &Error{Offset: off, Line: line, Col: col, Msg: fmt.Sprintf(format, args...), Err: kind}
}

func (p *parser) unexpected() *Error {
	switch p.tok.kind {
	case tEOF:
		return p.err(p.tok.off, ErrSyntax, "unexpected end of expression")
	case tStr:
		return p.err(p.tok.off, ErrSyntax, "unexpected string %q", p.tok.str)
	}
	return p.err(p.tok.off, ErrSyntax, "unexpected %q", p.tok.text)
}

func (p *parser) is(punct string) bool { return p.tok.kind == tPunct && p.tok.text == punct }

func (p *parser) mk(o op, off int, kids ...*node) (*node, error) {
	h := 0
	for _, k := range kids {
		h = max(h, k.height)
	}
	n := &node{op: o, off: off, kids: kids, height: h + 1}
	if n.height > MaxDepth {
		return nil, p.err(off, ErrLimit, "expression nests deeper than %d", MaxDepth)
	}
	return n, nil
}

func (p *parser) enter(off int) error {
	p.nest++
	if p.nest > MaxDepth {
		return p.err(off, ErrLimit, "expression nests deeper than %d", MaxDepth)
	}
	return nil
}

// binary parses a left-associative level: operand { op operand }.
func (p *parser) binary(operand func() (*node, error), ops func(string) (op, bool)) (*node, error) {
	l, err := operand()
	if err != nil {
		return nil, err
	}
	for p.tok.kind == tPunct {
		o, ok := ops(p.tok.text)
		if !ok {
			break
		}
		off := p.tok.off
		if err := p.next(); err != nil {
			return nil, err
		}
		r, err := operand()
		if err != nil {
			return nil, err
		}
		if l, err = p.mk(o, off, l, r); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func orOp(t string) (op, bool)  { return opOr, t == "||" }
func andOp(t string) (op, bool) { return opAnd, t == "&&" }

func sumOp(t string) (op, bool) {
	switch t {
	case "+":
		return opAdd, true
	case "-":
		return opSub, true
	}
	return 0, false
}

func productOp(t string) (op, bool) {
	switch t {
	case "*":
		return opMul, true
	case "/":
		return opDiv, true
	}
	return 0, false
}

func cmpOp(t string) (op, bool) {
	switch t {
	case "==":
		return opEq, true
	case "!=":
		return opNe, true
	case "<":
		return opLt, true
	case "<=":
		return opLe, true
	case ">":
		return opGt, true
	case ">=":
		return opGe, true
	}
	return 0, false
}

func (p *parser) parseOr() (*node, error)  { return p.binary(p.parseAnd, orOp) }
func (p *parser) parseAnd() (*node, error) { return p.binary(p.parseCmp, andOp) }
func (p *parser) parseSum() (*node, error) { return p.binary(p.parseProduct, sumOp) }
func (p *parser) parseProduct() (*node, error) {
	return p.binary(p.parseUnary, productOp)
}

func (p *parser) parseCmp() (*node, error) {
	l, err := p.parseSum()
	if err != nil {
		return nil, err
	}
	o, ok := cmpOp(p.tok.text)
	if p.tok.kind != tPunct || !ok {
		return l, nil
	}
	off := p.tok.off
	if err := p.next(); err != nil {
		return nil, err
	}
	r, err := p.parseSum()
	if err != nil {
		return nil, err
	}
	if _, chained := cmpOp(p.tok.text); p.tok.kind == tPunct && chained {
		return nil, p.err(p.tok.off, ErrSyntax, "comparisons do not chain; join them with &&")
	}
	return p.mk(o, off, l, r)
}

func (p *parser) parseUnary() (*node, error) {
	if !p.is("-") && !p.is("!") {
		return p.parsePrimary()
	}
	o, off := opNeg, p.tok.off
	if p.tok.text == "!" {
		o = opNot
	}
	if err := p.enter(off); err != nil {
		return nil, err
	}
	if err := p.next(); err != nil {
		return nil, err
	}
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	p.nest--
	return p.mk(o, off, x)
}

func (p *parser) parsePrimary() (*node, error) {
	t := p.tok
	switch t.kind {
	case tNum:
		return &node{op: opNum, off: t.off, num: t.num, height: 1}, p.next()
	case tStr:
		return &node{op: opStr, off: t.off, str: t.str, height: 1}, p.next()
	case tIdent:
		return p.parseIdent()
	case tPunct:
		if t.text != "(" {
			break
		}
		if err := p.enter(t.off); err != nil {
			return nil, err
		}
		if err := p.next(); err != nil {
			return nil, err
		}
		x, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if !p.is(")") {
			if p.tok.kind == tEOF {
				return nil, p.err(t.off, ErrSyntax, "unclosed \"(\"")
			}
			return nil, p.unexpected()
		}
		p.nest--
		return x, p.next()
	}
	return nil, p.unexpected()
}

func (p *parser) parseIdent() (*node, error) {
	t := p.tok
	if err := p.next(); err != nil {
		return nil, err
	}
	if IsReserved(t.text) && t.ver != 0 {
		return nil, p.err(t.off, ErrSyntax, "%s cannot take a version", t.text)
	}
	switch t.text {
	case "true", "false":
		return &node{op: opBool, off: t.off, b: t.text == "true", height: 1}, nil
	case "null":
		return &node{op: opNull, off: t.off, height: 1}, nil
	case "context":
		if !p.is(".") {
			return nil, p.err(t.off, ErrSyntax, "context must be followed by .field")
		}
		if err := p.next(); err != nil {
			return nil, err
		}
		if p.tok.kind != tIdent || p.tok.ver != 0 {
			return nil, p.err(p.tok.off, ErrSyntax, "context. must be followed by a field name")
		}
		key := p.tok.text
		return &node{op: opCtx, off: t.off, str: key, height: 1}, p.next()
	}
	if !p.is("(") {
		return &node{op: opRef, off: t.off, str: t.text, ver: t.ver, height: 1}, nil
	}
	if _, _, _, known := function(t.text, 0); !known || t.ver != 0 {
		return nil, p.err(t.off, ErrSyntax, "unknown function %s; known: case, clamp, coalesce, max, min", t.text)
	}
	if err := p.enter(t.off); err != nil {
		return nil, err
	}
	if err := p.next(); err != nil {
		return nil, err
	}
	var args []*node
	for !p.is(")") {
		if len(args) > 0 {
			if !p.is(",") {
				if p.tok.kind == tEOF {
					return nil, p.err(t.off, ErrSyntax, "unclosed %s(", t.text)
				}
				return nil, p.unexpected()
			}
			if err := p.next(); err != nil {
				return nil, err
			}
		}
		a, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		args = append(args, a)
	}
	o, ok, want, _ := function(t.text, len(args))
	if !ok {
		return nil, p.err(t.off, ErrSyntax, "%s takes %s; got %d", t.text, want, len(args))
	}
	p.nest--
	n, err := p.mk(o, t.off, args...)
	if err != nil {
		return nil, err
	}
	return n, p.next()
}
