// Package offline is the offline layer of embedd's feature store: Parquet
// snapshots of feature values written by a materializer, read back as the
// last fallback of GetFeatures (cache → online store → offline) and usable
// by any Parquet reader (pandas, DuckDB, Spark) for training sets.
//
// Layout: one directory of files named "features-<unix nanos>.parquet",
// each a complete snapshot with the columns of Row, sorted by entity_id,
// feature, version, compressed with zstd. A snapshot is written atomically
// (fsutil.WriteAtomic), so readers never see half a file.
// Keep bounds the snapshots kept; older ones are deleted after a write.
//
// Sensitive values: with Options.Keys, a row marked Sensitive is written
// with its value and null flag sealed (package seal) in the "sealed"
// column, bound to its entity, feature and version, and value 0 and
// is_null true in the clear, so a Parquet reader without the keys sees the
// feature as null (seal.go).
//
// Reading: Open loads the newest readable snapshot into memory (an index
// entity → feature@version → value). Memory is bounded by MaxRows (an error
// names the file and the limit). Reload picks up a newer snapshot.
//
// Concurrency: a *Store is safe for concurrent use; Write may run while
// readers read.
package offline

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/fsutil"
	"github.com/embedd/embedd/internal/seal"
)

// Limits and defaults.
const (
	// MaxRows bounds the rows of a snapshot loaded into memory (about 100
	// bytes each).
	MaxRows = 20_000_000
	// DefaultKeep is the number of snapshots kept.
	DefaultKeep = 3
)

// ErrTooLarge reports a snapshot over MaxRows.
var ErrTooLarge = errors.New("offline: snapshot too large")

// Row is one materialized value; the Parquet column names are the tags.
type Row struct {
	EntityID string  `parquet:"entity_id"`
	Feature  string  `parquet:"feature"`
	Version  int32   `parquet:"version"`
	Value    float64 `parquet:"value"`
	Null     bool    `parquet:"is_null"`
	// TimestampMicros is the time the value refers to, unix microseconds.
	TimestampMicros int64 `parquet:"ts_micros"`
	// Sealed is the sealed value and null flag of a sensitive row (null
	// for the others); Value and Null are then 0 and true. Write fills it.
	Sealed []byte `parquet:"sealed,optional"`
	// Sensitive asks Write to seal the row's value (with Options.Keys).
	// Not a column.
	Sensitive bool `parquet:"-"`
}

// Options configures a Store.
type Options struct {
	// Keep bounds the snapshots kept. Default DefaultKeep; zero or negative
	// means the default.
	Keep int
	// Keys seals the values of Sensitive rows on Write and opens sealed
	// values on load (under any of its keys). Nil: Sensitive rows are
	// written in plaintext, and a snapshot with sealed values fails to
	// load naming the key id.
	Keys *seal.Keyring
}

// Store reads and writes snapshots in one directory.
type Store struct {
	dir  string
	keep int
	keys *seal.Keyring

	mu    sync.RWMutex
	file  string // loaded snapshot, "" if none
	index map[string]map[key]features.Value
}

type key struct {
	name    string
	version int
}

// Open opens dir (created if missing) and loads the newest snapshot, if
// any. keep <= 0 selects DefaultKeep.
func Open(dir string, keep int) (*Store, error) {
	return OpenOptions(dir, Options{Keep: keep})
}

// OpenOptions is Open with options.
func OpenOptions(dir string, opts Options) (*Store, error) {
	if opts.Keep <= 0 {
		opts.Keep = DefaultKeep
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("offline: %w", err)
	}
	s := &Store{dir: dir, keep: opts.Keep, keys: opts.Keys, index: map[string]map[key]features.Value{}}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// snapshots lists snapshot files, newest first.
func (s *Store) snapshots() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("offline: %w", err)
	}
	type snap struct {
		name string
		ns   int64
	}
	var out []snap
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, "features-") || !strings.HasSuffix(n, ".parquet") {
			continue
		}
		ns, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(n, "features-"), ".parquet"), 10, 64)
		if err != nil {
			continue
		}
		out = append(out, snap{n, ns})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ns > out[j].ns })
	names := make([]string, len(out))
	for i, o := range out {
		names[i] = filepath.Join(s.dir, o.name)
	}
	return names, nil
}

