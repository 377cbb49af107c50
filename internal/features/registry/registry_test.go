package registry

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/features/registry/rules"
)

const versions = `
features:
  - {name: x, version: 1, entity: user, type: float, source: amount, aggregation: sum, window: 1m, description: d, owner: o, status: retired}
  - {name: x, version: 2, entity: user, type: float, source: amount, aggregation: sum, window: 5m, description: d, owner: o, status: deprecated}
  - {name: x, version: 3, entity: user, type: float, source: amount, aggregation: sum, window: 1h, description: d, owner: o}
  - {name: x, version: 4, entity: user, type: float, source: amount, aggregation: avg, window: 1h, description: d, owner: o, status: retired}
  - {name: y, version: 1, entity: user, type: float, source: external, description: d, owner: o, status: deprecated}
  - {name: y, version: 2, entity: user, type: float, source: external, description: d, owner: o, status: deprecated}
  - {name: z, version: 1, entity: user, type: float, source: external, description: d, owner: o, status: retired}
  - {name: r, version: 1, entity: user, type: float, source: rule, expr: x * 2 + y@1, description: d, owner: o}
sets:
  - {name: s, features: [r, x@2, y]}
`

func TestVersions(t *testing.T) {
	r := mustLoad(t, "v.yaml", versions)
	tests := []struct {
		ref        string
		version    int
		deprecated bool
		kind       error
		err        string
	}{
		{ref: "x", version: 3},
		{ref: "x@3", version: 3},
		{ref: "x@2", version: 2, deprecated: true},
		{ref: "x@1", kind: ErrRetired, err: "registry: feature retired: x@1 is retired; use x@3"},
		{ref: "x@4", kind: ErrRetired, err: "registry: feature retired: x@4 is retired; use x@3"},
		{ref: "x@5", kind: ErrUnknown, err: "registry: unknown feature: x@5 is not defined (versions: 1, 2, 3, 4)"},
		{ref: "y", version: 2, deprecated: true}, // no active version: the latest deprecated one
		{ref: "z", kind: ErrRetired, err: "registry: feature retired: every version of z is retired"},
		{ref: "z@1", kind: ErrRetired, err: "registry: feature retired: z@1 is retired and no version of z is served"},
		{ref: "nope", kind: ErrUnknown, err: "registry: unknown feature: nope is not defined"},
		{ref: "X", kind: ErrInvalid, err: `registry: invalid definition: reference "X": name must match [a-z][a-z0-9_]* and be at most 64 bytes`},
		{ref: "x@01", kind: ErrInvalid, err: `registry: invalid definition: reference "x@01": version must be an integer in [1, 1000000]`},
	}
	for _, tt := range tests {
		d, err := r.Resolve(tt.ref)
		if tt.kind != nil {
			if !errors.Is(err, tt.kind) || err.Error() != tt.err {
				t.Errorf("Resolve(%q) error = %v; want %q", tt.ref, err, tt.err)
			}
			continue
		}
		if err != nil || d.Version != tt.version || d.Deprecated() != tt.deprecated {
			t.Errorf("Resolve(%q) = v%d deprecated=%v, %v; want v%d deprecated=%v", tt.ref, d.Version, d.Deprecated(), err, tt.version, tt.deprecated)
		}
	}
	// Unpinned rule references and set members resolve at load time.
	rd, _ := r.Resolve("r")
	deps := rd.Deps()
	if len(deps) != 2 || deps[0] != (Dep{Written: Ref{Name: "x"}, Resolved: Ref{Name: "x", Version: 3}}) ||
		deps[1] != (Dep{Written: Ref{Name: "y", Version: 1}, Resolved: Ref{Name: "y", Version: 1}}) {
		t.Errorf("r deps = %v", deps)
	}
	set, err := r.Set("s")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range set {
		got = append(got, d.Ref().String())
	}
	if strings.Join(got, " ") != "r@1 x@2 y@2" {
		t.Errorf("Set(s) = %v; want [r@1 x@2 y@2]", got)
	}
	if _, err := r.Set("t"); !errors.Is(err, ErrUnknown) || err.Error() != "registry: unknown feature: feature set t is not defined (known: s)" {
		t.Errorf("Set(t) error = %v", err)
	}
	vs, err := r.Versions("x")
	if err != nil || len(vs) != 4 || vs[0].Version != 1 || vs[3].Version != 4 {
		t.Errorf("Versions(x) = %v, %v", vs, err)
	}
	// A set cannot list a retired version.
	_, err = loadStrings(t, "v.yaml", versions+"  - {name: t, features: [x@1, z]}\n")
	wantErrors(t, err, ErrRetired,
		"v.yaml:12:26: registry: feature retired: set t: features[0]: x@1 is retired; use x@3",
		"v.yaml:12:31: registry: feature retired: set t: features[1]: every version of z is retired")
}

