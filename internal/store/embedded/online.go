package embedded

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/embedd/embedd/internal/store"
)

// validateEntities checks a SetEntities batch before any write.
func validateEntities(ents []store.Entity, ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("%w: ttl %v is negative", store.ErrInvalid, ttl)
	}
	return store.ValidateEntities(ents)
}

func encodeEntity(e *enc, ent *entity) {
	e.str(ent.ID)
	e.uvarint(uint64(len(ent.Embedding)))
	for _, b := range ent.Embedding {
		e.byte(byte(b))
	}
	e.f32(ent.Scale)
	e.str(ent.ModelVersion)
	e.varint(ent.UpdatedAt.UnixMilli())
	e.varint(ent.expire)
	e.uvarint(uint64(len(ent.Features)))
	for _, k := range slices.Sorted(maps.Keys(ent.Features)) {
		e.str(k)
		e.f64(ent.Features[k])
	}
}

// SetEntities implements store.Online. A batch is one log entry.
func (s *Store) SetEntities(ctx context.Context, ents []store.Entity, ttl time.Duration) error {
	if err := validateEntities(ents, ttl); err != nil {
		return err
	}
	if len(ents) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	var expire int64
	if ttl > 0 {
		expire = s.opts.Now().Add(ttl).UnixNano()
	}
	e := &enc{}
	e.byte(opEntSet)
	e.uvarint(uint64(len(ents)))
	own := make([]*entity, len(ents))
	for i, in := range ents {
		ent := &entity{Entity: store.Entity{
			ID: in.ID, Embedding: slices.Clone(in.Embedding), Scale: in.Scale, ModelVersion: in.ModelVersion,
			UpdatedAt: time.UnixMilli(in.UpdatedAt.UnixMilli()).UTC(), Features: maps.Clone(in.Features),
		}, expire: expire}
		encodeEntity(e, ent)
		own[i] = ent
	}
	if err := s.write(e); err != nil {
		return err
	}
	for _, ent := range own {
		s.ents[ent.ID] = ent
	}
	return s.afterWrite()
}

// GetEntities implements store.Online.
func (s *Store) GetEntities(ctx context.Context, ids []string) ([]*store.Entity, error) {
	if err := store.ValidateEntityIDs(ids); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	now := s.opts.Now().UnixNano()
	out := make([]*store.Entity, len(ids))
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
	return out, nil
}

// DeleteEntities implements store.Online.
func (s *Store) DeleteEntities(ctx context.Context, ids []string) error {
	if err := store.ValidateEntityIDs(ids); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	e := &enc{}
	e.byte(opEntDel)
	e.uvarint(uint64(len(ids)))
	for _, id := range ids {
		e.str(id)
	}
	if err := s.write(e); err != nil {
		return err
	}
	for _, id := range ids {
		delete(s.ents, id)
	}
	return s.afterWrite()
}

// Compact rewrites the log to hold only live state (expired entities and
// overwritten or deleted records are dropped).
func (s *Store) Compact(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.compactLocked()
}

func (s *Store) compactLocked() error {
	path := filepath.Join(s.opts.Dir, logName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("embedded: compact: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("embedded: compact: %w", err)
	}
	pos := logPos{off: int64(len(logMagic))} // of the new log
	buf := []byte(logMagic)
	flush := func(e *enc) error {
		fr := e.frame()
		pos.add(fr)
		buf = append(buf, fr...)
		if len(buf) < 4<<20 {
			return nil
		}
		_, err := f.Write(buf)
		buf = buf[:0]
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(s.colls)) {
		c := s.colls[name]
		e := &enc{}
		e.byte(opColl)
		e.str(name)
		e.uvarint(uint64(c.dims))
		if err := flush(e); err != nil {
			return fail(err)
		}
		ids := slices.Sorted(maps.Keys(c.recs))
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), 1024)]
			ids = ids[len(chunk):]
			e := &enc{}
			e.byte(opUpsert)
			e.str(name)
			e.uvarint(uint64(len(chunk)))
			for _, id := range chunk {
				r := c.recs[id]
				e.str(r.ID)
				e.f32s(r.Vector)
				e.bytes(r.Metadata)
				e.str(r.ModelVersion)
				e.varint(r.UpdatedAt.UnixNano())
			}
			if err := flush(e); err != nil {
				return fail(err)
			}
		}
	}
	now := s.opts.Now().UnixNano()
	for id, ent := range s.ents {
		if ent.expire != 0 && ent.expire <= now {
			delete(s.ents, id)
			continue
		}
		e := &enc{}
		e.byte(opEntSet)
		e.uvarint(1)
		encodeEntity(e, ent)
		if err := flush(e); err != nil {
			return fail(err)
		}
	}
	if _, err := f.Write(buf); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := syncDir(s.opts.Dir); err != nil {
		return fail(err)
	}
	old := s.log
	s.log, s.pos, s.compacted = f, pos, pos.off
	// Positions in the old log name nothing in the new one: every graph
	// needs a new snapshot. Failing that costs a rebuild at Open, not data.
	s.epoch++
	if err := s.snapshotAllLocked(); err != nil {
		s.logger.Warn("embedded: snapshots after compaction", "err", err)
	}
	if err := old.Close(); err != nil {
		return fmt.Errorf("embedded: compact: close old log: %w", err)
	}
	return nil
}
