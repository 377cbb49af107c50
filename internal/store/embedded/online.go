package embedded

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/embedd/embedd/internal/store"
)

// SetEntities implements store.Online. A batch is one log entry.
func (s *Store) SetEntities(ctx context.Context, ents []store.Entity, ttl time.Duration) error {
	if err := store.CheckEntities(ents, ttl); err != nil {
		return err
	}
	if len(ents) == 0 {
		return nil
	}
	return s.update(ctx, func() (*enc, func(), error) {
		var expire int64
		if ttl > 0 {
			expire = s.opts.Now().Add(ttl).UnixNano()
		}
		own := make([]*entity, len(ents))
		for i, in := range ents {
			own[i] = &entity{Entity: store.Entity{
				ID: in.ID, Embedding: slices.Clone(in.Embedding), Scale: in.Scale, ModelVersion: in.ModelVersion,
				UpdatedAt: time.UnixMilli(in.UpdatedAt.UnixMilli()).UTC(), Features: maps.Clone(in.Features),
			}, expire: expire}
		}
		return encodeEntSet(own), func() {
			for _, ent := range own {
				s.ents[ent.ID] = ent
			}
		}, nil
	})
}

// GetEntities implements store.Online.
func (s *Store) GetEntities(ctx context.Context, ids []string) ([]*store.Entity, error) {
	if err := store.CheckEntityIDs(ids); err != nil {
		return nil, err
	}
	var out []*store.Entity
	err := s.view(ctx, func() error {
		now := s.opts.Now().UnixNano()
		out = make([]*store.Entity, len(ids))
		for i, id := range ids {
			ent := s.ents[id]
			if ent == nil || (ent.expire != 0 && ent.expire <= now) {
				continue
			}
			c := ent.Entity
			c.Embedding = slices.Clone(c.Embedding)
			c.Features = maps.Clone(c.Features)
			out[i] = &c
		}
		return nil
	})
	return out, err
}

// DeleteEntities implements store.Online.
func (s *Store) DeleteEntities(ctx context.Context, ids []string) error {
	if err := store.CheckEntityIDs(ids); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	return s.update(ctx, func() (*enc, func(), error) {
		return encodeDelete(nil, ids), func() {
			for _, id := range ids {
				delete(s.ents, id)
			}
		}, nil
	})
}
