package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/jobs"
	"github.com/embedd/embedd/internal/reembed"
	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/embedded"
	"github.com/embedd/embedd/internal/testassets"
)

// The manager's tests run real jobs: the real engine, the embedded store
// and the index over it, as `embedd serve` does.

const (
	liveModel = "all-minilm-l6-v2-int8" // the collections' model
	newModel  = "all-minilm-l6-v2-q8"   // the jobs re-embed with it
)

var (
	engOnce sync.Once
	eng     *engine.Engine
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// theEngine is one real engine shared by the tests of this package.
func theEngine(t *testing.T) *engine.Engine {
	t.Helper()
	testassets.Runtime(t)
	testassets.Model(t, liveModel)
	testassets.Model(t, newModel)
	engOnce.Do(func() {
		o := engine.DefaultOptions()
		o.CacheDir = testassets.CacheDir()
		o.Logger = quiet()
		o.Accel.IntraOpThreads = 2
		eng = engine.New(testassets.Catalog(t), o)
	})
	return eng
}

// env is a server's data directory and source root; open starts a
// "server" on it: the embedded store, the index and a Manager.
type env struct {
	t          *testing.T
	data, root string
}

func newEnv(t *testing.T) *env {
	theEngine(t)
	return &env{t: t, data: t.TempDir(), root: t.TempDir()}
}

// server is one run of a server: close it to "stop" it.
type server struct {
	m      *jobs.Manager
	idx    *index.Index
	st     *embedded.Store
	closed sync.Once
}

func (s *server) close() {
	s.closed.Do(func() {
		s.m.Close()
		s.st.Close()
	})
}

func (e *env) open(mutate func(*jobs.Options)) *server {
	t := e.t
	t.Helper()
	st, err := embedded.Open(embedded.DefaultOptions(filepath.Join(e.data, "store")))
	if err != nil {
		t.Fatal(err)
	}
	var colls []index.CollectionConfig
	for _, c := range []string{"docs", "other", "third"} {
		colls = append(colls, index.CollectionConfig{Name: c, Model: liveModel})
	}
	x, err := index.New(context.Background(), eng, index.Options{Collections: colls, Vectors: st, Online: st, VectorsName: "embedded", OnlineName: "embedded", Logger: quiet()})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	o := jobs.Options{
		Dir: filepath.Join(e.data, "jobs"), StateDir: filepath.Join(e.data, "reembed"), SourceRoot: e.root,
		Target: reembed.FromIndex(x), Models: eng, DefaultCollection: "docs", DefaultModel: newModel,
		SaveEvery: 50 * time.Millisecond, Logger: quiet(),
	}
	if mutate != nil {
		mutate(&o)
	}
	m, err := jobs.New(o)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	s := &server{m: m, idx: x, st: st}
	t.Cleanup(s.close)
	return s
}

// corpus writes n records as JSONL under the root (and, with bad, one
// record without text) and returns its name relative to the root.
func (e *env) corpus(name string, n int, bad bool) string {
	e.t.Helper()
	var b strings.Builder
	for i := range n {
		line, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("%s-%04d", name, i), "text": fmt.Sprintf("record %d of %s is about topic %d", i, name, i%7)})
		b.Write(append(line, '\n'))
	}
	if bad {
		b.WriteString(`{"id":"no-text"}` + "\n")
	}
	if err := os.WriteFile(filepath.Join(e.root, name+".jsonl"), []byte(b.String()), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return name + ".jsonl"
}

// waitFor polls job id until ok or the timeout, and returns the last record.
func waitFor(t *testing.T, m *jobs.Manager, id string, timeout time.Duration, ok func(jobs.Job) bool) jobs.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := m.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %+v after %v", id, j, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func finished(j jobs.Job) bool { return !j.State.Active() }

// live returns collection's live version.
func live(t *testing.T, x *index.Index, collection string) store.VersionInfo {
	t.Helper()
	vs, err := x.Versions(context.Background(), collection)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(vs, func(v store.VersionInfo) bool { return v.Live })
	if i < 0 {
		t.Fatalf("%s: no live version in %+v", collection, vs)
	}
	return vs[i]
}

