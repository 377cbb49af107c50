package registry

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/embedd/embedd/internal/features/registry/rules"
)

// win is a valid window feature; %s is replaced by extra lines.
const win = `
features:
  - name: x
    version: 1
    entity: user
    type: float
    source: amount
    aggregation: sum
    window: 5m
    description: d
    owner: o
`

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files []string // name, content, name, content...
		kind  error
		want  []string
	}{
		{
			name: "unknown key",
			files: []string{"a.yaml", `
features:
  - name: x
    version: 1
    entity: user
    type: float
    source: amount
    aggregation: sum
    window: 5m
    description: d
    owner: o
    sensitve: true
`},
			kind: ErrInvalid,
			want: []string{`a.yaml:11:5: registry: invalid definition: feature x@1: unknown key "sensitve" (known: name, version, entity, type, source, aggregation, window, expr, timezone, description, owner, tags, sensitive, status)`},
		},
		{
			name:  "unknown top-level key",
			files: []string{"a.yaml", "feature:\n  - name: x\n"},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:1:1: registry: invalid definition: document: unknown key "feature" (known: features, sets)`},
		},
		{
			name:  "repeated key",
			files: []string{"a.yaml", strings.Replace(win, "    owner: o\n", "    owner: o\n    owner: p\n", 1)},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:11:5: registry: invalid definition: feature x@1: key "owner" repeated`},
		},
		{
			name:  "bad name",
			files: []string{"a.yaml", strings.Replace(win, "name: x", "name: Amount-Sum", 1)},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:2:11: registry: invalid definition: features[0]: name "Amount-Sum" must match [a-z][a-z0-9_]* and be at most 64 bytes`},
		},
		{
			name:  "long name",
			files: []string{"a.yaml", strings.Replace(win, "name: x", "name: "+strings.Repeat("a", 65), 1)},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:2:11: registry: invalid definition: features[0]: name "` + strings.Repeat("a", 65) + `" must match [a-z][a-z0-9_]* and be at most 64 bytes`},
		},
		{
			name:  "reserved name",
			files: []string{"a.yaml", strings.Replace(win, "name: x", "name: context", 1)},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:2:11: registry: invalid definition: feature context@1: name "context" is reserved in expressions`},
		},
		{
			name:  "missing window",
			files: []string{"a.yaml", strings.Replace(win, "    window: 5m\n", "", 1)},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:2:5: registry: invalid definition: feature x@1: window is required for aggregation sum`},
		},
		{
			name:  "bad duration",
			files: []string{"a.yaml", strings.Replace(win, "window: 5m", "window: 5 minutes", 1)},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:8:13: registry: invalid definition: feature x@1: window "5 minutes" is not a duration such as 30s, 5m or 1h`},
		},
		{
			name:  "window too long",
			files: []string{"a.yaml", strings.Replace(win, "window: 5m", "window: 25h", 1)},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:8:13: registry: invalid definition: feature x@1: window 25h0m0s out of range (0, 24h0m0s]`},
		},
		{
			name:  "window not whole seconds",
			files: []string{"a.yaml", strings.Replace(win, "window: 5m", "window: 1500ms", 1)},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:8:13: registry: invalid definition: feature x@1: window 1.5s is not a whole number of seconds`},
		},
		{
			name:  "version not an integer",
			files: []string{"a.yaml", strings.Replace(win, "version: 1", "version: one", 1)},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:3:14: registry: invalid definition: features[0]: version must be an integer`},
		},
		{
			name:  "version zero",
			files: []string{"a.yaml", strings.Replace(win, "version: 1", "version: 0", 1)},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:3:14: registry: invalid definition: features[0]: version 0 out of range [1, 1000000]`},
		},
		{
			name:  "wrong type for aggregation",
			files: []string{"a.yaml", strings.Replace(win, "aggregation: sum", "aggregation: count", 1)},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:5:11: registry: invalid definition: feature x@1: type float does not fit aggregation count, which is int`},
		},
		{
			name:  "unknown aggregation",
			files: []string{"a.yaml", strings.Replace(win, "aggregation: sum", "aggregation: median", 1)},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:7:18: registry: invalid definition: feature x@1: aggregation "median" for source amount: want one of count, sum, avg, min, max, stddev, zscore`},
		},
		{
			name:  "events only count",
			files: []string{"a.yaml", strings.Replace(win, "source: amount", "source: events", 1)},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:7:18: registry: invalid definition: feature x@1: aggregation "sum" for source events: want one of count`},
		},
		{
			name: "key not allowed for source",
			files: []string{"a.yaml", `
features:
  - name: s
    version: 1
    entity: user
    type: float
    source: session
    aggregation: session_duration
    window: 5m
    timezone: UTC
    description: d
    owner: o
`},
			kind: ErrInvalid,
			want: []string{
				`a.yaml:8:13: registry: invalid definition: feature s@1: window is not allowed for source session`,
				`a.yaml:9:15: registry: invalid definition: feature s@1: timezone is not allowed except for hour_of_day and day_of_week`,
			},
		},
		{
			name: "bad time zone",
			files: []string{"a.yaml", `
features:
  - {name: h, version: 1, entity: user, type: int, source: temporal, aggregation: hour_of_day, timezone: Local, description: d, owner: o}
`},
			kind: ErrInvalid,
			want: []string{`a.yaml:2:106: registry: invalid definition: feature h@1: temporal: invalid time zone "Local": name an IANA zone such as UTC or Europe/Berlin`},
		},
		{
			name:  "wrong YAML types",
			files: []string{"a.yaml", strings.Replace(win, "    owner: o\n", "    owner: o\n    sensitive: yes\n    tags: notalist\n", 1)},
			kind:  ErrInvalid,
			want: []string{
				`a.yaml:12:11: registry: invalid definition: feature x@1: tags must be a list of strings`,
				`a.yaml:11:16: registry: invalid definition: feature x@1: sensitive must be true or false`,
			},
		},
		{
			name:  "missing required fields",
			files: []string{"a.yaml", "features:\n  - name: x\n    version: 1\n    source: rule\n    expr: '1'\n"},
			kind:  ErrInvalid,
			want: []string{
				`a.yaml:2:5: registry: invalid definition: feature x@1: entity is required`,
				`a.yaml:2:5: registry: invalid definition: feature x@1: type is required`,
				`a.yaml:2:5: registry: invalid definition: feature x@1: description is required`,
				`a.yaml:2:5: registry: invalid definition: feature x@1: owner is required`,
			},
		},
		{
			name:  "YAML alias",
			files: []string{"a.yaml", strings.Replace(win, "    owner: o\n", "    owner: &who o\n", 1) + "  - {name: y, version: 1, entity: user, type: float, source: external, description: d, owner: *who}\n"},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:11:95: registry: invalid definition: feature y@1: owner: YAML aliases are not supported`},
		},
		{
			name:  "YAML syntax",
			files: []string{"a.yaml", "features:\n  - name: x\n\t version: 1\n"},
			kind:  ErrInvalid,
			want:  []string{`a.yaml: registry: invalid definition: yaml: line 2: found a tab character that violates indentation`},
		},
		{
			name: "duplicate version with a different definition",
			files: []string{
				"a.yaml", win,
				"b.yaml", "# moved\n" + strings.Replace(win, "window: 5m", "window: 10m", 1),
			},
			kind: ErrDuplicate,
			want: []string{`b.yaml:4:5: registry: duplicate definition: feature x@1 is already defined differently at a.yaml:2:5`},
		},
		{
			name:  "duplicate version with different documentation",
			files: []string{"a.yaml", win, "b.yaml", strings.Replace(win, "owner: o", "owner: p", 1)},
			kind:  ErrDuplicate,
			want:  []string{`b.yaml:2:5: registry: duplicate definition: feature x@1 is already defined differently at a.yaml:2:5`},
		},
		{
			name: "unknown feature in a set",
			files: []string{"a.yaml", win + `
sets:
  - name: s
    features:
      - x
      - y
      - x@2
      - x@1
`},
			kind: ErrUnknown,
			want: []string{
				`a.yaml:16:9: registry: unknown feature: set s: features[1]: y is not defined`,
				`a.yaml:17:9: registry: unknown feature: set s: features[2]: x@2 is not defined (versions: 1)`,
				`a.yaml:18:9: registry: invalid definition: set s: features[3]: x is already listed at features[0]`,
			},
		},
		{
			name:  "malformed reference in a set",
			files: []string{"a.yaml", win + "sets:\n  - name: s\n    features: [x@0, \"bad name\"]\n"},
			kind:  ErrInvalid,
			want: []string{
				`a.yaml:13:16: registry: invalid definition: set s: features[0]: reference "x@0": version must be an integer in [1, 1000000]`,
				`a.yaml:13:21: registry: invalid definition: set s: features[1]: reference "bad name": name must match [a-z][a-z0-9_]* and be at most 64 bytes`,
			},
		},
		{
			name:  "feature listed twice in a set",
			files: []string{"a.yaml", win + "sets:\n  - {name: s, features: [x, x@1]}\n"},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:12:29: registry: invalid definition: set s: features[1]: x is already listed at features[0]`},
		},
		{
			name:  "duplicate set",
			files: []string{"a.yaml", win + "sets:\n  - {name: s, features: [x]}\n", "b.yaml", "sets:\n  - {name: s, features: [x]}\n"},
			kind:  ErrDuplicate,
			want:  []string{`b.yaml:2:5: registry: duplicate definition: set s is already defined at a.yaml:12:5`},
		},
		{
			name: "unknown identifier in a rule",
			files: []string{"a.yaml", win + `
  - name: r
    version: 1
    entity: user
    type: float
    source: rule
    expr: x + xx * 2
    description: d
    owner: o
`},
			kind: ErrUnknown,
			want: []string{`a.yaml:17:15: registry: unknown feature: feature r@1: expression column 5: xx is not defined`},
		},
		{
			name: "unknown identifier in a block expression",
			files: []string{"a.yaml", win + `
  - name: r
    version: 1
    entity: user
    type: float
    source: rule
    expr: |
      case(x > 1,
           x@3, 0)
    description: d
    owner: o
`},
			kind: ErrUnknown,
			want: []string{`a.yaml:19:12: registry: unknown feature: feature r@1: expression line 2 column 6: x@3 is not defined (versions: 1)`},
		},
		{
			name: "cycle between rules",
			files: []string{"a.yaml", `
features:
  - {name: a, version: 1, entity: user, type: float, source: rule, expr: b + 1, description: d, owner: o}
  - {name: b, version: 1, entity: user, type: float, source: rule, expr: c * 2, description: d, owner: o}
  - {name: c, version: 1, entity: user, type: float, source: rule, expr: a - b, description: d, owner: o}
  - {name: e, version: 1, entity: user, type: float, source: rule, expr: e@1 + 1, description: d, owner: o}
  - {name: f, version: 1, entity: user, type: float, source: rule, expr: a + e, description: d, owner: o}
`},
			kind: ErrCycle,
			want: []string{
				`a.yaml:2:5: registry: rule cycle: a@1 -> b@1 -> c@1 -> a@1`,
				`a.yaml:5:5: registry: rule cycle: e@1 -> e@1`,
			},
		},
		{
			name: "expression syntax error",
			files: []string{"a.yaml", `
features:
  - name: r
    version: 1
    entity: user
    type: float
    source: rule
    expr: case(x > 1, 0.9,, 0.5)
    description: d
    owner: o
`},
			kind: rules.ErrSyntax,
			want: []string{`a.yaml:7:27: registry: invalid definition: feature r@1: expr: rules: syntax error at column 17: unexpected ","`},
		},
		{
			name: "expression syntax error in a quoted value with escapes",
			files: []string{"a.yaml", `
features:
  - {name: r, version: 1, entity: user, type: float, source: rule, expr: "1 +\t+", description: d, owner: o}
`},
			kind: rules.ErrSyntax,
			want: []string{`a.yaml:2:74: registry: invalid definition: feature r@1: expr: rules: syntax error at column 5: unexpected "+"`},
		},
		{
			name: "expression type error",
			files: []string{"a.yaml", win + `
  - {name: r, version: 1, entity: user, type: float, source: rule, expr: x + context.tier, description: d, owner: o}
  - {name: b, version: 1, entity: user, type: bool, source: rule, expr: x * 2, description: d, owner: o}
`},
			kind: rules.ErrType,
			want: []string{
				`a.yaml:12:76: registry: invalid definition: feature r@1: expr: rules: type error at column 3: +: operand 2 is string; want number`,
				`a.yaml:13:73: registry: invalid definition: feature b@1: expr is number; type bool needs a bool expression`,
			},
		},
		{
			name:  "int rule",
			files: []string{"a.yaml", "features:\n  - {name: i, version: 1, entity: user, type: int, source: rule, expr: 1 + 1, description: d, owner: o}\n"},
			kind:  ErrInvalid,
			want:  []string{`a.yaml:2:47: registry: invalid definition: feature i@1: a rule's type is float or bool`},
		},
		{
			name: "rule over another entity",
			files: []string{"a.yaml", win + `
  - {name: r, version: 1, entity: item, type: float, source: rule, expr: x * 2, description: d, owner: o}
`},
			kind: ErrInvalid,
			want: []string{`a.yaml:12:74: registry: invalid definition: feature r@1: expression column 1: x@1 is a feature of entity user, not item`},
		},
		{
			name: "rule over a retired version",
			files: []string{"a.yaml", strings.Replace(win, "owner: o", "owner: o\n    status: retired", 1) + `
  - {name: x, version: 2, entity: user, type: float, source: amount, aggregation: avg, window: 5m, description: d, owner: o}
  - {name: r, version: 1, entity: user, type: float, source: rule, expr: x@1 * 2, description: d, owner: o}
  - {name: old, version: 1, entity: user, type: float, source: rule, expr: x@1 * 2, description: d, owner: o, status: retired}
`},
			kind: ErrRetired,
			want: []string{`a.yaml:14:74: registry: feature retired: feature r@1: expression column 1: x@1 is retired; use x@2`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := loadStrings(t, tt.files...)
			if r != nil {
				t.Errorf("Load returned a registry with errors %v", err)
			}
			wantErrors(t, err, tt.kind, tt.want...)
			var le *Error
			if !errors.As(err, &le) {
				t.Errorf("error %T is not an *Error", err)
			}
		})
	}
}

