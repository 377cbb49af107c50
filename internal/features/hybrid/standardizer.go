package hybrid

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"sync"
	"unicode/utf8"

	"gonum.org/v1/gonum/stat"
)

// Standardizer keeps the running mean and sample standard deviation of a
// fixed set of numeric features, which Merger uses to turn raw values into
// z-scores.
//
// Updates are exact: single values by Welford's update, batches by gonum's
// two-pass stat.MeanVariance merged in with Chan et al.'s pairwise formula,
// so the statistics equal those of all values seen, in any grouping.
//
// Versioning: Version is a hash of the statistics (names, counts, means,
// sums of squares, bit for bit), so replicas that restored the same
// Snapshot agree on it without coordination. Every hybrid Vector carries
// the version it was built with. Freeze stops updates; freeze before
// filling a collection, and rebuild the collection when the statistics are
// replaced (Restore), since vectors built with different versions are not
// comparable.
//
// Concurrency: safe for concurrent use.
type Standardizer struct {
	names []string       // fixed at construction
	index map[string]int // name -> position in names

	mu      sync.RWMutex // guards every field below
	stats   []running
	frozen  bool
	version string // hash of stats; "" when stale
}

// running is one feature's statistics.
type running struct {
	n    int64
	mean float64
	m2   float64 // sum of squared deviations from the mean
}

// std is the sample standard deviation, 0 below two values.
func (r running) std() float64 {
	if r.n < 2 {
		return 0
	}
	return math.Sqrt(r.m2 / float64(r.n-1))
}

// merge folds a group of n values with mean and m2 into r (Chan et al.).
func (r *running) merge(n int64, mean, m2 float64) {
	if n == 0 {
		return
	}
	if r.n == 0 {
		*r = running{n, mean, m2}
		return
	}
	na, nb := float64(r.n), float64(n)
	tot := na + nb
	d := mean - r.mean
	r.mean += d * nb / tot
	r.m2 += m2 + d*d*na*nb/tot
	r.n += n
}

func checkName(i int, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("features[%d] is empty", i)
	case len(name) > MaxNameBytes:
		return fmt.Errorf("features[%d] is %d bytes; limit MaxNameBytes=%d", i, len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("features[%d] %q is not UTF-8", i, name)
	}
	return nil
}

// NewStandardizer returns a Standardizer for the given features (1 to
// MaxFeatures distinct names), with no values seen.
func NewStandardizer(features []string) (*Standardizer, error) {
	if len(features) == 0 || len(features) > MaxFeatures {
		return nil, fmt.Errorf("%w: %d features; want 1..MaxFeatures=%d", ErrInvalidSpec, len(features), MaxFeatures)
	}
	s := &Standardizer{names: slices.Clone(features), index: make(map[string]int, len(features)),
		stats: make([]running, len(features))}
	for i, n := range features {
		if err := checkName(i, n); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
		}
		if j, dup := s.index[n]; dup {
			return nil, fmt.Errorf("%w: features[%d] %q repeats features[%d]", ErrInvalidSpec, i, n, j)
		}
		s.index[n] = i
	}
	return s, nil
}

// Features returns the feature names in order.
func (s *Standardizer) Features() []string { return slices.Clone(s.names) }

// Observe updates the statistics with one row of values. Keys that are not
// features of s are ignored (an entity row usually holds more features than
// are standardized). A NaN or infinite value of a known feature fails the
// whole row with ErrInvalidInput and nothing is updated.
func (s *Standardizer) Observe(values map[string]float64) error {
	for i, name := range s.names {
		if x, ok := values[name]; ok && (math.IsNaN(x) || math.IsInf(x, 0)) {
			return fmt.Errorf("%w: feature %q (index %d) is %v", ErrInvalidInput, name, i, x)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen {
		return fmt.Errorf("%w: Observe", ErrFrozen)
	}
	for i, name := range s.names {
		x, ok := values[name]
		if !ok {
			continue
		}
		r := &s.stats[i]
		r.n++
		d := x - r.mean
		r.mean += d / float64(r.n)
		r.m2 += d * (x - r.mean)
	}
	s.version = ""
	return nil
}

// ObserveBatch updates one feature with a batch of values (at most
// MaxBatch): the batch's mean and variance come from gonum's
// stat.MeanVariance and are merged exactly into the running statistics.
func (s *Standardizer) ObserveBatch(name string, xs []float64) error {
	i, ok := s.index[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownFeature, name)
	}
	if len(xs) > MaxBatch {
		return fmt.Errorf("%w: batch of %d values for %q; limit MaxBatch=%d", ErrInvalidInput, len(xs), name, MaxBatch)
	}
	for j, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%w: feature %q values[%d] is %v", ErrInvalidInput, name, j, x)
		}
	}
	if len(xs) == 0 {
		return nil
	}
	mean, variance := stat.MeanVariance(xs, nil) // unbiased; NaN for one value
	m2 := 0.0
	if len(xs) > 1 {
		m2 = variance * float64(len(xs)-1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen {
		return fmt.Errorf("%w: ObserveBatch", ErrFrozen)
	}
	s.stats[i].merge(int64(len(xs)), mean, m2)
	s.version = ""
	return nil
}

// Freeze stops updates: Observe and ObserveBatch fail with ErrFrozen from
// now on, so the transform, and Version, stay fixed while vectors are
// stored. Restore still replaces the statistics.
func (s *Standardizer) Freeze() {
	s.mu.Lock()
	s.frozen = true
	s.mu.Unlock()
}

// Frozen reports whether Freeze was called (or a frozen snapshot restored).
func (s *Standardizer) Frozen() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.frozen
}