// countIDs counts the records of a version, each id once (fails on a
// duplicate).
func countIDs(t *testing.T, x *index.Index, collection, version string) int {
	t.Helper()
	seen := map[string]bool{}
	err := x.ScanVersion(context.Background(), collection, version, func(r store.Record) error {
		if seen[r.ID] {
			return fmt.Errorf("id %s twice", r.ID)
		}
		seen[r.ID] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(seen)
}

// TestJobRunsAndPersists: a job with one bad record ends PARTIAL, writes
// every good record into a new version bound to its model and swaps the
// alias; its record (0600 in a 0700 directory) and its dead-letter file
// survive a restart of the manager, and List finds it.
func TestJobRunsAndPersists(t *testing.T) {
	e := newEnv(t)
	s := e.open(nil)
	src := e.corpus("docs", 40, true)
	before := live(t, s.idx, "docs")
	j, err := s.m.Start(context.Background(), jobs.Spec{Sources: []string{src}, Truncate: true, MetadataFields: []string{"text"}})
	if err != nil {
		t.Fatal(err)
	}
	if j.State != jobs.Queued && j.State != jobs.Running || j.Spec.Collection != "docs" || j.Spec.Model != newModel {
		t.Fatalf("started: %+v; want QUEUED or RUNNING on docs with %s", j, newModel)
	}
	j = waitFor(t, s.m, j.ID, 2*time.Minute, finished)
	c := j.Counters
	if j.State != jobs.Partial || c.Read != 41 || c.Embedded != 40 || c.Failed != 1 || !j.Swapped || j.Runs != 1 || j.FinishedAt.IsZero() {
		t.Fatalf("job %+v; want PARTIAL, read 41, embedded 40, failed 1, swapped, 1 run", j)
	}
	now := live(t, s.idx, "docs")
	if now.Version == before.Version || now.Version != j.Target || now.ModelVersion != testassets.Model(t, newModel).Version {
		t.Errorf("live version %+v (before %+v); want the job's %s bound to %s", now, before, j.Target, newModel)
	}
	if n := countIDs(t, s.idx, "docs", j.Target); n != 40 {
		t.Errorf("version %s holds %d ids; want 40", j.Target, n)
	}
	dl, err := os.ReadFile(j.DeadLetter)
	if err != nil || strings.Count(string(dl), "\n") != 1 || !strings.Contains(string(dl), "no-text") {
		t.Errorf("dead letters %q, %v; want the one record without text", dl, err)
	}
	for path, want := range map[string]os.FileMode{filepath.Join(e.data, "jobs"): 0o700, filepath.Join(e.data, "jobs", j.ID+".json"): 0o600, j.DeadLetter: 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %v", path, st.Mode().Perm(), err, want)
		}
	}
	s.close()

	s = e.open(nil)
	got, err := s.m.Get(j.ID)
	if err != nil || got.State != jobs.Partial || got.Counters != c || got.Target != j.Target || got.Runs != 1 {
		t.Fatalf("after a restart: %+v, %v; want the record as it was: %+v", got, err, j)
	}
	list, next, err := s.m.List(jobs.Filter{Collection: "docs"})
	if err != nil || len(list) != 1 || list[0].ID != j.ID || next != "" {
		t.Errorf("list: %v %q %v; want the one job", list, next, err)
	}
	if list, _, _ := s.m.List(jobs.Filter{States: []jobs.State{jobs.Succeeded}}); len(list) != 0 {
		t.Errorf("list SUCCEEDED: %v; want none", list)
	}
}

// TestSourceRoot: files are read under the source root only; a source
// outside it (absolute, "..", or a symbolic link leading out) is refused
// naming the path and the root, and without a root every file source is.
func TestSourceRoot(t *testing.T) {
	e := newEnv(t)
	src := e.corpus("docs", 3, false)
	outside := filepath.Join(t.TempDir(), "secret.jsonl")
	os.WriteFile(outside, []byte(`{"id":"s","text":"secret"}`+"\n"), 0o600)
	if err := os.Symlink(outside, filepath.Join(e.root, "link.jsonl")); err != nil {
		t.Fatal(err)
	}
	s := e.open(nil)
	ctx := context.Background()
	for _, tc := range []struct {
		source string
		want   error
		says   []string
	}{
		{outside, jobs.ErrOutsideRoot, []string{outside, e.root}},
		{"../" + filepath.Base(filepath.Dir(outside)) + "/secret.jsonl", jobs.ErrOutsideRoot, []string{"secret.jsonl", e.root}},
		{"link.jsonl", jobs.ErrOutsideRoot, []string{"link.jsonl", outside, e.root}},
		{"*.jsonl", jobs.ErrOutsideRoot, []string{"link.jsonl"}}, // the glob matches the link too
		{"missing-*.jsonl", reembed.ErrSource, []string{"matches no file"}},
	} {
		_, err := s.m.Start(ctx, jobs.Spec{Sources: []string{tc.source}})
		if !errors.Is(err, tc.want) {
			t.Errorf("source %q: %v; want %v", tc.source, err, tc.want)
			continue
		}
		for _, w := range tc.says {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("source %q: %q does not name %q", tc.source, err, w)
			}
		}
	}
	if list, _, _ := s.m.List(jobs.Filter{}); len(list) != 0 {
		t.Errorf("refused jobs were recorded: %v", list)
	}
	s.close()

	s = e.open(func(o *jobs.Options) { o.SourceRoot = "" })
	_, err := s.m.Start(ctx, jobs.Spec{Sources: []string{src}})
	if !errors.Is(err, jobs.ErrNoSourceRoot) || !strings.Contains(err.Error(), src) {
		t.Errorf("no root: %v; want ErrNoSourceRoot naming %s", err, src)
	}
}