func TestLoadLimits(t *testing.T) {
	big := File{Name: "big.yaml", Data: make([]byte, MaxFileBytes+1)}
	_, err := Load(big)
	wantErrors(t, err, ErrLimit, "big.yaml: registry: limit exceeded: file is 1048577 bytes; limit 1048576")

	var b strings.Builder
	b.WriteString("features:\n")
	for i := range MaxDefs + 1 {
		fmt.Fprintf(&b, "  - {name: f%d, version: 1, entity: user, type: float, source: external, description: d, owner: o}\n", i)
	}
	_, err = Load(File{Name: "many.yaml", Data: []byte(b.String())})
	wantErrors(t, err, ErrLimit, "many.yaml:4098:5: registry: limit exceeded: 4097 feature definitions; limit 4096")

	many := make([]File, MaxFiles+1)
	if _, err := Load(many...); !errors.Is(err, ErrLimit) {
		t.Errorf("%d files: %v; want ErrLimit", len(many), err)
	}

	// Errors stop being collected at MaxErrors.
	b.Reset()
	b.WriteString("features:\n")
	for range MaxErrors + 5 {
		b.WriteString("  - {name: Bad}\n")
	}
	_, err = Load(File{Name: "bad.yaml", Data: []byte(b.String())})
	lines := errorLines(err)
	// Each item has a bad name and misses 6 required keys: 7 errors.
	if len(lines) != MaxErrors+1 || lines[MaxErrors] != fmt.Sprintf("registry: %d more errors not shown", 7*(MaxErrors+5)-MaxErrors) {
		t.Errorf("got %d errors, last %q; want %d and a count of the rest", len(lines), lines[len(lines)-1], MaxErrors+1)
	}
}

