package engine

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/models"
)

// TestCacheNeverServesOtherVersion: engines sharing one cache, one loading
// a model at version v1 and one the same model (same name, same files) at
// version v2: v2 never gets v1's entries, and a second v1 engine does (so
// the cache is shared and the version alone keeps them apart).
func TestCacheNeverServesOtherVersion(t *testing.T) {
	const name = "all-minilm-l6-v2"
	testassets.Runtime(t)
	testassets.Model(t, name)
	raw, err := fs.ReadFile(models.FS, name+"/manifest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v1 := testassets.Catalog(t)
	man, err := v1.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	bumped := strings.Replace(string(raw), "version: "+man.Version, "version: "+man.Version+"-next", 1)
	v2, err := manifest.LoadFS(fstest.MapFS{name + "/manifest.yaml": {Data: []byte(bumped)}})
	if err != nil {
		t.Fatal(err)
	}
	shared := newCache(64 << 20)
	engineOf := func(cat *manifest.Catalog) *Engine {
		opts := DefaultOptions()
		opts.CacheDir = testassets.CacheDir()
		opts.Accel.IntraOpThreads = 2
		e := New(cat, opts)
		e.cache = shared
		t.Cleanup(func() { e.Close() })
		return e
	}
	ctx := context.Background()
	texts := []string{"a text embedded by two versions"}
	embed := func(e *Engine) *Result {
		t.Helper()
		res, err := e.Embed(ctx, name, texts, EmbedOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	misses := func() uint64 {
		for _, s := range shared.Stats() {
			if s.Model == name {
				return s.Misses
			}
		}
		return 0
	}

	first := embed(engineOf(v1))
	next := embed(engineOf(v2))
	if next.Version != man.Version+"-next" {
		t.Errorf("v2 engine: version %q; want %q", next.Version, man.Version+"-next")
	}
	if got := misses(); got != 2 {
		t.Errorf("after v1 then v2: %d misses; want 2 (v2 computed, not served v1's entry)", got)
	}
	again := embed(engineOf(v1))
	if got := misses(); got != 2 {
		t.Errorf("a second v1 engine: %d misses; want still 2 (served from the shared cache)", got)
	}
	if again.Version != first.Version {
		t.Errorf("second v1 engine: version %q; want %q", again.Version, first.Version)
	}
}

// TestCacheVersion: the key's version changes with the manifest version, any
// file's digest, any setting, and the backend.
func TestCacheVersion(t *testing.T) {
	base, err := testassets.Catalog(t).Get("all-minilm-l6-v2")
	if err != nil {
		t.Fatal(err)
	}
	want := cacheVersion(base, "onnxruntime/cpu")
	if again := cacheVersion(base, "onnxruntime/cpu"); again != want {
		t.Fatalf("not deterministic: %q then %q", want, again)
	}
	for _, tc := range []struct {
		name    string
		backend string
		mod     func(m *manifest.Model)
	}{
		{"version", "onnxruntime/cpu", func(m *manifest.Model) { m.Version += "x" }},
		{"file digest", "onnxruntime/cpu", func(m *manifest.Model) {
			m.Files = append([]manifest.File(nil), m.Files...)
			m.Files[0].SHA256 = strings.Repeat("0", 64)
		}},
		{"pooling", "onnxruntime/cpu", func(m *manifest.Model) { m.Pooling = "cls" }},
		{"max_seq_len", "onnxruntime/cpu", func(m *manifest.Model) { m.MaxSeqLen-- }},
		{"backend", "onnxruntime/cuda:0", func(*manifest.Model) {}},
	} {
		m := *base
		tc.mod(&m)
		if got := cacheVersion(&m, tc.backend); got == want {
			t.Errorf("%s changed: key version still %q", tc.name, got)
		}
	}
}
