package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/embedd/embedd/internal/store"
)

// jsonEqual compares two JSON documents by value; empty means {}.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if len(a) == 0 {
		a = []byte("{}")
	}
	if len(b) == 0 {
		b = []byte("{}")
	}
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return string(a) == string(b)
	}
	return reflect.DeepEqual(x, y)
}

// TestVectors runs the store.Vectors conformance suite. open is called once
// per subtest; see the package doc.
func TestVectors(t *testing.T, open func(t *testing.T) store.Vectors) {
	v := vectorsSuite{open: open}
	t.Run("EnsureCollection", v.ensureCollection)
	t.Run("UnknownCollection", v.unknownCollection)
	t.Run("UpsertGet", v.upsertGet)
	t.Run("UpsertIdempotent", v.upsertIdempotent)
	t.Run("SearchOrder", v.searchOrder)
	t.Run("SearchFilter", v.searchFilter)
	t.Run("SearchInvalid", v.searchInvalid)
	t.Run("UpsertInvalidWritesNothing", v.upsertInvalidWritesNothing)
	t.Run("InvalidIDs", v.invalidIDs)
	t.Run("Delete", v.delete)
	t.Run("Concurrent", v.concurrent)
}

// vectorsSuite holds the subtests of TestVectors.
type vectorsSuite struct {
	open func(t *testing.T) store.Vectors
}

// setup opens a store and a fresh collection of dims.
func (v vectorsSuite) setup(t *testing.T) (store.Vectors, string) {
	t.Helper()
	s := v.open(t)
	name := uniqueName(t)
	if err := s.EnsureCollection(ctxFor(t), name, dims); err != nil {
		t.Fatalf("EnsureCollection(%s, %d): %v", name, dims, err)
	}
	return s, name
}

func (v vectorsSuite) ensureCollection(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	if err := s.EnsureCollection(ctx, name, dims); err != nil {
		t.Errorf("second EnsureCollection with same dims: got %v; want nil", err)
	}
	err := s.EnsureCollection(ctx, name, dims+1)
	wantErr(t, err, store.ErrInvalid, "")
	if err := s.EnsureCollection(ctx, name+"_bad", 0); err == nil {
		t.Errorf("EnsureCollection with 0 dims: got nil; want error")
	}
}

func (v vectorsSuite) unknownCollection(t *testing.T) {
	s := v.open(t)
	ctx := ctxFor(t)
	name := uniqueName(t)
	wantErr(t, s.Upsert(ctx, name, []store.Record{rec("a", 1)}), store.ErrNotFound, "")
	_, err := s.Search(ctx, store.SearchRequest{Collection: name, Vector: unit(1), TopK: 1})
	wantErr(t, err, store.ErrNotFound, "")
}

func (v vectorsSuite) upsertGet(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	recs := []store.Record{rec("a", 1), rec("b", 2), rec("c", 3)}
	recs[2].Metadata = nil
	if err := s.Upsert(ctx, name, recs); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	got, err := s.Get(ctx, name, []string{"c", "missing", "a", "b"})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if want := []string{"c", "a", "b"}; !slices.Equal(ids(got), want) {
		t.Fatalf("Get ids: got %v; want %v", ids(got), want)
	}
	checkRecord(t, got[0], recs[2])
	checkRecord(t, got[1], recs[0])
	checkRecord(t, got[2], recs[1])
	got, err = s.Get(ctx, name, []string{"nope"})
	if err != nil || len(got) != 0 {
		t.Errorf("Get(missing): got %v, %v; want [], nil", got, err)
	}
}

func (v vectorsSuite) upsertIdempotent(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	first := rec("x", 1)
	if err := s.Upsert(ctx, name, []store.Record{first}); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	if err := s.Upsert(ctx, name, []store.Record{first}); err != nil {
		t.Fatalf("Upsert again: %v", err)
	}
	last := rec("x", 2)
	last.ModelVersion = "m2"
	last.Metadata = []byte(`{"v":"last"}`)
	if err := s.Upsert(ctx, name, []store.Record{last}); err != nil {
		t.Fatalf("Upsert last: %v", err)
	}
	got, err := s.Get(ctx, name, []string{"x"})
	if err != nil || len(got) != 1 {
		t.Fatalf("Get: got %d records, %v; want 1, nil", len(got), err)
	}
	checkRecord(t, got[0], last)
	hits, err := s.Search(ctx, store.SearchRequest{Collection: name, Vector: last.Vector, TopK: 10})
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	if want := []string{"x"}; !slices.Equal(hitIDs(hits), want) {
		t.Errorf("Search ids: got %v; want %v", hitIDs(hits), want)
	}
}

