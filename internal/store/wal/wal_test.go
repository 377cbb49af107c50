package wal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/store"
)

func open(t *testing.T, dir string) *Log {
	t.Helper()
	l, err := Open(Options{Dir: dir, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func entry(i int) *Entry {
	return &Entry{Kind: Upsert, Collection: "c", Records: []store.Record{{ID: fmt.Sprint("id", i), Vector: []float32{float32(i)}}}}
}

// appendAll appends entry(0) to entry(n-1).
func appendAll(t *testing.T, l *Log, n int) {
	t.Helper()
	for i := range n {
		if err := l.Append(entry(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// damaged appends three entries, closes the log, damages wal.log and opens
// the log again.
func damaged(t *testing.T, damage func(path string) error) *Log {
	t.Helper()
	dir := t.TempDir()
	l := open(t, dir)
	appendAll(t, l, 3)
	l.Close()
	if err := damage(filepath.Join(dir, "wal.log")); err != nil {
		t.Fatal(err)
	}
	return open(t, dir)
}

// drain runs the log until want entries were applied or the deadline.
func drain(t *testing.T, l *Log, apply func(*Entry) error, want int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- l.Run(ctx, func(_ context.Context, e *Entry) error {
			if err := apply(e); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			got = append(got, e.Records[0].ID)
			if len(got) == want {
				cancel()
			}
			return nil
		})
	}()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v (applied %d of %d)", err, len(got), want)
	}
	return got
}

func TestAppendReplayInOrder(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	appendAll(t, l, 5)
	if l.Pending() != 5 {
		t.Fatalf("pending %d", l.Pending())
	}
	l.Close()

	// Reopen: all five survive; the first two fail as unavailable twice
	// each and are retried, never skipped.
	l = open(t, dir)
	if l.Pending() != 5 {
		t.Fatalf("pending after reopen %d", l.Pending())
	}
	fails := map[string]int{"id0": 2, "id1": 2}
	got := drain(t, l, func(e *Entry) error {
		if fails[e.Records[0].ID] > 0 {
			fails[e.Records[0].ID]--
			return fmt.Errorf("%w: milvus down", store.ErrUnavailable)
		}
		return nil
	}, 5)
	if fmt.Sprint(got) != "[id0 id1 id2 id3 id4]" {
		t.Fatalf("order %v", got)
	}
	if l.Pending() != 0 {
		t.Fatalf("pending %d", l.Pending())
	}
	if st, _ := os.Stat(filepath.Join(dir, "wal.log")); st.Size() != 0 {
		t.Fatalf("drained log is %d bytes", st.Size())
	}
}

func TestCheckpointSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	appendAll(t, l, 4)
	if got := drain(t, l, func(*Entry) error { return nil }, 2); len(got) != 2 {
		t.Fatal(got)
	}
	l.Close()
	l = open(t, dir)
	if l.Pending() != 2 {
		t.Fatalf("pending %d; want 2", l.Pending())
	}
	if got := drain(t, l, func(*Entry) error { return nil }, 2); fmt.Sprint(got) != "[id2 id3]" {
		t.Fatalf("replayed %v", got)
	}
}

func TestTornTail(t *testing.T) {
	l := damaged(t, func(p string) error {
		st, _ := os.Stat(p)
		return os.Truncate(p, st.Size()-3) // crash mid-frame
	})
	if l.Pending() != 2 {
		t.Fatalf("pending %d; want 2", l.Pending())
	}
	if err := l.Append(entry(9)); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, l, func(*Entry) error { return nil }, 3); fmt.Sprint(got) != "[id0 id1 id9]" {
		t.Fatalf("replayed %v", got)
	}
}

func TestCorruptFrameTruncated(t *testing.T) {
	l := damaged(t, func(p string) error {
		b, _ := os.ReadFile(p)
		b[len(b)-1] ^= 0xff // flip a payload byte of the last frame
		return os.WriteFile(p, b, 0o600)
	})
	if l.Pending() != 2 {
		t.Fatalf("pending %d; want 2", l.Pending())
	}
}

func TestInvalidEntryBuried(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	appendAll(t, l, 3)
	got := drain(t, l, func(e *Entry) error {
		if e.Records[0].ID == "id1" {
			return fmt.Errorf("%w: bad vector", store.ErrInvalid)
		}
		return nil
	}, 2)
	if fmt.Sprint(got) != "[id0 id2]" || l.Dead() != 1 {
		t.Fatalf("applied %v, dead %d", got, l.Dead())
	}
	if st, err := os.Stat(filepath.Join(dir, "wal.dead")); err != nil || st.Size() == 0 {
		t.Fatalf("wal.dead: %v", err)
	}
}

func TestConcurrentAppendWhileRunning(t *testing.T) {
	l := open(t, t.TempDir())
	const n = 200
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n / 4 {
				if err := l.Append(entry(g*1000 + i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	got := drain(t, l, func(*Entry) error { return nil }, n)
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Fatalf("%s applied twice", id)
		}
		seen[id] = true
	}
	if len(seen) != n {
		t.Fatalf("applied %d of %d", len(seen), n)
	}
}

func TestClosed(t *testing.T) {
	l := open(t, t.TempDir())
	l.Close()
	if err := l.Append(entry(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
}

// TestMaxBytes: an Append beyond MaxBytes fails with ErrFull naming the
// limit and writes nothing; once the queue is applied there is room again.
func TestMaxBytes(t *testing.T) {
	dir := t.TempDir()
	var three int64 // frames vary in size (gob encodes numbers compactly)
	for i := range 3 {
		b, err := frame(entry(i))
		if err != nil {
			t.Fatal(err)
		}
		three += int64(len(b))
	}
	l, err := Open(Options{Dir: dir, MaxBytes: three + 1, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendAll(t, l, 3)
	err = l.Append(entry(3))
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), fmt.Sprintf("limit %d", three+1)) {
		t.Fatalf("fourth append: %v; want ErrFull naming the limit", err)
	}
	if l.Pending() != 3 {
		t.Errorf("pending after a refused append: %d; want 3", l.Pending())
	}
	if got := drain(t, l, func(*Entry) error { return nil }, 3); len(got) != 3 {
		t.Fatalf("drained %v", got)
	}
	if err := l.Append(entry(4)); err != nil {
		t.Errorf("append after the queue drained: %v", err)
	}
}
