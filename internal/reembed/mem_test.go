package reembed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/store"
)

// memTarget is an in-memory Target for the job's logic tests (resume,
// refusal, dead letters, retries, finalize) that need faults on demand;
// the integration tests run the same jobs through the real index and
// stores (integration_test.go).
type memTarget struct {
	mu       sync.Mutex // guards everything below
	versions map[string]*memVersion
	live     string
	upserts  int // UpsertVersion calls that wrote
	written  int // records written, repeats included
	// failAfter makes every UpsertVersion after that many successful ones
	// fail with errFatal (0: never).
	failAfter int
	// unavailable makes the next that many UpsertVersion calls fail with
	// store.ErrUnavailable.
	unavailable int
	swaps       int
}

type memVersion struct {
	model   string
	created time.Time
	recs    map[string]store.Record
}

var errFatal = errors.New("memTarget: injected failure")

func newMemTarget(liveModel string) *memTarget {
	m := &memTarget{versions: map[string]*memVersion{}}
	if liveModel != "" {
		m.versions["v1"] = &memVersion{model: liveModel, created: time.Now(), recs: map[string]store.Record{}}
		m.live = "v1"
	}
	return m
}

// model versions of the test models: "m1" -> "m1-v".
func modelVersion(model string) string { return model + "-v" }

func (m *memTarget) CreateVersion(_ context.Context, _, version, model string) (store.VersionInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.versions[version]
	if ok && v.model != model {
		return store.VersionInfo{}, fmt.Errorf("%w: version %s is bound to %s", store.ErrInvalid, version, v.model)
	}
	if !ok {
		v = &memVersion{model: model, created: time.Now().Add(time.Duration(len(m.versions)) * time.Millisecond), recs: map[string]store.Record{}}
		m.versions[version] = v
	}
	return store.VersionInfo{Version: version, ModelVersion: modelVersion(model), Count: int64(len(v.recs)), Live: version == m.live}, nil
}

func (m *memTarget) Versions(_ context.Context, _ string) ([]store.VersionInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.VersionInfo
	for name, v := range m.versions {
		out = append(out, store.VersionInfo{Version: name, ModelVersion: modelVersion(v.model), Count: int64(len(v.recs)), Live: name == m.live, CreatedAt: v.created})
	}
	slices.SortFunc(out, func(a, b store.VersionInfo) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

func (m *memTarget) SwapAlias(_ context.Context, _, version string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.versions[version] == nil {
		return store.ErrNotFound
	}
	m.live = version
	m.swaps++
	return nil
}

func (m *memTarget) ScanVersion(_ context.Context, _, version string, fn func(store.Record) error) error {
	m.mu.Lock()
	v := m.versions[version]
	var recs []store.Record
	if v != nil {
		recs = slices.Collect(maps.Values(v.recs))
	}
	m.mu.Unlock()
	if v == nil {
		return store.ErrNotFound
	}
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// UpsertVersion "embeds" a text unless it contains POISON (a per-item
// error, like a text too long with truncation off).
func (m *memTarget) UpsertVersion(_ context.Context, _, version string, items []index.Item, _ bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unavailable > 0 {
		m.unavailable--
		return fmt.Errorf("mem: %w", store.ErrUnavailable)
	}
	if m.failAfter > 0 && m.upserts >= m.failAfter {
		return errFatal
	}
	var bad []*index.ItemError
	for i, it := range items {
		if strings.Contains(it.Text, "POISON") {
			bad = append(bad, &index.ItemError{Index: i, ID: it.ID, Err: errors.New("text: poisoned")})
		}
	}
	if len(bad) > 0 {
		return &index.InputError{Items: bad}
	}
	v := m.versions[version]
	for _, it := range items {
		v.recs[it.ID] = store.Record{ID: it.ID, Metadata: it.Metadata, ModelVersion: modelVersion(v.model), TextHash: index.TextHash(it.Text)}
	}
	m.upserts++
	m.written += len(items)
	return nil
}

func (m *memTarget) DeleteVersion(_ context.Context, _, version string, ids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		delete(m.versions[version].recs, id)
	}
	return nil
}

func (m *memTarget) ids(version string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.versions[version].recs))
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
