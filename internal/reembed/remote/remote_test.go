package remote

import (
	"testing"
	"time"
)

// TestWait: a retry waits at least the server's hint, doubled per attempt
// up to MaxBackoff (or the hint when it is larger), plus at most half; with
// no hint it follows Backoff, from half to the whole of it.
func TestWait(t *testing.T) {
	r := &Remote{o: Options{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}}
	for _, tc := range []struct {
		attempt  int
		hint     time.Duration
		min, max time.Duration
	}{
		{0, 50 * time.Millisecond, 50 * time.Millisecond, 75 * time.Millisecond},
		{3, 50 * time.Millisecond, 400 * time.Millisecond, 600 * time.Millisecond},
		{10, 50 * time.Millisecond, time.Second, 1500 * time.Millisecond},
		{0, 3 * time.Second, 3 * time.Second, 4500 * time.Millisecond}, // a hint above MaxBackoff is still honoured
		{5, 3 * time.Second, 3 * time.Second, 4500 * time.Millisecond},
		{0, 0, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 0, 200 * time.Millisecond, 400 * time.Millisecond},
		{30, 0, 500 * time.Millisecond, time.Second},
	} {
		for range 200 {
			if got := r.wait(tc.attempt, tc.hint); got < tc.min || got > tc.max {
				t.Fatalf("wait(attempt %d, hint %s) = %s; want in [%s, %s]", tc.attempt, tc.hint, got, tc.min, tc.max)
			}
		}
	}
}
