package drift

import (
	"encoding/json"
	"fmt"
	"io"
)

// SnapshotVersion is the version of the reference snapshot format written by
// SaveReferences.
const SnapshotVersion = 1

// snapshot is the JSON reference file:
//
//	{"version": 1, "features": [{"name": "price", "stats": {...}}, ...]}
//
// with stats as Stats.MarshalJSON writes them. Features are sorted by name.
type snapshot struct {
	Version  int            `json:"version"`
	Features []snapshotItem `json:"features"`
}

type snapshotItem struct {
	Name  string `json:"name"`
	Stats *Stats `json:"stats"`
}

// SaveReferences writes the references of all tracked features that have
// one as a JSON snapshot (the format is on LoadReferences).
func (m *Monitor) SaveReferences(w io.Writer) error {
	snap := snapshot{Version: SnapshotVersion, Features: []snapshotItem{}}
	for _, name := range m.Features() {
		ref, ok, err := m.Reference(name)
		if err != nil { // untracked meanwhile
			continue
		}
		if ok {
			snap.Features = append(snap.Features, snapshotItem{Name: name, Stats: ref})
		}
	}
	enc := json.NewEncoder(w)
	if err := enc.Encode(snap); err != nil {
		return fmt.Errorf("drift: save references: %w", err)
	}
	return nil
}

// LoadReferences reads a snapshot written by SaveReferences and sets each
// listed feature's reference. The file is validated as a whole first (at
// most MaxSnapshotBytes, version SnapshotVersion, at most MaxFeatures
// entries, names valid, unique and tracked, statistics consistent); any
// error leaves every reference unchanged. Errors wrap ErrSnapshot,
// ErrUnknownFeature or ErrInvalidInput and name the entry index.
//
//	{"version": 1, "features": [{"name": "price", "stats": {
//	    "sample_size": 2048, "count": 10000, "nulls": 12, "mean": 3.2,
//	    "m2": 812.5, "min": 0, "max": 99.5, "sample": [ ... ]}}]}
//
// m2 is the sum of squared deviations from the mean (variance * (count-1));
// sample holds min(count, sample_size) values.
func (m *Monitor) LoadReferences(r io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxSnapshotBytes+1))
	if err != nil {
		return fmt.Errorf("drift: load references: %w", err)
	}
	if len(data) > MaxSnapshotBytes {
		return fmt.Errorf("%w: larger than MaxSnapshotBytes=%d", ErrSnapshot, MaxSnapshotBytes)
	}
	snap, err := parseSnapshot(data)
	if err != nil {
		return err
	}
	frozen := make([]*frozenRef, len(snap.Features))
	for i, it := range snap.Features {
		frozen[i] = freeze(it.Stats, m.opts.Bins)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	fs := make([]*feature, len(snap.Features))
	for i, it := range snap.Features {
		f, err := m.lookup(it.Name)
		if err != nil {
			return fmt.Errorf("features[%d]: %w", i, err)
		}
		fs[i] = f
	}
	for i, f := range fs {
		f.mu.Lock()
		f.ref, f.building = frozen[i], nil
		f.mu.Unlock()
	}
	return nil
}

// parseSnapshot decodes and validates a snapshot without touching a
// Monitor.
func parseSnapshot(data []byte) (*snapshot, error) {
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	if snap.Version != SnapshotVersion {
		return nil, fmt.Errorf("%w: version is %d; want %d", ErrSnapshot, snap.Version, SnapshotVersion)
	}
	if len(snap.Features) > MaxFeatures {
		return nil, fmt.Errorf("%w: %d features; limit MaxFeatures=%d", ErrSnapshot, len(snap.Features), MaxFeatures)
	}
	seen := make(map[string]int, len(snap.Features))
	for i, it := range snap.Features {
		if err := checkName(it.Name); err != nil {
			return nil, fmt.Errorf("features[%d]: %w", i, err)
		}
		if j, dup := seen[it.Name]; dup {
			return nil, fmt.Errorf("%w: features[%d] %q repeats features[%d]", ErrSnapshot, i, it.Name, j)
		}
		seen[it.Name] = i
		if it.Stats == nil {
			return nil, fmt.Errorf("%w: features[%d] %q has no stats", ErrSnapshot, i, it.Name)
		}
	}
	return &snap, nil
}