// Stat returns a feature's count, mean and sample standard deviation (0
// below two values).
func (s *Standardizer) Stat(name string) (n int64, mean, std float64, err error) {
	i, ok := s.index[name]
	if !ok {
		return 0, 0, 0, fmt.Errorf("%w: %q", ErrUnknownFeature, name)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.stats[i]
	return r.n, r.mean, r.std(), nil
}

// Version returns the statistics version (see Standardizer).
func (s *Standardizer) Version() string {
	s.mu.RLock()
	v := s.version
	s.mu.RUnlock()
	if v != "" {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.versionLocked()
}

// versionLocked computes the version if stale; s.mu is held for writing.
func (s *Standardizer) versionLocked() string {
	if s.version == "" {
		s.version = hashStats(s.names, s.stats)
	}
	return s.version
}

func hashStats(names []string, stats []running) string {
	h := sha256.New()
	var buf [8]byte
	for i, n := range names {
		binary.LittleEndian.PutUint64(buf[:], uint64(len(n)))
		h.Write(buf[:])
		h.Write([]byte(n))
		for _, u := range []uint64{uint64(stats[i].n), math.Float64bits(stats[i].mean), math.Float64bits(stats[i].m2)} {
			binary.LittleEndian.PutUint64(buf[:], u)
			h.Write(buf[:])
		}
	}
	return "s1-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// view copies the mean and standard deviation of the features at idx into
// mean and std and returns the version, all under one lock so they are
// consistent.
func (s *Standardizer) view(idx []int, mean, std []float64) string {
	s.mu.RLock()
	if s.version != "" {
		for k, i := range idx {
			mean[k], std[k] = s.stats[i].mean, s.stats[i].std()
		}
		v := s.version
		s.mu.RUnlock()
		return v
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, i := range idx {
		mean[k], std[k] = s.stats[i].mean, s.stats[i].std()
	}
	return s.versionLocked()
}

// Snapshot is the serialisable state of a Standardizer (encoding/json).
// Restoring it anywhere reproduces the transform and the Version.
type Snapshot struct {
	// Version must equal the hash of Features; Restore checks it.
	Version  string         `json:"version"`
	Frozen   bool           `json:"frozen"`
	Features []FeatureStats `json:"features"`
}

// FeatureStats is one feature's statistics in a Snapshot.
type FeatureStats struct {
	Name  string  `json:"name"`
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	// M2 is the sum of squared deviations from the mean,
	// variance * (count - 1).
	M2 float64 `json:"m2"`
}

// Snapshot returns the current state.
func (s *Standardizer) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{Version: s.versionLocked(), Frozen: s.frozen, Features: make([]FeatureStats, len(s.names))}
	for i, n := range s.names {
		r := s.stats[i]
		snap.Features[i] = FeatureStats{Name: n, Count: r.n, Mean: r.mean, M2: r.m2}
	}
	return snap
}

// parse validates a snapshot against names (nil: take its names) and
// returns its statistics.
func (snap Snapshot) parse(names []string) ([]string, []running, error) {
	if names != nil && len(snap.Features) != len(names) {
		return nil, nil, fmt.Errorf("%w: %d features; want %d", ErrSnapshot, len(snap.Features), len(names))
	}
	if len(snap.Features) == 0 || len(snap.Features) > MaxFeatures {
		return nil, nil, fmt.Errorf("%w: %d features; want 1..MaxFeatures=%d", ErrSnapshot, len(snap.Features), MaxFeatures)
	}
	got := make([]string, len(snap.Features))
	stats := make([]running, len(snap.Features))
	for i, f := range snap.Features {
		if names != nil && f.Name != names[i] {
			return nil, nil, fmt.Errorf("%w: features[%d] is %q; want %q", ErrSnapshot, i, f.Name, names[i])
		}
		switch {
		case f.Count < 0:
			return nil, nil, fmt.Errorf("%w: features[%d] %q count %d", ErrSnapshot, i, f.Name, f.Count)
		case math.IsNaN(f.Mean) || math.IsInf(f.Mean, 0) || !(f.M2 >= 0) || math.IsInf(f.M2, 0):
			return nil, nil, fmt.Errorf("%w: features[%d] %q mean %v m2 %v", ErrSnapshot, i, f.Name, f.Mean, f.M2)
		}
		got[i] = f.Name
		stats[i] = running{f.Count, f.Mean, f.M2}
	}
	if v := hashStats(got, stats); v != snap.Version {
		return nil, nil, fmt.Errorf("%w: version %q does not match its statistics (%q)", ErrSnapshot, snap.Version, v)
	}
	return got, stats, nil
}

// Restore replaces the statistics and the frozen flag with a snapshot of
// the same features in the same order; on error nothing changes. Vectors
// built before with another version must be rebuilt.
func (s *Standardizer) Restore(snap Snapshot) error {
	_, stats, err := snap.parse(s.names)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats, s.frozen, s.version = stats, snap.Frozen, snap.Version
	return nil
}

// NewStandardizerFromSnapshot builds a Standardizer from a snapshot (its
// features, statistics and frozen flag).
func NewStandardizerFromSnapshot(snap Snapshot) (*Standardizer, error) {
	names := make([]string, len(snap.Features))
	for i, f := range snap.Features {
		names[i] = f.Name
	}
	s, err := NewStandardizer(names)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	if err := s.Restore(snap); err != nil {
		return nil, err
	}
	return s, nil
}
