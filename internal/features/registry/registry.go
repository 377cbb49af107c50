package registry

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/embedd/embedd/internal/features/registry/rules"
)

// Registry holds the loaded definitions and feature sets. It is immutable
// and safe for concurrent use.
type Registry struct {
	byName map[string][]*Def // versions in ascending order
	sets   map[string]*FeatureSet
}

// FeatureSet is a named list of feature versions, served together.
type FeatureSet struct {
	Name        string
	Description string
	// Features are the members in declared order, each resolved to a
	// version when the registry was loaded.
	Features []Ref
	Pos      Pos
}

// link builds the registry from the parsed definitions: it removes exact
// duplicates, rejects conflicting ones, resolves and type-checks rule
// references, rejects cycles and resolves feature sets. It reports
// problems to l and returns nil if there were any.
func (l *loader) link() *Registry {
	if len(l.defs) > MaxDefs {
		l.add(l.defs[MaxDefs].Pos, fmt.Errorf("%w: %d feature definitions; limit %d", ErrLimit, len(l.defs), MaxDefs))
		return nil
	}
	r := &Registry{byName: map[string][]*Def{}, sets: map[string]*FeatureSet{}}
	var defs []*Def // unique, in load order
	for _, d := range l.defs {
		i := slices.IndexFunc(r.byName[d.Name], func(o *Def) bool { return o.Version == d.Version })
		if i < 0 {
			r.byName[d.Name] = append(r.byName[d.Name], d)
			defs = append(defs, d)
			continue
		}
		if first := r.byName[d.Name][i]; !sameDeclaration(first, d) {
			l.add(d.Pos, fmt.Errorf("%w: feature %s is already defined differently at %s", ErrDuplicate, d.Ref(), first.Pos))
		}
	}
	for _, vs := range r.byName {
		slices.SortFunc(vs, func(a, b *Def) int { return cmp.Compare(a.Version, b.Version) })
	}
	for _, d := range defs {
		if d.kind == KindRule {
			l.linkRule(r, d)
		}
	}
	l.cycles(defs)
	for _, rs := range l.sets {
		l.linkSet(r, rs)
	}
	if len(l.errs) > 0 {
		return nil
	}
	return r
}

func (l *loader) linkRule(r *Registry, d *Def) {
	s := l.sites[d]
	label := "feature " + d.Ref().String()
	types := map[Ref]rules.Type{}
	ok := true
	for _, use := range d.expr.Refs() {
		pos := exprPos(s.file, s.expr, use.Line, use.Col)
		at := exprAt(use.Line, use.Col)
		dep, le := r.find(use.Ref, d.Status == StatusRetired)
		if le != nil {
			l.add(pos, fmt.Errorf("%w: %s: %s: %s", le.kind, label, at, le.msg))
			ok = false
			continue
		}
		if dep.Entity != d.Entity {
			l.invalid(pos, label, "%s: %s is a feature of entity %s, not %s", at, dep.Ref(), dep.Entity, d.Entity)
			ok = false
			continue
		}
		d.deps = append(d.deps, Dep{Written: use.Ref, Resolved: dep.Ref()})
		types[use.Ref] = rules.TypeNumber
		if dep.Type == TypeBool {
			types[use.Ref] = rules.TypeBool
		}
	}
	if !ok {
		return
	}
	t, err := d.expr.Check(func(ref Ref) (rules.Type, bool) {
		t, ok := types[ref]
		return t, ok
	})
	if err != nil {
		var re *rules.Error
		pos := l.sites[d].file.pos(s.expr)
		if errors.As(err, &re) {
			pos = exprPos(s.file, s.expr, re.Line, re.Col)
		}
		l.add(pos, fmt.Errorf("%w: %s: expr: %w", ErrInvalid, label, err))
		return
	}
	want := rules.TypeNumber
	if d.Type == TypeBool {
		want = rules.TypeBool
	}
	if t != want {
		l.invalid(s.file.pos(s.expr), label, "expr is %s; type %s needs a %s expression", t, d.Type, want)
	}
}