func (v vectorsSuite) searchOrder(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	var recs []store.Record
	for i := range 50 {
		recs = append(recs, rec(fmt.Sprintf("r%02d", i), uint64(100+i)))
	}
	// Two exact duplicates of r07's vector under ids that sort before
	// and after it, to check the tie order.
	dupA, dupZ := rec("a_dup", 107), rec("z_dup", 107)
	recs = append(recs, dupZ, dupA)
	if err := s.Upsert(ctx, name, recs); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	for _, k := range []int{1, 5, 52, store.MaxTopK} {
		hits, err := s.Search(ctx, store.SearchRequest{Collection: name, Vector: unit(107), TopK: k})
		if err != nil {
			t.Fatalf("Search top_k=%d: %v", k, err)
		}
		if want := min(k, len(recs)); len(hits) != want {
			t.Fatalf("top_k=%d: got %d hits; want %d", k, len(hits), want)
		}
		if want := []string{"a_dup", "r07", "z_dup"}; !slices.Equal(hitIDs(hits[:min(3, k)]), want[:min(3, k)]) {
			t.Errorf("top_k=%d: first hits got %v; want %v", k, hitIDs(hits[:min(3, k)]), want[:min(3, k)])
		}
		if math.Abs(float64(hits[0].Score)-1) > 1e-4 {
			t.Errorf("top_k=%d: top score got %v; want 1", k, hits[0].Score)
		}
		for i := 1; i < len(hits); i++ {
			a, b := hits[i-1], hits[i]
			if a.Score < b.Score || (a.Score == b.Score && a.ID > b.ID) {
				t.Errorf("top_k=%d: hits[%d]=%s(%v) before hits[%d]=%s(%v): want score desc, id asc", k, i-1, a.ID, a.Score, i, b.ID, b.Score)
			}
		}
	}
	// Exact top-1 for every stored vector.
	for _, r := range recs[:50] {
		if r.ID == "r07" {
			continue
		}
		hits, err := s.Search(ctx, store.SearchRequest{Collection: name, Vector: r.Vector, TopK: 1})
		if err != nil {
			t.Fatalf("Search %s: %v", r.ID, err)
		}
		if len(hits) != 1 || hits[0].ID != r.ID {
			t.Errorf("top-1 for %s: got %v; want [%s]", r.ID, hitIDs(hits), r.ID)
		}
		if len(hits) == 1 && !jsonEqual(hits[0].Metadata, r.Metadata) {
			t.Errorf("hit %s metadata: got %s; want %s", r.ID, hits[0].Metadata, r.Metadata)
		}
	}
}

func (v vectorsSuite) searchFilter(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	var recs []store.Record
	for i := range 20 {
		r := rec(fmt.Sprintf("f%02d", i), uint64(200+i))
		if i%2 == 1 {
			r.Metadata = []byte(fmt.Sprintf(`{"color":"blue","n":%d}`, i))
		}
		recs = append(recs, r)
	}
	if err := s.Upsert(ctx, name, recs); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	hits, err := s.Search(ctx, store.SearchRequest{Collection: name, Vector: unit(201), TopK: 20, Filter: `metadata["color"] == "blue"`})
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	if len(hits) != 10 {
		t.Fatalf("filtered hits: got %d (%v); want 10", len(hits), hitIDs(hits))
	}
	if hits[0].ID != "f01" {
		t.Errorf("filtered top-1: got %s; want f01", hits[0].ID)
	}
	for _, h := range hits {
		if !strings.Contains(string(h.Metadata), "blue") {
			t.Errorf("filtered hit %s has metadata %s; want color blue", h.ID, h.Metadata)
		}
	}
}

func (v vectorsSuite) searchInvalid(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	if err := s.Upsert(ctx, name, []store.Record{rec("a", 1)}); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	nan := unit(1)
	nan[3] = float32(math.NaN())
	for _, tc := range []struct {
		name string
		req  store.SearchRequest
		msg  string
	}{
		{"top_k 0", store.SearchRequest{Vector: unit(1), TopK: 0}, "top_k"},
		{"top_k -1", store.SearchRequest{Vector: unit(1), TopK: -1}, "top_k"},
		{"top_k over max", store.SearchRequest{Vector: unit(1), TopK: store.MaxTopK + 1}, "top_k"},
		{"wrong dims", store.SearchRequest{Vector: unit(1)[:dims-1], TopK: 1}, "dimensions"},
		{"nan", store.SearchRequest{Vector: nan, TopK: 1}, "NaN"},
	} {
		tc.req.Collection = name
		_, err := s.Search(ctx, tc.req)
		if !strings.Contains(fmt.Sprint(err), tc.msg) {
			t.Errorf("%s: err %v does not name %q", tc.name, err, tc.msg)
		}
		if err == nil || !isInvalid(err) {
			t.Errorf("%s: got %v; want store.ErrInvalid", tc.name, err)
		}
	}
}

