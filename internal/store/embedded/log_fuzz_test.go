package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/fuzzcheck"
	"github.com/embedd/embedd/internal/store"
)

// Fuzz targets for the embedded store's log decoding: one payload into
// memory (FuzzLogApply), a whole log file through Open, compaction and
// reopening (FuzzOpenLog), and values through the real writers and back
// (FuzzLogRoundTrip). The seeds run in plain `go test`; the long runs are by
// hand (make fuzz):
//
//	go test -run '^$' -fuzz '^FuzzLogApply$' -fuzztime 1000000x -parallel 1 ./internal/store/embedded/

// fuzzDir is a scratch directory, on tmpfs where there is one so that the
// fsyncs of Open and Compact cost nothing.
func fuzzDir(f *testing.F) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "embedd-fuzz-"); err == nil {
			f.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return f.TempDir()
}

var fuzzNow = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func fuzzOptions(dir string) Options {
	o := DefaultOptions(dir)
	o.NoSync, o.SnapshotEvery, o.CompactMinBytes, o.IndexWorkers = true, -1, -1, 1
	o.Logger = slog.New(slog.DiscardHandler)
	o.Now = func() time.Time { return fuzzNow }
	return o
}

// fuzzLog writes a small store with every kind of entry through the real
// writers and returns its log.
func fuzzLog(f *testing.F) []byte {
	dir := f.TempDir()
	s, err := Open(fuzzOptions(dir))
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	ts := time.Unix(0, 1_700_000_000_123_456_789).UTC()
	steps := []error{
		s.EnsureCollection(ctx, "c", 3),
		s.Upsert(ctx, "c", []store.Record{
			{ID: "a", Vector: []float32{1, 0, -0.5}, Metadata: []byte(`{"k":"v","n":1}`), ModelVersion: "m@1", UpdatedAt: ts},
			{ID: "b", Vector: []float32{0, 2, 0}, UpdatedAt: ts},
		}),
		s.Delete(ctx, "c", []string{"b", "zz"}),
		s.CreateVersion(ctx, "c", "v2", 2, "m@2"),
		s.UpsertVersion(ctx, "c", "v2", []store.Record{{ID: "a", Vector: []float32{0.5, 1}, ModelVersion: "m@2", TextHash: "0123abcd", UpdatedAt: ts}}),
		s.CreateVersion(ctx, "c", "v3", 3, "m@3"),
		s.SwapAlias(ctx, "c", "v2"),
		s.DropVersion(ctx, "c", "v1"),
		s.DropVersion(ctx, "c", "v3"),
		s.SetEntities(ctx, []store.Entity{{ID: "c/a", Embedding: []int8{-128, 3, 127}, Scale: 0.5, ModelVersion: "m@1", UpdatedAt: ts, Features: map[string]float64{"x": 1, "y": -2}}}, time.Hour),
		s.SetEntities(ctx, []store.Entity{{ID: "e2", UpdatedAt: ts}}, 0),
		s.DeleteEntities(ctx, []string{"e2"}),
		s.Close(),
	}
	if err := errors.Join(steps...); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, logName))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// frames splits a log body (after the magic) into its intact entries'
// payloads, as an independent reading of the format.
func frames(body []byte) (payloads [][]byte) {
	for len(body) >= entryHead {
		n := binary.LittleEndian.Uint32(body)
		if n > maxEntry || uint64(len(body)-entryHead) < uint64(n) {
			break
		}
		p := body[entryHead : entryHead+n]
		if crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(body[4:]) {
			break
		}
		payloads = append(payloads, p)
		body = body[entryHead+n:]
	}
	return payloads
}

// reseal rewrites the CRC of every entry whose length fits, so that the
// fuzzer's mutations reach the payload decoder.
func reseal(log []byte) []byte {
	log = bytes.Clone(log)
	for b := log[len(logMagic):]; len(b) >= entryHead; {
		n := binary.LittleEndian.Uint32(b)
		if uint64(len(b)-entryHead) < uint64(n) {
			break
		}
		binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[entryHead:entryHead+n], crcTable))
		b = b[entryHead+n:]
	}
	return log
}

// memStore is an in-memory Store holding collection "c" of 3 dims, as Open
// leaves one before replaying.
func memStore() *Store {
	o := fuzzOptions("")
	return &Store{
		opts: o, logger: o.Logger, colls: map[string]*collection{"c": {logical: "c", version: store.DefaultVersion, dims: 3, recs: map[string]*record{}}},
		alias: map[string]string{"c": store.DefaultVersion},
		ents:  map[string]*entity{}, snapState: map[string]error{}, marks: map[string]snapMark{},
	}
}