// cycles reports every cycle among rules, once, at the first rule of the
// cycle in (name, version) order.
func (l *loader) cycles(defs []*Def) {
	rulesByRef := map[Ref]*Def{}
	for _, d := range defs {
		if d.kind == KindRule {
			rulesByRef[d.Ref()] = d
		}
	}
	// Tarjan's strongly connected components.
	index := map[*Def]int{}
	low := map[*Def]int{}
	onStack := map[*Def]bool{}
	var stack []*Def
	var sccs [][]*Def
	var visit func(d *Def)
	visit = func(d *Def) {
		index[d], low[d] = len(index), len(index)
		stack = append(stack, d)
		onStack[d] = true
		for _, dep := range d.deps {
			w := rulesByRef[dep.Resolved]
			if w == nil {
				continue
			}
			if _, seen := index[w]; !seen {
				visit(w)
				low[d] = min(low[d], low[w])
			} else if onStack[w] {
				low[d] = min(low[d], index[w])
			}
		}
		if low[d] == index[d] {
			var scc []*Def
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				scc = append(scc, w)
				if w == d {
					break
				}
			}
			sccs = append(sccs, scc)
		}
	}
	for _, d := range defs {
		if _, seen := index[d]; !seen && d.kind == KindRule {
			visit(d)
		}
	}
	for _, scc := range sccs {
		self := len(scc) == 1 && slices.ContainsFunc(scc[0].deps, func(dep Dep) bool { return dep.Resolved == scc[0].Ref() })
		if len(scc) == 1 && !self {
			continue
		}
		start := slices.MinFunc(scc, func(a, b *Def) int { return compareRefs(a.Ref(), b.Ref()) })
		path := cyclePath(start, scc, rulesByRef)
		names := make([]string, len(path))
		for i, p := range path {
			names[i] = p.Ref().String()
		}
		l.add(start.Pos, fmt.Errorf("%w: %s", ErrCycle, strings.Join(names, " -> ")))
	}
}

// cyclePath returns a shortest path start -> ... -> start inside scc.
func cyclePath(start *Def, scc []*Def, byRef map[Ref]*Def) []*Def {
	prev := map[*Def]*Def{}
	queue := []*Def{start}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		for _, dep := range d.deps {
			w := byRef[dep.Resolved]
			if w == nil || !slices.Contains(scc, w) {
				continue
			}
			if w == start {
				path := []*Def{start}
				for x := d; x != start; x = prev[x] {
					path = append(path, x)
				}
				slices.Reverse(path[1:])
				return append(path, start)
			}
			if _, seen := prev[w]; !seen {
				prev[w] = d
				queue = append(queue, w)
			}
		}
	}
	return []*Def{start, start}
}

func compareRefs(a, b Ref) int {
	return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version))
}

func (l *loader) linkSet(r *Registry, rs *rawSet) {
	label := "set " + rs.set.Name
	if first := r.sets[rs.set.Name]; first != nil {
		l.add(rs.set.Pos, fmt.Errorf("%w: %s is already defined at %s", ErrDuplicate, label, first.Pos))
		return
	}
	if len(r.sets) == MaxSets {
		l.add(rs.set.Pos, fmt.Errorf("%w: more than %d feature sets", ErrLimit, MaxSets))
		return
	}
	set := rs.set
	seen := map[string]int{}
	for i, it := range rs.items {
		key := fmt.Sprintf("features[%d]", i)
		d, le := r.find(it.ref, false)
		if le != nil {
			l.add(it.pos, fmt.Errorf("%w: %s: %s: %s", le.kind, label, key, le.msg))
			continue
		}
		if j, dup := seen[d.Name]; dup {
			l.invalid(it.pos, label, "%s: %s is already listed at features[%d]", key, d.Name, j)
			continue
		}
		seen[d.Name] = i
		set.Features = append(set.Features, d.Ref())
	}
	r.sets[set.Name] = &set
}

// find resolves ref. A pinned retired version is found only if
// allowRetired; an unpinned ref resolves to the latest active version, else
// the latest deprecated one, else (if allowRetired) the latest version. On
// failure the error's kind is ErrUnknown or ErrRetired and its msg is for
// callers to place after their own context.
func (r *Registry) find(ref Ref, allowRetired bool) (*Def, *lookupError) {
	vs := r.byName[ref.Name]
	if len(vs) == 0 {
		return nil, &lookupError{ErrUnknown, ref.Name + " is not defined"}
	}
	if ref.Version == 0 {
		if d := latest(vs); d != nil {
			return d, nil
		}
		if allowRetired {
			return vs[len(vs)-1], nil
		}
		return nil, &lookupError{ErrRetired, "every version of " + ref.Name + " is retired"}
	}
	i := slices.IndexFunc(vs, func(d *Def) bool { return d.Version == ref.Version })
	if i < 0 {
		have := make([]string, len(vs))
		for j, d := range vs {
			have[j] = strconv.Itoa(d.Version)
		}
		return nil, &lookupError{ErrUnknown, fmt.Sprintf("%s is not defined (versions: %s)", ref, strings.Join(have, ", "))}
	}
	d := vs[i]
	if d.Status == StatusRetired && !allowRetired {
		if alt := latest(vs); alt != nil {
			return nil, &lookupError{ErrRetired, fmt.Sprintf("%s is retired; use %s", ref, alt.Ref())}
		}
		return nil, &lookupError{ErrRetired, fmt.Sprintf("%s is retired and no version of %s is served", ref, ref.Name)}
	}
	return d, nil
}

