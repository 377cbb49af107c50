package service

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/offline"
	"github.com/embedd/embedd/internal/features/registry"
)

// Materialize computes every active feature of every entity in the state
// store at the clock's now and writes them as an offline snapshot. It
// returns the snapshot's path and the number of entities.
func (s *Service) Materialize(ctx context.Context) (string, int, error) {
	if s.opts.Offline == nil {
		return "", 0, fmt.Errorf("%w: no offline store configured", ErrInvalid)
	}
	now := s.opts.Clock.Now()
	var defs []registry.Def
	sensitive := map[registry.Ref]bool{}
	for _, d := range s.reg.List() {
		if d.Status == registry.StatusActive {
			defs = append(defs, d)
			sensitive[d.Ref()] = d.Sensitive
		}
	}
	eval, err := s.evaluator(defs)
	if err != nil {
		return "", 0, err
	}
	var ids []string
	if err := s.opts.States.Scan(ctx, func(id string) bool {
		ids = append(ids, id)
		return len(ids) < offline.MaxRows/max(1, len(defs))
	}); err != nil {
		return "", 0, err
	}
	slices.Sort(ids)
	var rows []offline.Row
	for start := 0; start < len(ids); start += s.opts.Limits.Entities {
		chunk := ids[start:min(len(ids), start+s.opts.Limits.Entities)]
		states, err := s.opts.States.Load(ctx, chunk)
		if err != nil {
			return "", 0, err
		}
		for k, st := range states {
			if st == nil {
				continue
			}
			vals, err := s.compute(st, features.SourceOnline, defs, eval, now, nil)
			if err != nil {
				s.opts.Logger.Warn("materialize: entity skipped", "entity", chunk[k], "err", err)
				continue
			}
			for _, v := range vals {
				rows = append(rows, offline.Row{EntityID: chunk[k], Feature: v.Name, Version: int32(v.Version), Value: v.Value, Null: v.Null, TimestampMicros: cmp.Or(v.Timestamp, now).UnixMicro(),
					Sensitive: sensitive[registry.Ref{Name: v.Name, Version: v.Version}]})
			}
		}
	}
	path, err := s.opts.Offline.Write(rows, now)
	return path, len(ids), err
}
