package embedded

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/embedd/embedd/internal/fuzzcheck"
	"github.com/embedd/embedd/internal/store"
)

// FuzzCompileFilter parses arbitrary filter expressions (and evaluates them
// on arbitrary metadata JSON, decoded as Upsert keeps it):
//   - compileFilter never panics, allocates at most a small multiple of the
//     expression, and fails only with store.ErrInvalid;
//   - a compiled filter never panics and is deterministic;
//   - the grammar's identities hold: "(E)" is E, "not (E)" and "!(E)" are
//     its negation, "E and E" and "E or E" are E, "E or not (E)" is true.
//
// The older FuzzFilter (embedded_test.go) checks only the error kind. Long
// run by hand (make fuzz):
//
//	go test -run '^$' -fuzz '^FuzzCompileFilter$' -fuzztime 1000000x -parallel 1 ./internal/store/embedded/
func FuzzCompileFilter(f *testing.F) {
	for _, s := range []struct{ expr, meta string }{
		{`metadata["k"] == "v"`, `{"k":"v"}`},
		{`metadata["n"] in [1, 2] or not metadata["b"] == true`, `{"n":2,"b":false}`},
		{`(metadata["a"]["b"] >= -1.5e3)`, `{"a":{"b":-1500}}`},
		{`metadata['s'] not in ['x', "y\"z"] && metadata["f"] < 0.5 || !(metadata["t"] != false)`, `{"s":"y\"z","f":0.25,"t":false}`},
		{`METADATA["k"] <= 'w' AND metadata["k"] > "a"`, `{"k":"v"}`},
		{`metadata["k"] == "unterminated`, `{}`},
		{`metadata["k"] + 1 == 2`, `[]`},
		{`((((metadata["x"] == 1))))`, `{"x":1}`},
	} {
		f.Add(s.expr, []byte(s.meta))
	}
	f.Fuzz(func(t *testing.T, expr string, metaJSON []byte) {
		var fl filter
		var err error
		fuzzcheck.CheckAllocs(t, 0, len(expr), func() { fl, err = compileFilter(expr) })
		if err != nil {
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("%q: error %v is not ErrInvalid", expr, err)
			}
			return
		}
		var meta map[string]any
		_ = json.Unmarshal(metaJSON, &meta) // as upsertMem: non-objects match nothing
		for _, m := range []map[string]any{meta, nil, {"k": "v", "n": 1.0, "b": true, "a": map[string]any{"b": -1500.0}}} {
			want := fl(m)
			if fl(m) != want {
				t.Fatalf("%q is not deterministic", expr)
			}
			for _, id := range []struct {
				form string
				neg  bool
			}{
				{"(" + expr + ")", false},
				{"not (" + expr + ")", true},
				{"!(" + expr + ")", true},
				{expr + " and " + expr, false},
				{expr + " or " + expr, false},
			} {
				g, err := compileFilter(id.form)
				if err != nil {
					t.Fatalf("%q compiles but %q does not: %v", expr, id.form, err)
				}
				if g(m) != (want != id.neg) {
					t.Fatalf("%q is %v on %v but %q is %v", expr, want, m, id.form, g(m))
				}
			}
			g, err := compileFilter(expr + " or not (" + expr + ")")
			if err != nil || !g(m) {
				t.Fatalf("%q: E or not (E) is not true: %v", expr, err)
			}
		}
	})
}