// lookupError is a failed find.
type lookupError struct {
	kind error
	msg  string
}

func (e *lookupError) Error() string { return e.kind.Error() + ": " + e.msg }

func (e *lookupError) Unwrap() error { return e.kind }

// latest returns the latest active version, else the latest deprecated
// one, else nil.
func latest(vs []*Def) *Def {
	var dep *Def
	for _, d := range slices.Backward(vs) {
		switch d.Status {
		case StatusActive:
			return d
		case StatusDeprecated:
			if dep == nil {
				dep = d
			}
		}
	}
	return dep
}

func (d *Def) clone() Def {
	c := *d
	c.Tags = slices.Clone(d.Tags)
	c.deps = slices.Clone(d.deps)
	return c
}

// Resolve returns the definition "name" (the latest active version, else
// the latest deprecated one) or "name@version" refers to. It fails with
// ErrUnknown for an undefined name or version and ErrRetired for a retired
// one, naming the version to use instead.
func (r *Registry) Resolve(ref string) (Def, error) {
	rf, err := ParseRef(ref)
	if err != nil {
		return Def{}, err
	}
	return r.Lookup(rf)
}

// Lookup is Resolve for a parsed reference.
func (r *Registry) Lookup(ref Ref) (Def, error) {
	d, le := r.find(ref, false)
	if le != nil {
		return Def{}, le
	}
	return d.clone(), nil
}

// Versions returns every version of name, retired ones included, in
// ascending order.
func (r *Registry) Versions(name string) ([]Def, error) {
	vs := r.byName[name]
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: %s is not defined", ErrUnknown, name)
	}
	out := make([]Def, len(vs))
	for i, d := range vs {
		out[i] = d.clone()
	}
	return out, nil
}

// List returns every definition, retired ones included, sorted by name and
// version.
func (r *Registry) List() []Def {
	var out []Def
	for _, vs := range r.byName {
		for _, d := range vs {
			out = append(out, d.clone())
		}
	}
	slices.SortFunc(out, func(a, b Def) int { return compareRefs(a.Ref(), b.Ref()) })
	return out
}

// Sets returns the feature sets sorted by name.
func (r *Registry) Sets() []FeatureSet {
	out := make([]FeatureSet, 0, len(r.sets))
	for _, s := range r.sets {
		c := *s
		c.Features = slices.Clone(s.Features)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b FeatureSet) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Set returns the definitions of the members of the feature set name, in
// declared order.
func (r *Registry) Set(name string) ([]Def, error) {
	s := r.sets[name]
	if s == nil {
		names := make([]string, 0, len(r.sets))
		for n := range r.sets {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("%w: feature set %s is not defined (known: %s)", ErrUnknown, name, strings.Join(names, ", "))
	}
	out := make([]Def, len(s.Features))
	for i, ref := range s.Features {
		d, _ := r.find(ref, true) // resolved at load time
		out[i] = d.clone()
	}
	return out, nil
}

// Closure returns defs and, transitively, every feature their rules refer
// to, each once, dependencies before the rules that use them (defs keep
// their relative order otherwise). A service computes the non-rule members
// of the closure and then evaluates the rules in this order.
func (r *Registry) Closure(defs []Def) ([]Def, error) {
	var out []Def
	done := map[Ref]bool{}
	var add func(d *Def, depth int) error
	add = func(d *Def, depth int) error {
		if done[d.Ref()] {
			return nil
		}
		if depth > MaxDefs { // cannot happen in a loaded registry: no cycles
			return fmt.Errorf("%w: %s", ErrCycle, d.Ref())
		}
		for _, dep := range d.deps {
			w, le := r.find(dep.Resolved, true)
			if le != nil {
				return le
			}
			if err := add(w, depth+1); err != nil {
				return err
			}
		}
		done[d.Ref()] = true
		out = append(out, d.clone())
		return nil
	}
	for i, d := range defs {
		own, le := r.find(d.Ref(), true)
		if le != nil {
			return nil, fmt.Errorf("%w: defs[%d]: %s", le.kind, i, le.msg)
		}
		if err := add(own, 0); err != nil {
			return nil, fmt.Errorf("defs[%d]: %w", i, err)
		}
	}
	return out, nil
}
