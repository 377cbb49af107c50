package service

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/features/window"
)

// What the service reports: its ingest counters (Stats, exported by
// RegisterMetrics) and the values it serves (to Options.Monitor, which
// tracks the features trackFeatures picks).

// IngestStats counts ingested events by outcome since New.
type IngestStats struct {
	Accepted, Invalid, TooLate, Failed uint64
	// BeforeSession counts accepted events older than their entity's
	// current session (windows count them; sessions do not reopen).
	BeforeSession uint64
	// Duplicate counts accepted events whose id their entity had already
	// applied: not applied again (dedupe.go).
	Duplicate uint64
}

// Stats returns the ingest counters.
func (s *Service) Stats() IngestStats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats
}

func (s *Service) count(errs []error, lateForSession, duplicates int) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	s.stats.BeforeSession += uint64(lateForSession)
	s.stats.Duplicate += uint64(duplicates)
	for _, e := range errs {
		switch {
		case e == nil:
			s.stats.Accepted++
		case errors.Is(e, window.ErrTooLate):
			s.stats.TooLate++
		case errors.Is(e, ErrInvalid), errors.Is(e, session.ErrInvalidEvent):
			s.stats.Invalid++
		default:
			s.stats.Failed++
		}
	}
}

// RegisterMetrics registers the ingest counters on reg as
// embedd_feature_events_total{result}, read from Stats at each scrape:
// accepted, invalid, too_late, failed, before_session (accepted but
// older than the entity's current session) and duplicate (accepted, but
// its id was already applied: not applied again).
func (s *Service) RegisterMetrics(reg prometheus.Registerer) error {
	for _, r := range []struct {
		result string
		get    func(IngestStats) uint64
	}{
		{"accepted", func(st IngestStats) uint64 { return st.Accepted }},
		{"invalid", func(st IngestStats) uint64 { return st.Invalid }},
		{"too_late", func(st IngestStats) uint64 { return st.TooLate }},
		{"failed", func(st IngestStats) uint64 { return st.Failed }},
		{"before_session", func(st IngestStats) uint64 { return st.BeforeSession }},
		{"duplicate", func(st IngestStats) uint64 { return st.Duplicate }},
	} {
		if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "embedd_feature_events_total",
			Help:        "Events given to the feature service, by result (before_session: accepted but older than the entity's current session; duplicate: accepted, its event id already applied, not applied again).",
			ConstLabels: prometheus.Labels{"result": r.result},
		}, func() float64 { return float64(r.get(s.Stats())) })); err != nil {
			return err
		}
	}
	return nil
}

// trackFeatures has the monitor track the registry's features: every
// name with a version that is not retired, in the registry's order, up to
// the monitor's Options.MaxFeatures (the rest are not monitored).
func (s *Service) trackFeatures() error {
	m := s.opts.Monitor
	if m == nil {
		return nil
	}
	limit := m.Options().MaxFeatures
	tracked := map[string]bool{}
	for _, d := range s.reg.List() {
		if tracked[d.Name] || d.Status == registry.StatusRetired || len(tracked) >= limit {
			continue
		}
		tracked[d.Name] = true
		if err := m.Track(d.Name, d.Sensitive); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) observe(vals []features.Value) {
	for _, v := range vals {
		if v.Null {
			_ = s.opts.Monitor.ObserveNull(v.Name)
		} else {
			_ = s.opts.Monitor.Observe(v.Name, v.Value)
		}
	}
}
