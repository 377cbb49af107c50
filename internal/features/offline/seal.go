package offline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/embedd/embedd/internal/seal"
)

// A sensitive row's sealed payload is its null flag (u8) and value (f64
// bits, little-endian), bound by the associated data
// "embedd/offline" NUL entity NUL feature NUL version to its place, so a
// value copied to another row fails to open.

func rowAD(r *Row) []byte {
	b := []byte("embedd/offline\x00")
	b = append(b, r.EntityID...)
	b = append(b, 0)
	b = append(b, r.Feature...)
	b = append(b, 0)
	return strconv.AppendInt(b, int64(r.Version), 10)
}

// sealRows seals the value of every Sensitive row in place, when the store
// has keys.
func (s *Store) sealRows(rows []Row) error {
	if s.keys == nil {
		return nil
	}
	for i := range rows {
		r := &rows[i]
		if !r.Sensitive {
			continue
		}
		p := []byte{0}
		if r.Null {
			p[0] = 1
		}
		p = binary.LittleEndian.AppendUint64(p, math.Float64bits(r.Value))
		var err error
		if r.Sealed, err = s.keys.Seal(p, rowAD(r)); err != nil {
			return fmt.Errorf("offline: %w", err)
		}
		r.Value, r.Null = 0, true
	}
	return nil
}

// unsealRow opens a row's sealed value, if it has one.
func (s *Store) unsealRow(r Row) (Row, error) {
	if len(r.Sealed) == 0 {
		return r, nil
	}
	if s.keys == nil {
		id, _ := seal.KeyID(r.Sealed)
		return r, fmt.Errorf("entity %q feature %s@%d: value sealed under key %q and no keyring configured (--feature-keys): %w", r.EntityID, r.Feature, r.Version, id, seal.ErrUnknownKey)
	}
	p, err := s.keys.Open(r.Sealed, rowAD(&r))
	if err == nil && len(p) != 9 {
		err = errors.New("sealed payload is not 9 bytes")
	}
	if err != nil {
		return r, fmt.Errorf("entity %q feature %s@%d: %w", r.EntityID, r.Feature, r.Version, err)
	}
	r.Null, r.Value = p[0] == 1, math.Float64frombits(binary.LittleEndian.Uint64(p[1:]))
	r.Sealed, r.Sensitive = nil, true
	return r, nil
}

// Reseal rewrites, in place and atomically, every snapshot holding a
// value not sealed under the current key: sealed under an old key, or in
// plaintext for a feature sensitive reports (snapshots written before
// encryption was configured). Afterwards old keys can be removed from the
// keyring. It returns the snapshots rewritten; the loaded one is reloaded.
func (s *Store) Reseal(sensitive func(feature string) bool) (int, error) {
	if s.keys == nil {
		return 0, errors.New("offline: Reseal needs a keyring")
	}
	snaps, err := s.snapshots()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, path := range snaps {
		var rows []Row
		stale := false
		err := s.scanRaw(path, func(r Row) error {
			if len(r.Sealed) > 0 && !s.keys.IsCurrent(r.Sealed) || len(r.Sealed) == 0 && sensitive(r.Feature) {
				stale = true
			}
			r, err := s.unsealRow(r)
			if err == nil && sensitive(r.Feature) {
				r.Sensitive = true
			}
			rows = append(rows, r)
			return err
		})
		if err != nil {
			return n, fmt.Errorf("offline: %s: %w", path, err)
		}
		if !stale {
			continue
		}
		if err := s.writeFile(path, rows); err != nil {
			return n, err
		}
		n++
	}
	s.mu.Lock()
	s.file = "" // the loaded snapshot may have been rewritten
	s.mu.Unlock()
	return n, s.Reload()
}
