package rules

import (
	"fmt"
	"math"
	"strconv"
)

// Type is the type of an expression or a value.
type Type uint8

const (
	// TypeNull is the type of the literal null and of a null Value; in
	// Check it unifies with every other type.
	TypeNull Type = iota
	TypeNumber
	TypeString
	TypeBool
)

func (t Type) String() string {
	switch t {
	case TypeNumber:
		return "number"
	case TypeString:
		return "string"
	case TypeBool:
		return "bool"
	}
	return "null"
}

// Value is a run-time value. The zero Value is null.
type Value struct {
	Type Type
	Num  float64 // TypeNumber; always finite
	Str  string  // TypeString
	Bool bool    // TypeBool
}

// Number returns a number value, or null when f is NaN or infinite.
func Number(f float64) Value {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Value{}
	}
	return Value{Type: TypeNumber, Num: f}
}

// String returns a string value.
func String(s string) Value { return Value{Type: TypeString, Str: s} }

// Boolean returns a bool value.
func Boolean(b bool) Value { return Value{Type: TypeBool, Bool: b} }

// IsNull reports whether v is null.
func (v Value) IsNull() bool { return v.Type == TypeNull }

func (v Value) String() string {
	switch v.Type {
	case TypeNumber:
		return strconv.FormatFloat(v.Num, 'g', -1, 64)
	case TypeString:
		return strconv.Quote(v.Str)
	case TypeBool:
		return strconv.FormatBool(v.Bool)
	}
	return "null"
}

// Env supplies the inputs of an evaluation.
type Env interface {
	// Feature returns the value of a referenced feature; null if unknown.
	Feature(r Ref) Value
	// Context returns a request context field; ok is false if absent
	// (the expression then sees null).
	Context(key string) (v string, ok bool)
}

// MapEnv is an Env backed by maps; nil maps are empty.
type MapEnv struct {
	Features map[Ref]Value
	Fields   map[string]string
}

// Feature implements Env.
func (m MapEnv) Feature(r Ref) Value { return m.Features[r] }

// Context implements Env.
func (m MapEnv) Context(key string) (string, bool) {
	v, ok := m.Fields[key]
	return v, ok
}

// Eval evaluates e in env. It never fails or panics; see the package
// documentation for the null rules. Its cost is linear in the size of e.
func (e *Expr) Eval(env Env) Value { return eval(e.root, env) }

func eval(n *node, env Env) Value {
	switch n.op {
	case opNum:
		return Number(n.num)
	case opStr:
		return String(n.str)
	case opBool:
		return Boolean(n.b)
	case opNull:
		return Value{}
	case opRef:
		v := env.Feature(Ref{n.str, n.ver})
		if v.Type == TypeNumber {
			return Number(v.Num) // keep the finite invariant whatever env returns
		}
		return v
	case opCtx:
		if s, ok := env.Context(n.str); ok {
			return String(s)
		}
		return Value{}
	case opNeg:
		if x := eval(n.kids[0], env); x.Type == TypeNumber {
			return Number(-x.Num)
		}
		return Value{}
	case opNot:
		if x := eval(n.kids[0], env); x.Type == TypeBool {
			return Boolean(!x.Bool)
		}
		return Value{}
	case opAdd, opSub, opMul, opDiv:
		a, b := eval(n.kids[0], env), eval(n.kids[1], env)
		if a.Type != TypeNumber || b.Type != TypeNumber {
			return Value{}
		}
		switch n.op {
		case opAdd:
			return Number(a.Num + b.Num)
		case opSub:
			return Number(a.Num - b.Num)
		case opMul:
			return Number(a.Num * b.Num)
		}
		return Number(a.Num / b.Num) // x/0 is not finite, so null
	case opEq, opNe, opLt, opLe, opGt, opGe:
		return compare(n.op, eval(n.kids[0], env), eval(n.kids[1], env))
	case opAnd, opOr:
		return andOr(n, env)
	case opCase:
		k := n.kids
		for i := 0; i+1 < len(k); i += 2 {
			if c := eval(k[i], env); c.Type == TypeBool && c.Bool {
				return eval(k[i+1], env)
			}
		}
		return eval(k[len(k)-1], env)
	case opCoalesce:
		for _, k := range n.kids {
			if v := eval(k, env); !v.IsNull() {
				return v
			}
		}
		return Value{}
	case opMin, opMax, opClamp:
		return minMax(n, env)
	}
	return Value{}
}

// andOr evaluates && and || in three-valued logic: the deciding value
// (false for &&, true for ||) wins over null.
func andOr(n *node, env Env) Value {
	decide := n.op == opOr
	a := eval(n.kids[0], env)
	if a.Type == TypeBool && a.Bool == decide {
		return a
	}
	b := eval(n.kids[1], env)
	if b.Type == TypeBool && b.Bool == decide {
		return b
	}
	if a.Type == TypeBool && b.Type == TypeBool {
		return Boolean(!decide)
	}
	return Value{}
}

