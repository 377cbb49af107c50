package session

import (
	"sync"
	"testing"
	"time"
)

// stepClock is a settable wall clock.
type stepClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func openMemory(t *testing.T, cfg Config, opts MemoryOptions) *Memory {
	t.Helper()
	m, err := NewMemory(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestMemoryConformance(t *testing.T) {
	testStore(t, func(t *testing.T, cfg Config) Store { return openMemory(t, cfg, MemoryOptions{}) })
}

func TestMemoryExpiry(t *testing.T) {
	clk := &stepClock{now: time.Unix(1_000, 0)}
	cfg := DefaultConfig() // ttl = 30m + 5m of wall time
	m := openMemory(t, cfg, MemoryOptions{Clock: clk})
	r1 := mustProcess(t, m, ev("u", "view", t0))
	clk.Add(cfg.Timeout + cfg.TTLMargin - time.Nanosecond)
	if r := mustProcess(t, m, ev("u", "view", t0.Add(time.Second))); r.IsNew || r.SessionID != r1.SessionID {
		t.Errorf("1 ns before expiry: got new %v; want the session continued", r.IsNew)
	}
	// Expiry counts from the last applied event; this gap in event time
	// alone would extend the session, but the state is gone.
	clk.Add(cfg.Timeout + cfg.TTLMargin)
	if r := mustProcess(t, m, ev("u", "view", t0.Add(2*time.Second))); !r.IsNew || r.Events != 1 {
		t.Errorf("after expiry: got new %v events %d; want a new session", r.IsNew, r.Events)
	}
	// Expired states at the cold end are removed when another is written.
	mustProcess(t, m, ev("v", "view", t0))
	clk.Add(cfg.Timeout + cfg.TTLMargin)
	mustProcess(t, m, ev("w", "view", t0))
	if n := m.Len(); n != 1 {
		t.Errorf("Len after expiry: got %d; want 1", n)
	}
}

func TestMemoryBound(t *testing.T) {
	m := openMemory(t, Config{}, MemoryOptions{MaxEntities: 2})
	mustProcess(t, m, ev("a", "view", t0))
	mustProcess(t, m, ev("b", "view", t0))
	mustProcess(t, m, ev("a", "view", t0.Add(time.Second))) // a is now the most recent
	mustProcess(t, m, ev("c", "view", t0))                  // evicts b
	if n := m.Len(); n != 2 {
		t.Errorf("Len: got %d; want 2", n)
	}
	if r := mustProcess(t, m, ev("a", "view", t0.Add(2*time.Second))); r.IsNew || r.Events != 3 {
		t.Errorf("a: got new %v events %d; want kept, 3 events", r.IsNew, r.Events)
	}
	if r := mustProcess(t, m, ev("b", "view", t0.Add(time.Second))); !r.IsNew {
		t.Errorf("b: got a continued session; want new after eviction")
	}
}