func TestListAndSets(t *testing.T) {
	r := mustLoad(t, "v.yaml", versions, "w.yaml", "sets:\n  - {name: a, description: first, features: [x]}\n")
	var refs []string
	for _, d := range r.List() {
		refs = append(refs, d.Ref().String())
	}
	if want := "r@1 x@1 x@2 x@3 x@4 y@1 y@2 z@1"; strings.Join(refs, " ") != want {
		t.Errorf("List() = %v; want %s", refs, want)
	}
	sets := r.Sets()
	if len(sets) != 2 || sets[0].Name != "a" || sets[0].Description != "first" || sets[1].Name != "s" ||
		sets[0].Features[0] != (Ref{Name: "x", Version: 3}) || sets[0].Pos != (Pos{File: "w.yaml", Line: 2, Col: 5}) {
		t.Errorf("Sets() = %+v", sets)
	}
	// Results are copies.
	l := r.List()
	l[0].Tags = append(l[0].Tags, "mutated")
	sets[0].Features[0].Name = "mutated"
	if d, _ := r.Resolve("r"); len(d.Tags) != 0 || r.Sets()[0].Features[0].Name != "x" {
		t.Error("mutating a result changed the registry")
	}
}

func TestClosure(t *testing.T) {
	r := mustLoad(t, "c.yaml", `
features:
  - {name: a, version: 1, entity: user, type: int, source: events, aggregation: count, window: 5m, description: d, owner: o}
  - {name: h, version: 1, entity: user, type: int, source: temporal, aggregation: hour_of_day, description: d, owner: o}
  - {name: b, version: 1, entity: user, type: float, source: rule, expr: a * 2, description: d, owner: o}
  - {name: c, version: 1, entity: user, type: float, source: rule, expr: b + h + a, description: d, owner: o}
  - {name: e, version: 1, entity: user, type: float, source: rule, expr: c - b, description: d, owner: o}
`)
	e, _ := r.Resolve("e")
	h, _ := r.Resolve("h")
	got, err := r.Closure([]Def{h, e})
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, d := range got {
		refs = append(refs, d.Name)
	}
	if strings.Join(refs, " ") != "h a b c e" {
		t.Errorf("Closure(h, e) = %v; want [h a b c e]", refs)
	}
}

func TestFingerprint(t *testing.T) {
	base := mustLoad(t, "a.yaml", `
features:
  - name: r
    version: 1
    entity: user
    type: float
    source: rule
    expr: case(x > 10, 0.9, 0.5) * 2
    description: d
    owner: o
  - {name: x, version: 1, entity: user, type: int, source: events, aggregation: count, window: 5m, description: d, owner: o}
`)
	fp := func(r *Registry, ref string) string {
		d, err := r.Resolve(ref)
		if err != nil {
			t.Fatal(err)
		}
		return d.Fingerprint
	}
	same := []string{
		// Spelling of the expression.
		"expr: (case( x>10 , 0.90, 5e-1 )) * 2.0",
		// Documentation and lifecycle.
		"description: other",
		"owner: someone",
		"expr: case(x > 10, 0.9, 0.5) * 2\n    tags: [t]\n    sensitive: true\n    status: deprecated",
	}
	different := []string{
		"expr: case(x >= 10, 0.9, 0.5) * 2",
		"expr: case(x > 10, 0.9, 0.5) * 3",
		"expr: 2 * case(x > 10, 0.9, 0.5)", // commuted: not recognised as equal
		"entity: account",
	}
	orig := fp(base, "r")
	for _, edit := range same {
		key := edit[:strings.Index(edit, ":")]
		src := replaceKey(t, key, edit)
		if got := fp(mustLoad(t, "a.yaml", src), "r"); got != orig {
			t.Errorf("%q changed the fingerprint", edit)
		}
	}
	for _, edit := range different {
		key := edit[:strings.Index(edit, ":")]
		src := replaceKey(t, key, edit)
		if key == "entity" {
			src = strings.ReplaceAll(src, "entity: user", "entity: account")
		}
		if got := fp(mustLoad(t, "a.yaml", src), "r"); got == orig {
			t.Errorf("%q kept the fingerprint", edit)
		}
	}
	// A window of 300s is the same window as 5m.
	a := fp(mustLoad(t, "a.yaml", win), "x")
	b := fp(mustLoad(t, "a.yaml", strings.Replace(win, "window: 5m", "window: 300s", 1)), "x")
	if a != b {
		t.Error("5m and 300s have different fingerprints")
	}
	// Omitting the time zone is UTC.
	tz := "features:\n  - {name: h, version: 1, entity: user, type: int, source: temporal, aggregation: hour_of_day, description: d, owner: o%s}\n"
	if fp(mustLoad(t, "a.yaml", strings.Replace(tz, "%s", "", 1)), "h") != fp(mustLoad(t, "a.yaml", strings.Replace(tz, "%s", ", timezone: UTC", 1)), "h") {
		t.Error("no timezone and UTC differ")
	}
}

