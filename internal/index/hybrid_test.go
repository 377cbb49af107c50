package index_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/registry"
	fservice "github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/features/window"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/store/milvus"
)

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
