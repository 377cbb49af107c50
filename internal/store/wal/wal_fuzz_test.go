package wal

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/fuzzcheck"
	"github.com/embedd/embedd/internal/store"
)

// Fuzz targets for the WAL decoders: the frame reader with the gob payload
// decoding of Run (FuzzFrames), and the recovery scan of Open (FuzzOpen).
// The seeds run in plain `go test`; the long runs are by hand (make fuzz):
//
//	go test -run '^$' -fuzz '^FuzzFrames$' -fuzztime 1000000x -parallel 1 ./internal/store/wal/

// fuzzEntries are real entries of both kinds.
func fuzzEntries() []*Entry {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC)
	return []*Entry{
		{Kind: Upsert, Collection: "docs", TTL: time.Hour,
			Records:  []store.Record{{ID: "a", Vector: []float32{0.5, -1, float32(math.Inf(1))}, Metadata: []byte(`{"k":"v"}`), ModelVersion: "m@1", UpdatedAt: ts}},
			Entities: []store.Entity{{ID: "docs/a", Embedding: []int8{-128, 0, 127}, Scale: 0.01, ModelVersion: "m@1", UpdatedAt: ts, Features: map[string]float64{"x": 1, "y": math.NaN()}}}},
		{Kind: Delete, Collection: "docs", IDs: []string{"a", "b"}, EntityIDs: []string{"docs/a"}},
		{},
	}
}

func mustFrame(tb testing.TB, e *Entry) []byte {
	tb.Helper()
	b, err := frame(e)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// canonical prints an entry so that equal entries print the same (NaN
// included; fmt sorts map keys).
func canonical(e *Entry) string { return fmt.Sprintf("%+v", *e) }

// FuzzFrames reads log bytes frame by frame as Run does and decodes each
// payload (and the second argument, as an intact frame's payload) into an
// Entry:
//   - it never panics, and allocates at most a small multiple of the input
//     (a header's length field is a claim, not an allocation size);
//   - the frames consumed tile a prefix of the input; reading stops with
//     io.EOF exactly at the end of the input, else with an error;
//   - a payload that decodes re-frames (frame) and re-decodes to the same
//     entry: decode(encode(decode(b))) == decode(b).
func FuzzFrames(f *testing.F) {
	var log []byte
	for _, e := range fuzzEntries() {
		fr := mustFrame(f, e)
		log = append(log, fr...)
		f.Add(fr, fr[8:])
	}
	f.Add(log, []byte{})
	f.Add(log[:len(log)-3], []byte{}) // torn tail
	huge := binary.LittleEndian.AppendUint32(nil, MaxEntryBytes)
	f.Add(append(huge, 0, 0, 0, 0, 1, 2, 3), []byte{}) // claims 256 MiB, holds 3 bytes
	f.Fuzz(func(t *testing.T, log, payload []byte) {
		var off int64
		var payloads [][]byte
		fuzzcheck.CheckAllocs(t, 0, len(log), func() {
			r := io.NewSectionReader(bytes.NewReader(log), 0, int64(len(log)))
			off, payloads = 0, nil
			for {
				p, n, err := readFrame(r)
				if err != nil {
					if errors.Is(err, io.EOF) != (off == int64(len(log))) {
						t.Fatalf("stopped at %d of %d bytes with %v", off, len(log), err)
					}
					break
				}
				if n != int64(8+len(p)) {
					t.Fatalf("frame of %d payload bytes consumed %d", len(p), n)
				}
				off += n
				payloads = append(payloads, p)
			}
		})
		for _, p := range append(payloads, payload) {
			checkEntry(t, p)
		}
	})
}

// checkEntry decodes p as Run does; what decodes must round-trip.
func checkEntry(t *testing.T, p []byte) {
	t.Helper()
	var e *Entry
	var err error
	fuzzcheck.CheckAllocs(t, 0, len(p), func() { e, err = decode(p) })
	if err != nil {
		return // Run buries it in wal.dead as store.ErrInvalid
	}
	fr, err := frame(e)
	if err != nil {
		t.Fatalf("a decoded entry does not re-encode: %v", err)
	}
	p2, n, err := readFrame(io.NewSectionReader(bytes.NewReader(fr), 0, int64(len(fr))))
	if err != nil || n != int64(len(fr)) {
		t.Fatalf("re-encoded frame does not read back: %v", err)
	}
	var e2 Entry
	if err := gob.NewDecoder(bytes.NewReader(p2)).Decode(&e2); err != nil {
		t.Fatalf("re-encoded entry does not decode: %v", err)
	}
	if a, b := canonical(e), canonical(&e2); a != b {
		t.Fatalf("round trip:\n%s\n%s", a, b)
	}
}

// fuzzDir is a scratch directory, on tmpfs where there is one so that the
// fsyncs of Open cost nothing.
func fuzzDir(f *testing.F) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "embedd-fuzz-"); err == nil {
			f.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return f.TempDir()
}