// minMax evaluates min, max and clamp: null unless every argument is a
// number.
func minMax(n *node, env Env) Value {
	var xs [3]float64
	args := xs[:0]
	for _, k := range n.kids {
		v := eval(k, env)
		if v.Type != TypeNumber {
			return Value{}
		}
		args = append(args, v.Num)
	}
	switch n.op {
	case opClamp:
		return Number(math.Min(math.Max(args[0], args[1]), args[2]))
	case opMin:
		r := args[0]
		for _, x := range args[1:] {
			r = math.Min(r, x)
		}
		return Number(r)
	}
	r := args[0]
	for _, x := range args[1:] {
		r = math.Max(r, x)
	}
	return Number(r)
}

func compare(o op, a, b Value) Value {
	if a.Type != b.Type || a.IsNull() {
		return Value{}
	}
	var c int // -1, 0, 1
	switch a.Type {
	case TypeNumber:
		c = cmp3(a.Num < b.Num, a.Num > b.Num)
	case TypeString:
		c = cmp3(a.Str < b.Str, a.Str > b.Str)
	case TypeBool:
		if o != opEq && o != opNe {
			return Value{}
		}
		c = cmp3(!a.Bool && b.Bool, a.Bool && !b.Bool)
	}
	switch o {
	case opEq:
		return Boolean(c == 0)
	case opNe:
		return Boolean(c != 0)
	case opLt:
		return Boolean(c < 0)
	case opLe:
		return Boolean(c <= 0)
	case opGt:
		return Boolean(c > 0)
	}
	return Boolean(c >= 0)
}

func cmp3(less, greater bool) int {
	switch {
	case less:
		return -1
	case greater:
		return 1
	}
	return 0
}

// Check returns the static type of e, given the type of every referenced
// feature; refType reports false for a feature it cannot type. The result
// is TypeNull only for an expression that is always null. Errors are
// *Error wrapping ErrType, at the offending operator.
func (e *Expr) Check(refType func(Ref) (Type, bool)) (Type, error) {
	return e.check(e.root, refType)
}

func (e *Expr) typeErr(n *node, format string, args ...any) *Error {
	line, col := position(e.src, n.off)
	return &Error{Offset: n.off, Line: line, Col: col, Msg: fmt.Sprintf(format, args...), Err: ErrType}
}

// unify returns the common type of a and b, where null fits any type.
func unify(a, b Type) (Type, bool) {
	switch {
	case a == TypeNull:
		return b, true
	case b == TypeNull, a == b:
		return a, true
	}
	return 0, false
}

func (e *Expr) check(n *node, refType func(Ref) (Type, bool)) (Type, error) {
	switch n.op {
	case opNum:
		return TypeNumber, nil
	case opStr, opCtx:
		return TypeString, nil
	case opBool:
		return TypeBool, nil
	case opNull:
		return TypeNull, nil
	case opRef:
		r := Ref{n.str, n.ver}
		t, ok := refType(r)
		if !ok {
			return 0, e.typeErr(n, "cannot type feature %s", r)
		}
		return t, nil
	}
	kids := make([]Type, len(n.kids))
	for i, k := range n.kids {
		t, err := e.check(k, refType)
		if err != nil {
			return 0, err
		}
		kids[i] = t
	}
	all := func(want Type, what string) error {
		for i, t := range kids {
			if t != want && t != TypeNull {
				return e.typeErr(n, "%s: operand %d is %s; want %s", what, i+1, t, want)
			}
		}
		return nil
	}
	name := opText(n.op)
	switch n.op {
	case opNeg, opAdd, opSub, opMul, opDiv, opMin, opMax, opClamp:
		return TypeNumber, all(TypeNumber, name)
	case opNot, opAnd, opOr:
		return TypeBool, all(TypeBool, name)
	case opEq, opNe, opLt, opLe, opGt, opGe:
		t, ok := unify(kids[0], kids[1])
		if !ok {
			return 0, e.typeErr(n, "%s compares %s with %s", name, kids[0], kids[1])
		}
		if t == TypeBool && n.op != opEq && n.op != opNe {
			return 0, e.typeErr(n, "%s does not order bools", name)
		}
		return TypeBool, nil
	case opCoalesce:
		t := TypeNull
		for i, k := range kids {
			u, ok := unify(t, k)
			if !ok {
				return 0, e.typeErr(n, "coalesce: argument %d is %s; earlier ones are %s", i+1, k, t)
			}
			t = u
		}
		return t, nil
	case opCase:
		t := TypeNull
		for i, k := range kids {
			if i%2 == 0 && i+1 < len(kids) {
				if k != TypeBool && k != TypeNull {
					return 0, e.typeErr(n, "case: condition %d is %s; want bool", i/2+1, k)
				}
				continue
			}
			u, ok := unify(t, k)
			if !ok {
				return 0, e.typeErr(n, "case: argument %d is %s; earlier values are %s", i+1, k, t)
			}
			t = u
		}
		return t, nil
	}
	return 0, e.typeErr(n, "unknown operator")
}
