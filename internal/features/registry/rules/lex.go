package rules

// The lexer of the rule language: the token after p.pos into p.tok (next),
// numbers, identifiers with an optional @version, quoted strings and
// punctuation; and position, which turns a byte offset into the line and
// column of errors.

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// position converts a byte offset of src to a 1-based line and rune column.
func position(src string, off int) (line, col int) {
	off = min(max(off, 0), len(src))
	before := src[:off]
	line = strings.Count(before, "\n") + 1
	if i := strings.LastIndexByte(before, '\n'); i >= 0 {
		before = before[i+1:]
	}
	return line, utf8.RuneCountInString(before) + 1
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tNum
	tStr
	tIdent
	tPunct
)

type token struct {
	kind tokKind
	off  int
	text string  // tIdent: the name; tPunct: the operator; tNum: the source text
	num  float64 // tNum
	str  string  // tStr: the unescaped value
	ver  int     // tIdent: the @version, 0 if none
}

func isIdentStart(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (p *parser) digits() int {
	start := p.pos
	for p.pos < len(p.src) && isDigit(p.src[p.pos]) {
		p.pos++
	}
	return p.pos - start
}

// next reads the next token into p.tok.
func (p *parser) next() error {
	s := p.src
	for p.pos < len(s) && (s[p.pos] == ' ' || s[p.pos] == '\t' || s[p.pos] == '\n' || s[p.pos] == '\r') {
		p.pos++
	}
	start := p.pos
	if p.pos == len(s) {
		p.tok = token{kind: tEOF, off: start}
		return nil
	}
	switch c := s[p.pos]; {
	case isDigit(c):
		return p.number(start)
	case isIdentStart(c):
		return p.ident(start)
	case c == '"' || c == '\'':
		return p.quoted(start, c)
	default:
		return p.punct(start, c)
	}
}

// number reads a number token starting at start.
func (p *parser) number(start int) error {
	s := p.src
	p.digits()
	if p.pos < len(s) && s[p.pos] == '.' {
		p.pos++
		if p.digits() == 0 {
			return p.err(start, ErrSyntax, "malformed number %q", s[start:p.pos])
		}
	}
	if p.pos < len(s) && (s[p.pos] == 'e' || s[p.pos] == 'E') {
		p.pos++
		if p.pos < len(s) && (s[p.pos] == '+' || s[p.pos] == '-') {
			p.pos++
		}
		if p.digits() == 0 {
			return p.err(start, ErrSyntax, "malformed number %q", s[start:p.pos])
		}
	}
	if p.pos < len(s) && (isIdentStart(s[p.pos]) || s[p.pos] == '.' || isDigit(s[p.pos])) {
		return p.err(start, ErrSyntax, "malformed number %q", s[start:p.pos+1])
	}
	text := s[start:p.pos]
	v, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsInf(v, 0) {
		return p.err(start, ErrSyntax, "number %s out of range", text)
	}
	p.tok = token{kind: tNum, off: start, text: text, num: v}
	return nil
}

// ident reads a name, with its @version if any, starting at start.
func (p *parser) ident(start int) error {
	s := p.src
	for p.pos < len(s) && (isIdentStart(s[p.pos]) || isDigit(s[p.pos])) {
		p.pos++
	}
	name := s[start:p.pos]
	ver := 0
	if p.pos < len(s) && s[p.pos] == '@' {
		p.pos++
		dstart := p.pos
		if p.digits() == 0 {
			return p.err(start, ErrSyntax, "%s@ must be followed by a version number", name)
		}
		v, err := strconv.Atoi(s[dstart:p.pos])
		if err != nil || v < 1 || v > MaxVersion {
			return p.err(start, ErrSyntax, "version %s of %s out of range [1, %d]", s[dstart:p.pos], name, MaxVersion)
		}
		ver = v
	}
	p.tok = token{kind: tIdent, off: start, text: name, ver: ver}
	return nil
}

// quoted reads a string quoted with q starting at start.
func (p *parser) quoted(start int, q byte) error {
	s := p.src
	p.pos++
	var b strings.Builder
	for {
		if p.pos >= len(s) {
			return p.err(start, ErrSyntax, "unterminated string")
		}
		ch := s[p.pos]
		if ch == q {
			p.pos++
			break
		}
		if ch == '\\' {
			if p.pos+1 >= len(s) {
				return p.err(start, ErrSyntax, "unterminated string")
			}
			esc := s[p.pos+1]
			if esc != '\\' && esc != '"' && esc != '\'' {
				return p.err(p.pos, ErrSyntax, "unknown escape \\%c; only \\\\, \\\" and \\' are allowed", esc)
			}
			b.WriteByte(esc)
			p.pos += 2
			continue
		}
		b.WriteByte(ch)
		p.pos++
	}
	p.tok = token{kind: tStr, off: start, str: b.String()}
	return nil
}

// punct reads an operator or punctuation token starting at start, whose
// first byte is c.
func (p *parser) punct(start int, c byte) error {
	s := p.src
	two := ""
	if p.pos+1 < len(s) {
		two = s[p.pos : p.pos+2]
	}
	switch two {
	case "==", "!=", "<=", ">=", "&&", "||":
		p.pos += 2
		p.tok = token{kind: tPunct, off: start, text: two}
		return nil
	}
	switch c {
	case '+', '-', '*', '/', '<', '>', '!', '(', ')', ',', '.':
		p.pos++
		p.tok = token{kind: tPunct, off: start, text: string(c)}
		return nil
	case '=':
		return p.err(start, ErrSyntax, "unexpected \"=\"; compare with ==")
	case '&', '|':
		return p.err(start, ErrSyntax, "unexpected %q; use %c%c", c, c, c)
	}
	r, _ := utf8.DecodeRuneInString(s[p.pos:])
	return p.err(start, ErrSyntax, "unexpected character %q", r)
}
