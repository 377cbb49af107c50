package rules

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		src  string
		kind error
		want string
	}{
		{"", ErrSyntax, "rules: syntax error at column 1: empty expression"},
		{"a +", ErrSyntax, "rules: syntax error at column 4: unexpected end of expression"},
		{"case(a > 1, 2, 3))", ErrSyntax, `rules: syntax error at column 18: unexpected ")"`},
		{"a = 1", ErrSyntax, `rules: syntax error at column 3: unexpected "="; compare with ==`},
		{"a & b", ErrSyntax, `rules: syntax error at column 3: unexpected '&'; use &&`},
		{"1 < a < 3", ErrSyntax, "rules: syntax error at column 7: comparisons do not chain; join them with &&"},
		{"foo(1, 2)", ErrSyntax, "rules: syntax error at column 1: unknown function foo; known: case, clamp, coalesce, max, min"},
		{"case(a, 1)", ErrSyntax, "rules: syntax error at column 1: case takes an odd number of arguments, at least 3; got 2"},
		{"clamp(a, 1)", ErrSyntax, "rules: syntax error at column 1: clamp takes 3 arguments; got 2"},
		{"min(a)", ErrSyntax, "rules: syntax error at column 1: min takes at least 2 arguments; got 1"},
		{"(a + 1", ErrSyntax, `rules: syntax error at column 1: unclosed "("`},
		{"max(a, 1", ErrSyntax, "rules: syntax error at column 1: unclosed max("},
		{`"abc`, ErrSyntax, "rules: syntax error at column 1: unterminated string"},
		{`"a\nb"`, ErrSyntax, `rules: syntax error at column 3: unknown escape \n; only \\, \" and \' are allowed`},
		{"1.", ErrSyntax, `rules: syntax error at column 1: malformed number "1."`},
		{"1e", ErrSyntax, `rules: syntax error at column 1: malformed number "1e"`},
		{"12abc", ErrSyntax, `rules: syntax error at column 1: malformed number "12a"`},
		{"1e999", ErrSyntax, "rules: syntax error at column 1: number 1e999 out of range"},
		{"x@", ErrSyntax, "rules: syntax error at column 1: x@ must be followed by a version number"},
		{"x@0", ErrSyntax, "rules: syntax error at column 1: version 0 of x out of range [1, 1000000]"},
		{"true@1", ErrSyntax, "rules: syntax error at column 1: true cannot take a version"},
		{"context", ErrSyntax, "rules: syntax error at column 1: context must be followed by .field"},
		{"context.1", ErrSyntax, "rules: syntax error at column 9: context. must be followed by a field name"},
		{"a + é", ErrSyntax, "rules: syntax error at column 5: unexpected character 'é'"},
		{"é + $", ErrSyntax, "rules: syntax error at column 1: unexpected character 'é'"},
		{"a +\n  (b * )", ErrSyntax, `rules: syntax error at line 2 column 8: unexpected ")"`},
		{"\xff", ErrSyntax, "rules: syntax error at column 1: expression is not valid UTF-8"},
		{strings.Repeat("1+", 512) + "1", ErrLimit, "rules: limit exceeded at column 1: expression is 1025 bytes; limit 1024"},
		{strings.Repeat("(", 33) + "1" + strings.Repeat(")", 33), ErrLimit, "rules: limit exceeded at column 33: expression nests deeper than 32"},
		{strings.Repeat("-", 40) + "1", ErrLimit, "rules: limit exceeded at column 33: expression nests deeper than 32"},
		{strings.Repeat("1+", 40) + "1", ErrLimit, "rules: limit exceeded at column 64: expression nests deeper than 32"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.src)
		if err == nil {
			t.Errorf("Parse(%q) = nil error; want %q", tt.src, tt.want)
			continue
		}
		if !errors.Is(err, tt.kind) || err.Error() != tt.want {
			t.Errorf("Parse(%q) error = %q; want %q (is %v)", tt.src, err, tt.want, tt.kind)
		}
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) error %T is not *Error", tt.src, err)
		}
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct{ src, want string }{
		{"a+b*c", "(a + (b * c))"},
		{"(a+b)*c", "((a + b) * c)"},
		{"a - b - c", "((a - b) - c)"},
		{"a / b / c", "((a / b) / c)"},
		{"0.50 + 1e3 + 2E-1", "((0.5 + 1000) + 0.2)"},
		{"!a && b || c", "((!a && b) || c)"},
		{"a || b && c", "(a || (b && c))"},
		{"-x * -2", "(-x * -2)"},
		{"- -x", "--x"},
		{`context.tier == 'pre"mium'`, `(context.tier == "pre\"mium")`},
		{`'it\'s' != "a\\b"`, `("it's" != "a\\b")`},
		{"x@3 >= 1 == true", ""}, // chained comparison: error, checked below
		{"case( a>10 ,0.9, 0.5 )", "case((a > 10), 0.9, 0.5)"},
		{"coalesce(x, null)", "coalesce(x, null)"},
		{"min(a,b,c) + max(a,1) + clamp(a, 0, 1)", "((min(a, b, c) + max(a, 1)) + clamp(a, 0, 1))"},
		{"min + max", "(min + max)"}, // names without a call are features
		{"1e21", "1e+21"},
	}
	for _, tt := range tests {
		e, err := Parse(tt.src)
		if tt.want == "" {
			if err == nil {
				t.Errorf("Parse(%q) = %v; want an error", tt.src, e)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		if got := e.String(); got != tt.want {
			t.Errorf("Parse(%q).String() = %q; want %q", tt.src, got, tt.want)
		}
		again, err := Parse(e.String())
		if err != nil || again.String() != e.String() {
			t.Errorf("canonical %q does not parse back to itself: %v, %v", e.String(), again, err)
		}
	}
}

func TestRefs(t *testing.T) {
	e, err := Parse("a + b@2 * a\n + context.tier_x + c + context.tier_x")
	if err != nil {
		t.Fatal(err)
	}
	want := []RefUse{{Ref{"a", 0}, 1, 1}, {Ref{"b", 2}, 1, 5}, {Ref{"c", 0}, 2, 21}}
	got := e.Refs()
	if len(got) != len(want) {
		t.Fatalf("Refs() = %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Refs()[%d] = %v; want %v", i, got[i], want[i])
		}
	}
	if got := e.ContextKeys(); len(got) != 1 || got[0] != "tier_x" {
		t.Errorf("ContextKeys() = %v; want [tier_x]", got)
	}
}

