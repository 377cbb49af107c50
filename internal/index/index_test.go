package index_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/embedded"
	"github.com/embedd/embedd/internal/store/milvus"
	"github.com/embedd/embedd/internal/store/redis"
	"github.com/embedd/embedd/internal/testassets"
)

const model = "all-minilm-l6-v2"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var (
	engOnce sync.Once
	eng     *engine.Engine
)

// theEngine is one real engine shared by the tests of this package.
func theEngine(t testing.TB) *engine.Engine {
	t.Helper()
	testassets.Runtime(t)
	testassets.Model(t, model)
	engOnce.Do(func() {
		o := engine.DefaultOptions()
		o.CacheDir = testassets.CacheDir()
		o.Logger = quiet()
		o.Accel.IntraOpThreads = 2
		eng = engine.New(testassets.Catalog(t), o)
	})
	return eng
}

// backend makes the stores of one test.
type backend struct {
	name string
	open func(t testing.TB) (v store.Vectors, o store.Online, vname, oname string, coll string)
}

func embeddedBackend() backend {
	return backend{"embedded", func(t testing.TB) (store.Vectors, store.Online, string, string, string) {
		s, err := embedded.Open(embedded.DefaultOptions(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, s, "embedded", "embedded", "docs"
	}}
}

func requireStores(t testing.TB, env string) string {
	a := os.Getenv(env)
	if a == "" {
		if os.Getenv("EMBEDD_REQUIRE_STORES") == "1" {
			t.Fatalf("%s is unset and EMBEDD_REQUIRE_STORES=1", env)
		}
		t.Skipf("%s is unset; run `make services`", env)
	}
	return a
}

func realBackend() backend {
	return backend{"milvus+redis", func(t testing.TB) (store.Vectors, store.Online, string, string, string) {
		maddr, raddr := requireStores(t, "EMBEDD_MILVUS_ADDR"), requireStores(t, "EMBEDD_REDIS_ADDR")
		mo := milvus.DefaultOptions()
		mo.Address = maddr
		mv, err := milvus.New(context.Background(), mo)
		if err != nil {
			t.Fatal(err)
		}
		coll := fmt.Sprintf("idx_%d", rand.Uint32())
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := mv.Drop(ctx, coll); err != nil {
				t.Errorf("drop %s: %v", coll, err)
			}
			mv.Close()
		})
		ro := redis.DefaultOptions()
		ro.Addr = raddr
		ro.Prefix = fmt.Sprintf("embedd-test:idx%d:", rand.Uint32())
		rd := redis.New(ro)
		t.Cleanup(func() { rd.Close() })
		return mv, rd, "milvus", "redis", coll
	}}
}

func newIndex(t testing.TB, b backend, mutate func(*index.Options)) (*index.Index, string) {
	t.Helper()
	e := theEngine(t)
	v, o, vn, on, coll := b.open(t)
	opts := index.Options{
		Collections: []index.CollectionConfig{{Name: coll, Model: model}},
		Vectors:     v, Online: o, VectorsName: vn, OnlineName: on,
		Logger: quiet(),
	}
	if mutate != nil {
		mutate(&opts)
	}
	x, err := index.New(context.Background(), e, opts)
	if err != nil {
		t.Fatal(err)
	}
	return x, coll
}

var corpus = []struct{ id, text, lang string }{
	{"a1", "The cat sat on the mat.", "en"},
	{"a2", "A kitten is sleeping on the rug.", "en"},
	{"a3", "Stock markets fell sharply on Monday.", "en"},
	{"a4", "Investors sold shares as prices dropped.", "en"},
	{"a5", "The recipe needs flour, eggs and butter.", "en"},
	{"a6", "Bake the cake for forty minutes.", "en"},
	{"a7", "Le chat dort sur le tapis.", "fr"},
	{"a8", "The football match ended in a draw.", "en"},
}

func upsertCorpus(t *testing.T, x *index.Index, coll string) {
	t.Helper()
	items := make([]index.Item, len(corpus))
	for i, c := range corpus {
		items[i] = index.Item{ID: c.id, Text: c.text, Metadata: []byte(fmt.Sprintf(`{"lang":%q,"n":%d}`, c.lang, i)), Features: map[string]float64{"n": float64(i)}}
	}
	res, err := x.Upsert(context.Background(), index.UpsertRequest{Collection: coll, Items: items})
	if err != nil {
		t.Fatal(err)
	}
	if res.Upserted != len(items) || res.Queued || res.Model != model {
		t.Fatalf("upsert result %+v", res)
	}
}