// Reload loads the newest snapshot if it is not the one loaded. A snapshot
// that cannot be read is an error; the previous index stays in use.
func (s *Store) Reload() error {
	snaps, err := s.snapshots()
	if err != nil || len(snaps) == 0 {
		return err
	}
	s.mu.RLock()
	same := snaps[0] == s.file
	s.mu.RUnlock()
	if same {
		return nil
	}
	idx, err := s.load(snaps[0])
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.file, s.index = snaps[0], idx
	s.mu.Unlock()
	return nil
}

func (s *Store) load(path string) (map[string]map[key]features.Value, error) {
	idx := map[string]map[key]features.Value{}
	err := s.scan(path, func(row Row) error {
		m := idx[row.EntityID]
		if m == nil {
			m = map[key]features.Value{}
			idx[row.EntityID] = m
		}
		m[key{row.Feature, int(row.Version)}] = features.Value{
			Name: row.Feature, Version: int(row.Version), Value: row.Value, Null: row.Null,
			Timestamp: time.UnixMicro(row.TimestampMicros).UTC(), Source: features.SourceOffline,
		}
		return nil
	})
	return idx, err
}

// scan calls fn with every row of the snapshot at path, sealed values
// opened (Sensitive set on those rows).
func (s *Store) scan(path string, fn func(Row) error) error {
	return s.scanRaw(path, func(row Row) error {
		row, err := s.unsealRow(row)
		if err != nil {
			return fmt.Errorf("offline: %s: %w", path, err)
		}
		return fn(row)
	})
}

// scanRaw calls fn with every row of the snapshot at path as stored.
func (s *Store) scanRaw(path string, fn func(Row) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return fmt.Errorf("offline: %s: %w", path, err)
	}
	if pf.NumRows() > MaxRows {
		return fmt.Errorf("%w: %s has %d rows; limit %d", ErrTooLarge, path, pf.NumRows(), MaxRows)
	}
	r := parquet.NewGenericReader[Row](pf)
	defer r.Close()
	buf := make([]Row, 1024)
	for {
		n, err := r.Read(buf)
		for _, row := range buf[:n] {
			if err := fn(row); err != nil {
				return err
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("offline: %s: %w", path, err)
		}
	}
}

// Loaded names the snapshot in use ("" when none).
func (s *Store) Loaded() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.file
}

// Get returns the offline value of feature name@version for entity.
func (s *Store) Get(entity, name string, version int) (features.Value, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.index[entity][key{name, version}]
	return v, ok
}

// Write writes rows as a new snapshot taken at at, then deletes snapshots
// beyond Keep and loads the new one. It returns the file's path.
func (s *Store) Write(rows []Row, at time.Time) (string, error) {
	if len(rows) > MaxRows {
		return "", fmt.Errorf("%w: %d rows; limit %d", ErrTooLarge, len(rows), MaxRows)
	}
	rows = slices.Clone(rows)
	slices.SortFunc(rows, func(a, b Row) int {
		return cmp.Or(strings.Compare(a.EntityID, b.EntityID), strings.Compare(a.Feature, b.Feature), cmp.Compare(a.Version, b.Version))
	})
	final := filepath.Join(s.dir, fmt.Sprintf("features-%d.parquet", at.UnixNano()))
	if err := s.writeFile(final, rows); err != nil {
		return "", err
	}
	if err := s.prune(); err != nil {
		return final, err
	}
	return final, s.Reload()
}

// writeFile writes rows, sorted, to path atomically, sealing the values of
// Sensitive rows when the store has keys.
func (s *Store) writeFile(path string, rows []Row) error {
	if err := s.sealRows(rows); err != nil {
		return err
	}
	err := fsutil.WriteAtomic(path, 0o600, func(f io.Writer) error {
		w := parquet.NewGenericWriter[Row](f, parquet.Compression(&zstd.Codec{}))
		if _, err := w.Write(rows); err != nil {
			return err
		}
		return w.Close()
	})
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	return nil
}

func (s *Store) prune() error {
	snaps, err := s.snapshots()
	if err != nil {
		return err
	}
	var errs []error
	for _, old := range snaps[min(len(snaps), s.keep):] {
		s.mu.RLock()
		inUse := old == s.file
		s.mu.RUnlock()
		if !inUse {
			errs = append(errs, os.Remove(old))
		}
	}
	return errors.Join(errs...)
}