func num(f float64) Value { return Number(f) }

func TestEval(t *testing.T) {
	env := MapEnv{
		Features: map[Ref]Value{
			{"x", 0}:    num(12),
			{"y", 0}:    num(3),
			{"x", 2}:    num(-1),
			{"zero", 0}: num(0),
			{"flag", 0}: Boolean(true),
			{"off", 0}:  Boolean(false),
			{"bad", 0}:  {Type: TypeNumber, Num: math.Inf(1)}, // env breaking the invariant
			// "missing" is absent: null
		},
		Fields: map[string]string{"tier": "premium", "region": "high_growth", "empty": ""},
	}
	null := Value{}
	tests := []struct {
		src  string
		want Value
	}{
		{"1 + 2 * 3", num(7)},
		{"(1 + 2) * 3", num(9)},
		{"10 - 4 - 3", num(3)},
		{"12 / 4 / 3", num(1)},
		{"-x + y", num(-9)},
		{"x@2 * 2", num(-2)},
		{"x / zero", null},
		{"zero / zero", null},
		{"1e308 * 10", null},
		{"bad + 1", null},
		{"missing + 1", null},
		{"-missing", null},
		{"missing * 0", null},
		{"missing > 1", null},
		{"missing == missing", null},
		{"x > 10", Boolean(true)},
		{"x >= 12 && x <= 12", Boolean(true)},
		{"x != 12", Boolean(false)},
		{"x < y", Boolean(false)},
		{`"a" < "b"`, Boolean(true)},
		{`context.tier == "premium"`, Boolean(true)},
		{`context.nope == "premium"`, null},
		{`context.empty == ""`, Boolean(true)},
		{"flag == true", Boolean(true)},
		{"!flag", Boolean(false)},
		{"!missing", null},
		{"off && missing", Boolean(false)},
		{"missing && off", Boolean(false)},
		{"flag && missing", null},
		{"flag || missing", Boolean(true)},
		{"missing || flag", Boolean(true)},
		{"off || missing", null},
		{"flag && off", Boolean(false)},
		{"off || off", Boolean(false)},
		{"flag && flag", Boolean(true)},
		{"case(x > 10, 0.9, x > 5, 0.7, 0.5)", num(0.9)},
		{"case(y > 10, 0.9, y > 5, 0.7, 0.5)", num(0.5)},
		{"case(missing > 10, 0.9, 0.5)", num(0.5)},
		{"case(flag, missing, 1)", null},
		{"coalesce(missing, 0.5)", num(0.5)},
		{"coalesce(missing, null)", null},
		{"coalesce(x, 0.5)", num(12)},
		{`coalesce(context.nope, context.tier)`, String("premium")},
		{"min(x, y, 5)", num(3)},
		{"max(x, y, 5)", num(12)},
		{"min(x, missing)", null},
		{"clamp(x, 0, 1)", num(1)},
		{"clamp(-x, 0, 1)", num(0)},
		{"clamp(0.25, 0, 1)", num(0.25)},
		{"clamp(missing, 0, 1)", null},
		// Ill-typed (not checked) parts evaluate to null instead of failing.
		{`x + "a"`, null},
		{`x == "a"`, null},
		{"!x", null},
		{"x && flag", null},
		{"flag < off", null},
		{"case(x, 1, 2)", num(2)},
	}
	for _, tt := range tests {
		e, err := Parse(tt.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		if got := e.Eval(env); got != tt.want {
			t.Errorf("Eval(%q) = %v; want %v", tt.src, got, tt.want)
		}
	}
}

func TestCheck(t *testing.T) {
	types := func(r Ref) (Type, bool) {
		switch r.Name {
		case "n":
			return TypeNumber, true
		case "b":
			return TypeBool, true
		}
		return 0, false
	}
	tests := []struct {
		src  string
		want Type
		err  string
	}{
		{"n * 2 + 1", TypeNumber, ""},
		{"n > 1 && b", TypeBool, ""},
		{`context.tier`, TypeString, ""},
		{"null", TypeNull, ""},
		{"n + null", TypeNumber, ""},
		{"case(b, 1, null)", TypeNumber, ""},
		{"case(null, null, 1)", TypeNumber, ""},
		{`coalesce(null, context.x, "a")`, TypeString, ""},
		{"b == true", TypeBool, ""},
		{"n + u", 0, "rules: type error at column 5: cannot type feature u"},
		{`n + "a"`, 0, "rules: type error at column 3: +: operand 2 is string; want number"},
		{"-b", 0, "rules: type error at column 1: -: operand 1 is bool; want number"},
		{"!n", 0, "rules: type error at column 1: !: operand 1 is number; want bool"},
		{"n || b", 0, "rules: type error at column 3: ||: operand 1 is number; want bool"},
		{`n == "1"`, 0, "rules: type error at column 3: == compares number with string"},
		{"b < true", 0, "rules: type error at column 3: < does not order bools"},
		{`case(n, 1, 2)`, 0, "rules: type error at column 1: case: condition 1 is number; want bool"},
		{`case(b, 1, "x")`, 0, "rules: type error at column 1: case: argument 3 is string; earlier values are number"},
		{`coalesce(n, b)`, 0, "rules: type error at column 1: coalesce: argument 2 is bool; earlier ones are number"},
		{`min(n, context.x)`, 0, "rules: type error at column 1: min: operand 2 is string; want number"},
	}
	for _, tt := range tests {
		e, err := Parse(tt.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		got, err := e.Check(types)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err || !errors.Is(err, ErrType) {
				t.Errorf("Check(%q) error = %v; want %q", tt.src, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Check(%q) = %v, %v; want %v", tt.src, got, err, tt.want)
		}
	}
}

// TestBoundedCost parses and evaluates the largest expressions the limits
// allow and checks they stay fast.
func TestBoundedCost(t *testing.T) {
	// A wide expression: many terms at the depth limit.
	var b strings.Builder
	b.WriteString("max(")
	for b.Len() < MaxExprBytes-8 {
		b.WriteString("x*y, ")
	}
	b.WriteString("1)")
	e, err := Parse(b.String())
	if err != nil {
		t.Fatal(err)
	}
	env := MapEnv{Features: map[Ref]Value{{"x", 0}: num(2), {"y", 0}: num(3)}}
	start := time.Now()
	for range 1000 {
		if got := e.Eval(env); got != num(6) {
			t.Fatalf("Eval = %v; want 6", got)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("1000 evaluations of a %d-byte expression took %v", len(b.String()), d)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"case(events_count_5m > 10, 0.9, events_count_5m > 5, 0.7, 0.5) * case(context.tier == \"premium\", 1.2, 1.0)",
		"coalesce(opportunity_score, 0.5) * case(context.region == 'high_growth', 1.3, 1.0)",
		"clamp(a@2 / b, -1e3, 1e3) >= 0 || !(c != d) && null == null",
		"min(1, 2, 3)", "((((x))))", "-(-1)", `"\\"`,
	} {
		f.Add(s)
	}
	env := MapEnv{
		Features: map[Ref]Value{{"a", 0}: num(1), {"b", 0}: num(0), {"x", 0}: Boolean(true)},
		Fields:   map[string]string{"tier": "premium"},
	}
	f.Fuzz(func(t *testing.T, src string) {
		start := time.Now()
		e, err := Parse(src)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Line < 1 || pe.Col < 1 {
				t.Fatalf("Parse(%q) error %v has no position", src, err)
			}
			return
		}
		canon := e.String()
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, src, err)
		}
		if again.String() != canon {
			t.Fatalf("canonical form not stable: %q -> %q", canon, again.String())
		}
		v := e.Eval(env)
		if v.Type == TypeNumber && (math.IsNaN(v.Num) || math.IsInf(v.Num, 0)) {
			t.Fatalf("Eval(%q) = %v; not finite", src, v)
		}
		_, _ = e.Check(func(Ref) (Type, bool) { return TypeNumber, true })
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("Parse+Eval of %d bytes took %v", len(src), d)
		}
	})
}
