package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/embedd/embedd/internal/auth"
	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/drift"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/metrics"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// FeatureStore is what IngestEvents, GetFeatures and ListFeatures call:
// service.Service. Errors are the service's (see errors.go).
type FeatureStore interface {
	// Ingest applies events; errs[i] is events[i]'s rejection, err a
	// failure of the whole call.
	Ingest(ctx context.Context, events []features.Event) (errs []error, err error)
	Get(ctx context.Context, req service.GetRequest) ([]service.EntityValues, error)
	Registry() *registry.Registry
}

// DriftMonitor is what GetFeatureStats calls: drift.Monitor.
type DriftMonitor interface {
	Report(name string) (drift.Report, error)
	Reports() []drift.Report
}

var (
	_ FeatureStore = (*service.Service)(nil)
	_ DriftMonitor = (*drift.Monitor)(nil)
)

// Features implements embedd.v1.FeatureService over a FeatureStore:
// message conversion and error mapping only.
type Features struct {
	embeddv1.UnimplementedFeatureServiceServer
	svc     FeatureStore
	monitor DriftMonitor // nil when monitoring is off
	s       *Service
}

var _ embeddv1.FeatureServiceServer = (*Features)(nil)

// NewFeatures returns the FeatureService; monitor may be nil (monitoring
// off), and so may a nil *drift.Monitor in it.
func NewFeatures(svc FeatureStore, monitor DriftMonitor, s *Service) *Features {
	if m, ok := monitor.(*drift.Monitor); ok && m == nil {
		monitor = nil // the interface would hold a nil pointer and not be nil
	}
	return &Features{svc: svc, monitor: monitor, s: s}
}

// IngestEvents implements FeatureService.IngestEvents.
func (f *Features) IngestEvents(ctx context.Context, req *embeddv1.IngestEventsRequest) (_ *embeddv1.IngestEventsResponse, err error) {
	defer f.s.observe("IngestEvents", metrics.NoName, "", time.Now(), &err)
	evs := make([]features.Event, len(req.GetEvents()))
	for i, e := range req.GetEvents() {
		evs[i] = features.Event{ID: e.GetEventId(), EntityID: e.GetEntityId(), Type: e.GetEventType(), Values: e.GetValues(), Context: e.GetContext()}
		if e.GetTimestamp() != nil {
			evs[i].Timestamp = e.GetTimestamp().AsTime()
		}
	}
	errs, err := f.svc.Ingest(ctx, evs)
	if err != nil {
		return nil, toStatus(err, &f.s.opts)
	}
	out := &embeddv1.IngestEventsResponse{}
	for i, e := range errs {
		if e == nil {
			out.Accepted++
			continue
		}
		out.Errors = append(out.Errors, &embeddv1.EventError{Index: uint32(i), Code: int32(eventCode(e)), Message: e.Error()})
	}
	return out, nil
}

// valueSource is the API's name of where a value came from.
func valueSource(s features.Source) embeddv1.ValueSource {
	switch s {
	case features.SourceComputed:
		return embeddv1.ValueSource_VALUE_SOURCE_COMPUTED
	case features.SourceCache:
		return embeddv1.ValueSource_VALUE_SOURCE_CACHE
	case features.SourceOnline:
		return embeddv1.ValueSource_VALUE_SOURCE_ONLINE
	case features.SourceOffline:
		return embeddv1.ValueSource_VALUE_SOURCE_OFFLINE
	}
	return embeddv1.ValueSource_VALUE_SOURCE_UNSPECIFIED
}

// GetFeatures implements FeatureService.GetFeatures.
func (f *Features) GetFeatures(ctx context.Context, req *embeddv1.GetFeaturesRequest) (_ *embeddv1.GetFeaturesResponse, err error) {
	defer f.s.observe("GetFeatures", metrics.FeatureSet, req.GetFeatureSet(), time.Now(), &err)
	gr := service.GetRequest{Entities: req.GetEntityIds(), Features: req.GetFeatures(), Set: req.GetFeatureSet(), Context: req.GetContext()}
	if req.GetAsOf() != nil {
		gr.AsOf = req.GetAsOf().AsTime()
	}
	res, err := f.svc.Get(ctx, gr)
	if err != nil {
		return nil, toStatus(err, &f.s.opts)
	}
	out := &embeddv1.GetFeaturesResponse{Entities: make([]*embeddv1.EntityFeatures, len(res))}
	if len(res) > 0 {
		for _, v := range res[0].Values {
			out.Features = append(out.Features, &embeddv1.FeatureRef{Name: v.Name, Version: uint32(v.Version)})
		}
	}
	hide := f.withheld(ctx, out.Features)
	for i, ev := range res {
		n := len(ev.Values)
		ef := &embeddv1.EntityFeatures{EntityId: ev.EntityID, Found: ev.Found,
			Values: make([]float64, n), IsNull: make([]bool, n), TimestampsUnixMicros: make([]int64, n), Sources: make([]embeddv1.ValueSource, n)}
		for k, v := range ev.Values {
			if hide != nil && hide[k] {
				ef.IsNull[k] = true
				continue
			}
			ef.Values[k], ef.IsNull[k], ef.Sources[k] = v.Value, v.Null, valueSource(v.Source)
			if !v.Timestamp.IsZero() {
				ef.TimestampsUnixMicros[k] = v.Timestamp.UnixMicro()
			}
		}
		out.Entities[i] = ef
	}
	return out, nil
}

