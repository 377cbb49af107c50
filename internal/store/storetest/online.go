package storetest

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/store"
)

func ent(id string, seed int) store.Entity {
	emb := make([]int8, 16)
	for i := range emb {
		emb[i] = int8((seed*31 + i*17) % 256)
	}
	emb[0], emb[1] = -128, 127
	return store.Entity{
		ID:           id,
		Embedding:    emb,
		Scale:        0.0125 * float32(seed+1),
		ModelVersion: fmt.Sprintf("m%d", seed%3),
		UpdatedAt:    time.UnixMilli(1_700_000_000_000 + int64(seed)).UTC(),
		Features:     map[string]float64{"clicks": float64(seed), "ctr": 0.125, "neg": -3.5e-7},
	}
}

func checkEntity(t *testing.T, got *store.Entity, want store.Entity) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: got nil; want entity", want.ID)
		return
	}
	if got.ID != want.ID || got.Scale != want.Scale || got.ModelVersion != want.ModelVersion {
		t.Errorf("%s: got id %q scale %v mv %q; want %q %v %q", want.ID, got.ID, got.Scale, got.ModelVersion, want.ID, want.Scale, want.ModelVersion)
	}
	if !slices.Equal(got.Embedding, want.Embedding) {
		t.Errorf("%s embedding: got %v; want %v", want.ID, got.Embedding, want.Embedding)
	}
	if got.UpdatedAt.UnixMilli() != want.UpdatedAt.UnixMilli() {
		t.Errorf("%s updated_at: got %v; want %v", want.ID, got.UpdatedAt, want.UpdatedAt)
	}
	if len(got.Features) != len(want.Features) || (len(want.Features) > 0 && !maps.Equal(got.Features, want.Features)) {
		t.Errorf("%s features: got %v; want %v", want.ID, got.Features, want.Features)
	}
}

// TestOnline runs the store.Online conformance suite. open is called once
// per subtest; see the package doc. Entity ids are prefixed per subtest so
// a shared server works.
func TestOnline(t *testing.T, open func(t *testing.T) store.Online) {
	o := onlineSuite{open: open}
	t.Run("RoundTrip", o.roundTrip)
	t.Run("OverwriteReplaces", o.overwriteReplaces)
	t.Run("TTL", o.ttl)
	t.Run("Delete", o.delete)
	t.Run("Invalid", o.invalid)
	t.Run("Batch1000", o.batch1000)
	t.Run("Concurrent", o.concurrent)
}

// onlineSuite holds the subtests of TestOnline.
type onlineSuite struct {
	open func(t *testing.T) store.Online
}

func (o onlineSuite) roundTrip(t *testing.T) {
	s, p, ctx := o.open(t), uniqueName(t), ctxFor(t)
	a, b := ent(p+"a", 1), ent(p+"b", 2)
	b.Features = nil
	if err := s.SetEntities(ctx, []store.Entity{a, b}, 0); err != nil {
		t.Fatalf("SetEntities: %v", err)
	}
	got, err := s.GetEntities(ctx, []string{p + "b", p + "missing", p + "a"})
	if err != nil {
		t.Fatalf("GetEntities: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d results; want 3", len(got))
	}
	checkEntity(t, got[0], b)
	if got[1] != nil {
		t.Errorf("missing id: got %+v; want nil", got[1])
	}
	checkEntity(t, got[2], a)
}

func (o onlineSuite) overwriteReplaces(t *testing.T) {
	s, p, ctx := o.open(t), uniqueName(t), ctxFor(t)
	first := ent(p+"x", 1)
	if err := s.SetEntities(ctx, []store.Entity{first}, 0); err != nil {
		t.Fatalf("SetEntities: %v", err)
	}
	last := ent(p+"x", 7)
	last.Features = map[string]float64{"only": 1}
	if err := s.SetEntities(ctx, []store.Entity{last}, 0); err != nil {
		t.Fatalf("SetEntities: %v", err)
	}
	got, err := s.GetEntities(ctx, []string{p + "x"})
	if err != nil {
		t.Fatalf("GetEntities: %v", err)
	}
	checkEntity(t, got[0], last)
}

