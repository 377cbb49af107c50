package reembed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// corpus writes n records (every 97th poisoned, every 101st without
// text) and returns its path and the ids a job must write.
func corpus(t *testing.T, dir string, n int) (string, []string) {
	t.Helper()
	var b strings.Builder
	var ids []string
	for i := range n {
		id := fmt.Sprintf("doc-%05d", i)
		switch {
		case i%97 == 50:
			fmt.Fprintf(&b, `{"id":%q,"text":"POISON %d","tag":"t%d"}`+"\n", id, i, i%3)
		case i%101 == 60:
			fmt.Fprintf(&b, `{"id":%q}`+"\n", id)
		default:
			fmt.Fprintf(&b, `{"id":%q,"text":"text number %d","tag":"t%d"}`+"\n", id, i, i%3)
			ids = append(ids, id)
		}
	}
	return writeFile(t, dir, "corpus.jsonl", b.String()), ids
}

func testOptions(t *testing.T, state string, files ...string) Options {
	t.Helper()
	o := DefaultOptions()
	o.Collection, o.Model, o.ModelVersion = "docs", "m2", modelVersion("m2")
	o.Files = expand(t, files...)
	o.Fields.Metadata = []string{"tag"}
	o.StateDir = state
	o.BatchSize, o.InFlight = 16, 3
	o.Backoff, o.MaxBackoff = time.Millisecond, 5*time.Millisecond
	o.Logger = quiet
	return o
}

func deadLetters(t *testing.T, path string) []deadLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []deadLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l deadLine
		if err := jsonUnmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("dead-letter line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// TestResume: a job that stops midway (a fatal store error) and is run
// again writes every id exactly once, upserts again at most the batches
// upserted but not committed, and lists each bad record once in the dead-letter
// file; the summary's counters are the whole job's.
func TestResume(t *testing.T) {
	dir := t.TempDir()
	src, ids := corpus(t, dir, 2000)
	m := newMemTarget("m1")
	m.failAfter = 40
	o := testOptions(t, filepath.Join(dir, "state"), src)
	if _, err := Run(context.Background(), m, o); !errors.Is(err, errFatal) {
		t.Fatalf("first run: got %v; want the injected failure", err)
	}
	var cp Checkpoint
	if _, err := readJSON(stateDir{filepath.Join(o.StateDir, "docs")}.checkpoint(Shard{0, 1}), &cp); err != nil || cp.Counters.Embedded == 0 || cp.Phase != PhaseWrite {
		t.Fatalf("checkpoint after the failure: %+v, %v", cp, err)
	}
	firstWritten := m.written
	m.failAfter = 0
	s, err := Run(context.Background(), m, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.ids(s.Target); !slices.Equal(got, ids) {
		t.Errorf("version %s holds %d ids; want %d", s.Target, len(got), len(ids))
	}
	if m.live != s.Target || s.Finalized == nil || !s.Finalized.Swapped {
		t.Errorf("alias on %s, finalized %+v; want swapped to %s", m.live, s.Finalized, s.Target)
	}
	// Upserted but not committed when the first run stopped: at most
	// InFlight+2 batches (see the package doc).
	again := m.written - len(ids)
	if bound := (o.InFlight + 2) * o.BatchSize; again < 0 || again > bound {
		t.Errorf("records upserted twice: %d (first run %d); want 0 to %d (the batches upserted but not committed)", again, firstWritten, bound)
	}
	c := s.Counters
	if c.Read != 2000 || c.Embedded != int64(len(ids)) || c.Failed != 2000-int64(len(ids)) || !s.Resumed || s.ExitCode() != 1 {
		t.Errorf("summary %+v resumed %v exit %d; want read 2000, embedded %d, failed %d, exit 1", c, s.Resumed, s.ExitCode(), len(ids), 2000-len(ids))
	}
	dl := deadLetters(t, s.DeadLetter)
	if int64(len(dl)) != c.Failed {
		t.Fatalf("dead-letter file has %d lines; want %d", len(dl), c.Failed)
	}
	seen := map[string]bool{}
	lastLine := 0
	for _, l := range dl {
		var line int
		fmt.Sscanf(l.Position[len(src)+1:], "%d", &line)
		if line <= lastLine {
			t.Errorf("dead letter at line %d after line %d; want the source's order", line, lastLine)
		}
		lastLine = line
		if seen[l.ID] {
			t.Errorf("dead letter %s listed twice", l.ID)
		}
		seen[l.ID] = true
		if !strings.HasPrefix(l.Position, src+":") || (l.Reason != "text: poisoned" && l.Reason != `no text field "text"`) {
			t.Errorf("dead letter %+v", l)
		}
	}
	// A third run finds the job finished.
	if s, err := Run(context.Background(), m, o); err != nil || !s.AlreadyDone {
		t.Errorf("third run: %+v, %v; want already done", s, err)
	}
}

// TestRefuseChangedArguments: an unfinished job is resumed only with its
// arguments; the refusal names what changed; --reset starts over.
func TestRefuseChangedArguments(t *testing.T) {
	dir := t.TempDir()
	src, _ := corpus(t, dir, 300)
	m := newMemTarget("m1")
	m.failAfter = 3
	o := testOptions(t, filepath.Join(dir, "state"), src)
	if _, err := Run(context.Background(), m, o); !errors.Is(err, errFatal) {
		t.Fatalf("first run: %v", err)
	}
	m.failAfter = 0
	changed := func(f func(*Options)) Options { c := o; f(&c); return c }
	future := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{changed(func(c *Options) { c.Fields.Text = "body" }), `--text-field was "text", now "body"`},
		{changed(func(c *Options) { c.Model, c.ModelVersion = "m3", "m3-v" }), `--model was "m2", now "m3"`},
		{changed(func(c *Options) { c.Truncate = true }), `--truncate was "false", now "true"`},
		{changed(func(c *Options) {
			os.Chtimes(src, future, future)
			c.Files = expand(t, src)
		}), "source " + src + " was modified"},
	} {
		_, err := Run(context.Background(), m, tc.o)
		if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v; want ErrChanged saying %s", err, tc.want)
		}
	}
	o.Files = expand(t, src) // the modified file
	o.Reset = true
	s, err := Run(context.Background(), m, o)
	if err != nil || s.Finalized == nil {
		t.Fatalf("after --reset: %+v, %v", s, err)
	}
}