// withheld marks the features a caller without the
// features:read:sensitive scope may not see (every caller has it when auth
// is off); their values are served null, and the trailer
// "embedd-withheld" names them and the scope.
func (f *Features) withheld(ctx context.Context, refs []*embeddv1.FeatureRef) []bool {
	if auth.FromContext(ctx).Has(auth.ScopeFeaturesReadSensitive) {
		return nil
	}
	hide := make([]bool, len(refs))
	var names []string
	for k, r := range refs {
		if d, err := f.svc.Registry().Resolve(fmt.Sprintf("%s@%d", r.GetName(), r.GetVersion())); err == nil && d.Sensitive {
			hide[k] = true
			names = append(names, r.GetName())
		}
	}
	if len(names) > 0 {
		grpc.SetTrailer(ctx, metadata.Pairs("embedd-withheld", "sensitive features need scope "+string(auth.ScopeFeaturesReadSensitive)+": "+strings.Join(names, ",")))
	}
	return hide
}

// ListFeatures implements FeatureService.ListFeatures.
func (f *Features) ListFeatures(context.Context, *embeddv1.ListFeaturesRequest) (*embeddv1.ListFeaturesResponse, error) {
	reg := f.svc.Registry()
	out := &embeddv1.ListFeaturesResponse{}
	for _, d := range reg.List() {
		fd := &embeddv1.FeatureDefinition{
			Name: d.Name, Version: uint32(d.Version), Entity: d.Entity, Type: string(d.Type), Kind: string(d.Kind()),
			Source: d.Source, Aggregation: d.Aggregation, Description: d.Description, Owner: d.Owner,
			Tags: d.Tags, Sensitive: d.Sensitive, Status: string(d.Status),
		}
		if d.Window > 0 {
			fd.Window = d.Window.String()
		}
		if d.Sensitive {
			fd.Description = "(sensitive)"
		}
		out.Features = append(out.Features, fd)
	}
	for _, s := range reg.Sets() {
		out.FeatureSets = append(out.FeatureSets, s.Name)
	}
	return out, nil
}

func summary(s drift.Summary) *embeddv1.FeatureSummary {
	return &embeddv1.FeatureSummary{Count: s.Count, Nulls: s.Nulls, NullRate: s.NullRate, Mean: s.Mean, Stddev: s.StdDev, P50: s.P50, P90: s.P90, P99: s.P99}
}

// GetFeatureStats implements FeatureService.GetFeatureStats.
func (f *Features) GetFeatureStats(ctx context.Context, req *embeddv1.GetFeatureStatsRequest) (*embeddv1.GetFeatureStatsResponse, error) {
	reports, err := f.reports(req.GetFeatures())
	if err != nil {
		return nil, toStatus(err, &f.s.opts)
	}
	out := &embeddv1.GetFeatureStatsResponse{}
	for _, r := range reports {
		out.Features = append(out.Features, &embeddv1.FeatureStats{
			Feature: r.Feature, Current: summary(r.Current), Reference: summary(r.Reference), HasReference: r.HasReference,
			Status: r.Status.String(), Reason: r.Reason, Psi: r.PSI, KsStatistic: r.KS.D, KsPvalue: r.KS.PValue,
		})
	}
	return out, nil
}

// reports returns the drift reports of names, or of every tracked feature
// when names is empty; errors are core errors for the error table.
func (f *Features) reports(names []string) ([]drift.Report, error) {
	switch {
	case f.monitor == nil:
		return nil, errMonitorOff
	case len(names) == 0:
		return f.monitor.Reports(), nil
	case len(names) > service.MaxFeatures:
		return nil, fmt.Errorf("%w: %d features; limit %d", errInvalid, len(names), service.MaxFeatures)
	}
	reports := make([]drift.Report, 0, len(names))
	for i, name := range names {
		r, err := f.monitor.Report(name)
		if err != nil {
			return nil, fmt.Errorf("features[%d]: %w", i, err)
		}
		reports = append(reports, r)
	}
	return reports, nil
}
