package milvus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"

	"github.com/embedd/embedd/internal/store"
)

// newStore connects to the server that scripts/milvus.sh started at
// EMBEDD_MILVUS_ADDR. Without it the test is skipped, unless
// EMBEDD_REQUIRE_STORES=1, where it fails.
func newStore(t testing.TB, opts Options) *Store {
	t.Helper()
	addr := os.Getenv("EMBEDD_MILVUS_ADDR")
	if addr == "" {
		if os.Getenv("EMBEDD_REQUIRE_STORES") == "1" {
			t.Fatal("EMBEDD_MILVUS_ADDR is unset and EMBEDD_REQUIRE_STORES=1; run scripts/milvus.sh start")
		}
		t.Skip("EMBEDD_MILVUS_ADDR is unset; run scripts/milvus.sh start")
	}
	opts.Address = addr
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New(%s): %v", addr, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// collection returns a fresh logical name, dropped when the test ends.
func collection(t testing.TB, s *Store) string {
	t.Helper()
	name := fmt.Sprintf("t_%s_%d", strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()), rand.Uint32())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Drop(ctx, name); err != nil {
			t.Errorf("Drop(%s): %v", name, err)
		}
	})
	return name
}

// newCollection opens a store and a fresh collection of dims.
func newCollection(t testing.TB, dims int) (*Store, string) {
	t.Helper()
	s := newStore(t, Options{})
	name := collection(t, s)
	if err := s.EnsureCollection(context.Background(), name, dims); err != nil {
		t.Fatalf("EnsureCollection: %v", err)
	}
	return s, name
}

func unit(rng *rand.Rand, dims int) []float32 {
	v := make([]float32, dims)
	var n float64
	for i := range v {
		v[i] = float32(rng.NormFloat64())
		n += float64(v[i]) * float64(v[i])
	}
	n = math.Sqrt(n)
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
	return v
}

func records(rng *rand.Rand, n, dims int, prefix string) []store.Record {
	recs := make([]store.Record, n)
	for i := range recs {
		recs[i] = store.Record{
			ID:           fmt.Sprintf("%s%03d", prefix, i),
			Vector:       unit(rng, dims),
			Metadata:     []byte(fmt.Sprintf(`{"i":%d,"lang":%q}`, i, []string{"en", "de"}[i%2])),
			ModelVersion: "m1",
			UpdatedAt:    time.UnixMilli(1_700_000_000_000 + int64(i)),
		}
	}
	return recs
}

func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"docs", "docs"},
		{"_x9", "_x9"},
		{"docs-en", "docs_en_"},
		{"9lives", "_9lives_"},
	}
	for _, tt := range tests {
		got := sanitize(tt.in)
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("sanitize(%q) = %q; want prefix %q", tt.in, got, tt.want)
		}
	}
	if sanitize("a-b") == sanitize("a.b") {
		t.Errorf("sanitize(a-b) == sanitize(a.b) = %q; want distinct", sanitize("a-b"))
	}
	if got, want := PhysicalName("docs", "v2"), "docs__v2"; got != want {
		t.Errorf("PhysicalName(docs, v2) = %q; want %q", got, want)
	}
}

func TestOptionsInvalid(t *testing.T) {
	for _, o := range []Options{{Index: "FLAT"}, {Metric: "L2"}, {Consistency: "Eventual"}} {
		if _, err := o.withDefaults(); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("withDefaults(%+v) = %v; want ErrInvalid", o, err)
		}
	}
}

func TestUnavailable(t *testing.T) {
	_, err := New(context.Background(), Options{Address: "127.0.0.1:1", DialTimeout: 300 * time.Millisecond})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "milvus") {
		t.Fatalf("New(unreachable) = %v; want ErrUnavailable naming milvus", err)
	}
}