func (v vectorsSuite) upsertInvalidWritesNothing(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	nan := rec("n", 3)
	nan.Vector[2] = float32(math.NaN())
	short := rec("s", 4)
	short.Vector = short.Vector[:dims-2]
	inf := rec("i", 5)
	inf.Vector[0] = float32(math.Inf(1))
	meta := rec("m", 6)
	meta.Metadata = []byte(`[1]`)
	for _, tc := range []struct {
		name string
		recs []store.Record
		msg  string
	}{
		{"wrong dims", []store.Record{rec("ok1", 1), short}, "records[1]"},
		{"nan", []store.Record{rec("ok1", 1), rec("ok2", 2), nan}, "records[2]"},
		{"inf", []store.Record{inf, rec("ok1", 1)}, "records[0]"},
		{"empty id", []store.Record{rec("ok1", 1), rec("", 2)}, "ids[1]"},
		{"long id", []store.Record{rec(strings.Repeat("x", store.MaxIDBytes+1), 1)}, "ids[0]"},
		{"duplicate id", []store.Record{rec("ok1", 1), rec("ok1", 2)}, "ids[1]"},
		{"metadata not an object", []store.Record{rec("ok1", 1), meta}, "records[1]"},
		{"empty batch", nil, ""},
	} {
		err := s.Upsert(ctx, name, tc.recs)
		if !isInvalid(err) {
			t.Errorf("%s: got %v; want store.ErrInvalid", tc.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err %q does not name %q", tc.name, err, tc.msg)
		}
	}
	got, err := s.Get(ctx, name, []string{"ok1", "ok2", "n", "s", "i", "m"})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("after invalid batches: got %v; want nothing written", ids(got))
	}
}

func (v vectorsSuite) invalidIDs(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	long := strings.Repeat("y", store.MaxIDBytes+1)
	for _, tc := range []struct {
		ids []string
		msg string
	}{
		{[]string{"a", ""}, "ids[1]"},
		{[]string{long}, "ids[0]"},
		{[]string{"a", "b", "\xff"}, "ids[2]"},
	} {
		_, err := s.Get(ctx, name, tc.ids)
		if !isInvalid(err) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Get(%.20q): got %v; want store.ErrInvalid naming %s", tc.ids, err, tc.msg)
		}
		err = s.Delete(ctx, name, tc.ids)
		if !isInvalid(err) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Delete(%.20q): got %v; want store.ErrInvalid naming %s", tc.ids, err, tc.msg)
		}
	}
}

func (v vectorsSuite) delete(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	recs := []store.Record{rec("a", 1), rec("b", 2), rec("c", 3)}
	if err := s.Upsert(ctx, name, recs); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	if err := s.Delete(ctx, name, []string{"b", "never"}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	got, err := s.Get(ctx, name, []string{"a", "b", "c"})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if want := []string{"a", "c"}; !slices.Equal(ids(got), want) {
		t.Errorf("Get after delete: got %v; want %v", ids(got), want)
	}
	hits, err := s.Search(ctx, store.SearchRequest{Collection: name, Vector: unit(2), TopK: 10})
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	if slices.Contains(hitIDs(hits), "b") || len(hits) != 2 {
		t.Errorf("Search after delete: got %v; want a and c only", hitIDs(hits))
	}
	// Deleting again is not an error; re-upserting brings it back.
	if err := s.Delete(ctx, name, []string{"b"}); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := s.Upsert(ctx, name, recs[1:2]); err != nil {
		t.Fatalf("re-Upsert: %v", err)
	}
	got, err = s.Get(ctx, name, []string{"b"})
	if err != nil || len(got) != 1 {
		t.Errorf("Get after re-upsert: got %v, %v; want [b]", ids(got), err)
	}
}

func (v vectorsSuite) concurrent(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	const writers, batches, batch = 4, 5, 20
	if err := s.Upsert(ctx, name, []store.Record{rec("seed", 1)}); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches+4*20)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				recs := make([]store.Record, batch)
				for i := range recs {
					n := (w*batches+b)*batch + i
					recs[i] = rec(fmt.Sprintf("w%d-%04d", w, n), uint64(1000+n))
				}
				if err := s.Upsert(ctx, name, recs); err != nil {
					errs <- fmt.Errorf("writer %d batch %d: %w", w, b, err)
				}
			}
		})
	}
	for r := range 4 {
		wg.Go(func() {
			for i := range 20 {
				hits, err := s.Search(ctx, store.SearchRequest{Collection: name, Vector: unit(uint64(r*100 + i)), TopK: 5})
				if err != nil {
					errs <- fmt.Errorf("reader %d search %d: %w", r, i, err)
				} else if len(hits) == 0 {
					errs <- fmt.Errorf("reader %d search %d: no hits", r, i)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var all []string
	for w := range writers {
		for n := range batches * batch {
			all = append(all, fmt.Sprintf("w%d-%04d", w, w*batches*batch+n))
		}
	}
	got, err := s.Get(ctx, name, all)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if len(got) != len(all) {
		t.Errorf("after concurrent upserts: got %d records; want %d", len(got), len(all))
	}
}

func isInvalid(err error) bool {
	return err != nil && errors.Is(err, store.ErrInvalid)
}
