package embedded

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/storetest"
)

func openT(t *testing.T, dir string, mod func(*Options)) *Store {
	t.Helper()
	o := DefaultOptions(dir)
	o.NoSync = true
	if mod != nil {
		mod(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestVectorsConformance(t *testing.T) {
	storetest.TestVectors(t, func(t *testing.T) store.Vectors { return openT(t, t.TempDir(), nil) })
}

// TestVectorsConformanceHNSW runs the suite with every collection on the
// graph, so HNSW search keeps the same contract as the exact scan.
func TestVectorsConformanceHNSW(t *testing.T) {
	storetest.TestVectors(t, func(t *testing.T) store.Vectors {
		return openT(t, t.TempDir(), func(o *Options) { o.ExactThreshold = -1; o.EfSearch = 200 })
	})
}

// TestVersionsConformance runs the versions suite; a restart is Close and
// Open on the same directory.
func TestVersionsConformance(t *testing.T) {
	storetest.TestVersions(t,
		func(t *testing.T) storetest.Versioned { return openT(t, t.TempDir(), nil) },
		func(t *testing.T, s storetest.Versioned) storetest.Versioned {
			old := s.(*Store)
			if err := old.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openT(t, old.opts.Dir, nil)
		})
}

func TestOnlineConformance(t *testing.T) {
	storetest.TestOnline(t, func(t *testing.T) store.Online { return openT(t, t.TempDir(), nil) })
}

func vec(r *rand.Rand, d int) []float32 {
	v := make([]float32, d)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func TestRestart(t *testing.T) {
	for _, compact := range []bool{false, true} {
		t.Run(fmt.Sprintf("compact=%v", compact), func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			r := rand.New(rand.NewPCG(1, 2))
			s := openT(t, dir, func(o *Options) { o.ExactThreshold = 50; o.NoSync = false })
			if err := s.EnsureCollection(ctx, "c", 16); err != nil {
				t.Fatal(err)
			}
			var recs []store.Record
			for i := range 100 {
				recs = append(recs, store.Record{ID: fmt.Sprintf("r%03d", i), Vector: vec(r, 16), Metadata: []byte(`{"i":1}`), ModelVersion: "m", UpdatedAt: time.Unix(0, int64(i)*1e6+7)})
			}
			if err := s.Upsert(ctx, "c", recs); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, "c", []string{"r005"}); err != nil {
				t.Fatal(err)
			}
			ents := []store.Entity{{ID: "e1", Embedding: []int8{-1, 2}, Scale: 0.5, ModelVersion: "m", UpdatedAt: time.UnixMilli(5), Features: map[string]float64{"a": 1}}}
			if err := s.SetEntities(ctx, ents, 0); err != nil {
				t.Fatal(err)
			}
			if err := s.SetEntities(ctx, []store.Entity{{ID: "gone", Scale: 1}}, time.Millisecond); err != nil {
				t.Fatal(err)
			}
			before, err := s.Search(ctx, store.SearchRequest{Collection: "c", Vector: recs[9].Vector, TopK: 5})
			if err != nil {
				t.Fatal(err)
			}
			if compact {
				time.Sleep(5 * time.Millisecond)
				if err := s.Compact(ctx); err != nil {
					t.Fatalf("Compact: %v", err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s2 := openT(t, dir, func(o *Options) { o.ExactThreshold = 50 })
			got, err := s2.Get(ctx, "c", []string{"r004", "r005", "r099"})
			if err != nil || len(got) != 2 || got[0].ID != "r004" || got[1].ID != "r099" {
				t.Fatalf("Get after reopen: got %d records, %v; want r004 r099", len(got), err)
			}
			if !got[1].UpdatedAt.Equal(recs[99].UpdatedAt) || got[1].Vector[3] != recs[99].Vector[3] {
				t.Errorf("r099 after reopen: got %v %v; want %v %v", got[1].UpdatedAt, got[1].Vector[3], recs[99].UpdatedAt, recs[99].Vector[3])
			}
			after, err := s2.Search(ctx, store.SearchRequest{Collection: "c", Vector: recs[9].Vector, TopK: 5})
			if err != nil {
				t.Fatal(err)
			}
			if len(after) != len(before) || after[0].ID != "r009" {
				t.Errorf("search after reopen: got %v; want %v", after, before)
			}
			es, err := s2.GetEntities(ctx, []string{"e1", "gone"})
			if err != nil || es[0] == nil || es[0].Features["a"] != 1 || es[1] != nil {
				t.Errorf("entities after reopen: got %v, %v", es, err)
			}
			if err := s2.EnsureCollection(ctx, "c", 17); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("dims after reopen: got %v; want ErrInvalid", err)
			}
		})
	}
}

// TestTornTail cuts the log at every byte of its last entry and checks that
// reopening keeps every earlier batch and drops the torn one whole.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := openT(t, dir, nil)
	if err := s.EnsureCollection(ctx, "c", 4); err != nil {
		t.Fatal(err)
	}
	one := []store.Record{{ID: "a", Vector: []float32{1, 0, 0, 0}}}
	two := []store.Record{{ID: "b", Vector: []float32{0, 1, 0, 0}}, {ID: "c", Vector: []float32{0, 0, 1, 0}}}
	if err := s.Upsert(ctx, "c", one); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, logName)
	st, _ := os.Stat(path)
	good := st.Size()
	if err := s.Upsert(ctx, "c", two); err != nil {
		t.Fatal(err)
	}
	s.Close()
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for cut := good; cut < int64(len(full)); cut++ {
		torn := filepath.Join(t.TempDir(), logName)
		data := append([]byte(nil), full[:cut]...)
		if cut == int64(len(full))-1 {
			data = append(data[:cut-1], data[cut-1]^0xff) // flipped byte: CRC catches it
		}
		if err := os.WriteFile(torn, data, 0o644); err != nil {
			t.Fatal(err)
		}
		s2 := openT(t, filepath.Dir(torn), nil)
		got, err := s2.Get(ctx, "c", []string{"a", "b", "c"})
		if err != nil || len(got) != 1 || got[0].ID != "a" {
			t.Fatalf("cut at %d: got %d records, %v; want only a", cut, len(got), err)
		}
		// The store stays writable after truncating the tail.
		if err := s2.Upsert(ctx, "c", two); err != nil {
			t.Fatalf("cut at %d: upsert after repair: %v", cut, err)
		}
		s2.Close()
		s3 := openT(t, filepath.Dir(torn), nil)
		if got, _ := s3.Get(ctx, "c", []string{"a", "b", "c"}); len(got) != 3 {
			t.Fatalf("cut at %d: after repair and reopen got %d records; want 3", cut, len(got))
		}
		s3.Close()
	}
}

func TestFilter(t *testing.T) {
	meta := map[string]any{"k": "v", "n": 5.0, "b": true, "o": map[string]any{"x": "y"}}
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{`metadata["k"] == "v"`, true},
		{`metadata['k'] == 'v'`, true},
		{`metadata["k"] != "v"`, false},
		{`metadata["n"] > 3`, true},
		{`metadata["n"] >= 5 and metadata["n"] <= 5`, true},
		{`metadata["n"] < 3 or metadata["k"] == "v"`, true},
		{`metadata["n"] < 3 || metadata["k"] == "w"`, false},
		{`metadata["k"] in ["a", "v"]`, true},
		{`metadata["n"] in [1, 2]`, false},
		{`metadata["n"] not in [1, 2]`, true},
		{`not (metadata["b"] == true)`, false},
		{`metadata["o"]["x"] == "y"`, true},
		{`metadata["missing"] == 1`, false},
		{`metadata["k"] > 3`, false},
		{`(metadata["n"] == 5 && metadata["b"] == true) and !(metadata["k"] == "z")`, true},
	} {
		f, err := compileFilter(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if got := f(meta); got != tc.want {
			t.Errorf("%s: got %v; want %v", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`id > 3`, `metadata["n"] + 1 > 3`, `json_contains(metadata["t"], 1)`, `metadata["k"] like "v%"`, `metadata["k"] ==`, `metadata["k" == 1`, `metadata["k"] == "v" and`, `metadata == 1`} {
		_, err := compileFilter(bad)
		if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("%s: got %v; want ErrInvalid naming the expression", bad, err)
		}
	}
}

func FuzzFilter(f *testing.F) {
	for _, s := range []string{`metadata["k"] == "v"`, `metadata["n"] in [1, 2] or not metadata["b"] == true`, `(metadata["a"]["b"] >= -1.5e3)`} {
		f.Add(s)
	}
	meta := map[string]any{"k": "v", "n": 1.0}
	f.Fuzz(func(t *testing.T, expr string) {
		fl, err := compileFilter(expr)
		if err != nil {
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("%q: error %v is not ErrInvalid", expr, err)
			}
			return
		}
		fl(meta)
	})
}

// TestFileModes: the store's directory is 0700 and every file in it 0600
// (it holds user data), also after compaction and for a directory and log
// left 0755/0644 by an older version.
func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, logName), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir, func(o *Options) { o.NoSync = false })
	ctx := context.Background()
	if err := s.EnsureCollection(ctx, "c", 4); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, "c", []store.Record{{ID: "a", Vector: []float32{1, 0, 0, 0}, ModelVersion: "m"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %v; want 0700", dir, st.Mode().Perm())
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		if info, err := f.Info(); err == nil && info.Mode().IsRegular() && info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v; want 0600", f.Name(), info.Mode().Perm())
		}
	}
	if len(files) == 0 {
		t.Error("no files written")
	}
}