func TestCRUD(t *testing.T) {
	const dims = 8
	s, name := newCollection(t, dims)
	ctx := context.Background()
	if err := s.EnsureCollection(ctx, name, dims); err != nil {
		t.Fatalf("EnsureCollection again: %v", err)
	}
	if err := s.EnsureCollection(ctx, name, dims+1); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("EnsureCollection(other dims) = %v; want ErrInvalid", err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	recs := records(rng, 20, dims, "a")
	if err := s.Upsert(ctx, name, recs); err != nil {
		t.Fatalf("Upsert: %v", err)
	}

	got, err := s.Get(ctx, name, []string{"a005", "missing", "a001"})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if len(got) != 2 || got[0].ID != "a005" || got[1].ID != "a001" {
		t.Fatalf("Get ids = %v; want [a005 a001]", ids(got))
	}
	if got[0].ModelVersion != "m1" || !got[0].UpdatedAt.Equal(recs[5].UpdatedAt) ||
		string(got[0].Metadata) != string(recs[5].Metadata) || got[0].Vector[3] != recs[5].Vector[3] {
		t.Errorf("Get[0] = %+v; want %+v", got[0], recs[5])
	}

	hits, err := s.Search(ctx, store.SearchRequest{Collection: name, Vector: recs[7].Vector, TopK: 5})
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	if len(hits) != 5 || hits[0].ID != "a007" || math.Abs(float64(hits[0].Score)-1) > 1e-4 {
		t.Fatalf("Search hits = %+v; want 5 with a007 first, score 1", hits)
	}
	for i := 1; i < len(hits); i++ {
		if hits[i].Score > hits[i-1].Score {
			t.Errorf("hits[%d].Score %v > hits[%d].Score %v; want descending", i, hits[i].Score, i-1, hits[i-1].Score)
		}
	}
	if string(hits[0].Metadata) != string(recs[7].Metadata) {
		t.Errorf("hit metadata = %s; want %s", hits[0].Metadata, recs[7].Metadata)
	}

	// Filter passes through.
	hits, err = s.Search(ctx, store.SearchRequest{Collection: name, Vector: recs[7].Vector, TopK: 20, Filter: `metadata["lang"] == "en"`})
	if err != nil {
		t.Fatalf("Search(filter): %v", err)
	}
	if len(hits) != 10 {
		t.Errorf("Search(lang == en) = %d hits; want 10", len(hits))
	}
	for _, h := range hits {
		if !strings.Contains(string(h.Metadata), `"en"`) {
			t.Errorf("hit %s metadata %s; want lang en", h.ID, h.Metadata)
		}
	}

	if err := s.Delete(ctx, name, []string{"a007", "a001", "nope"}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	got, err = s.Get(ctx, name, []string{"a007", "a001", "a002"})
	if err != nil {
		t.Fatalf("Get after delete: %v", err)
	}
	if len(got) != 1 || got[0].ID != "a002" {
		t.Errorf("Get after delete = %v; want [a002]", ids(got))
	}
	hits, err = s.Search(ctx, store.SearchRequest{Collection: name, Vector: recs[7].Vector, TopK: 20})
	if err != nil {
		t.Fatalf("Search after delete: %v", err)
	}
	for _, h := range hits {
		if h.ID == "a007" || h.ID == "a001" {
			t.Errorf("Search after delete returned %s", h.ID)
		}
	}
	if len(hits) != 18 {
		t.Errorf("Search after delete = %d hits; want 18", len(hits))
	}
}

func ids(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func TestUpsertIdempotent(t *testing.T) {
	const dims = 4
	s, name := newCollection(t, dims)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	recs := records(rng, 3, dims, "x")
	for range 2 {
		if err := s.Upsert(ctx, name, recs); err != nil {
			t.Fatalf("Upsert: %v", err)
		}
	}
	last := recs[1]
	last.Vector = []float32{0, 0, 1, 0}
	last.Metadata = []byte(`{"v":2}`)
	last.ModelVersion = "m2"
	if err := s.Upsert(ctx, name, []store.Record{last}); err != nil {
		t.Fatalf("Upsert(changed): %v", err)
	}
	hits, err := s.Search(ctx, store.SearchRequest{Collection: name, Vector: []float32{0, 0, 1, 0}, TopK: 10})
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	if len(hits) != 3 {
		t.Fatalf("Search after 3 upserts of 3 ids = %d hits (%+v); want 3", len(hits), hits)
	}
	if hits[0].ID != "x001" || string(hits[0].Metadata) != `{"v":2}` {
		t.Errorf("hits[0] = %+v; want x001 with the last metadata", hits[0])
	}
	got, err := s.Get(ctx, name, []string{"x001"})
	if err != nil || len(got) != 1 || got[0].ModelVersion != "m2" {
		t.Errorf("Get(x001) = %+v, %v; want model version m2", got, err)
	}
}

func TestInvalid(t *testing.T) {
	const dims = 4
	s, name := newCollection(t, dims)
	ctx := context.Background()
	good := store.Record{ID: "good", Vector: []float32{1, 0, 0, 0}}
	tests := []struct {
		name string
		bad  store.Record
		want string
	}{
		{"wrong dims", store.Record{ID: "bad", Vector: []float32{1, 0, 0}}, "3 dimensions"},
		{"NaN", store.Record{ID: "bad", Vector: []float32{1, float32(math.NaN()), 0, 0}}, "NaN"},
		{"Inf", store.Record{ID: "bad", Vector: []float32{1, 0, float32(math.Inf(1)), 0}}, "Inf"},
		{"empty id", store.Record{ID: "", Vector: []float32{1, 0, 0, 0}}, "empty"},
		{"metadata not object", store.Record{ID: "bad", Vector: []float32{1, 0, 0, 0}, Metadata: []byte(`[1]`)}, "JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Upsert(ctx, name, []store.Record{good, tt.bad})
			if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Upsert = %v; want ErrInvalid mentioning %q", err, tt.want)
			}
		})
	}
	got, err := s.Get(ctx, name, []string{"good", "bad"})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("Get after rejected batches = %v; want nothing written", ids(got))
	}

	if err := s.Upsert(ctx, name, []store.Record{good}); err != nil {
		t.Fatalf("Upsert(good): %v", err)
	}
	for _, filter := range []string{`metadata["lang"] ==`, `no_such_field > 3`} {
		_, err = s.Search(ctx, store.SearchRequest{Collection: name, Vector: good.Vector, TopK: 1, Filter: filter})
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Search(filter %q) = %v; want ErrInvalid", filter, err)

		}
	}
	_, err = s.Search(ctx, store.SearchRequest{Collection: name, Vector: []float32{1}, TopK: 1})
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Search(wrong dims) = %v; want ErrInvalid", err)
	}
	_, err = s.Search(ctx, store.SearchRequest{Collection: "t_no_such_collection", Vector: good.Vector, TopK: 1})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Search(missing collection) = %v; want ErrNotFound", err)
	}
}