func (o onlineSuite) ttl(t *testing.T) {
	s, p, ctx := o.open(t), uniqueName(t), ctxFor(t)
	if err := s.SetEntities(ctx, []store.Entity{ent(p+"short", 1)}, time.Second); err != nil {
		t.Fatalf("SetEntities ttl: %v", err)
	}
	if err := s.SetEntities(ctx, []store.Entity{ent(p+"forever", 2)}, 0); err != nil {
		t.Fatalf("SetEntities: %v", err)
	}
	got, err := s.GetEntities(ctx, []string{p + "short"})
	if err != nil || got[0] == nil {
		t.Fatalf("before expiry: got %v, %v; want the entity", got, err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		got, err = s.GetEntities(ctx, []string{p + "short", p + "forever"})
		if err != nil {
			t.Fatalf("GetEntities: %v", err)
		}
		if got[0] == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("entity with 1s ttl still there after 3s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got[1] == nil {
		t.Errorf("entity without ttl: got nil; want it kept")
	}
}

func (o onlineSuite) delete(t *testing.T) {
	s, p, ctx := o.open(t), uniqueName(t), ctxFor(t)
	if err := s.SetEntities(ctx, []store.Entity{ent(p+"a", 1), ent(p+"b", 2)}, 0); err != nil {
		t.Fatalf("SetEntities: %v", err)
	}
	if err := s.DeleteEntities(ctx, []string{p + "a", p + "never"}); err != nil {
		t.Fatalf("DeleteEntities: %v", err)
	}
	got, err := s.GetEntities(ctx, []string{p + "a", p + "b"})
	if err != nil {
		t.Fatalf("GetEntities: %v", err)
	}
	if got[0] != nil || got[1] == nil {
		t.Errorf("after delete: got a=%v b=%v; want a nil, b kept", got[0] != nil, got[1] != nil)
	}
}

func (o onlineSuite) invalid(t *testing.T) {
	s, p, ctx := o.open(t), uniqueName(t), ctxFor(t)
	wantErr(t, s.SetEntities(ctx, []store.Entity{ent(p+"a", 1), ent("", 2)}, 0), store.ErrInvalid, "ids[1]")
	wantErr(t, s.SetEntities(ctx, []store.Entity{ent(p+"a", 1)}, -time.Second), store.ErrInvalid, "ttl")
	_, err := s.GetEntities(ctx, []string{p, string(make([]byte, store.MaxEntityIDBytes+1))})
	wantErr(t, err, store.ErrInvalid, "ids[1]")
	wantErr(t, s.DeleteEntities(ctx, []string{""}), store.ErrInvalid, "ids[0]")
	got, err := s.GetEntities(ctx, []string{p + "a"})
	if err != nil || got[0] != nil {
		t.Errorf("after invalid batches: got %v, %v; want nothing written", got[0], err)
	}
}

func (o onlineSuite) batch1000(t *testing.T) {
	s, p, ctx := o.open(t), uniqueName(t), ctxFor(t)
	ents := make([]store.Entity, 1000)
	ids := make([]string, 0, 1001)
	for i := range ents {
		ents[i] = ent(fmt.Sprintf("%s%04d", p, i), i)
		ids = append(ids, ents[i].ID)
	}
	ids = slices.Insert(ids, 500, p+"missing")
	if err := s.SetEntities(ctx, ents, time.Hour); err != nil {
		t.Fatalf("SetEntities: %v", err)
	}
	got, err := s.GetEntities(ctx, ids)
	if err != nil {
		t.Fatalf("GetEntities: %v", err)
	}
	if len(got) != len(ids) {
		t.Fatalf("got %d results; want %d", len(got), len(ids))
	}
	if got[500] != nil {
		t.Errorf("missing id at 500: got %v; want nil", got[500].ID)
	}
	for i, e := range ents {
		j := i
		if i >= 500 {
			j++
		}
		checkEntity(t, got[j], e)
	}
	if err := s.DeleteEntities(ctx, ids); err != nil {
		t.Fatalf("DeleteEntities: %v", err)
	}
}

func (o onlineSuite) concurrent(t *testing.T) {
	s, p, ctx := o.open(t), uniqueName(t), ctxFor(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for b := range 10 {
				batch := make([]store.Entity, 10)
				ids := make([]string, 10)
				for i := range batch {
					batch[i] = ent(fmt.Sprintf("%s%d-%d-%d", p, w, b, i), i)
					ids[i] = batch[i].ID
				}
				if err := s.SetEntities(ctx, batch, 0); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				got, err := s.GetEntities(ctx, ids)
				if err != nil {
					t.Errorf("reader %d: %v", w, err)
					return
				}
				for i, g := range got {
					checkEntity(t, g, batch[i])
				}
			}
		})
	}
	wg.Wait()
}
