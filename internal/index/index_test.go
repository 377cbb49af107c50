package index_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/registry"
	fservice "github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/features/window"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/embedded"
	"github.com/embedd/embedd/internal/store/milvus"
	"github.com/embedd/embedd/internal/store/redis"
	"github.com/embedd/embedd/internal/store/wal"
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
	ctx := context.Background()
	x, coll := newIndex(t, b, nil)
	upsertCorpus(t, x, coll)

	t.Run("search by text", func(t *testing.T) {
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
	})
	t.Run("search by id excludes the item", func(t *testing.T) {
		res, err := x.Search(ctx, index.Query{Collection: coll, ID: "a3", TopK: 1})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(res.Hits); len(got) != 1 || got[0] != "a4" {
			t.Fatalf("hits %v; want [a4]", got)
		}
	})
	t.Run("filter", func(t *testing.T) {
		res, err := x.Search(ctx, index.Query{Collection: coll, Text: "a cat on a mat", TopK: 3, Filter: `metadata["lang"] == "fr"`})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(res.Hits); len(got) != 1 || got[0] != "a7" {
			t.Fatalf("hits %v; want [a7]", got)
		}
	})
	t.Run("rescore gives exact cosine", func(t *testing.T) {
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
	})
	t.Run("get both stores", func(t *testing.T) {
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
	})
	t.Run("precomputed vector and idempotent upsert", func(t *testing.T) {
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
	})
	t.Run("delete from both", func(t *testing.T) {
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
	})
	t.Run("bad input writes nothing", func(t *testing.T) {
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
	})
	t.Run("search errors", func(t *testing.T) {
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
	})
}

func nanF() float64 { var z float64; return z / z }