func TestAliasSwap(t *testing.T) {
	s := newStore(t, Options{})
	ctx := context.Background()
	name := collection(t, s)
	if err := s.EnsureCollection(ctx, name, 4); err != nil {
		t.Fatalf("EnsureCollection: %v", err)
	}
	old := store.Record{ID: "old", Vector: []float32{1, 0, 0, 0}}
	if err := s.Upsert(ctx, name, []store.Record{old}); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	// The new version has other dims, filled beside the live one.
	if err := s.CreateVersion(ctx, name, "v2", 6, "m2"); err != nil {
		t.Fatalf("CreateVersion: %v", err)
	}
	fresh := store.Record{ID: "new", Vector: []float32{0, 1, 0, 0, 0, 0}}
	if err := s.UpsertVersion(ctx, name, "v2", []store.Record{fresh}); err != nil {
		t.Fatalf("UpsertVersion: %v", err)
	}
	hits, err := s.Search(ctx, store.SearchRequest{Collection: name, Vector: old.Vector, TopK: 5})
	if err != nil || len(hits) != 1 || hits[0].ID != "old" {
		t.Fatalf("Search before swap = %+v, %v; want [old]", hits, err)
	}
	if err := s.SwapAlias(ctx, name, "v3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SwapAlias(missing version) = %v; want ErrNotFound", err)
	}
	if err := s.SwapAlias(ctx, name, "v2"); err != nil {
		t.Fatalf("SwapAlias: %v", err)
	}
	hits, err = s.Search(ctx, store.SearchRequest{Collection: name, Vector: fresh.Vector, TopK: 5})
	if err != nil || len(hits) != 1 || hits[0].ID != "new" {
		t.Fatalf("Search after swap = %+v, %v; want [new]", hits, err)
	}
	if err := s.EnsureCollection(ctx, name, 6); err != nil {
		t.Errorf("EnsureCollection(6) after swap: %v", err)
	}
	if err := s.DropVersion(ctx, name, "v2"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("DropVersion(live) = %v; want ErrInvalid", err)
	}
	if err := s.DropVersion(ctx, name, "v1"); err != nil {
		t.Errorf("DropVersion(v1): %v", err)
	}
}

