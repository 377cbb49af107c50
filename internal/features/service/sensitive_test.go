package service

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/offline"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/window"
	"github.com/embedd/embedd/internal/seal"
)

// secret is the distinctive sensitive value the tests look for.
const secret = 4242.4242

const sensitiveRegistry = `features:
  - name: amount_max_1h
    version: 1
    entity: user
    type: float
    source: amount
    aggregation: max
    window: 1h
    description: Largest amount in the last hour.
    owner: test
    sensitive: true
  - name: events_count_1h
    version: 1
    entity: user
    type: int
    source: events
    aggregation: count
    window: 1h
    description: Events in the last hour.
    owner: test
`

// testKeys returns a keyring of ids with current the first; a key's bytes
// depend on its id only, so keyrings built here agree.
func testKeys(t testing.TB, ids ...string) *seal.Keyring {
	t.Helper()
	keys := map[string][]byte{}
	for _, id := range ids {
		keys[id] = bytes.Repeat([]byte(id[len(id)-1:]), seal.KeySize)
	}
	k, err := seal.New(ids[0], keys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// plaintexts are the forms of secret a leak would show: float64 bytes
// (either order) and decimal text.
func plaintexts() [][]byte {
	le := binary.LittleEndian.AppendUint64(nil, math.Float64bits(secret))
	be := binary.BigEndian.AppendUint64(nil, math.Float64bits(secret))
	return [][]byte{le, be, []byte("4242.4242")}
}

func assertNoPlaintext(t *testing.T, where string, data []byte) {
	t.Helper()
	if len(data) == 0 {
		t.Fatalf("%s: nothing to check", where)
	}
	for _, p := range plaintexts() {
		if bytes.Contains(data, p) {
			t.Errorf("%s holds the plaintext %q of %v", where, p, secret)
		}
	}
}

// sensitiveService builds a service on b with the sensitive registry, its
// store sealed with keys (nil: plaintext) and an offline store in dir.
func sensitiveService(t *testing.T, b backend, keys *seal.Keyring, dir string) (*Service, StateStore) {
	t.Helper()
	reg, err := registry.Load(registry.File{Name: "sensitive.yaml", Data: []byte(sensitiveRegistry)})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := WindowConfig(reg, window.DefaultConfig(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st, ss := b.open(t, cfg, &clock{t: t0})
	switch s := st.(type) {
	case *Redis:
		s.SetKeys(keys)
	case *Memory:
		s.SetKeys(keys)
	}
	off, err := offline.OpenOptions(dir, offline.Options{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Options{Registry: reg, States: st, Sessions: ss, Clock: &clock{t: t0.Add(time.Minute)}, Offline: off, CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	return svc, st
}

func getSecret(t *testing.T, svc *Service, entity string) (features.Value, error) {
	t.Helper()
	res, err := svc.Get(context.Background(), GetRequest{Entities: []string{entity}, Features: []string{"amount_max_1h"}, AsOf: t0.Add(time.Minute)})
	if err != nil {
		return features.Value{}, err
	}
	return res[0].Values[0], nil
}

// TestSensitiveAtRest: with a keyring, a sensitive value ingested through
// the service is found in plaintext neither in Redis (raw HGET), nor in the
// embedded mode's state file, nor in the Parquet snapshot (raw bytes and
// raw rows); reads return it. Without a keyring the same checks find it,
// so they can fail.
func TestSensitiveAtRest(t *testing.T) {
	for _, b := range []backend{memoryBackend(), redisBackend(), clusterBackend()} {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			keys := testKeys(t, "k1")
			svc, st := sensitiveService(t, b, keys, filepath.Join(dir, "offline"))
			entity := fmt.Sprintf("u-%d", time.Now().UnixNano())
			if errs, err := svc.Ingest(context.Background(), []features.Event{ev(entity, "purchase", t0, secret)}); err != nil || errs[0] != nil {
				t.Fatalf("ingest: %v %v", err, errs)
			}
			if v, err := getSecret(t, svc, entity); err != nil || v.Value != secret {
				t.Fatalf("read = %v, %v; want %v", v.Value, err, secret)
			}
			raw := rawState(t, st, entity, filepath.Join(dir, "features", "state.bin"))
			assertNoPlaintext(t, "stored state", raw)
			if id, err := seal.KeyID(raw); err != nil || id != "k1" {
				t.Errorf("stored state key id = %q, %v; want k1", id, err)
			}
			path, _, err := svc.Materialize(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(path)
			assertNoPlaintext(t, "snapshot", data)
			for _, r := range rawRows(t, path) {
				if r.Value == secret || r.Feature == "amount_max_1h" && (len(r.Sealed) == 0 || !r.Null) {
					t.Errorf("snapshot row %+v: want the sensitive value sealed", r)
				}
			}
			if v, ok := svc.opts.Offline.Get(entity, "amount_max_1h", 1); !ok || v.Value != secret {
				t.Errorf("offline read = %v, %v; want %v", v, ok, secret)
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
				t.Errorf("snapshot mode %04o; want 0600", fi.Mode().Perm())
			}
		})
	}
	t.Run("control", func(t *testing.T) {
		dir := t.TempDir()
		svc, st := sensitiveService(t, memoryBackend(), nil, dir)
		svc.Ingest(context.Background(), []features.Event{ev("u1", "purchase", t0, secret)})
		raw := rawState(t, st, "u1", filepath.Join(dir, "features", "state.bin"))
		if !bytes.Contains(raw, plaintexts()[0]) {
			t.Error("a plaintext state file lacks the value's bytes: the check above cannot fail")
		}
		path, _, err := svc.Materialize(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range rawRows(t, path) {
			found = found || r.Value == secret
		}
		if !found {
			t.Error("a plaintext snapshot's raw rows lack the value: the check above cannot fail")
		}
	})
}

// rawState returns entity's state as stored: Redis field d through a raw
// client, or the bytes of the Memory store's saved file.
func rawState(t *testing.T, st StateStore, entity, file string) []byte {
	t.Helper()
	switch s := st.(type) {
	case *Redis:
		d, err := s.c.HGet(context.Background(), s.Key(entity), "d").Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return d
	case *Memory:
		if err := s.Save(file); err != nil {
			t.Fatal(err)
		}
		for p, want := range map[string]os.FileMode{file: 0o600, filepath.Dir(file): 0o700} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v, %v; want %04o", p, fi.Mode().Perm(), err, want)
			}
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	t.Fatalf("store %T", st)
	return nil
}

// rawRows reads a snapshot's rows as stored, with any Parquet reader.
func rawRows(t *testing.T, path string) []offline.Row {
	t.Helper()
	rows, err := parquet.ReadFile[offline.Row](path)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestSealedStateErrors: a state sealed under a key the keyring lacks, or
// read with no keyring, fails naming the key id; an altered state and a
// state copied to another entity fail to authenticate.
func TestSealedStateErrors(t *testing.T) {
	for _, b := range []backend{memoryBackend(), redisBackend(), clusterBackend()} {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "features", "state.bin")
			svc, st := sensitiveService(t, b, testKeys(t, "k1"), dir)
			run := time.Now().UnixNano()
			a, c := fmt.Sprintf("a-%d", run), fmt.Sprintf("c-%d", run)
			svc.Ingest(context.Background(), []features.Event{ev(a, "purchase", t0, secret), ev(c, "purchase", t0, 1)})
			rawState(t, st, a, file)
			cases := []struct {
				name string
				keys *seal.Keyring
				edit func(d []byte) []byte
				want error
				text string
			}{
				{"missing key", testKeys(t, "k2"), nil, seal.ErrUnknownKey, `key "k1"`},
				{"no keyring", nil, nil, seal.ErrUnknownKey, `key "k1"`},
				{"tampered", testKeys(t, "k1"), func(d []byte) []byte { d[len(d)-30] ^= 1; return d }, seal.ErrOpen, `key "k1"`},
			}
			for _, tc := range cases {
				err := readBack(t, b, st, tc.keys, a, c, file, tc.edit)
				if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.text) {
					t.Errorf("%s: got %v; want %v naming %s", tc.name, err, tc.want, tc.text)
				}
			}
			if r, ok := st.(*Redis); ok { // entity c's state copied into a's hash
				d, _ := r.c.HGet(context.Background(), r.Key(c), "d").Result()
				r.c.HSet(context.Background(), r.Key(a), "d", d)
				if _, err := r.Load(context.Background(), []string{a}); !errors.Is(err, seal.ErrOpen) {
					t.Errorf("swapped state: got %v; want seal.ErrOpen", err)
				}
			}
		})
	}
}

// readBack reads entity a's state with keys, after edit (if any) changed
// its stored bytes.
func readBack(t *testing.T, b backend, st StateStore, keys *seal.Keyring, a, c, file string, edit func([]byte) []byte) error {
	switch s := st.(type) {
	case *Redis:
		ctx := context.Background()
		if edit != nil {
			d, _ := s.c.HGet(ctx, s.Key(a), "d").Bytes()
			orig := bytes.Clone(d)
			s.c.HSet(ctx, s.Key(a), "d", edit(d))
			defer s.c.HSet(ctx, s.Key(a), "d", orig)
		}
		r := NewRedis(s.c, s.cfg, s.prefix, s.ttl)
		r.SetKeys(keys)
		_, err := r.Load(ctx, []string{a})
		return err
	case *Memory:
		data, _ := os.ReadFile(file)
		if edit != nil {
			os.WriteFile(file, edit(bytes.Clone(data)), 0o600)
			defer os.WriteFile(file, data, 0o600)
		}
		m := NewMemory(s.cfg, 100)
		m.SetKeys(keys)
		return m.LoadFile(file)
	}
	return nil
}

// TestResealRotation: after the keyring's current key becomes k2 (k1 still
// listed), Reseal rewrites every Redis state under k2, keeping its TTL;
// then a keyring of k2 alone reads them, and the snapshots resealed too.
func TestResealRotation(t *testing.T) {
	dir := t.TempDir()
	svc, st := sensitiveService(t, redisBackend(), testKeys(t, "k1"), dir)
	r := st.(*Redis)
	ctx := context.Background()
	var entities []string
	var evs []features.Event
	for i := range 600 { // more than one Reseal batch
		entities = append(entities, fmt.Sprintf("r%d", i))
		evs = append(evs, ev(entities[i], "purchase", t0, secret+float64(i)))
	}
	if _, err := svc.Ingest(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Materialize(ctx); err != nil {
		t.Fatal(err)
	}
	rot := NewRedis(r.c, r.cfg, r.prefix, r.ttl)
	rot.SetKeys(testKeys(t, "k2", "k1"))
	n, err := rot.Reseal(ctx)
	if err != nil || n != len(entities) {
		t.Fatalf("Reseal = %d, %v; want %d", n, err, len(entities))
	}
	if n, err := rot.Reseal(ctx); err != nil || n != 0 {
		t.Errorf("second Reseal = %d, %v; want 0 (all current)", n, err)
	}
	d, _ := r.c.HGet(ctx, r.Key("r7"), "d").Bytes()
	if id, _ := seal.KeyID(d); id != "k2" {
		t.Errorf("resealed key id %q; want k2", id)
	}
	if ttl := r.c.PTTL(ctx, r.Key("r7")).Val(); ttl <= 0 || ttl > r.ttl {
		t.Errorf("TTL after Reseal %v; want kept (0 < ttl <= %v)", ttl, r.ttl)
	}
	only2 := NewRedis(r.c, r.cfg, r.prefix, r.ttl)
	only2.SetKeys(testKeys(t, "k2"))
	states, err := only2.Load(ctx, entities)
	if err != nil {
		t.Fatal(err)
	}
	if pts := states[7].Series["amount"].Points(nil); len(pts) != 1 || pts[0].V != secret+7 {
		t.Errorf("r7 amount points after rotation = %v; want one of %v", pts, secret+7)
	}
	off, err := offline.OpenOptions(dir, offline.Options{Keys: testKeys(t, "k2", "k1")})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := off.Reseal(func(f string) bool { return f == "amount_max_1h" }); err != nil || n != 1 {
		t.Fatalf("offline Reseal = %d, %v; want 1", n, err)
	}
	off2, err := offline.OpenOptions(dir, offline.Options{Keys: testKeys(t, "k2")})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := off2.Get("r7", "amount_max_1h", 1); !ok || v.Value != secret+7 {
		t.Errorf("offline after rotation = %v, %v; want %v", v, ok, secret+7)
	}
}
