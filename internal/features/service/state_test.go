package service

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/window"
)

func TestStateRoundTripAndCorruption(t *testing.T) {
	cfg := window.DefaultConfig()
	st := newState()
	ser, _ := st.series("amount", cfg)
	for i := range 5 {
		if err := ser.Insert(window.Point{TS: int64(i) * 1e9, Seq: uint64(i + 1), V: float64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	st.Seq, st.LastActivity, st.SessionID = 5, 4e9, "abc"
	st.Session = []features.Value{{Name: "events_in_session", Version: 1, Value: 5, Timestamp: time.Unix(4, 0).UTC()}, {Name: "avg_time_between_events", Version: 1, Null: true, Timestamp: time.Unix(4, 0).UTC()}}
	st.External["opportunity_score"] = External{V: 0.5, TS: 3e9}
	b, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := unmarshalState(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 5 || got.LastActivity != 4e9 || got.SessionID != "abc" || len(got.Session) != 2 || !got.Session[1].Null || got.Session[0].Value != 5 ||
		got.External["opportunity_score"].V != 0.5 || got.Series["amount"].Len() != 5 {
		t.Fatalf("round trip: %+v", got)
	}
	b2, _ := got.MarshalBinary()
	if string(b2) != string(b) {
		t.Fatal("re-encoding differs")
	}
	for _, bad := range [][]byte{b[:len(b)-1], append([]byte{}, b[:10]...), nil, append(append([]byte{}, b[:len(b)-5]...), b[len(b)-4:]...)} {
		if _, err := unmarshalState(bad, cfg); !errors.Is(err, errCorrupt) {
			t.Errorf("corrupt input of %d bytes accepted: %v", len(bad), err)
		}
	}
	flip := append([]byte{}, b...)
	flip[20] ^= 1
	if _, err := unmarshalState(flip, cfg); !errors.Is(err, errCorrupt) {
		t.Errorf("bit flip accepted: %v", err)
	}
}

func TestMemorySaveLoad(t *testing.T) {
	cfg := window.DefaultConfig()
	m := NewMemory(cfg, 10)
	errs := m.UpdateBatch(t.Context(), []string{"a", "b"}, func(k int, st *State) error {
		st.Seq = uint64(k + 7)
		return nil
	})
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	path := t.TempDir() + "/state.bin"
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	m2 := NewMemory(cfg, 10)
	if err := m2.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	sts, err := m2.Load(t.Context(), []string{"a", "b", "c"})
	if err != nil || sts[0].Seq != 7 || sts[1].Seq != 8 || sts[2] != nil {
		t.Fatalf("loaded %+v %v", sts, err)
	}
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 1
	os.WriteFile(path, b, 0o600)
	if err := m2.LoadFile(path); !errors.Is(err, errCorrupt) {
		t.Fatalf("corrupt file: %v", err)
	}
	if err := NewMemory(cfg, 10).LoadFile(path + ".missing"); err != nil {
		t.Fatal(err)
	}
}

// TestMemoryLimits: past either bound an update fails with ErrUnavailable
// naming the limit and changes nothing; held entities keep updating; a
// saved file beyond the bounds does not load.
func TestMemoryLimits(t *testing.T) {
	cfg := window.DefaultConfig()
	set := func(m *Memory, id string, seq uint64) error {
		return m.UpdateBatch(t.Context(), []string{id}, func(_ int, st *State) error { st.Seq = seq; return nil })[0]
	}
	m := NewMemoryLimited(cfg, MemoryLimits{Entities: 2, Bytes: 1 << 20})
	for i, id := range []string{"a", "b"} {
		if err := set(m, id, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	err := set(m, "c", 3)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "limit 2") || !strings.Contains(err.Error(), "--feature-state-max-entities") {
		t.Errorf("third entity: got %v; want ErrUnavailable naming limit 2", err)
	}
	if err := set(m, "a", 9); err != nil {
		t.Errorf("update of a held entity at the limit: %v", err)
	}
	if n, _ := m.Usage(); n != 2 {
		t.Errorf("entities held: %d; want 2", n)
	}

	_, per := m.Usage()
	per /= 2 // bytes of one small entity
	small := NewMemoryLimited(cfg, MemoryLimits{Entities: 100, Bytes: per + per/2})
	if err := set(small, "a", 1); err != nil {
		t.Fatal(err)
	}
	err = set(small, "b", 2)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), `entity "b"`) || !strings.Contains(err.Error(), "--feature-state-max-bytes") {
		t.Errorf("past the byte limit: got %v; want ErrUnavailable naming the entity and the limit", err)
	}
	if sts, _ := small.Load(t.Context(), []string{"b"}); sts[0] != nil {
		t.Error("refused entity was stored")
	}

	path := t.TempDir() + "/state.bin"
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	if err := NewMemoryLimited(cfg, MemoryLimits{Entities: 1, Bytes: 1 << 20}).LoadFile(path); err == nil || !strings.Contains(err.Error(), "limits 1 entities") {
		t.Errorf("loading 2 entities under a limit of 1: %v", err)
	}
}
