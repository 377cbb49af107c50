package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/drift"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/features/window"
	"github.com/embedd/embedd/internal/metrics"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// Features implements embedd.v1.FeatureService over a features service:
// message conversion and error mapping only.
type Features struct {
	embeddv1.UnimplementedFeatureServiceServer
	svc     *service.Service
	monitor *drift.Monitor // may be nil
	s       *Service
}

var _ embeddv1.FeatureServiceServer = (*Features)(nil)

// NewFeatures returns the FeatureService; monitor may be nil.
func NewFeatures(svc *service.Service, monitor *drift.Monitor, s *Service) *Features {
	return &Features{svc: svc, monitor: monitor, s: s}
}

// eventCode is the gRPC code of one rejected event.
func eventCode(err error) codes.Code {
	switch {
	case errors.Is(err, window.ErrTooLate):
		return codes.OutOfRange
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Code()
	case service.Permanent(err):
		return codes.InvalidArgument
	}
	return codes.Unavailable // retry: a store was unreachable
}

// IngestEvents implements FeatureService.IngestEvents.
func (f *Features) IngestEvents(ctx context.Context, req *embeddv1.IngestEventsRequest) (_ *embeddv1.IngestEventsResponse, err error) {
	defer f.s.observe("IngestEvents", metrics.NoName, "", time.Now(), &err)
	evs := make([]features.Event, len(req.GetEvents()))
	for i, e := range req.GetEvents() {
		evs[i] = features.Event{EntityID: e.GetEntityId(), Type: e.GetEventType(), Values: e.GetValues(), Context: e.GetContext()}
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

var sources = map[features.Source]embeddv1.ValueSource{
	features.SourceComputed: embeddv1.ValueSource_VALUE_SOURCE_COMPUTED,
	features.SourceCache:    embeddv1.ValueSource_VALUE_SOURCE_CACHE,
	features.SourceOnline:   embeddv1.ValueSource_VALUE_SOURCE_ONLINE,
	features.SourceOffline:  embeddv1.ValueSource_VALUE_SOURCE_OFFLINE,
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
	for i, ev := range res {
		n := len(ev.Values)
		ef := &embeddv1.EntityFeatures{EntityId: ev.EntityID, Found: ev.Found,
			Values: make([]float64, n), IsNull: make([]bool, n), TimestampsUnixMicros: make([]int64, n), Sources: make([]embeddv1.ValueSource, n)}
		for k, v := range ev.Values {
			ef.Values[k], ef.IsNull[k], ef.Sources[k] = v.Value, v.Null, sources[v.Source]
			if !v.Timestamp.IsZero() {
				ef.TimestampsUnixMicros[k] = v.Timestamp.UnixMicro()
			}
		}
		out.Entities[i] = ef
	}
	return out, nil
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