// TestRetryAndBackpressure: an unavailable store is retried with backoff;
// past MaxRetries the job stops with the error.
func TestRetryAndBackpressure(t *testing.T) {
	dir := t.TempDir()
	src, ids := corpus(t, dir, 100)
	m := newMemTarget("m1")
	m.unavailable = 5
	o := testOptions(t, filepath.Join(dir, "state"), src)
	o.MaxRate = 2000 // items/s: 100 records take about 50ms
	s, err := Run(context.Background(), m, o)
	if err != nil || len(m.ids(s.Target)) != len(ids) {
		t.Fatalf("got %v with %d ids; want all %d written after the retries", err, len(m.ids(s.Target)), len(ids))
	}
	m2 := newMemTarget("m1")
	m2.unavailable = 1000
	o = testOptions(t, filepath.Join(dir, "state2"), src)
	o.MaxRetries = 2
	if _, err := Run(context.Background(), m2, o); err == nil || !DefaultRetryable(err) {
		t.Errorf("got %v; want the unavailable error after 2 retries", err)
	}
}

// TestShardsMatchOneProcess: four shards (run one after another, as on the
// embedded store) write the same ids as one process, only the last one
// swaps the alias, and Finalize by hand is idempotent.
func TestShardsMatchOneProcess(t *testing.T) {
	dir := t.TempDir()
	src, ids := corpus(t, dir, 1000)
	one := newMemTarget("m1")
	s1, err := Run(context.Background(), one, testOptions(t, filepath.Join(dir, "one"), src))
	if err != nil {
		t.Fatal(err)
	}
	four := newMemTarget("m1")
	var total Counters
	var target string
	for i := range 4 {
		o := testOptions(t, filepath.Join(dir, "four"), src)
		o.Shard = Shard{i, 4}
		s, err := Run(context.Background(), four, o)
		if err != nil {
			t.Fatal(err)
		}
		total.add(s.Counters)
		if target != "" && s.Target != target {
			t.Errorf("shard %d wrote version %s; shard 0 %s: want one derived name", i, s.Target, target)
		}
		target = s.Target
		if (s.Finalized != nil) != (i == 3) || four.swaps != i/3 {
			t.Errorf("shard %d: finalized %+v, swaps %d; want only the last shard to swap", i, s.Finalized, four.swaps)
		}
	}
	if got := four.ids(target); !slices.Equal(got, ids) || !slices.Equal(got, one.ids(s1.Target)) {
		t.Errorf("four shards wrote %d ids; one process %d; want %d, the same", len(got), len(one.ids(s1.Target)), len(ids))
	}
	if total.Read != 4000 || total.Embedded != s1.Counters.Embedded || total.Failed != s1.Counters.Failed || total.OtherShards != 3000 {
		t.Errorf("shards' counters %+v; one process %+v", total, s1.Counters)
	}
	fin, err := Finalize(context.Background(), four, FinalizeOptions{StateDir: filepath.Join(dir, "four"), Collection: "docs", Logger: quiet})
	if err != nil || fin.Target != target || four.swaps != 1 {
		t.Errorf("finalize again: %+v, %v, swaps %d; want the recorded result, no second swap", fin, err, four.swaps)
	}
}

