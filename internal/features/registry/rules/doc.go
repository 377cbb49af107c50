// Package rules is the expression language of rule features: small, typed,
// side-effect free and bounded, so that a rule declared in a registry file
// can be parsed once at load time and evaluated on every request without
// surprises.
//
// # Syntax
//
//	expr     = or
//	or       = and { "||" and }
//	and      = cmp { "&&" cmp }
//	cmp      = sum [ ("==" | "!=" | "<" | "<=" | ">" | ">=") sum ]
//	sum      = product { ("+" | "-") product }
//	product  = unary { ("*" | "/") unary }
//	unary    = ("!" | "-") unary | primary
//	primary  = number | string | "true" | "false" | "null"
//	         | "context" "." key          (a request context field, a string)
//	         | name [ "@" version ]       (another feature of the same entity)
//	         | func "(" expr { "," expr } ")"
//	         | "(" expr ")"
//
// Numbers are decimal (1, 0.5, 2e3); strings use double or single quotes
// with the escapes \\, \" and \' only. Comparisons do not chain. Functions:
//
//	case(c1, v1, c2, v2, ..., default)   the v of the first true c, else default
//	coalesce(a, b, ...)                  the first argument that is not null
//	min(a, b, ...), max(a, b, ...)       numbers
//	clamp(x, lo, hi)                     min(max(x, lo), hi)
//
// The seed's engagement score reads:
//
//	case(events_count_5m > 10, 0.9, events_count_5m > 5, 0.7, 0.5)
//	  * case(context.tier == "premium", 1.2, context.tier == "enterprise", 1.5, 1.0)
//
// # Types and null
//
// Every expression has a static type, number, string or bool (Check), so a
// checked expression never meets a type error at run time. Null is a value
// of every type. It comes from a missing feature value, a missing context
// field, the literal null, or a number that is not finite (x / 0, overflow).
// Arithmetic, comparisons, min, max and clamp with a null operand are null;
// && and || follow three-valued logic (false && null is false, true || null
// is true); a null condition of case counts as false; coalesce returns its
// first non-null argument. Eval never fails: an expression that was not
// checked and mixes types evaluates the ill-typed part to null.
//
// # Limits
//
// A source is at most MaxExprBytes of valid UTF-8 and its syntax tree at
// most MaxDepth deep (parentheses, unary operators and calls count too), so
// parsing and evaluation take time linear in MaxExprBytes and stack
// proportional to MaxDepth.
//
// An Expr is immutable after Parse and safe for concurrent use.
package rules

import "errors"

// Errors returned by Parse and Check, always inside an *Error that gives the
// position; test for them with errors.Is.
var (
	// ErrSyntax reports a source that does not follow the grammar, an
	// unknown function or a wrong number of arguments.
	ErrSyntax = errors.New("rules: syntax error")
	// ErrLimit reports a source longer than MaxExprBytes or deeper than
	// MaxDepth.
	ErrLimit = errors.New("rules: limit exceeded")
	// ErrType reports operands of the wrong type, or a feature reference
	// the caller of Check could not type.
	ErrType = errors.New("rules: type error")
)

// Limits on an expression.
const (
	// MaxExprBytes bounds the length of a source in bytes.
	MaxExprBytes = 1024
	// MaxDepth bounds the nesting of the syntax tree.
	MaxDepth = 32
	// MaxVersion bounds the version of a pinned reference (name@version).
	MaxVersion = 1_000_000
)