func TestDuplicateIdenticalDefinitionIsAccepted(t *testing.T) {
	r := mustLoad(t, "a.yaml", win, "b.yaml", "\n\n"+win)
	vs, err := r.Versions("x")
	if err != nil || len(vs) != 1 || vs[0].Pos.File != "a.yaml" {
		t.Errorf("Versions(x) = %+v, %v; want the one from a.yaml", vs, err)
	}
}

func TestLoadFS(t *testing.T) {
	fsys := fstest.MapFS{
		"b/two.yml":  {Data: []byte(strings.Replace(win, "version: 1", "version: 2", 1))},
		"a.yaml":     {Data: []byte(win)},
		"README.md":  {Data: []byte("not a registry file")},
		"c/bad.yaml": {Data: []byte("features:\n  - name: 1\n")},
	}
	_, err := LoadFS(fsys)
	wantErrors(t, err, ErrInvalid, "c/bad.yaml:2:11: registry: invalid definition: features[0]: name must be a string",
		"c/bad.yaml:2:5: registry: invalid definition: features[0]: version is required",
		"c/bad.yaml:2:5: registry: invalid definition: features[0]: entity is required",
		"c/bad.yaml:2:5: registry: invalid definition: features[0]: type is required",
		"c/bad.yaml:2:5: registry: invalid definition: features[0]: description is required",
		"c/bad.yaml:2:5: registry: invalid definition: features[0]: owner is required",
		"c/bad.yaml:2:5: registry: invalid definition: features[0]: source is required")
	delete(fsys, "c/bad.yaml")
	r, err := LoadFS(fsys)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.Resolve("x")
	if err != nil || d.Version != 2 || d.Pos != (Pos{File: "b/two.yml", Line: 3, Col: 5}) {
		t.Errorf("Resolve(x) = %+v, %v; want version 2 from b/two.yml:3:5", d, err)
	}
}

