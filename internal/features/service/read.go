package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/registry/derive"
	"github.com/embedd/embedd/internal/features/window"
)

// The read flow: Get validates a request against Limits, finds the states
// (cache.go), computes the values at as_of and reports them to the drift
// monitor.

// GetRequest asks for features of entities.
type GetRequest struct {
	Entities []string
	// Features are refs ("name" or "name@version"); Set names a feature
	// set. Exactly one of them.
	Features []string
	Set      string
	// AsOf is the time the values refer to; zero means now.
	AsOf time.Time
	// Context is read by rules (context.<key>).
	Context map[string]string
}

// EntityValues are the values of one entity, in the order of the request's
// features.
type EntityValues struct {
	EntityID string
	Values   []features.Value
	// Found is false when neither the state store nor the offline layer
	// knows the entity (every value is then null).
	Found bool
}

// Get serves features; see the package doc for the read path.
func (s *Service) Get(ctx context.Context, req GetRequest) ([]EntityValues, error) {
	defs, err := s.resolve(req)
	if err != nil {
		return nil, err
	}
	now := s.opts.Clock.Now()
	asOf, err := s.checkGet(&req, now)
	if err != nil {
		return nil, err
	}
	eval, err := s.evaluator(defs)
	if err != nil {
		return nil, err
	}
	states, sources, err := s.states(ctx, req.Entities, now)
	if errors.Is(err, ErrUnavailable) && s.opts.Offline != nil {
		// The state store is down: answer every entity from the offline
		// snapshots (source offline, the snapshot's timestamps), the
		// seed's last fallback, rather than failing the read.
		s.warnOffline(err)
		states, sources, err = make([]*State, len(req.Entities)), nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]EntityValues, len(req.Entities))
	errs := make([]error, len(req.Entities))
	parallel(len(req.Entities), func(i int) {
		id := req.Entities[i]
		ev := EntityValues{EntityID: id}
		if states[i] != nil {
			ev.Found = true
			var err error
			if ev.Values, err = s.compute(states[i], sources[i], defs, eval, asOf, req.Context); err != nil {
				errs[i] = fmt.Errorf("entity %q: %w", id, err)
				return
			}
		} else {
			ev.Values, ev.Found = s.fromOffline(id, defs)
		}
		out[i] = ev
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if s.opts.Monitor != nil {
		for _, ev := range out {
			s.observe(ev.Values)
		}
	}
	return out, nil
}

func (s *Service) resolve(req GetRequest) ([]registry.Def, error) {
	if (len(req.Features) == 0) == (req.Set == "") {
		return nil, fmt.Errorf("%w: give exactly one of features and feature_set", ErrInvalid)
	}
	if req.Set != "" {
		defs, err := s.reg.Set(req.Set)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnknown, err)
		}
		return defs, nil
	}
	if len(req.Features) > s.opts.Limits.Features {
		return nil, fmt.Errorf("%w: %d features; limit %d", ErrInvalid, len(req.Features), s.opts.Limits.Features)
	}
	defs := make([]registry.Def, len(req.Features))
	for i, f := range req.Features {
		d, err := s.reg.Resolve(f)
		if err != nil {
			return nil, fmt.Errorf("%w: features[%d]: %v", ErrUnknown, i, err)
		}
		defs[i] = d
	}
	return defs, nil
}

// plan is how the derived features of a request are computed: the derive
// evaluator and the definitions of the base features it reads, looked up
// once per distinct feature list rather than per entity.
type plan struct {
	eval   *derive.Evaluator
	inputs []registry.Def
}

// evaluator returns the plan of the derived features among defs (nil if
// none), cached by the list.
func (s *Service) evaluator(defs []registry.Def) (*plan, error) {
	var derived []registry.Def
	var key strings.Builder
	for _, d := range defs {
		if d.Kind() == registry.KindRule || d.Kind() == registry.KindTemporal {
			derived = append(derived, d)
			fmt.Fprintf(&key, "%s,", d.Ref())
		}
	}
	if len(derived) == 0 {
		return nil, nil
	}
	s.evalMu.Lock()
	defer s.evalMu.Unlock()
	if p := s.evals[key.String()]; p != nil {
		return p, nil
	}
	e, err := derive.New(s.reg, derived)
	if err != nil {
		return nil, err
	}
	p := &plan{eval: e}
	for _, ref := range e.Inputs() {
		d, err := s.reg.Lookup(ref)
		if err != nil {
			return nil, err
		}
		p.inputs = append(p.inputs, d)
	}
	if len(s.evals) < 1024 {
		s.evals[key.String()] = p
	}
	return p, nil
}

// compute evaluates defs for one state at asOf.
func (s *Service) compute(st *State, src features.Source, defs []registry.Def, eval *plan, asOf time.Time, ctxMap map[string]string) ([]features.Value, error) {
	t := asOf.UnixNano()
	vals := make([]features.Value, len(defs))
	memo := make(aggMemo, 0, 16)
	var derivedAt []int
	for i, d := range defs {
		switch d.Kind() {
		case registry.KindRule, registry.KindTemporal:
			derivedAt = append(derivedAt, i)
			continue
		}
		v, err := s.base(st, d, t, asOf, &memo)
		if err != nil {
			return nil, err
		}
		v.Source = src
		vals[i] = v
	}
	if eval == nil {
		return vals, nil
	}
	inputs := make([]features.Value, 0, len(eval.inputs))
	for _, d := range eval.inputs {
		v, err := s.base(st, d, t, asOf, &memo)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, v)
	}
	in := derive.Input{At: asOf, Values: inputs, Context: ctxMap}
	if last, ok := st.lastEventAtOrBefore(t); ok {
		in.LastEvent = time.Unix(0, last).UTC()
	}
	dv, err := eval.eval.Eval(in)
	if err != nil {
		return nil, err
	}
	for k, i := range derivedAt {
		vals[i] = dv[k]
	}
	return vals, nil
}

