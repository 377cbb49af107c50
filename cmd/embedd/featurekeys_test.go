package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/seal"
	"github.com/embedd/embedd/internal/store/redis"
)

// secretValue is the distinctive sensitive value the tests look for.
const secretValue = 4242.4242

const sensitiveYAML = `features:
  - name: income_max_1h
    version: 1
    entity: user
    type: float
    source: income
    aggregation: max
    window: 1h
    description: Largest declared income in the last hour.
    owner: test
    sensitive: true
`

// writeKeyFile writes a keyring file of ids (current first), 0600; a key's
// bytes depend on its id only.
func writeKeyFile(t *testing.T, path string, ids ...string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "current: %s\nkeys:\n", ids[0])
	for _, id := range ids {
		fmt.Fprintf(&b, "  %s: %s\n", id, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte(id[len(id)-1:]), seal.KeySize)))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// featureFlags parses args into the store and feature settings of serve.
func featureFlags(t *testing.T, args ...string) (*storeConfig, *featureConfig) {
	t.Helper()
	var st storeConfig
	var fc featureConfig
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	st.register(fs)
	fc.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &st, &fc
}

func noPlaintext(t *testing.T, where string, data []byte) {
	t.Helper()
	if len(data) == 0 {
		t.Errorf("%s: empty; nothing checked", where)
	}
	le := binary.LittleEndian.AppendUint64(nil, math.Float64bits(secretValue))
	be := binary.BigEndian.AppendUint64(nil, math.Float64bits(secretValue))
	for _, p := range [][]byte{le, be, []byte("4242.4242")} {
		if bytes.Contains(data, p) {
			t.Errorf("%s holds the plaintext %q of %v", where, p, secretValue)
		}
	}
}

func keyIDOf(t *testing.T, where string, data []byte) string {
	t.Helper()
	id, err := seal.KeyID(data)
	if err != nil {
		t.Errorf("%s is not sealed: %v", where, err)
	}
	return id
}

// TestFeatureEncryptionPolicy: a registry with sensitive features is
// refused without a keyring unless --allow-plaintext-sensitive; the key
// file must be 0600; the keyring may come from $EMBEDD_FEATURE_KEYS_DATA.
func TestFeatureEncryptionPolicy(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f.yaml"), []byte(sensitiveYAML), 0o600)
	reg, err := loadRegistry(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	_, fc := featureFlags(t)
	if _, err := fc.encryptionPolicy(reg, logger); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "income_max_1h@1") || !strings.Contains(err.Error(), "--feature-keys") {
		t.Errorf("no keyring: got %v; want a usage error naming the feature and --feature-keys", err)
	}
	_, fc = featureFlags(t, "--allow-plaintext-sensitive")
	if k, err := fc.encryptionPolicy(reg, logger); k != nil || err != nil {
		t.Errorf("--allow-plaintext-sensitive: got %v, %v; want no keyring, no error", k, err)
	}
	file := filepath.Join(dir, "keys.yaml")
	writeKeyFile(t, file, "k1")
	os.Chmod(file, 0o644)
	_, fc = featureFlags(t, "--feature-keys", file)
	if _, err := fc.encryptionPolicy(reg, logger); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("0644 key file: got %v; want refused", err)
	}
	os.Chmod(file, 0o600)
	if k, err := fc.encryptionPolicy(reg, logger); err != nil || k.Current() != "k1" {
		t.Errorf("key file: got %v, %v; want keyring k1", k, err)
	}
	data, _ := os.ReadFile(file)
	t.Setenv(featureKeysEnv, string(data))
	if _, err := fc.loadKeys(); !errors.Is(err, errUsage) {
		t.Errorf("file and env: got %v; want a usage error", err)
	}
	_, fc = featureFlags(t)
	if k, err := fc.loadKeys(); err != nil || k == nil || k.Current() != "k1" {
		t.Errorf("env: got %v, %v; want keyring k1", k, err)
	}
}

// TestFeaturesEncryptedAtRest opens the features stack as serve does, with a
// keyring, ingests a sensitive value, serves it, writes a snapshot and
// closes (state file, drift file); then reads Redis and every file raw and
// finds no plaintext. `keys rotate-features` then reseals all of it under
// the new current key, and a keyring without the old key reads it back.
func TestFeaturesEncryptedAtRest(t *testing.T) {
	addr := os.Getenv("EMBEDD_REDIS_ADDR")
	if addr == "" && os.Getenv("EMBEDD_REQUIRE_STORES") == "1" {
		t.Fatal("EMBEDD_REDIS_ADDR is unset and EMBEDD_REQUIRE_STORES=1")
	}
	modes := []string{"embedded"}
	if addr != "" {
		modes = append(modes, "redis")
	} else {
		t.Log("EMBEDD_REDIS_ADDR is unset: the Redis mode is not tested")
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			// rotate-features reads EMBEDD_<FLAG> variables, as every command.
			t.Setenv("EMBEDD_REDIS_ADDR", "")
			testEncryptedAtRest(t, mode, addr)
		})
	}
}