func TestParsedFields(t *testing.T) {
	r := mustLoad(t, "a.yaml", `
features:
  - name: amount_z_1h
    version: 3
    entity: user
    type: float
    source: amount
    aggregation: zscore
    window: 1h
    description: Z-score.
    owner: team
    tags: [a, b.c]
    sensitive: true
    status: deprecated
  - {name: h, version: 1, entity: user, type: int, source: temporal, aggregation: hour_of_day, timezone: Asia/Kathmandu, description: d, owner: o}
  - {name: s, version: 1, entity: user, type: bool, source: session, aggregation: is_new_session, description: d, owner: o}
`)
	d, err := r.Resolve("amount_z_1h")
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "amount_z_1h" || d.Version != 3 || d.Entity != "user" || d.Type != TypeFloat || d.Source != "amount" ||
		d.Aggregation != AggZScore || d.Window != time.Hour || d.Description != "Z-score." || d.Owner != "team" ||
		strings.Join(d.Tags, ",") != "a,b.c" || !d.Sensitive || d.Status != StatusDeprecated || !d.Deprecated() ||
		d.Kind() != KindWindow || d.Fingerprint != Fingerprint(d) || len(d.Fingerprint) != 64 {
		t.Errorf("parsed %+v", d)
	}
	h, _ := r.Resolve("h")
	if h.Kind() != KindTemporal || h.TimeZone != "Asia/Kathmandu" || h.Location().String() != "Asia/Kathmandu" {
		t.Errorf("temporal %+v", h)
	}
	s, _ := r.Resolve("s")
	if s.Kind() != KindSession || s.Aggregation != IsNewSession || s.TimeZone != "" || s.Location() != nil {
		t.Errorf("session %+v", s)
	}
}