// replaceKey replaces the line "    key: ..." of feature r in the base
// document of TestFingerprint with repl.
func replaceKey(t *testing.T, key, repl string) string {
	t.Helper()
	src := `
features:
  - name: r
    version: 1
    entity: user
    type: float
    source: rule
    expr: case(x > 10, 0.9, 0.5) * 2
    description: d
    owner: o
  - {name: x, version: 1, entity: user, type: int, source: events, aggregation: count, window: 5m, description: d, owner: o}
`
	lines := strings.Split(src, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "    "+key+":") {
			lines[i] = "    " + repl
			return strings.Join(lines, "\n")
		}
	}
	t.Fatalf("no key %s", key)
	return ""
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "features.lock")
	r := mustLoad(t, "v.yaml", versions)
	if err := r.CheckLock(lock); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckLock(missing file) = %v; want a not-exist error", err)
	}
	if err := r.WriteLock(lock); err != nil {
		t.Fatal(err)
	}
	if err := r.CheckLock(lock); err != nil {
		t.Fatalf("CheckLock after WriteLock: %v", err)
	}
	data, _ := os.ReadFile(lock)
	if !bytes.Equal(data, r.Lock()) {
		t.Errorf("lock file differs from Lock()")
	}
	if info, _ := os.Stat(lock); info.Mode().Perm() != 0o644 {
		t.Errorf("lock mode %v; want 0644", info.Mode().Perm())
	}

	// Editing x@3 in place is caught; so is a new version missing from the
	// lock and a locked version that disappeared.
	x5 := "---\nfeatures:\n  - {name: x, version: 5, entity: user, type: float, source: amount, aggregation: max, window: 1h, description: d, owner: o}\n"
	z1 := "  - {name: z, version: 1, entity: user, type: float, source: external, description: d, owner: o, status: retired}\n"
	edited := strings.Replace(versions, "aggregation: sum, window: 1h", "aggregation: sum, window: 2h", 1)
	edited = strings.Replace(edited, z1, "", 1) + x5
	r2 := mustLoad(t, "v.yaml", edited)
	x3, _ := r.Resolve("x@3")
	x3b, _ := r2.Resolve("x@3")
	err := r2.CheckLock(lock)
	wantErrors(t, err, ErrLock,
		"v.yaml:4:5: registry: lock mismatch: feature x version 3 changed (fingerprint "+x3b.Fingerprint[:12]+" != "+x3.Fingerprint[:12]+" in "+lock+"); bump the version",
		"v.yaml:13:5: registry: lock mismatch: feature x version 5 is not in the lock "+lock+"; add it with WriteLock",
		lock+": registry: lock mismatch: feature z version 1 is in the lock but not defined; keep released versions and retire them (status: retired) instead of deleting them",
	)
	// WriteLock refuses to record the edit and leaves the file alone.
	if err := r2.WriteLock(lock); !errors.Is(err, ErrLock) {
		t.Errorf("WriteLock with an edited version: %v; want ErrLock", err)
	}
	if after, _ := os.ReadFile(lock); !bytes.Equal(after, data) {
		t.Error("a refused WriteLock changed the file")
	}
	// Bumping instead (x@5 new, x@3 untouched, z kept) passes after WriteLock.
	r3 := mustLoad(t, "v.yaml", versions+x5)
	if err := r3.WriteLock(lock); err != nil {
		t.Fatal(err)
	}
	if err := r3.CheckLock(lock); err != nil {
		t.Errorf("CheckLock after bump: %v", err)
	}

	// Malformed lock files.
	for _, bad := range []string{`{"features": {"x": "` + strings.Repeat("0", 64) + `"}}`, `{"features": {"x@1": "abc"}}`, `{"other": 1}`, `[`} {
		if err := r.CheckLockData("bad.lock", []byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckLockData(%s) = %v; want ErrInvalid", bad, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	r, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := r.WriteLock(DefaultLockPath); err != nil {
			t.Fatal(err)
		}
	}
	lock, err := DefaultLock()
	if err != nil {
		t.Fatalf("%v (run go test -run TestDefaults -update to create it)", err)
	}
	if onDisk, err := os.ReadFile(DefaultLockPath); err != nil || !bytes.Equal(onDisk, lock) {
		t.Fatalf("the embedded lock is not %s (%v); rebuild", DefaultLockPath, err)
	}
	if err := r.CheckLockData(DefaultLockPath, lock); err != nil {
		t.Errorf("built-in registry differs from its lock:\n%v", err)
	}
	count := map[Kind]int{}
	for _, d := range r.List() {
		count[d.Kind()]++
	}
	// amount: 7 aggregations x 3 windows, plus events_count x 3.
	if count[KindWindow] != 24 || count[KindSession] != 5 || count[KindTemporal] != 3 || count[KindRule] != 2 || count[KindExternal] != 1 {
		t.Errorf("kinds = %v", count)
	}
	for _, ref := range []string{"amount_zscore_1h", "amount_stddev_1m", "events_in_session", "is_new_session", "hour_of_day", "day_of_week", "time_since_last_event", "user_engagement_score", "market_opportunity_score"} {
		if _, err := r.Resolve(ref); err != nil {
			t.Errorf("Resolve(%s): %v", ref, err)
		}
	}
	def, err := r.Set("default")
	if err != nil || len(def) != len(r.List()) {
		t.Errorf("set default has %d features, %v; want all %d", len(def), err, len(r.List()))
	}
	if _, err := r.Set("recsys"); err != nil {
		t.Error(err)
	}
}