// TestRequestBounds: every input is bounded and checked before a job is
// queued; unknown collections and models are refused then too.
func TestRequestBounds(t *testing.T) {
	e := newEnv(t)
	src := e.corpus("docs", 3, false)
	s := e.open(func(o *jobs.Options) { o.MaxBatchSize = 64 })
	long := strings.Repeat("x", jobs.MaxNameBytes+1)
	many := make([]string, jobs.MaxSources+1)
	for i := range many {
		many[i] = src
	}
	for _, tc := range []struct {
		name string
		spec jobs.Spec
		want error
	}{
		{"no source", jobs.Spec{}, jobs.ErrInvalid},
		{"too many sources", jobs.Spec{Sources: many}, jobs.ErrInvalid},
		{"long source", jobs.Spec{Sources: []string{strings.Repeat("a", jobs.MaxSourceBytes+1)}}, jobs.ErrInvalid},
		{"collection source and files", jobs.Spec{Sources: []string{"collection:docs", src}}, jobs.ErrInvalid},
		{"collection source without name", jobs.Spec{Sources: []string{"collection:"}}, jobs.ErrInvalid},
		{"long field", jobs.Spec{Sources: []string{src}, IDField: long}, jobs.ErrInvalid},
		{"too many metadata fields", jobs.Spec{Sources: []string{src}, MetadataFields: make([]string, jobs.MaxMetadataFields+1)}, jobs.ErrInvalid},
		{"batch size", jobs.Spec{Sources: []string{src}, BatchSize: 65}, jobs.ErrInvalid},
		{"negative rate", jobs.Spec{Sources: []string{src}, MaxRate: -1}, jobs.ErrInvalid},
		{"format", jobs.Spec{Sources: []string{src}, Format: "xml"}, jobs.ErrInvalid},
		{"version name", jobs.Spec{Sources: []string{src}, Version: "a/b"}, jobs.ErrInvalid},
		{"unknown collection", jobs.Spec{Collection: "nope", Sources: []string{src}}, index.ErrUnknownCollection},
		{"unknown source collection", jobs.Spec{Sources: []string{"collection:nope"}}, index.ErrUnknownCollection},
		{"unknown model", jobs.Spec{Model: "nope", Sources: []string{src}}, engine.ErrUnknownModel},
	} {
		if _, err := s.m.Start(context.Background(), tc.spec); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v; want %v", tc.name, err, tc.want)
		}
	}
	for _, id := range []string{"", "../x", strings.Repeat("a", jobs.MaxIDBytes+1), "A"} {
		if _, err := s.m.Get(id); !errors.Is(err, jobs.ErrInvalid) {
			t.Errorf("Get(%q): %v; want ErrInvalid", id, err)
		}
	}
	if _, err := s.m.Get("20260101t000000-00000000"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("unknown id: %v; want ErrNotFound", err)
	}
	if _, _, err := s.m.List(jobs.Filter{PageToken: "x"}); !errors.Is(err, jobs.ErrInvalid) {
		t.Errorf("bad page token: %v; want ErrInvalid", err)
	}
}