// TestFinalizeVerifies: Finalize refuses while shards are missing, and
// refuses to swap to a version that holds fewer records than were written.
func TestFinalizeVerifies(t *testing.T) {
	dir := t.TempDir()
	src, _ := corpus(t, dir, 200)
	m := newMemTarget("m1")
	o := testOptions(t, filepath.Join(dir, "state"), src)
	o.Shard = Shard{0, 2}
	s, err := Run(context.Background(), m, o)
	if err != nil || s.Finalized != nil {
		t.Fatalf("shard 0: %+v, %v", s, err)
	}
	fo := FinalizeOptions{StateDir: o.StateDir, Collection: "docs", Logger: quiet}
	if _, err := Finalize(context.Background(), m, fo); !errors.Is(err, ErrNotDone) || !strings.Contains(err.Error(), "shards 1 of 2") {
		t.Errorf("got %v; want ErrNotDone naming shard 1", err)
	}
	o.Shard, o.NoSwap = Shard{1, 2}, true
	s, err = Run(context.Background(), m, o)
	if err != nil || s.Finalized == nil || s.Finalized.Swapped || m.live != "v1" {
		t.Fatalf("shard 1 with --no-swap: %+v, %v, live %s", s.Finalized, err, m.live)
	}
	// A version that lost records is not swapped to.
	dir2 := filepath.Join(dir, "state2")
	o = testOptions(t, dir2, src)
	o.NoSwap = true
	s, err = Run(context.Background(), m, o)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir2, "docs", "finalized.json"))
	m.DeleteVersion(context.Background(), "docs", s.Target, m.ids(s.Target)[:5])
	if _, err := Finalize(context.Background(), m, FinalizeOptions{StateDir: dir2, Collection: "docs", Settle: time.Millisecond, Logger: quiet}); !errors.Is(err, ErrVerify) || m.live != "v1" {
		t.Errorf("got %v, live %s; want ErrVerify and no swap", err, m.live)
	}
	if fin, err := Finalize(context.Background(), m, FinalizeOptions{StateDir: dir2, Collection: "docs", Force: true, Logger: quiet}); err != nil || !fin.Swapped || m.live != s.Target {
		t.Errorf("--force: %+v, %v", fin, err)
	}
}

// TestIncremental: a run with the live version's model writes into it,
// skips unchanged records, re-embeds changed ones and, with
// DeleteMissing, deletes the ids the source lost.
func TestIncremental(t *testing.T) {
	dir := t.TempDir()
	m := newMemTarget("m2")
	write := func(name string, recs map[string]string) string {
		var b strings.Builder
		for _, id := range slices.Sorted(func(y func(string) bool) {
			for k := range recs {
				if !y(k) {
					return
				}
			}
		}) {
			fmt.Fprintf(&b, `{"id":%q,"text":%q}`+"\n", id, recs[id])
		}
		return writeFile(t, dir, name, b.String())
	}
	a := write("a.jsonl", map[string]string{"1": "one", "2": "two", "3": "three", "4": "four"})
	o := testOptions(t, filepath.Join(dir, "state"), a)
	s, err := Run(context.Background(), m, o)
	if err != nil || !s.Incremental || s.Target != "v1" || s.Counters.Embedded != 4 {
		t.Fatalf("first run: %+v, %v; want 4 embedded into v1 (incremental)", s, err)
	}
	b := write("b.jsonl", map[string]string{"1": "one", "2": "TWO", "3": "three"})
	o = testOptions(t, filepath.Join(dir, "state"), b)
	o.DeleteMissing = true
	s, err = Run(context.Background(), m, o)
	if err != nil || s.Counters.Skipped != 2 || s.Counters.Embedded != 1 || s.Counters.Deleted != 1 || m.swaps != 0 {
		t.Fatalf("second run: %+v, %v; want 2 skipped, 1 embedded, 1 deleted, no swap", s.Counters, err)
	}
	if got := strings.Join(m.ids("v1"), ","); got != "1,2,3" {
		t.Errorf("v1 holds %s; want 1,2,3", got)
	}
}

// TestCollectionSource: the records of a stored version are re-embedded
// from the text in their metadata; a record without it is a dead letter.
func TestCollectionSource(t *testing.T) {
	dir := t.TempDir()
	m := newMemTarget("m1")
	for i := range 50 {
		id := fmt.Sprint("c", i)
		meta := fmt.Sprintf(`{"body":"text %d","n":%d}`, i, i)
		if i == 7 {
			meta = `{"n":7}`
		}
		m.versions["v1"].recs[id] = store.Record{ID: id, Metadata: []byte(meta)}
	}
	o := testOptions(t, filepath.Join(dir, "state"), writeFile(t, dir, "unused.jsonl", ""))
	o.Files, o.FromCollection, o.Fields = nil, "docs", Fields{ID: "id", Text: "body"}
	s, err := Run(context.Background(), m, o)
	if err != nil || s.Counters.Embedded != 49 || s.Counters.Failed != 1 || m.live != s.Target {
		t.Fatalf("got %+v, %v; want 49 embedded, 1 failed, swapped", s, err)
	}
	if r := m.versions[s.Target].recs["c3"]; r.TextHash != index.TextHash("text 3") || string(r.Metadata) != `{"body":"text 3","n":3}` {
		t.Errorf("c3: %+v; want the hash of its text and its metadata kept", r)
	}
	if dl := deadLetters(t, s.DeadLetter); len(dl) != 1 || dl[0].ID != "c7" || dl[0].Reason != `no text in metadata key "body"` || dl[0].Position != `docs@v1 id "c7"` {
		t.Errorf("dead letters %+v", dl)
	}
}
