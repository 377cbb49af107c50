package service

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/window"
	"github.com/embedd/embedd/internal/fuzzcheck"
)

// Fuzz targets for the feature-state blob decoders: one entity's state
// (unmarshalState, "efst", with its window series) and the embedded mode's
// state file (Memory.LoadFile, "efms"). The window series decoder has its
// own target (window.FuzzUnmarshalBinary). The seeds run in plain `go
// test`; the long runs are by hand (make fuzz):
//
//	go test -run '^$' -fuzz '^FuzzUnmarshalState$' -fuzztime 1000000x -parallel 1 ./internal/features/service/

// fuzzConfig keeps few points, so that decoding also trims.
func fuzzConfig() window.Config {
	cfg := window.DefaultConfig()
	cfg.MaxPoints = 64
	return cfg
}

// fuzzState is a real state with every part filled.
func fuzzState(tb testing.TB) *State {
	st := newState()
	ser, err := st.series("amount", window.DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	for i := range 5 {
		if err := ser.Insert(window.Point{TS: int64(i) * 1e9, Seq: uint64(i + 1), V: float64(i)}); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := st.series(EventsSource, window.DefaultConfig()); err != nil {
		tb.Fatal(err)
	}
	st.Seq, st.LastActivity, st.SessionID = 5, 4e9, "abc"
	st.Session = []features.Value{
		{Name: "events_in_session", Version: 1, Value: 5, Timestamp: time.Unix(4, 0).UTC()},
		{Name: "avg_time_between_events", Version: 2, Null: true, Timestamp: time.Unix(4, 0).UTC()},
	}
	st.External["opportunity_score"] = External{V: 0.5, TS: 3e9}
	st.External["nan"] = External{V: math.NaN(), TS: -1}
	return st
}

func mustMarshal(tb testing.TB, st *State) []byte {
	tb.Helper()
	b, err := st.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// resealCRC rewrites b's magic, version (when version > 0) and trailing
// CRC-32C, so that the fuzzer's mutations reach the fields behind them.
func resealCRC(b []byte, magic string, version byte) []byte {
	if len(b) < len(magic)+1+4 {
		return b
	}
	b = bytes.Clone(b)
	copy(b, magic)
	if version > 0 {
		b[len(magic)] = version
	}
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
	return b
}

// dumpState prints st so that equal states print the same (floats as bits,
// series as their encodings).
func dumpState(st *State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seq %d last %d session %q\n", st.Seq, st.LastActivity, st.SessionID)
	for _, v := range st.Session {
		fmt.Fprintf(&b, "value %q v%d null %v %x at %d\n", v.Name, v.Version, v.Null, math.Float64bits(v.Value), v.Timestamp.UnixNano())
	}
	for _, n := range slices.Sorted(maps.Keys(st.External)) {
		e := st.External[n]
		fmt.Fprintf(&b, "external %q %x at %d\n", n, math.Float64bits(e.V), e.TS)
	}
	for _, n := range slices.Sorted(maps.Keys(st.Series)) {
		enc, _ := st.Series[n].MarshalBinary()
		fmt.Fprintf(&b, "series %q %x\n", n, enc)
	}
	fmt.Fprintf(&b, "id floor %d\n", st.IDFloor)
	for _, a := range st.Applied {
		fmt.Fprintf(&b, "applied %q at %d\n", a.ID, a.TS)
	}
	return b.String()
}

// FuzzUnmarshalState decodes arbitrary bytes (with the magic, version and
// CRC resealed when resealed is set, so that mutations reach the fields) as
// an entity state:
//   - it never panics, allocates at most a small multiple of the input (a
//     count is a claim, not an allocation size), and fails only with
//     errCorrupt;
//   - what decodes re-encodes (MarshalBinary) to bytes that decode to the
//     same state and re-encode to the same bytes: decode(encode(decode(b)))
//     == decode(b).
func FuzzUnmarshalState(f *testing.F) {
	withIDs := fuzzState(f)
	withIDs.recordID("1764151200000-0", 1e9)
	withIDs.recordID("order-7", 2e9)
	withIDs.IDFloor = 5e8
	for _, st := range []*State{newState(), fuzzState(f), withIDs} {
		b := mustMarshal(f, st)
		f.Add(b, false)
		f.Add(b[:len(b)-1], true)
	}
	// A valid header and CRC around a count of 65535 session values and
	// nothing else.
	f.Add(resealCRC([]byte("efst\x01"+strings.Repeat("\x00", 16)+"\x00\x00\xff\xff\x00\x00\x00\x00"), stateMagic, stateVersion), false)
	cfg := fuzzConfig()
	f.Fuzz(func(t *testing.T, data []byte, resealed bool) {
		if resealed {
			data = resealCRC(data, stateMagic, stateVersion)
		}
		var st *State
		var err error
		fuzzcheck.CheckAllocs(t, 0, len(data), func() { st, err = unmarshalState(data, cfg) })
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v is not errCorrupt", err)
			}
			if st != nil {
				t.Fatal("a failed decode returned a state")
			}
			return
		}
		b, err := st.MarshalBinary()
		if err != nil {
			t.Fatalf("a decoded state does not re-encode: %v", err)
		}
		st2, err := unmarshalState(b, cfg)
		if err != nil {
			t.Fatalf("a re-encoded state does not decode: %v", err)
		}
		if a, b := dumpState(st), dumpState(st2); a != b {
			t.Fatalf("round trip:\n%s\nwant\n%s", b, a)
		}
		if b2 := mustMarshal(t, st2); !bytes.Equal(b, b2) {
			t.Fatalf("encoding is not a fixed point:\n%x\n%x", b, b2)
		}
	})
}

// memFile encodes states as Memory.Save does.
func memFile(states map[string][]byte) []byte {
	b := []byte("efms")
	b = binary.LittleEndian.AppendUint32(b, uint32(len(states)))
	for _, id := range slices.Sorted(maps.Keys(states)) {
		b = appendString(b, id)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(states[id])))
		b = append(b, states[id]...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// FuzzLoadFile loads arbitrary bytes (resealed like FuzzUnmarshalState) as
// the embedded mode's state file:
//   - LoadFile never panics, allocates at most a small multiple of the
//     file, and fails only with errCorrupt, leaving the states as they were;
//   - what loads saves (Save) to a file that loads the same states.
func FuzzLoadFile(f *testing.F) {
	st := mustMarshal(f, fuzzState(f))
	f.Add(memFile(map[string][]byte{"u1": st, "u2": mustMarshal(f, newState())}), false)
	f.Add(memFile(map[string][]byte{}), false)
	f.Add(memFile(map[string][]byte{"u1": st[:len(st)-1]}), false)
	// A valid header and CRC around a count of 2^21 entities and nothing else.
	f.Add(resealCRC([]byte("efms\x00\x00\x20\x00\x00\x00\x00\x00"), "efms", 0), false)
	dir := f.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "embedd-fuzz-"); err == nil {
			f.Cleanup(func() { os.RemoveAll(d) })
			dir = d
		}
	}
	path, saved := filepath.Join(dir, "state.bin"), filepath.Join(dir, "saved.bin")
	cfg := fuzzConfig()
	f.Fuzz(func(t *testing.T, data []byte, resealed bool) {
		if resealed {
			data = resealCRC(data, "efms", 0)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var m *Memory
		var err error
		fuzzcheck.CheckAllocs(t, 0, len(data), func() {
			m = NewMemory(cfg, 10)
			m.states["before"] = []byte{1}
			err = m.LoadFile(path)
		})
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v is not errCorrupt", err)
			}
			if len(m.states) != 1 || m.states["before"] == nil {
				t.Fatal("a failed LoadFile changed the states")
			}
			return
		}
		if err := m.Save(saved); err != nil {
			t.Fatal(err)
		}
		m2 := NewMemory(cfg, 10)
		if err := m2.LoadFile(saved); err != nil {
			t.Fatalf("a saved file does not load: %v", err)
		}
		if !maps.EqualFunc(m.states, m2.states, bytes.Equal) {
			t.Fatalf("states differ after Save and LoadFile: %d and %d entities", len(m.states), len(m2.states))
		}
	})
}