func ids(hits []index.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.ID
	}
	return out
}

func TestIndex(t *testing.T) {
	for _, b := range []backend{embeddedBackend(), realBackend()} {
		t.Run(b.name, func(t *testing.T) {
			testIndex(t, b)
		})
	}
}

func testIndex(t *testing.T, b backend) {
	x, coll := newIndex(t, b, nil)
	upsertCorpus(t, x, coll)
	for _, st := range []struct {
		name string
		test func(t *testing.T, x *index.Index, coll string)
	}{
		{"search by text", indexSearchByText},
		{"search by id excludes the item", indexSearchByIDExcludesTheItem},
		{"filter", indexFilter},
		{"rescore gives exact cosine", indexRescoreGivesExactCosine},
		{"get both stores", indexGetBothStores},
		{"precomputed vector and idempotent upsert", indexPrecomputedVectorAndIdempotentUpsert},
		{"delete from both", indexDeleteFromBoth},
		{"bad input writes nothing", indexBadInputWritesNothing},
		{"search errors", indexSearchErrors},
	} {
		t.Run(st.name, func(t *testing.T) { st.test(t, x, coll) })
	}
}

func indexSearchByText(t *testing.T, x *index.Index, coll string) {
	ctx := context.Background()
	res, err := x.Search(ctx, index.Query{Collection: coll, Text: "a cat on a mat", TopK: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(res.Hits); !slices.Contains(got, "a1") || !slices.Contains(got, "a2") && !slices.Contains(got, "a7") {
		t.Fatalf("hits %v", got)
	}
	if res.Hits[0].Score < res.Hits[1].Score || string(res.Hits[0].Metadata) == "" {
		t.Fatalf("hits %+v", res.Hits)
	}
}

func indexSearchByIDExcludesTheItem(t *testing.T, x *index.Index, coll string) {
	ctx := context.Background()
	res, err := x.Search(ctx, index.Query{Collection: coll, ID: "a3", TopK: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(res.Hits); len(got) != 1 || got[0] != "a4" {
		t.Fatalf("hits %v; want [a4]", got)
	}
}

func indexFilter(t *testing.T, x *index.Index, coll string) {
	ctx := context.Background()
	res, err := x.Search(ctx, index.Query{Collection: coll, Text: "a cat on a mat", TopK: 3, Filter: `metadata["lang"] == "fr"`})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(res.Hits); len(got) != 1 || got[0] != "a7" {
		t.Fatalf("hits %v; want [a7]", got)
	}
}

func indexRescoreGivesExactCosine(t *testing.T, x *index.Index, coll string) {
	ctx := context.Background()
	items, _, err := x.Get(ctx, coll, []string{"a5"}, true)
	if err != nil {
		t.Fatal(err)
	}
	q := items[0].Vector
	res, err := x.Search(ctx, index.Query{Collection: coll, Vector: q, TopK: 3, Rescore: true, IncludeVectors: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Rescored || res.Hits[0].ID != "a5" || res.Hits[0].Score < 0.99999 || res.Hits[1].ID != "a6" {
		t.Fatalf("rescored hits %+v", res.Hits)
	}
	if len(res.Hits[1].Vector) != 384 {
		t.Fatalf("vector of hit: %d dims", len(res.Hits[1].Vector))
	}
}

func indexGetBothStores(t *testing.T, x *index.Index, coll string) {
	ctx := context.Background()
	items, missing, err := x.Get(ctx, coll, []string{"a2", "zz", "a1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].ID != "a2" || items[1].ID != "a1" || fmt.Sprint(missing) != "[zz]" {
		t.Fatalf("items %+v missing %v", items, missing)
	}
	it := items[0]
	if it.Features["n"] != 1 || len(it.Int8) != 384 || it.Scale <= 0 || it.ModelVersion == "" || it.Vector != nil || !strings.Contains(string(it.Metadata), `"lang"`) {
		t.Fatalf("item %+v", it)
	}
}

func indexPrecomputedVectorAndIdempotentUpsert(t *testing.T, x *index.Index, coll string) {
	ctx := context.Background()
	items, _, _ := x.Get(ctx, coll, []string{"a8"}, true)
	v := items[0].Vector
	for range 2 {
		if _, err := x.Upsert(ctx, index.UpsertRequest{Collection: coll, Items: []index.Item{{ID: "v1", Vector: v, Metadata: []byte(`{"k":1}`)}}}); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := x.Get(ctx, coll, []string{"v1"}, false)
	if err != nil || len(got) != 1 || got[0].ModelVersion != index.PrecomputedVersion {
		t.Fatalf("get v1: %+v %v", got, err)
	}
	res, err := x.Search(ctx, index.Query{Collection: coll, ID: "a8", TopK: 1})
	if err != nil || res.Hits[0].ID != "v1" {
		t.Fatalf("search near a8: %+v %v", res, err)
	}
}

func indexDeleteFromBoth(t *testing.T, x *index.Index, coll string) {
	ctx := context.Background()
	if _, err := x.Delete(ctx, coll, []string{"v1", "nope"}); err != nil {
		t.Fatal(err)
	}
	items, missing, err := x.Get(ctx, coll, []string{"v1"}, false)
	if err != nil || len(items) != 0 || len(missing) != 1 {
		t.Fatalf("after delete: %+v %v %v", items, missing, err)
	}
	if _, err := x.Delete(ctx, coll, []string{"ok", ""}); !errors.Is(err, index.ErrInvalid) || !strings.HasSuffix(err.Error(), "ids[1] is empty") {
		t.Fatalf("delete with an empty id: %v", err)
	}
}

func indexBadInputWritesNothing(t *testing.T, x *index.Index, coll string) {
	ctx := context.Background()
	long := strings.Repeat("x", 257)
	_, err := x.Upsert(ctx, index.UpsertRequest{Collection: coll, Items: []index.Item{
		{ID: "ok1", Text: "fine"},
		{ID: long, Text: "id too long"},
		{ID: "nan", Vector: append(make([]float32, 383), float32(nanF()))},
		{ID: "dims", Vector: []float32{1, 2}},
		{ID: "both", Text: "t", Vector: make([]float32, 384)},
		{ID: "meta", Text: "t", Metadata: []byte(`[1]`)},
		{ID: "ok1", Text: "dup"},
	}})
	if !errors.Is(err, index.ErrInvalid) {
		t.Fatalf("err %v", err)
	}
	for _, want := range []string{"items[1]: id is 257 bytes; limit 1 to 256", `items[2] ("nan"): vector value 383 is NaN`, `items[3] ("dims"): vector has 2 dimensions; collection`, `items[4] ("both"): has both text and vector`, `items[5] ("meta"): metadata is not a JSON object`, "and 1 more"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if items, _, _ := x.Get(ctx, coll, []string{"ok1"}, false); len(items) != 0 {
		t.Fatalf("ok1 written despite bad batch")
	}
	_, err = x.Upsert(ctx, index.UpsertRequest{Collection: coll, Items: []index.Item{{ID: "e", Text: "ok"}, {ID: "f", Text: strings.Repeat("word ", 400)}}})
	if !errors.Is(err, index.ErrInvalid) || !strings.Contains(err.Error(), `items[1] ("f"): text: `) {
		t.Fatalf("too long text: %v", err)
	}
}

func indexSearchErrors(t *testing.T, x *index.Index, coll string) {
	ctx := context.Background()
	cases := []struct {
		q    index.Query
		want error
		msg  string
	}{
		{index.Query{Collection: coll, Text: "x", TopK: 0}, index.ErrInvalid, "top_k 0 out of range [1, 1024]"},
		{index.Query{Collection: coll, Text: "x", ID: "a1", TopK: 1}, index.ErrInvalid, "exactly one of text, vector and id"},
		{index.Query{Collection: coll, Vector: []float32{1}, TopK: 1}, index.ErrInvalid, "query vector has 1 dimensions"},
		{index.Query{Collection: coll, ID: "missing", TopK: 1}, index.ErrNotFound, `id "missing"`},
		{index.Query{Collection: coll, ID: strings.Repeat("i", 300), TopK: 1}, index.ErrInvalid, "ids[0] is 300 bytes; limit 256"},
		{index.Query{Collection: "nope", Text: "x", TopK: 1}, index.ErrUnknownCollection, `"nope"`},
		{index.Query{Collection: coll, Text: "x", TopK: 1, Filter: "metadata[\"lang\"] ==== 1"}, store.ErrInvalid, ""},
	}
	for _, c := range cases {
		_, err := x.Search(ctx, c.q)
		if !errors.Is(err, c.want) || !strings.Contains(fmt.Sprint(err), c.msg) {
			t.Errorf("%+v: err %v; want %v containing %q", c.q, err, c.want, c.msg)
		}
	}
}

func nanF() float64 { var z float64; return z / z }