// dump prints the visible state of s (entities expired at fuzzNow left
// out), floats as bits.
func dump(s *Store) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(s.colls)) {
		c := s.colls[name]
		fmt.Fprintf(&b, "collection %q (%q version %q) dims %d model %q created %d\n", name, c.logical, c.version, c.dims, c.model, unixNanos(c.created))
		for _, id := range slices.Sorted(maps.Keys(c.recs)) {
			r := c.recs[id]
			fmt.Fprintf(&b, "  record %q vector %x meta %q model %q at %d hash %q\n", r.ID, f32bits(r.Vector), r.Metadata, r.ModelVersion, r.UpdatedAt.UnixNano(), r.TextHash)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.alias)) {
		fmt.Fprintf(&b, "alias %q -> %q\n", name, s.alias[name])
	}
	now := fuzzNow.UnixNano()
	for _, id := range slices.Sorted(maps.Keys(s.ents)) {
		e := s.ents[id]
		if e.expire != 0 && e.expire <= now {
			continue
		}
		fmt.Fprintf(&b, "entity %q emb %v scale %x model %q at %d expire %d", e.ID, e.Embedding, math.Float32bits(e.Scale), e.ModelVersion, e.UpdatedAt.UnixMilli(), e.expire)
		for _, k := range slices.Sorted(maps.Keys(e.Features)) {
			fmt.Fprintf(&b, " %q=%x", k, math.Float64bits(e.Features[k]))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func f32bits(v []float32) []uint32 {
	out := make([]uint32, len(v))
	for i, x := range v {
		out[i] = math.Float32bits(x)
	}
	return out
}

// reopen closes s, opens the store in dir again and fails t unless its
// state is want; opening names the step, differs the mismatch.
func reopen(t *testing.T, s *Store, dir, want, opening, differs string) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(fuzzOptions(dir))
	if err != nil {
		t.Fatalf("%s: %v", opening, err)
	}
	if got := dump(s); got != want {
		t.Fatalf("%s:\n%s\nwant\n%s", differs, got, want)
	}
	return s
}

// FuzzLogApply decodes one log payload into a store holding collection "c":
//   - it never panics, never loops beyond the payload, and allocates at
//     most a small multiple of the payload (a count or dimension in it is a
//     claim, not an allocation size);
//   - it fails only with errShort, the package's error for a corrupt entry,
//     and then changes nothing (the replay drops the entry from the log).
func FuzzLogApply(f *testing.F) {
	for _, p := range frames(fuzzLog(f)[len(logMagic):]) {
		f.Add(p)
	}
	f.Add([]byte{opUpsert, 1, 'c', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}) // 2^63-1 records
	f.Add([]byte{opColl, 1, 'd', 0xff, 0xff, 0xff, 0xff, 0x0f})                           // 2^32-1 dims
	f.Add([]byte{opVersion, 1, 'c', 2, 'v', '2', 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 1})  // 2^32-1 dims
	f.Add([]byte{opDrop, 1, 'c', 2, 'v', '1'})                                            // the live version
	f.Add([]byte{opAlias, 1, 'c', 2, 'v', '9'})                                           // a missing version
	f.Fuzz(func(t *testing.T, p []byte) {
		var s *Store
		var err error
		fuzzcheck.CheckAllocs(t, 0, len(p), func() {
			s = memStore()
			err = s.apply(p)
		})
		if err != nil {
			if err != errShort {
				t.Fatalf("error %v is not errShort", err)
			}
			if got, want := dump(s), dump(memStore()); got != want {
				t.Fatalf("a corrupt entry changed the state:\n%s\nwant\n%s", got, want)
			}
		}
		for name, c := range s.colls {
			if c.dims < 1 || c.dims > store.MaxDims {
				t.Fatalf("collection %q of %d dims", name, c.dims)
			}
			for _, r := range c.recs {
				if len(r.Vector) != c.dims {
					t.Fatalf("record %q of %d dims in a collection of %d", r.ID, len(r.Vector), c.dims)
				}
			}
		}
	})
}

// FuzzOpenLog opens a store on arbitrary log bytes (with resealed entry
// checksums when reseal is set, so that mutations reach the payloads):
//   - Open never panics, allocates at most its read buffer plus a small
//     multiple of the log, and fails only when the file is not an embedd
//     log (wrong magic);
//   - it keeps a prefix of the intact entries and truncates the file right
//     after them;
//   - reopening gives the same state, and so does compacting (the state
//     re-encoded by the writers) and reopening: decode(encode(decode(b)))
//     == decode(b).
func FuzzOpenLog(f *testing.F) {
	log := fuzzLog(f)
	f.Add(log, false)
	f.Add(log[:len(log)-2], false)
	f.Add([]byte(logMagic), false)
	f.Add([]byte("EMBEDDL0"), false)
	f.Add(append([]byte(logMagic), 0xff, 0xff, 0xff, 0x3f, 0, 0, 0, 0, 1), false) // claims 1 GiB, holds 1 byte
	f.Add(log, true)
	root := fuzzDir(f)
	f.Fuzz(func(t *testing.T, log []byte, resealed bool) {
		if resealed && len(log) >= len(logMagic) {
			log = reseal(append([]byte(logMagic), log[len(logMagic):]...))
		}
		dir := filepath.Join(root, "store") // one name: the same input takes the same paths
		defer os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, logName)
		var s *Store
		var err error
		fuzzcheck.CheckAllocs(t, 1<<20, len(log), func() { // the read buffer is 1 MiB
			if s != nil {
				s.Close()
			}
			if err := os.WriteFile(path, log, 0o644); err != nil {
				t.Fatal(err)
			}
			s, err = Open(fuzzOptions(dir))
		})
		if len(log) > 0 && !bytes.HasPrefix(log, []byte(logMagic)) {
			if err == nil {
				s.Close()
				t.Fatal("a file without the magic opened")
			}
			return
		}
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer func() { s.Close() }()
		intact := frames(log[min(len(log), len(logMagic)):])
		end := int64(len(logMagic))
		if s.pos.seq > uint64(len(intact)) {
			t.Fatalf("replayed %d entries; %d are intact", s.pos.seq, len(intact))
		}
		for _, p := range intact[:s.pos.seq] {
			end += int64(entryHead + len(p))
		}
		if st, err := os.Stat(path); err != nil || s.pos.off != end || st.Size() != end {
			t.Fatalf("log ends at %d, file %v (%v); want %d", s.pos.off, st.Size(), err, end)
		}
		want := dump(s)
		s = reopen(t, s, dir, want, "reopen", "reopened state differs")
		if err := s.Compact(context.Background()); err != nil {
			t.Fatalf("Compact: %v", err)
		}
		if got := dump(s); got != want {
			t.Fatalf("compaction changed the state:\n%s\nwant\n%s", got, want)
		}
		s = reopen(t, s, dir, want, "reopen after Compact", "state after Compact and reopen differs")
	})
}