// aggMemo holds the aggregates of each (source, window) within one compute
// call, so every aggregation of a window comes from one pass. A request
// touches a handful of windows: a slice beats a map.
type aggMemo []aggEntry

type aggEntry struct {
	src string
	w   time.Duration
	a   window.Aggregates
}

func (m aggMemo) get(src string, w time.Duration) (window.Aggregates, bool) {
	for _, e := range m {
		if e.w == w && e.src == src {
			return e.a, true
		}
	}
	return window.Aggregates{}, false
}

// base computes a window, session or external feature.
func (s *Service) base(st *State, d registry.Def, t int64, asOf time.Time, memo *aggMemo) (features.Value, error) {
	v := features.Value{Name: d.Name, Version: d.Version, Timestamp: asOf.UTC(), Null: true}
	switch d.Kind() {
	case registry.KindWindow:
		src := d.Source
		if src == registry.SourceEvents {
			src = EventsSource
		}
		ser := st.Series[src]
		if ser == nil {
			if d.Aggregation == registry.AggCount || d.Aggregation == registry.AggSum {
				v.Null = false // an empty window: count and sum 0
			}
			return v, nil
		}
		a, ok := memo.get(src, d.Window)
		if !ok {
			var err error
			if a, err = ser.Aggregate(t, d.Window); err != nil {
				return v, fmt.Errorf("%s: %w", d.Ref(), err)
			}
			*memo = append(*memo, aggEntry{src, d.Window, a})
		}
		pick := func(n window.NullFloat) { v.Value, v.Null = n.V, !n.Valid }
		switch d.Aggregation {
		case registry.AggCount:
			v.Value, v.Null = float64(a.Count), false
		case registry.AggSum:
			v.Value, v.Null = a.Sum, false
		case registry.AggAvg:
			pick(a.Avg)
		case registry.AggMin:
			pick(a.Min)
		case registry.AggMax:
			pick(a.Max)
		case registry.AggStddev:
			pick(a.Stddev)
		case registry.AggZScore:
			pick(a.ZScore)
		}
	case registry.KindSession:
		if st.LastActivity == 0 || st.LastActivity > t {
			return v, nil
		}
		for _, sv := range st.Session {
			if sv.Name == d.Aggregation || sv.Name == d.Name {
				v.Value, v.Null, v.Timestamp = sv.Value, sv.Null, sv.Timestamp
				break
			}
		}
	case registry.KindExternal:
		if e, ok := st.External[d.Name]; ok && e.TS <= t {
			v.Value, v.Null, v.Timestamp = e.V, false, time.Unix(0, e.TS).UTC()
		}
	}
	return v, nil
}

// warnOffline logs that reads fell back to the offline layer, at most once
// per offlineWarnEvery, so an outage does not flood the log.
func (s *Service) warnOffline(err error) {
	now := time.Now().UnixNano()
	last := s.offlineWarned.Load()
	if now-last < int64(offlineWarnEvery) || !s.offlineWarned.CompareAndSwap(last, now) {
		return
	}
	s.opts.Logger.Warn("features: state store unavailable; serving reads from the offline snapshots", "store", s.opts.States.Name(), "err", err)
}

const offlineWarnEvery = 10 * time.Second

// fromOffline answers an entity the state store does not hold.
func (s *Service) fromOffline(id string, defs []registry.Def) ([]features.Value, bool) {
	vals := make([]features.Value, len(defs))
	found := false
	for i, d := range defs {
		vals[i] = features.Value{Name: d.Name, Version: d.Version, Null: true}
		if s.opts.Offline == nil {
			continue
		}
		if v, ok := s.opts.Offline.Get(id, d.Name, d.Version); ok {
			vals[i], found = v, true
		}
	}
	return vals, found
}

// FeatureValues returns the current non-null values of names for each id
// (nil for an unknown entity); it serves hybrid vectors.
func (s *Service) FeatureValues(ctx context.Context, ids []string, names []string) ([]map[string]float64, error) {
	out := make([]map[string]float64, len(ids))
	for lo := 0; lo < len(ids); lo += s.opts.Limits.Entities {
		chunk := ids[lo:min(len(ids), lo+s.opts.Limits.Entities)]
		res, err := s.Get(ctx, GetRequest{Entities: chunk, Features: names})
		if err != nil {
			return nil, err
		}
		for k, ev := range res {
			if !ev.Found {
				continue
			}
			m := make(map[string]float64, len(ev.Values))
			for _, v := range ev.Values {
				if !v.Null {
					m[v.Name] = v.Value
				}
			}
			out[lo+k] = m
		}
	}
	return out, nil
}
