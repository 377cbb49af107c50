package index_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/embedded"
	"github.com/embedd/embedd/internal/store/wal"
	"github.com/embedd/embedd/internal/testassets"
)

// model2 is a second model of the same dims as model, another model
// version.
const model2 = "all-minilm-l6-v2-int8"

// stores are one test's stores and collection name.
type stores struct {
	v      store.Vectors
	o      store.Online
	vn, on string
	coll   string
}

func openStores(t *testing.T, b backend) stores {
	v, o, vn, on, coll := b.open(t)
	return stores{v, o, vn, on, coll}
}

// indexOn opens an index serving st.coll with model m on st's stores,
// with Options.LiveTTL ttl (0: the default).
func indexOn(t *testing.T, st stores, m string, ttl ...time.Duration) *index.Index {
	t.Helper()
	testassets.Model(t, m)
	o := index.Options{
		Collections: []index.CollectionConfig{{Name: st.coll, Model: m}},
		Vectors:     st.v, Online: st.o, VectorsName: st.vn, OnlineName: st.on, Logger: quiet(),
	}
	if len(ttl) > 0 {
		o.LiveTTL = ttl[0]
	}
	x, err := index.New(context.Background(), theEngine(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func versionsOf(t *testing.T, x *index.Index, coll string) []string {
	t.Helper()
	vs, err := x.Versions(context.Background(), coll)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range vs {
		out = append(out, v.Version+":"+v.ModelVersion+map[bool]string{true: ":live"}[v.Live])
	}
	return out
}

func manifestVersion(t *testing.T, m string) string {
	man, err := theEngine(t).Manifest(m)
	if err != nil {
		t.Fatal(err)
	}
	return man.Version
}

func TestTextHashAndOnlineKey(t *testing.T) {
	if got, want := index.TextHash("hello"), "2cf24dba5fb0a30e26e83b2ac5b9e29e"; got != want {
		t.Errorf("TextHash(hello) = %s; want %s", got, want)
	}
	for _, tc := range []struct{ version, want string }{{"", "docs/a"}, {"v1", "docs/a"}, {"v2", "docs@v2/a"}} {
		if got := index.OnlineKey("docs", tc.version, "a"); got != tc.want {
			t.Errorf("OnlineKey(docs, %q, a) = %q; want %q", tc.version, got, tc.want)
		}
	}
}

func TestVersions(t *testing.T) {
	for _, b := range []backend{embeddedBackend(), realBackend()} {
		t.Run(b.name, func(t *testing.T) { testVersions(t, b) })
	}
}

// testVersions walks a re-embedding: v2 bound to model2 filled beside v1,
// swapped in, refused writes of the old model, gc of the old version.
func testVersions(t *testing.T, b backend) {
	ctx := context.Background()
	st := openStores(t, b)
	x := indexOn(t, st, model)
	upsertCorpus(t, x, st.coll)
	mv1, mv2 := manifestVersion(t, model), manifestVersion(t, model2)
	if got, want := versionsOf(t, x, st.coll), []string{"v1:" + mv1 + ":live"}; !slices.Equal(got, want) {
		t.Fatalf("versions: got %v; want %v", got, want)
	}
	testassets.Model(t, model2)
	info, err := x.CreateVersion(ctx, st.coll, "v2", model2)
	if err != nil || info.ModelVersion != mv2 || info.Dims != 384 || info.Live {
		t.Fatalf("CreateVersion: %+v, %v", info, err)
	}
	if _, err := x.CreateVersion(ctx, st.coll, "v2", model); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("CreateVersion(v2) with another model: %v; want ErrInvalid", err)
	}
	items := []index.Item{{ID: "b1", Text: "The cat sat on the mat.", Features: map[string]float64{"n": 7}}, {ID: "b2", Text: "Stock markets fell."}}
	res, err := x.Upsert(ctx, index.UpsertRequest{Collection: st.coll, Version: "v2", Items: items})
	if err != nil || res.Version != "v2" || res.ModelVersion != mv2 || res.Model != model2 {
		t.Fatalf("Upsert into v2: %+v, %v", res, err)
	}
	hashes := map[string]string{}
	err = x.ScanVersion(ctx, st.coll, "v2", func(r store.Record) error {
		if r.ModelVersion != mv2 {
			t.Errorf("v2 record %s model %q; want %q", r.ID, r.ModelVersion, mv2)
		}
		hashes[r.ID] = r.TextHash
		return nil
	})
	if err != nil || hashes["b1"] != index.TextHash(items[0].Text) || len(hashes) != 2 {
		t.Fatalf("scan of v2: %v, %v", hashes, err)
	}
	sr, err := x.Search(ctx, index.Query{Collection: st.coll, Text: "a cat on a mat", TopK: 1})
	if err != nil || sr.Version != "v1" || sr.ModelVersion != mv1 || sr.Hits[0].ID != "a1" {
		t.Fatalf("search before the swap: %+v, %v", sr, err)
	}
	if err := x.SwapAlias(ctx, st.coll, "v2"); err != nil {
		t.Fatal(err)
	}
	sr, err = x.Search(ctx, index.Query{Collection: st.coll, Text: "a cat on a mat", TopK: 1})
	if err != nil || sr.Version != "v2" || sr.ModelVersion != mv2 || sr.Hits[0].ID != "b1" {
		t.Fatalf("search after the swap: %+v, %v", sr, err)
	}
	if c := x.Collections()[0]; c.Model != model2 || c.ModelVersion != mv2 {
		t.Errorf("Collections()[0] = %+v; want the live version's model %s", c, model2)
	}
	got, missing, err := x.Get(ctx, st.coll, []string{"b1", "a1"}, false)
	if err != nil || len(got) != 1 || got[0].Features["n"] != 7 || got[0].ModelVersion != mv2 || !slices.Equal(missing, []string{"a1"}) {
		t.Fatalf("Get after the swap: %+v %v %v; want b1 from v2 with its online row", got, missing, err)
	}
	// The swap happened after x opened: plain upserts follow the live
	// version's model (a server keeps writing across a re-embedding).
	ur, err := x.Upsert(ctx, index.UpsertRequest{Collection: st.coll, Items: []index.Item{{ID: "c", Text: "x"}}})
	if err != nil || ur.ModelVersion != mv2 {
		t.Fatalf("upsert after the swap: %+v, %v; want it embedded with the live version's model %s", ur, err, mv2)
	}
	// An Index opened now, configured with the old model, is misconfigured:
	// refused, naming embedd reembed.
	_, err = indexOn(t, st, model).Upsert(ctx, index.UpsertRequest{Collection: st.coll, Items: []index.Item{{ID: "c", Text: "x"}}})
	for _, want := range []string{st.coll, `"v2"`, mv1, mv2, "embedd reembed"} {
		if !errors.Is(err, index.ErrModelMismatch) || !strings.Contains(err.Error(), want) {
			t.Errorf("upsert with the configured model into v2: %v; want ErrModelMismatch naming %q", err, want)
		}
	}
	testGC(t, x, st)
}

// testGC drops v2 after swapping back: its online rows go too.
func testGC(t *testing.T, x *index.Index, st stores) {
	ctx := context.Background()
	if err := x.DropVersion(ctx, st.coll, "v2"); !errors.Is(err, index.ErrInvalid) {
		t.Fatalf("DropVersion(live): %v; want ErrInvalid", err)
	}
	if err := x.SwapAlias(ctx, st.coll, "v1"); err != nil {
		t.Fatal(err)
	}
	keys := []string{index.OnlineKey(st.coll, "v2", "b1"), index.OnlineKey(st.coll, "v1", "a1")}
	if ents, err := st.o.GetEntities(ctx, keys); err != nil || ents[0] == nil || ents[1] == nil {
		t.Fatalf("online rows of v2 and v1 before gc: %v, %v", ents, err)
	}
	for range 2 {
		if err := x.DropVersion(ctx, st.coll, "v2"); err != nil {
			t.Fatalf("DropVersion(v2): %v", err)
		}
	}
	ents, err := st.o.GetEntities(ctx, keys)
	if err != nil || ents[0] != nil || ents[1] == nil {
		t.Fatalf("online rows after gc of v2: %v, %v; want v2's gone, v1's kept", ents, err)
	}
	if got := versionsOf(t, x, st.coll); len(got) != 1 || !strings.HasPrefix(got[0], "v1:") {
		t.Errorf("versions after gc: %v", got)
	}
}

// TestModelBinding points a collection bound to model at model2 (same
// dims): upserts are refused, text searches still embed with the bound
// model.
func TestModelBinding(t *testing.T) {
	ctx := context.Background()
	st := openStores(t, embeddedBackend())
	upsertCorpus(t, indexOn(t, st, model), st.coll)
	y := indexOn(t, st, model2)
	_, err := y.Upsert(ctx, index.UpsertRequest{Collection: st.coll, Items: []index.Item{{ID: "z", Text: "hello"}}})
	if !errors.Is(err, index.ErrModelMismatch) || !strings.Contains(err.Error(), "embedd reembed") {
		t.Fatalf("upsert with another model: %v; want ErrModelMismatch naming embedd reembed", err)
	}
	if _, err := y.Upsert(ctx, index.UpsertRequest{Collection: st.coll, Items: []index.Item{{ID: "z", Vector: unitVec()}}}); err != nil {
		t.Errorf("upsert of a client vector: %v", err)
	}
	sr, err := y.Search(ctx, index.Query{Collection: st.coll, Text: "a cat on a mat", TopK: 1})
	if err != nil || sr.ModelVersion != manifestVersion(t, model) || sr.Hits[0].ID != "a1" {
		t.Fatalf("text search: %+v, %v; want a1 found with the bound model", sr, err)
	}
}

// TestUnboundVersion opens collections made before versions were bound:
// one whose records name a model binds to it; an empty one takes any.
func TestUnboundVersion(t *testing.T) {
	ctx := context.Background()
	st := openStores(t, embeddedBackend())
	v := make([]float32, 384)
	v[0] = 1
	if err := st.v.EnsureCollection(ctx, st.coll, 384); err != nil { // unbound v1
		t.Fatal(err)
	}
	if err := st.v.Upsert(ctx, st.coll, []store.Record{{ID: "p", Vector: v, ModelVersion: index.PrecomputedVersion}, {ID: "q", Vector: v, ModelVersion: manifestVersion(t, model)}}); err != nil {
		t.Fatal(err)
	}
	_, err := indexOn(t, st, model2).Upsert(ctx, index.UpsertRequest{Collection: st.coll, Items: []index.Item{{ID: "z", Text: "hello"}}})
	if !errors.Is(err, index.ErrModelMismatch) {
		t.Fatalf("upsert with model2 into a v1 of model's records: %v; want ErrModelMismatch", err)
	}
	if _, err := indexOn(t, st, model).Upsert(ctx, index.UpsertRequest{Collection: st.coll, Items: []index.Item{{ID: "z", Text: "hello"}}}); err != nil {
		t.Fatalf("upsert with the records' model: %v", err)
	}
	st.coll += "_empty"
	if err := st.v.EnsureCollection(ctx, st.coll, 384); err != nil {
		t.Fatal(err)
	}
	if _, err := indexOn(t, st, model2).Upsert(ctx, index.UpsertRequest{Collection: st.coll, Items: []index.Item{{ID: "z", Text: "hello"}}}); err != nil {
		t.Fatalf("upsert into an empty unbound version: %v", err)
	}
}

func unitVec() []float32 {
	v := make([]float32, 384)
	v[1] = 1
	return v
}

// TestApplyCarriesVersion applies WAL entries: one with a version writes
// that version, one without (written before versions) the live one, one
// whose version was dropped is ErrInvalid (set aside, not retried).
func TestApplyCarriesVersion(t *testing.T) {
	ctx := context.Background()
	st := openStores(t, embeddedBackend())
	x := indexOn(t, st, model)
	if _, err := x.CreateVersion(ctx, st.coll, "v2", model); err != nil {
		t.Fatal(err)
	}
	rec := func(id string) []store.Record {
		return []store.Record{{ID: id, Vector: unitVec(), ModelVersion: index.PrecomputedVersion, UpdatedAt: time.Now()}}
	}
	s := st.v.(*embedded.Store)
	for _, e := range []*wal.Entry{
		{Kind: wal.Upsert, Collection: st.coll, Version: "v2", Records: rec("in2")},
		{Kind: wal.Upsert, Collection: st.coll, Records: rec("in1")},
	} {
		if err := x.Apply(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := s.GetVersion(ctx, st.coll, "v2", []string{"in2", "in1"}); len(got) != 1 || got[0].ID != "in2" {
		t.Errorf("v2 holds %v; want [in2]", got)
	}
	if got, _ := s.GetVersion(ctx, st.coll, "v1", []string{"in2", "in1"}); len(got) != 1 || got[0].ID != "in1" {
		t.Errorf("v1 holds %v; want [in1]", got)
	}
	if err := x.DropVersion(ctx, st.coll, "v2"); err != nil {
		t.Fatal(err)
	}
	err := x.Apply(ctx, &wal.Entry{Kind: wal.Upsert, Collection: st.coll, Version: "v2", Records: rec("late")})
	if !errors.Is(err, store.ErrInvalid) || !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Apply to a dropped version: %v; want ErrInvalid and ErrNotFound", err)
	}
}

// TestSwapUnderSearch searches by text from several goroutines while
// another Index on the same stores (another process) swaps the alias back
// and forth: no search fails or comes back empty, and each answers from
// one version, embedded with that version's model.
func TestSwapUnderSearch(t *testing.T) {
	for _, b := range []backend{embeddedBackend(), realBackend()} {
		t.Run(b.name, func(t *testing.T) { testSwapUnderSearch(t, b) })
	}
}

func testSwapUnderSearch(t *testing.T, b backend) {
	ctx := context.Background()
	st := openStores(t, b)
	x := indexOn(t, st, model, 50*time.Millisecond)
	upsertCorpus(t, x, st.coll)
	admin := indexOn(t, st, model)
	testassets.Model(t, model2)
	if _, err := admin.CreateVersion(ctx, st.coll, "v2", model2); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Upsert(ctx, index.UpsertRequest{Collection: st.coll, Version: "v2", Items: []index.Item{{ID: "b1", Text: "The cat sat on the mat."}, {ID: "b2", Text: "Stocks fell."}}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"v1": manifestVersion(t, model), "v2": manifestVersion(t, model2)}
	var done atomic.Bool
	var n atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 2 {
		wg.Go(func() {
			for !done.Load() {
				sr, err := x.Search(ctx, index.Query{Collection: st.coll, Text: "a cat on a mat", TopK: 2})
				if err == nil && (len(sr.Hits) == 0 || sr.ModelVersion != want[sr.Version] ||
					slices.ContainsFunc(sr.Hits, func(h index.Hit) bool { return (h.ID[0] == 'b') != (sr.Version == "v2") })) {
					err = fmt.Errorf("mixed or empty: %+v", sr)
				}
				if err != nil {
					errs <- err
					return
				}
				n.Add(1)
			}
		})
	}
	for i := range 4 {
		time.Sleep(300 * time.Millisecond)
		if err := admin.SwapAlias(ctx, st.coll, []string{"v2", "v1"}[i%2]); err != nil {
			t.Error(err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n.Load() < 2 {
		t.Errorf("%d searches ran across the swaps", n.Load())
	}
}