// FuzzLogRoundTrip writes fuzzed values through the store's writers
// (EnsureCollection, Upsert, SetEntities, Delete) and checks that a reopen,
// which decodes the log, gives back exactly what the store held:
// decode(encode(x)) == x. Writes the store rejects must be
// store.ErrInvalid and leave the log as it was.
func FuzzLogRoundTrip(f *testing.F) {
	f.Add("c", "a", []byte{0, 0, 128, 63, 0, 0, 0, 0}, []byte(`{"k":"v"}`), "m@1", int64(1_700_000_000_123_456_789), "c/a", []byte{0x80, 3, 0x7f}, float32(0.5), "x", 1.5, int16(3600), false)
	f.Add("c", "", []byte{}, []byte{}, "", int64(0), "", []byte{}, float32(0), "", 0.0, int16(-1), true)
	f.Add("c\xff", "a", []byte{0, 0, 192, 127}, []byte("{"), "m", int64(-1), "e", []byte{}, float32(math.Inf(1)), "y", math.NaN(), int16(0), true)
	root := fuzzDir(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, coll, id string, vec, meta []byte, model string, ts int64, entID string, emb []byte, scale float32, feature string, value float64, ttl int16, del bool) {
		dir := filepath.Join(root, "store")
		defer os.RemoveAll(dir)
		s, err := Open(fuzzOptions(dir))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Close() }()
		v := make([]float32, len(vec)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(vec[4*i:]))
		}
		embedding := make([]int8, len(emb))
		for i, b := range emb {
			embedding[i] = int8(b)
		}
		ent := store.Entity{ID: entID, Embedding: embedding, Scale: scale, ModelVersion: model, UpdatedAt: time.Unix(0, ts).UTC(), Features: map[string]float64{feature: value}}
		writes := []func() error{
			func() error { return s.EnsureCollection(ctx, coll, len(v)) },
			func() error {
				return s.Upsert(ctx, coll, []store.Record{{ID: id, Vector: v, Metadata: meta, ModelVersion: model, UpdatedAt: time.Unix(0, ts).UTC()}})
			},
			func() error { return s.SetEntities(ctx, []store.Entity{ent}, time.Duration(ttl)*time.Second) },
		}
		if del {
			writes = append(writes,
				func() error { return s.Delete(ctx, coll, []string{id}) },
				func() error { return s.DeleteEntities(ctx, []string{entID}) })
		}
		for i, w := range writes {
			before := s.pos
			if err := w(); err != nil {
				if !errors.Is(err, store.ErrInvalid) && !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("write %d: %v is neither ErrInvalid nor ErrNotFound", i, err)
				}
				if s.pos != before {
					t.Fatalf("write %d failed (%v) but the log moved", i, err)
				}
			}
		}
		want := dump(s)
		s = reopen(t, s, dir, want, "reopen", "decoded state differs from the written one")
	})
}
