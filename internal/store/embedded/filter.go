package embedded

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/embedd/embedd/internal/store"
)

// A filter is a compiled boolean expression over a record's metadata JSON.
//
// Supported subset of Milvus boolean expressions:
//
//	expr    = or
//	or      = and { ("or" | "||") and }
//	and     = unary { ("and" | "&&") unary }
//	unary   = ("not" | "!") unary | "(" expr ")" | cmp
//	cmp     = field op literal | field ["not"] "in" "[" literal {"," literal} "]"
//	field   = "metadata" "[" string "]" { "[" string "]" }
//	op      = "==" | "!=" | ">" | ">=" | "<" | "<="
//	literal = string ('..' or "..") | number | "true" | "false"
//
// A missing key or a type mismatch makes a comparison false (and "!=" true
// only when the key exists with another value of the same type), as in Milvus.
// Anything else (arithmetic, json_contains, like, other fields) is
// store.ErrInvalid naming the expression.
type filter func(meta map[string]any) bool

func compileFilter(expr string) (filter, error) {
	p := &parser{src: expr}
	p.next()
	f, err := p.or()
	if err == nil && p.tok.kind != tEOF {
		err = fmt.Errorf("unexpected %q at offset %d", p.tok.text, p.tok.pos)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: filter %q: %v (supported: metadata[\"k\"] ==, !=, <, <=, >, >=, in [..], and, or, not, parentheses)", store.ErrInvalid, expr, err)
	}
	return f, nil
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tOp
	tErr
)

type token struct {
	kind tokKind
	text string
	pos  int
}

type parser struct {
	src string
	pos int
	tok token
}

func (p *parser) next() {
	for p.pos < len(p.src) && unicode.IsSpace(rune(p.src[p.pos])) {
		p.pos++
	}
	start := p.pos
	if p.pos >= len(p.src) {
		p.tok = token{tEOF, "", start}
		return
	}
	c := p.src[p.pos]
	switch {
	case c == '"' || c == '\'':
		i := p.pos + 1
		for i < len(p.src) && p.src[i] != c {
			if p.src[i] == '\\' {
				i++
			}
			i++
		}
		if i >= len(p.src) {
			p.tok = token{tErr, "unterminated string", start}
			p.pos = len(p.src)
			return
		}
		raw := p.src[p.pos+1 : i]
		s, err := strconv.Unquote(`"` + strings.ReplaceAll(raw, `"`, `\"`) + `"`)
		if err != nil {
			s = raw
		}
		p.pos = i + 1
		p.tok = token{tString, s, start}
	case c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9'):
		i := p.pos + 1
		for i < len(p.src) && strings.IndexByte("0123456789.eE+-", p.src[i]) >= 0 {
			i++
		}
		p.tok = token{tNumber, p.src[p.pos:i], start}
		p.pos = i
	case unicode.IsLetter(rune(c)) || c == '_':
		i := p.pos
		for i < len(p.src) && (unicode.IsLetter(rune(p.src[i])) || unicode.IsDigit(rune(p.src[i])) || p.src[i] == '_') {
			i++
		}
		p.tok = token{tIdent, p.src[p.pos:i], start}
		p.pos = i
	default:
		for _, op := range []string{"==", "!=", ">=", "<=", "&&", "||", ">", "<", "!", "(", ")", "[", "]", ","} {
			if strings.HasPrefix(p.src[p.pos:], op) {
				p.tok = token{tOp, op, start}
				p.pos += len(op)
				return
			}
		}
		p.tok = token{tErr, string(c), start}
		p.pos++
	}
}

func (p *parser) is(kind tokKind, text ...string) bool {
	if p.tok.kind != kind {
		return false
	}
	for _, t := range text {
		if strings.EqualFold(p.tok.text, t) {
			return true
		}
	}
	return len(text) == 0
}

func (p *parser) expect(op string) error {
	if !p.is(tOp, op) {
		return fmt.Errorf("expected %q at offset %d, got %q", op, p.tok.pos, p.tok.text)
	}
	p.next()
	return nil
}

func (p *parser) or() (filter, error) {
	l, err := p.and()
	for err == nil && (p.is(tIdent, "or") || p.is(tOp, "||")) {
		p.next()
		var r filter
		if r, err = p.and(); err == nil {
			a, b := l, r
			l = func(m map[string]any) bool { return a(m) || b(m) }
		}
	}
	return l, err
}

func (p *parser) and() (filter, error) {
	l, err := p.unary()
	for err == nil && (p.is(tIdent, "and") || p.is(tOp, "&&")) {
		p.next()
		var r filter
		if r, err = p.unary(); err == nil {
			a, b := l, r
			l = func(m map[string]any) bool { return a(m) && b(m) }
		}
	}
	return l, err
}

func (p *parser) unary() (filter, error) {
	switch {
	case p.is(tIdent, "not") || p.is(tOp, "!"):
		p.next()
		f, err := p.unary()
		if err != nil {
			return nil, err
		}
		return func(m map[string]any) bool { return !f(m) }, nil
	case p.is(tOp, "("):
		p.next()
		f, err := p.or()
		if err != nil {
			return nil, err
		}
		return f, p.expect(")")
	}
	return p.cmp()
}

func (p *parser) literal() (any, error) {
	switch {
	case p.tok.kind == tString:
		v := p.tok.text
		p.next()
		return v, nil
	case p.tok.kind == tNumber:
		v, err := strconv.ParseFloat(p.tok.text, 64)
		if err != nil {
			return nil, fmt.Errorf("bad number %q at offset %d", p.tok.text, p.tok.pos)
		}
		p.next()
		return v, nil
	case p.is(tIdent, "true", "false"):
		v := strings.EqualFold(p.tok.text, "true")
		p.next()
		return v, nil
	}
	return nil, fmt.Errorf("expected a string, number or boolean at offset %d, got %q", p.tok.pos, p.tok.text)
}

func (p *parser) cmp() (filter, error) {
	path, err := p.path()
	if err != nil {
		return nil, err
	}
	get := lookup(path)
	negate := false
	if p.is(tIdent, "not") {
		negate = true
		p.next()
		if !p.is(tIdent, "in") {
			return nil, fmt.Errorf("expected in after not at offset %d", p.tok.pos)
		}
	}
	if p.is(tIdent, "in") {
		return p.in(get, negate)
	}
	return p.comparison(get)
}

// path parses metadata["key"]["key"]... and returns the keys.
func (p *parser) path() ([]string, error) {
	if !p.is(tIdent, "metadata") {
		return nil, fmt.Errorf("expected metadata[\"key\"] at offset %d, got %q", p.tok.pos, p.tok.text)
	}
	p.next()
	var path []string
	for p.is(tOp, "[") {
		p.next()
		if p.tok.kind != tString {
			return nil, fmt.Errorf("expected a quoted key at offset %d, got %q", p.tok.pos, p.tok.text)
		}
		path = append(path, p.tok.text)
		p.next()
		if err := p.expect("]"); err != nil {
			return nil, err
		}
	}
	if len(path) == 0 {
		return nil, fmt.Errorf("expected [\"key\"] after metadata at offset %d", p.tok.pos)
	}
	return path, nil
}

// getter returns the value at a path of a metadata object, if there is one.
type getter func(m map[string]any) (any, bool)

func lookup(path []string) getter {
	return func(m map[string]any) (any, bool) {
		var v any = m
		for _, k := range path {
			o, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = o[k]; !ok {
				return nil, false
			}
		}
		return v, true
	}
}

// in parses `in [literal, ...]` after a path; negate is a preceding not.
func (p *parser) in(get getter, negate bool) (filter, error) {
	p.next()
	if err := p.expect("["); err != nil {
		return nil, err
	}
	var set []any
	for !p.is(tOp, "]") {
		v, err := p.literal()
		if err != nil {
			return nil, err
		}
		set = append(set, v)
		if !p.is(tOp, "]") {
			if err := p.expect(","); err != nil {
				return nil, err
			}
		}
	}
	p.next()
	return func(m map[string]any) bool {
		v, ok := get(m)
		if !ok {
			return false
		}
		for _, s := range set {
			if c, ok := compare(v, s); ok && c == 0 {
				return !negate
			}
		}
		return negate
	}, nil
}

// comparison parses `op literal` after a path.
func (p *parser) comparison(get getter) (filter, error) {
	if !p.is(tOp, "==", "!=", ">", ">=", "<", "<=") {
		return nil, fmt.Errorf("expected a comparison at offset %d, got %q", p.tok.pos, p.tok.text)
	}
	op := p.tok.text
	p.next()
	lit, err := p.literal()
	if err != nil {
		return nil, err
	}
	return func(m map[string]any) bool {
		v, ok := get(m)
		if !ok {
			return false
		}
		c, ok := compare(v, lit)
		if !ok {
			return false
		}
		switch op {
		case "==":
			return c == 0
		case "!=":
			return c != 0
		case ">":
			return c > 0
		case ">=":
			return c >= 0
		case "<":
			return c < 0
		default:
			return c <= 0
		}
	}, nil
}

// compare orders a JSON value against a literal of the same type.
func compare(v, lit any) (int, bool) {
	switch l := lit.(type) {
	case float64:
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case json.Number:
			var err error
			if f, err = x.Float64(); err != nil {
				return 0, false
			}
		default:
			return 0, false
		}
		switch {
		case f < l:
			return -1, true
		case f > l:
			return 1, true
		}
		return 0, true
	case string:
		s, ok := v.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(s, l), true
	case bool:
		b, ok := v.(bool)
		if !ok {
			return 0, false
		}
		switch {
		case b == l:
			return 0, true
		case !b:
			return -1, true
		}
		return 1, true
	}
	return 0, false
}