// TestLegacyCollection opens a collection as created before versions were
// bound (no properties, no text_hash field): it lists as version v1, live
// and unbound, and reads and writes without text hashes.
func TestLegacyCollection(t *testing.T) {
	s := newStore(t, Options{})
	ctx := context.Background()
	name := collection(t, s)
	phys := PhysicalName(name, "v1")
	schema := newSchema(phys, name, "v1", 4)
	schema.Fields = schema.Fields[:len(schema.Fields)-1] // no text_hash
	if err := s.c.CreateCollection(ctx, schema, 1, client.WithConsistencyLevel(entity.ClStrong)); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureCollection(ctx, name, 4); err != nil { // index, load, alias
		t.Fatalf("EnsureCollection: %v", err)
	}
	vs, err := s.ListVersions(ctx, name)
	if err != nil || len(vs) != 1 || vs[0].Version != "v1" || vs[0].ModelVersion != "" || !vs[0].Live || !vs[0].CreatedAt.IsZero() {
		t.Fatalf("ListVersions = %+v, %v; want v1, live, unbound, no creation time", vs, err)
	}
	rec := store.Record{ID: "a", Vector: []float32{1, 0, 0, 0}, ModelVersion: "m1", TextHash: "ff"}
	if err := s.Upsert(ctx, name, []store.Record{rec}); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	got, err := s.GetVersion(ctx, name, "v1", []string{"a"})
	if err != nil || len(got) != 1 || got[0].ModelVersion != "m1" || got[0].TextHash != "" {
		t.Fatalf("GetVersion = %+v, %v; want a, model m1, no text hash", got, err)
	}
	n := 0
	if err := s.ScanVersion(ctx, name, "v1", func(store.Record) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("ScanVersion: %d records, %v; want 1", n, err)
	}
	live, err := s.LiveVersion(ctx, name)
	if err != nil || live.Version != "v1" {
		t.Fatalf("LiveVersion = %+v, %v; want v1", live, err)
	}
}

// TestConcurrentCreate creates one version and its alias from several
// clients at once, as shard processes starting together do: every one
// succeeds and they agree.
func TestConcurrentCreate(t *testing.T) {
	s := newStore(t, Options{})
	name := collection(t, s)
	ctx := context.Background()
	errs := make(chan error, 4)
	for range 4 {
		c := newStore(t, Options{})
		go func() {
			err := c.CreateVersion(ctx, name, "v1", 4, "m1")
			if err == nil {
				err = c.EnsureCollection(ctx, name, 4)
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent CreateVersion + EnsureCollection: %v", err)
		}
	}
	if v, err := s.LiveVersion(ctx, name); err != nil || v.Version != "v1" || v.ModelVersion != "m1" {
		t.Errorf("LiveVersion = %+v, %v; want v1 bound to m1", v, err)
	}
}
