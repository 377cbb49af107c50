// Package fuzzcheck holds what the fuzz targets of embedd's hand-written
// decoders (server codec, WAL, embedded log, feature state) check in
// common: a decoder allocates in proportion to the bytes it is given, never
// to the lengths and counts those bytes claim.
//
// It is imported by tests only.
package fuzzcheck

import (
	"runtime/metrics"
	"testing"
)

// Allocated returns the heap bytes fn allocates (all goroutines).
// runtime/metrics counts small objects a span at a time, so the figure can
// be off by the spans refilled, or across a GC flushed, during fn.
func Allocated(fn func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	a := s[0].Value.Uint64()
	fn()
	metrics.Read(s)
	if b := s[0].Value.Uint64(); b > a {
		return b - a
	}
	return 0
}

// CheckAllocs runs fn, which decodes n input bytes, and fails t when it
// allocates more than fixed bytes (buffers of known size) plus 1 MiB plus
// 64 per input byte. An excess is measured again (fn must be repeatable),
// as one figure can be off by some spans.
func CheckAllocs(t testing.TB, fixed, n int, fn func()) {
	t.Helper()
	limit := uint64(fixed + 1<<20 + 64*n)
	if got := Allocated(fn); got > limit {
		if again := Allocated(fn); again > limit {
			t.Fatalf("decoding %d bytes allocated %d bytes (then %d); limit %d", n, got, again, limit)
		}
	}
}