// FuzzOpen writes arbitrary bytes as wal.log (and a checkpoint into it) and
// opens the log:
//   - Open never panics and fails only for a checkpoint beyond the log;
//   - it keeps exactly the intact frames after the checkpoint (Pending) and
//     truncates the file right after the last of them;
//   - opening again finds the same, and an Append after it reads back.
func FuzzOpen(f *testing.F) {
	var log []byte
	for _, e := range fuzzEntries() {
		log = append(log, mustFrame(f, e)...)
	}
	first := int64(len(mustFrame(f, fuzzEntries()[0])))
	f.Add(log, int64(0))
	f.Add(log, first)
	f.Add(log[:len(log)-1], first)
	f.Add([]byte{}, int64(0))
	f.Add(log, int64(len(log)+1))
	root := fuzzDir(f)
	quiet := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, log []byte, ckpt int64) {
		// One fixed name: the same input must take the same code paths,
		// or the fuzzer chases coverage that is not the input's.
		dir := filepath.Join(root, "wal")
		defer os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		// What Open must keep: the intact frames after the checkpoint.
		want, end := 0, ckpt
		if ckpt >= 0 && ckpt <= int64(len(log)) {
			for {
				p, ok := intactFrame(log[end:])
				if !ok {
					break
				}
				want++
				end += int64(8 + len(p))
			}
		}
		var l *Log
		var err error
		fuzzcheck.CheckAllocs(t, 0, len(log), func() {
			if l != nil {
				l.Close()
			}
			if err := os.WriteFile(filepath.Join(dir, "wal.log"), log, 0o600); err != nil {
				t.Fatal(err)
			}
			if ckpt != 0 {
				if err := os.WriteFile(filepath.Join(dir, "wal.ckpt"), binary.LittleEndian.AppendUint64(nil, uint64(ckpt)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			l, err = Open(Options{Dir: dir, Logger: quiet})
		})
		if ckpt < 0 || ckpt > int64(len(log)) {
			if err == nil {
				l.Close()
				t.Fatalf("checkpoint %d beyond a log of %d bytes accepted", ckpt, len(log))
			}
			return
		}
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if got := l.Pending(); got != want {
			t.Fatalf("pending %d; want %d", got, want)
		}
		l.Close()
		if st, err := os.Stat(filepath.Join(dir, "wal.log")); err != nil || st.Size() != end {
			t.Fatalf("log after Open: %v, %v; want %d bytes", st.Size(), err, end)
		}
		l, err = Open(Options{Dir: dir, Logger: quiet})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer l.Close()
		if got := l.Pending(); got != want {
			t.Fatalf("pending after reopen %d; want %d", got, want)
		}
		e := fuzzEntries()[1]
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
		l.mu.Lock()
		p, _, err := readFrame(io.NewSectionReader(l.f, end, l.size-end))
		l.mu.Unlock()
		if err != nil || !bytes.Equal(p, mustFrame(t, e)[8:]) {
			t.Fatalf("appended frame does not read back: %v", err)
		}
	})
}

// castagnoli is the CRC table of an independent reading of the format.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// intactFrame is an independent reading of one frame at the start of b.
func intactFrame(b []byte) ([]byte, bool) {
	if len(b) < 8 {
		return nil, false
	}
	n := binary.LittleEndian.Uint32(b)
	if n > MaxEntryBytes || uint64(len(b)-8) < uint64(n) {
		return nil, false
	}
	p := b[8 : 8+n]
	return p, crc32.Checksum(p, castagnoli) == binary.LittleEndian.Uint32(b[4:])
}