func testEncryptedAtRest(t *testing.T, mode, addr string) {
	dir := t.TempDir()
	regDir, data := filepath.Join(dir, "registry"), filepath.Join(dir, "data")
	os.MkdirAll(regDir, 0o700)
	os.WriteFile(filepath.Join(regDir, "f.yaml"), []byte(sensitiveYAML), 0o600)
	keyFile := filepath.Join(dir, "keys.yaml")
	writeKeyFile(t, keyFile, "k1")
	prefix := fmt.Sprintf("embedd-test:enc%d:", time.Now().UnixNano())
	args := []string{"--data-dir", data, "--features-dir", regDir, "--feature-keys", keyFile,
		"--drift-reference", filepath.Join(data, "drift.json"), "--drift-reference-size", "1", "--redis-feature-prefix", prefix}
	if mode == "redis" {
		args = append(args, "--redis-addr", addr, "--redis-session-prefix", prefix+"sess:")
		rc := redis.NewClient(redis.Options{Addr: addr})
		t.Cleanup(func() {
			keys, _ := rc.Keys(context.Background(), prefix+"*").Result()
			if len(keys) > 0 {
				rc.Del(context.Background(), keys...)
			}
			rc.Close()
		})
	}
	snapshot := ingestAndClose(t, args)
	raws := rawFeatureData(t, mode, addr, prefix, data, snapshot)
	for where, b := range raws {
		noPlaintext(t, where, b)
		if where != "snapshot" && keyIDOf(t, where, b) != "k1" {
			t.Errorf("%s sealed under %q; want k1", where, keyIDOf(t, where, b))
		}
	}
	for _, p := range []string{filepath.Join(data, "drift.json"), snapshot, filepath.Join(data, "features", "state.bin")} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o; want 0600", p, fi.Mode().Perm())
		}
	}
	// Rotation: k2 current, k1 still listed; then k1 dropped.
	writeKeyFile(t, keyFile, "k2", "k1")
	var out bytes.Buffer
	rotArgs := withoutFlags(args, "--drift-reference-size", "--redis-session-prefix")
	if err := cmdKeysAll(context.Background(), append([]string{"rotate-features"}, rotArgs...), &out); err != nil {
		t.Fatalf("rotate-features: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "entity states resealed with key k2: 1") || !strings.Contains(out.String(), "offline snapshots resealed: 1") {
		t.Errorf("rotate-features said:\n%s", out.String())
	}
	for where, b := range rawFeatureData(t, mode, addr, prefix, data, snapshot) {
		noPlaintext(t, where, b)
		if where != "snapshot" && keyIDOf(t, where, b) != "k2" {
			t.Errorf("after rotation %s is sealed under %q; want k2", where, keyIDOf(t, where, b))
		}
	}
	writeKeyFile(t, keyFile, "k2")
	st, fc := featureFlags(t, args...)
	keys, err := fc.loadKeys()
	if err != nil {
		t.Fatal(err)
	}
	// The drift file does hold the value (so the check above can fail).
	if drift, err := readDriftFile(filepath.Join(data, "drift.json"), keys); err != nil || !bytes.Contains(drift, []byte("4242.4242")) {
		t.Errorf("opened drift file %q, %v; want the sample value in it", drift, err)
	}
	o, err := fc.open(context.Background(), st, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open with k2 only: %v", err)
	}
	defer o.close()
	if v := getIncome(t, o.svc); v.Value != secretValue {
		t.Errorf("after rotation read %v; want %v", v.Value, secretValue)
	}
}

// ingestAndClose opens the features stack with args, ingests and serves
// the secret, writes a snapshot and closes; it returns the snapshot's path.
func ingestAndClose(t *testing.T, args []string) string {
	t.Helper()
	st, fc := featureFlags(t, args...)
	ctx := context.Background()
	o, err := fc.open(ctx, st, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	ev := features.Event{EntityID: "u1", Type: "purchase", Timestamp: time.Now().Add(-time.Second), Values: map[string]float64{"income": secretValue}}
	if errs, err := o.svc.Ingest(ctx, []features.Event{ev}); err != nil || errs[0] != nil {
		t.Fatalf("ingest: %v %v", err, errs)
	}
	if v := getIncome(t, o.svc); v.Value != secretValue {
		t.Fatalf("read %v; want %v", v.Value, secretValue)
	}
	path, _, err := o.svc.Materialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func getIncome(t *testing.T, svc *service.Service) features.Value {
	t.Helper()
	res, err := svc.Get(context.Background(), service.GetRequest{Entities: []string{"u1"}, Features: []string{"income_max_1h"}})
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Values[0]
}

// rawFeatureData reads, as stored, the entity state (Redis field d through
// a raw client, or the state file), the snapshot and the drift file.
func rawFeatureData(t *testing.T, mode, addr, prefix, data, snapshot string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	read := func(name, path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	if mode == "redis" {
		rc := redis.NewClient(redis.Options{Addr: addr})
		defer rc.Close()
		d, err := rc.HGet(context.Background(), prefix+"{u1}", "d").Bytes()
		if err != nil {
			t.Fatal(err)
		}
		out["redis state"] = d
	} else {
		read("state file", filepath.Join(data, "features", "state.bin"))
	}
	read("snapshot", snapshot)
	read("drift file", filepath.Join(data, "drift.json"))
	return out
}

// withoutFlags returns args less the named flags and their values.
func withoutFlags(args []string, names ...string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		drop := false
		for _, n := range names {
			drop = drop || args[i] == n
		}
		if drop {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}