// unreachable is an address nothing listens on.
func unreachable(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func TestUnavailableNamesStore(t *testing.T) {
	s, err := embedded.Open(embedded.DefaultOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ro := redis.DefaultOptions()
	ro.Addr = unreachable(t)
	ro.DialTimeout = 200 * time.Millisecond
	rd := redis.New(ro)
	defer rd.Close()
	x, err := index.New(context.Background(), theEngine(t), index.Options{
		Collections: []index.CollectionConfig{{Name: "docs", Model: model}},
		Vectors:     s, Online: rd, VectorsName: "embedded", OnlineName: "redis", Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = x.Upsert(context.Background(), index.UpsertRequest{Items: []index.Item{{ID: "a", Text: "hello"}}})
	if !errors.Is(err, store.ErrUnavailable) || !strings.HasPrefix(err.Error(), "redis: ") {
		t.Fatalf("err %v; want unavailable naming redis", err)
	}
}

// redisServer runs a private redis-server on port; stop kills it.
func redisServer(t *testing.T, port, dir string) (stop func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("EMBEDD_REQUIRE_STORES") == "1" {
			t.Fatal("redis-server not installed")
		}
		t.Skip("redis-server not installed")
	}
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatalf("redis-server on %s did not start", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var once sync.Once
	stop = func() { once.Do(func() { cmd.Process.Kill(); cmd.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// TestDurableModeOutage stops a real Redis, writes through the WAL, restarts
// Redis and checks every acknowledged write arrives, in order, and that a
// restart of the index before Redis returns loses nothing.
func TestDurableModeOutage(t *testing.T) {
	ctx := context.Background()
	addr := unreachable(t)
	_, port, _ := net.SplitHostPort(addr)
	rdir := t.TempDir()
	stop := redisServer(t, port, rdir)
	s, err := embedded.Open(embedded.DefaultOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ro := redis.DefaultOptions()
	ro.Addr = addr
	ro.DialTimeout = 200 * time.Millisecond
	rd := redis.New(ro)
	defer rd.Close()
	walDir := t.TempDir()
	openIndex := func() (*index.Index, *wal.Log) {
		l, err := wal.Open(wal.Options{Dir: walDir, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		x, err := index.New(ctx, theEngine(t), index.Options{
			Collections: []index.CollectionConfig{{Name: "docs", Model: model}},
			Vectors:     s, Online: rd, VectorsName: "embedded", OnlineName: "redis", WAL: l, Logger: quiet(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return x, l
	}
	x, l := openIndex()
	// Store up: applied directly.
	if r, err := x.Upsert(ctx, index.UpsertRequest{Items: []index.Item{{ID: "a", Text: "first", Features: map[string]float64{"v": 1}}}}); err != nil || r.Queued {
		t.Fatalf("upsert with redis up: %+v %v", r, err)
	}
	stop()
	// Redis down: queued, and later writes of the same id queue behind.
	for v := 2; v <= 4; v++ {
		r, err := x.Upsert(ctx, index.UpsertRequest{Items: []index.Item{{ID: "a", Text: "again", Features: map[string]float64{"v": float64(v)}}}})
		if err != nil || !r.Queued {
			t.Fatalf("upsert v=%d with redis down: %+v %v", v, r, err)
		}
	}
	if d, err := x.Delete(ctx, "", []string{"gone"}); err != nil || !d.Queued {
		t.Fatalf("delete: %+v %v", d, err)
	}
	if x.Pending() != 4 {
		t.Fatalf("pending %d; want 4", x.Pending())
	}
	// The process restarts before Redis is back: nothing is lost.
	l.Close()
	x, l = openIndex()
	defer l.Close()
	if x.Pending() != 4 {
		t.Fatalf("pending after restart %d; want 4", x.Pending())
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- x.Run(rctx) }()
	time.Sleep(100 * time.Millisecond) // a few failed retries
	redisServer(t, port, rdir)
	deadline := time.Now().Add(15 * time.Second)
	for x.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("WAL not drained: %d pending", x.Pending())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	items, _, err := x.Get(ctx, "", []string{"a"}, false)
	if err != nil || len(items) != 1 || items[0].Features["v"] != 4 {
		t.Fatalf("after replay: %+v %v; want v=4", items, err)
	}
	// Back to direct writes.
	if r, err := x.Upsert(ctx, index.UpsertRequest{Items: []index.Item{{ID: "b", Text: "direct"}}}); err != nil || r.Queued {
		t.Fatalf("upsert after recovery: %+v %v", r, err)
	}

}

// TestHybrid: a hybrid collection over "docs" with two real-time features
// from a real (in-memory) features service. With alpha = 0 the ranking is
// the embedding's; with a large alpha the entity whose features match the
// query's wins; scores follow (1-a)cos(e) + a cos(f).
func TestHybrid(t *testing.T) {
	for _, b := range []backend{embeddedBackend(), realBackend()} {
		t.Run(b.name, func(t *testing.T) { testHybrid(t, b) })
	}
}

func testHybrid(t *testing.T, be backend) {
	ctx := context.Background()
	reg, err := registry.Default()
	if err != nil {
		t.Fatal(err)
	}
	wcfg, _ := fservice.WindowConfig(reg, window.DefaultConfig(), time.Hour)
	sess, _ := session.NewMemory(session.DefaultConfig(), session.MemoryOptions{})
	fs, err := fservice.New(fservice.Options{Registry: reg, States: fservice.NewMemory(wcfg, 1000), Sessions: sess})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// a1 buys a lot, rarely; a2 buys little, often.
	var evs []features.Event
	for i := range 2 {
		evs = append(evs, features.Event{EntityID: "a1", Timestamp: now.Add(-time.Duration(2-i) * time.Minute), Values: map[string]float64{"amount": 500}})
	}
	for i := range 20 {
		evs = append(evs, features.Event{EntityID: "a2", Timestamp: now.Add(-time.Duration(20-i) * time.Minute), Values: map[string]float64{"amount": 5}})
	}
	for _, id := range []string{"a3", "a4", "a5", "a6", "a7", "a8"} {
		for i := range 6 {
			evs = append(evs, features.Event{EntityID: id, Timestamp: now.Add(-time.Duration(6-i) * time.Minute), Values: map[string]float64{"amount": 50 + float64(i)}})
		}
	}
	if errs, err := fs.Ingest(ctx, evs); err != nil || slices.ContainsFunc(errs, func(e error) bool { return e != nil }) {
		t.Fatalf("ingest: %v %v", err, errs)
	}
	feats := []string{"amount_avg_1h", "events_count_1h"}
	build := func(alpha float64) (*index.Index, string, string) {
		dir := t.TempDir()
		var hname string
		x, coll := newIndex(t, be, func(o *index.Options) {
			hname = o.Collections[0].Name + "_h"
			o.Features, o.SnapshotDir = fs, dir
			o.Hybrid = []index.HybridConfig{{Name: hname, Base: o.Collections[0].Name, Features: feats, Alpha: alpha, FreezeAfter: 8}}
		})
		if m, ok := x.Vectors().(*milvus.Store); ok {
			t.Cleanup(func() { m.Drop(context.Background(), hname) })
		}
		return x, coll, hname
	}
	for _, alpha := range []float64{0, 0.8} {
		x, coll, hcoll := build(alpha)
		upsertCorpus(t, x, coll)
		ids := []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "ghost"}
		hr, err := x.UpsertHybrid(ctx, hcoll, ids)
		if err != nil || hr.Upserted != 8 || fmt.Sprint(hr.NotFound) != "[ghost]" || !hr.Frozen || hr.StatsVersion == "" {
			t.Fatalf("upsert hybrid: %+v %v", hr, err)
		}
		// The query: a cat on a mat, by an entity that behaves like a2.
		a2, _ := fs.FeatureValues(ctx, []string{"a2"}, feats)
		res, err := x.Search(ctx, index.Query{Collection: hcoll, Text: "a cat on a mat", TopK: 2, Features: a2[0]})
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := x.Search(ctx, index.Query{Collection: coll, Text: "a cat on a mat", TopK: 2})
		switch alpha {
		case 0:
			if fmt.Sprint(ids2(res.Hits)) != fmt.Sprint(ids2(plain.Hits)) {
				t.Errorf("alpha 0: hybrid %v; plain %v", ids2(res.Hits), ids2(plain.Hits))
			}
		default:
			if plain.Hits[0].ID != "a1" || res.Hits[0].ID != "a2" {
				t.Errorf("alpha %v: plain %v, hybrid %v; want a1 then a2 first", alpha, ids2(plain.Hits), ids2(res.Hits))
			}
			// Score identity for the top hit: a2's own features give cos(f)=1.
			var e float64
			for _, h := range plain.Hits {
				if h.ID == "a2" {
					e = float64(h.Score)
				}
			}
			if e == 0 {
				p2, _ := x.Search(ctx, index.Query{Collection: coll, Text: "a cat on a mat", TopK: 8})
				for _, h := range p2.Hits {
					if h.ID == "a2" {
						e = float64(h.Score)
					}
				}
			}
			if want := (1-alpha)*e + alpha; math.Abs(float64(res.Hits[0].Score)-want) > 2e-3 {
				t.Errorf("hybrid score %v; want (1-a)cos(e)+a = %v", res.Hits[0].Score, want)
			}
		}
		if _, err := x.Upsert(ctx, index.UpsertRequest{Collection: hcoll, Items: []index.Item{{ID: "z", Text: "t"}}}); !errors.Is(err, index.ErrInvalid) {
			t.Errorf("plain upsert into a hybrid collection: %v", err)
		}
		if _, err := x.Delete(ctx, hcoll, []string{res.Hits[0].ID}); err != nil {
			t.Fatal(err)
		}
		after, err := x.Search(ctx, index.Query{Collection: hcoll, Text: "a cat on a mat", TopK: 8, Features: a2[0]})
		if err != nil || slices.ContainsFunc(after.Hits, func(h index.Hit) bool { return h.ID == res.Hits[0].ID }) {
			t.Errorf("after hybrid delete: %v %v", ids2(after.Hits), err)
		}
	}
}

func ids2(hits []index.Hit) []string { return ids(hits) }