func seed(t *testing.T) *Registry {
	t.Helper()
	r, err := LoadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSeedRules evaluates the seed's two dynamic features as declared in
// testdata/seed.yaml with the brief's hand-computed cases.
func TestSeedRules(t *testing.T) {
	r := seed(t)
	ue, err := r.Resolve("user_engagement_score")
	if err != nil {
		t.Fatal(err)
	}
	mo, err := r.Resolve("market_opportunity_score")
	if err != nil {
		t.Fatal(err)
	}
	if ue.Pos != (Pos{File: filepath.Join("testdata", "seed.yaml"), Line: 20, Col: 5}) {
		t.Errorf("position %v", ue.Pos)
	}
	count := Ref{Name: "events_count_5m"}
	opp := Ref{Name: "opportunity_score"}
	tests := []struct {
		rule *rules.Expr
		env  rules.MapEnv
		want float64 // NaN: null
	}{
		{ue.Rule(), rules.MapEnv{Features: map[Ref]rules.Value{count: rules.Number(12)}, Fields: map[string]string{"tier": "premium"}}, 1.08},
		{ue.Rule(), rules.MapEnv{Features: map[Ref]rules.Value{count: rules.Number(6)}, Fields: map[string]string{"tier": "enterprise"}}, 1.05},
		{ue.Rule(), rules.MapEnv{Features: map[Ref]rules.Value{count: rules.Number(2)}}, 0.5},
		{ue.Rule(), rules.MapEnv{}, 0.5}, // no count: null > 10 is not true
		{mo.Rule(), rules.MapEnv{Fields: map[string]string{"region": "high_growth"}}, 0.65},
		{mo.Rule(), rules.MapEnv{Features: map[Ref]rules.Value{opp: rules.Number(0.2)}, Fields: map[string]string{"region": "high_growth"}}, 0.26},
		{mo.Rule(), rules.MapEnv{Features: map[Ref]rules.Value{opp: rules.Number(0.2)}, Fields: map[string]string{"region": "mature"}}, 0.2},
	}
	for i, tt := range tests {
		got := tt.rule.Eval(tt.env)
		if got.Type != rules.TypeNumber || math.Abs(got.Num-tt.want) > 1e-12 {
			t.Errorf("case %d: %s = %v; want %v", i, tt.rule.Source(), got, tt.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	_, err := loadStrings(t, "d.yaml", "features:\n  - {name: h, version: 1, entity: user, type: int, source: amount, aggregation: count, window: 1m, timezone: UTC, description: d, owner: o}\n")
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("timezone on a window feature: %v", err)
	}
	r := mustLoad(t, "d.yaml", `
features:
  - {name: spend_1h, version: 1, entity: user, type: float, source: amount, aggregation: sum, window: 1h, description: Money spent in the last hour., owner: payments, sensitive: true, status: retired}
  - {name: spend_1h, version: 2, entity: user, type: float, source: amount, aggregation: sum, window: 1h, description: Money spent in the last hour., owner: payments, tags: [money], sensitive: true}
  - {name: big, version: 1, entity: user, type: bool, source: rule, expr: spend_1h > 100, description: Spent over 100., owner: growth}
sets:
  - {name: s, features: [spend_1h, big]}
`)
	fp2, _ := r.Resolve("spend_1h")
	fp1, _ := r.Versions("spend_1h")
	want := `spend_1h@2  [active, latest]
  entity:       user
  type:         float
  kind:         window
  source:       (redacted: sensitive)
  aggregation:  (redacted: sensitive)
  window:       (redacted: sensitive)
  description:  (redacted: sensitive)
  owner:        payments
  tags:         money
  sensitive:    true
  sets:         s
  used by:      big@1
  defined at:   d.yaml:3:5
  fingerprint:  ` + fp2.Fingerprint + `

spend_1h@1  [retired; use spend_1h@2]
  entity:       user
  type:         float
  kind:         window
  source:       (redacted: sensitive)
  aggregation:  (redacted: sensitive)
  window:       (redacted: sensitive)
  description:  (redacted: sensitive)
  owner:        payments
  sensitive:    true
  defined at:   d.yaml:2:5
  fingerprint:  ` + fp1[0].Fingerprint + `
`
	got, err := r.Describe("spend_1h")
	if err != nil || got != want {
		t.Errorf("Describe(spend_1h) =\n%s\nwant\n%s (err %v)", got, want, err)
	}
	full, err := r.DescribeFull("spend_1h@2")
	if err != nil || !strings.Contains(full, "  source:       amount\n  aggregation:  sum\n  window:       1h0m0s\n  description:  Money spent in the last hour.\n") ||
		strings.Contains(full, "spend_1h@1") {
		t.Errorf("DescribeFull(spend_1h@2) =\n%s (err %v)", full, err)
	}
	big, err := r.Describe("big@1")
	if err != nil || !strings.Contains(big, "  expr:         spend_1h > 100\n  depends on:   spend_1h@2\n") {
		t.Errorf("Describe(big@1) =\n%s (err %v)", big, err)
	}
	if _, err := r.Describe("nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Describe(nope) error = %v", err)
	}
	if _, err := r.Describe("spend_1h@9"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Describe(spend_1h@9) error = %v", err)
	}
}

func TestLogValueRedactsSensitive(t *testing.T) {
	r := mustLoad(t, "d.yaml", "features:\n  - {name: secret, version: 1, entity: user, type: float, source: amount, aggregation: sum, window: 1h, description: Salary paid., owner: hr, sensitive: true}\n")
	d, _ := r.Resolve("secret")
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("loaded", "def", d)
	out := buf.String()
	if !strings.Contains(out, "def.feature=secret@1 def.sensitive=true") || strings.Contains(out, "Salary") || strings.Contains(out, "amount") {
		t.Errorf("log line %q", out)
	}
}

func FuzzLoad(f *testing.F) {
	for _, s := range []string{win, versions, "features: [1, {a: b}]\nsets: {}\n", "---\n---\nfeatures:\n  - &a {name: x}\n  - *a\n"} {
		f.Add(s)
	}
	if data, err := os.ReadFile("testdata/seed.yaml"); err == nil {
		f.Add(string(data))
	}
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 1<<14 {
			return
		}
		start := time.Now()
		r, err := Load(File{Name: "f.yaml", Data: []byte(src)})
		if (r == nil) == (err == nil) {
			t.Fatalf("Load = %v, %v; want exactly one", r, err)
		}
		if r != nil {
			for _, d := range r.List() {
				if _, err := r.Describe(d.Ref().String()); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.CheckLockData("l", r.Lock()); err != nil {
				t.Fatalf("own lock does not check: %v", err)
			}
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Load of %d bytes took %v", len(src), d)
		}
	})
}
