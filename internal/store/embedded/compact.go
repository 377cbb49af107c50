package embedded

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/embedd/embedd/internal/store"
)

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

// compactLocked writes the live state to a new log, renames it over the
// old one and snapshots every graph again (their log positions named the
// old file). Callers hold s.mu for writing.
func (s *Store) compactLocked() error {
	path := filepath.Join(s.opts.Dir, logName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
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
	err = s.liveEntries(func(e *enc) error {
		fr := e.frame()
		pos.add(fr[:entryHead], len(e.b))
		buf = append(buf, fr...)
		if len(buf) < 4<<20 {
			return nil
		}
		_, err := f.Write(buf)
		buf = buf[:0]
		return err
	})
	if err != nil {
		return fail(err)
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

// liveEntries calls emit with the entries that rebuild the live state:
// each version (in key order, with its binding, creation time and whether
// it is live) with its records (in id order, 1024 an entry), then each
// unexpired entity; expired ones are dropped from memory.
func (s *Store) liveEntries(emit func(*enc) error) error {
	for _, name := range slices.Sorted(maps.Keys(s.colls)) {
		c := s.colls[name]
		if err := emit(encodeVersion(c, s.alias[c.logical] == c.version)); err != nil {
			return err
		}
		ids := slices.Sorted(maps.Keys(c.recs))
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), 1024)]
			ids = ids[len(chunk):]
			recs := make([]store.Record, len(chunk))
			for i, id := range chunk {
				recs[i] = c.recs[id].Record
			}
			if err := emit(encodeUpsert(name, c.dims, recs)); err != nil {
				return err
			}
		}
	}
	now := s.opts.Now().UnixNano()
	for id, ent := range s.ents {
		if ent.expire != 0 && ent.expire <= now {
			delete(s.ents, id)
			continue
		}
		if err := emit(encodeEntSet([]*entity{ent})); err != nil {
			return err
		}
	}
	return nil
}
