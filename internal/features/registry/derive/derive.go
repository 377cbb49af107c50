// Package derive evaluates the derived features of a registry, temporal
// features and rules, for one entity at one time. It takes the values of
// the features they depend on (windows, sessions, external features,
// computed by their own packages) and returns one value per requested
// feature.
//
// Evaluation order is fixed when the Evaluator is built: every rule and
// temporal feature the requested ones need, transitively, is evaluated
// once, dependencies first (the registry rejects cycles). Each rule costs
// time linear in its expression, which the rules package bounds, so one
// Eval costs at most the sum of the plan's expression sizes.
//
// Null: a dependency missing from Input.Values, or present with Null set,
// is null inside rules (see package rules for how null propagates);
// time_since_last_event is null when there was no previous event. A null
// result is a Value with Null set, never a zero.
//
// An Evaluator is immutable and safe for concurrent use.
package derive

import (
	"errors"
	"fmt"
	"time"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/registry/rules"
	"github.com/embedd/embedd/internal/features/registry/temporal"
)

// Errors returned by this package, wrapped with the index or feature.
var (
	// ErrNotDerived reports a definition passed to New that is not a
	// temporal or rule feature.
	ErrNotDerived = errors.New("derive: not a derived feature")
	// ErrInput reports an invalid Input: a zero At, too many or duplicate
	// values, or a previous event after At (which also matches
	// temporal.ErrOrder).
	ErrInput = errors.New("derive: invalid input")
)

// MaxValues bounds len(Input.Values).
const MaxValues = 4096

// Input is what one evaluation sees.
type Input struct {
	// At is the time the features refer to: the event time when deriving
	// per event, the request time when serving. Required.
	At time.Time
	// LastEvent is the time of the entity's previous event, at or before
	// At; the zero time if there was none.
	LastEvent time.Time
	// Values are the values of the non-derived features the plan depends
	// on (Inputs), matched by Name and Version.
	Values []features.Value
	// Context is the request context read by context.<key> in rules.
	Context map[string]string
}

// binding says where a rule's reference (as written) takes its value.
type binding struct {
	written rules.Ref
	step    int          // index of a derived dependency in the plan, or -1
	input   registry.Ref // a non-derived dependency
	isBool  bool
}

type step struct {
	def  registry.Def
	deps []binding
}

// Evaluator evaluates a fixed list of derived features.
type Evaluator struct {
	plan    []step
	outputs []int // plan index of each requested definition
	inputs  []registry.Ref
}

// New returns an Evaluator for defs, which must all be temporal or rule
// features of reg.
func New(reg *registry.Registry, defs []registry.Def) (*Evaluator, error) {
	for i, d := range defs {
		if !derived(d) {
			return nil, fmt.Errorf("%w: defs[%d] %s is a %s feature; compute it with its own package and pass it in Input.Values",
				ErrNotDerived, i, d.Ref(), d.Kind())
		}
	}
	closure, err := reg.Closure(defs)
	if err != nil {
		return nil, err
	}
	e := &Evaluator{}
	index := map[registry.Ref]int{}
	kinds := map[registry.Ref]registry.Def{}
	for _, d := range closure {
		kinds[d.Ref()] = d
		if !derived(d) {
			e.inputs = append(e.inputs, d.Ref())
			continue
		}
		s := step{def: d}
		for _, dep := range d.Deps() {
			b := binding{written: dep.Written, step: -1, input: dep.Resolved, isBool: kinds[dep.Resolved].Type == registry.TypeBool}
			if j, ok := index[dep.Resolved]; ok {
				b.step = j
			}
			s.deps = append(s.deps, b)
		}
		index[d.Ref()] = len(e.plan)
		e.plan = append(e.plan, s)
	}
	for _, d := range defs {
		e.outputs = append(e.outputs, index[d.Ref()])
	}
	return e, nil
}

func derived(d registry.Def) bool {
	return d.Kind() == registry.KindTemporal || d.Kind() == registry.KindRule
}

// Inputs returns the non-derived features whose values Eval needs, each
// once, in dependency order.
func (e *Evaluator) Inputs() []registry.Ref { return append([]registry.Ref(nil), e.inputs...) }

// Eval evaluates the features given to New, in their order. Each Value has
// Timestamp in.At and Source features.SourceComputed.
func (e *Evaluator) Eval(in Input) ([]features.Value, error) {
	if in.At.IsZero() {
		return nil, fmt.Errorf("%w: At is the zero time", ErrInput)
	}
	if len(in.Values) > MaxValues {
		return nil, fmt.Errorf("%w: %d values; limit %d", ErrInput, len(in.Values), MaxValues)
	}
	vals := make(map[registry.Ref]features.Value, len(in.Values))
	for i, v := range in.Values {
		ref := registry.Ref{Name: v.Name, Version: v.Version}
		if _, dup := vals[ref]; dup {
			return nil, fmt.Errorf("%w: values[%d]: %s given twice", ErrInput, i, ref)
		}
		vals[ref] = v
	}
	results := make([]rules.Value, len(e.plan))
	for i, s := range e.plan {
		v, err := s.eval(in, vals, results)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.def.Ref(), err)
		}
		results[i] = v
	}
	out := make([]features.Value, len(e.outputs))
	for i, j := range e.outputs {
		d := e.plan[j].def
		fv := features.Value{Name: d.Name, Version: d.Version, Timestamp: in.At, Source: features.SourceComputed}
		switch r := results[j]; r.Type {
		case rules.TypeNumber:
			fv.Value = r.Num
		case rules.TypeBool:
			if r.Bool {
				fv.Value = 1
			}
		default:
			fv.Null = true
		}
		out[i] = fv
	}
	return out, nil
}

func (s *step) eval(in Input, vals map[registry.Ref]features.Value, results []rules.Value) (rules.Value, error) {
	d := s.def
	switch d.Aggregation {
	case registry.TemporalHourOfDay:
		return rules.Number(float64(temporal.HourOfDay(in.At, d.Location()))), nil
	case registry.TemporalDayOfWeek:
		return rules.Number(float64(temporal.DayOfWeek(in.At, d.Location()))), nil
	case registry.TemporalSinceLast:
		secs, ok, err := temporal.SinceLast(in.At, in.LastEvent)
		if err != nil {
			return rules.Value{}, fmt.Errorf("%w: %w", ErrInput, err)
		}
		if !ok {
			return rules.Value{}, nil
		}
		return rules.Number(secs), nil
	}
	return d.Rule().Eval(env{s: s, in: in, vals: vals, results: results}), nil
}

// env serves one rule's references and the request context.
type env struct {
	s       *step
	in      Input
	vals    map[registry.Ref]features.Value
	results []rules.Value
}

func (e env) Feature(r rules.Ref) rules.Value {
	for _, b := range e.s.deps {
		if b.written != r {
			continue
		}
		if b.step >= 0 {
			return e.results[b.step]
		}
		v, ok := e.vals[b.input]
		switch {
		case !ok || v.Null:
			return rules.Value{}
		case b.isBool:
			return rules.Boolean(v.Value != 0)
		}
		return rules.Number(v.Value)
	}
	return rules.Value{}
}

func (e env) Context(key string) (string, bool) {
	v, ok := e.in.Context[key]
	return v, ok
}
