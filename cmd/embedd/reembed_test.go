package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/reembed"
	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/testassets"
)

// The reembed integration tests run the command (in process, and as
// subprocesses of a binary built here, killed with SIGKILL) through the
// real engine, index and stores: the embedded store always, Milvus and
// Redis when EMBEDD_MILVUS_ADDR and EMBEDD_REDIS_ADDR are set (required
// with EMBEDD_REQUIRE_STORES=1).

const (
	oldModel = "all-minilm-l6-v2-int8"
	newModel = "all-minilm-l6-v2-q8"
)

// embeddBinary builds this command into the test's temporary directory
// (the build cache makes the second build a link).
func embeddBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "embedd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// backend is a store configuration the tests run on.
type backend struct {
	name  string
	flags []string
	// concurrent: shards may run at the same time (server stores).
	concurrent bool
}

func backends(t testing.TB) []backend {
	out := []backend{{name: "embedded", flags: []string{"--milvus-addr", "", "--redis-addr", ""}}}
	m, r := os.Getenv("EMBEDD_MILVUS_ADDR"), os.Getenv("EMBEDD_REDIS_ADDR")
	if m == "" || r == "" {
		if os.Getenv("EMBEDD_REQUIRE_STORES") == "1" {
			t.Fatal("EMBEDD_MILVUS_ADDR or EMBEDD_REDIS_ADDR is unset")
		}
		t.Log("Milvus + Redis not configured (EMBEDD_MILVUS_ADDR, EMBEDD_REDIS_ADDR): embedded store only")
		return out
	}
	prefix := fmt.Sprintf("embedd-test:reembed%d:", time.Now().UnixNano())
	return append(out, backend{name: "milvus+redis", flags: []string{"--milvus-addr", m, "--redis-addr", r, "--redis-prefix", prefix}, concurrent: true})
}

// reembedCorpus writes n short texts as JSONL (and one record without
// text, which goes to the dead-letter file) and returns id -> text.
func reembedCorpus(t testing.TB, dir string, n int) (string, map[string]string) {
	t.Helper()
	var b strings.Builder
	texts := map[string]string{}
	for i := range n {
		id := fmt.Sprintf("doc-%05d", i)
		texts[id] = fmt.Sprintf("document %d is about topic %d and item %d", i, i%17, i*7919%1000)
		line, _ := json.Marshal(map[string]any{"id": id, "text": texts[id], "topic": i % 17})
		b.Write(append(line, '\n'))
	}
	b.WriteString(`{"id":"no-text"}` + "\n")
	p := filepath.Join(dir, "corpus.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, texts
}

func reembedArgs(data, collection, model string, be backend, extra ...string) []string {
	args := []string{"reembed", "--cache-dir", testassets.CacheDir(), "--threads", "2", "--data-dir", data,
		"--collection", collection, "--model", model, "--metadata-fields", "text,topic", "--progress", "none"}
	return append(append(args, be.flags...), extra...)
}

// openCollection opens the stores of a test run for checks.
func openCollection(t *testing.T, data, collection string, be backend) *index.Index {
	t.Helper()
	var sc storeConfig
	fs := flag.NewFlagSet("stores", flag.ContinueOnError)
	registerJobStores(fs, &sc)
	if err := fs.Parse(append([]string{"--data-dir", data}, be.flags...)); err != nil {
		t.Fatal(err)
	}
	tg, err := openTarget(context.Background(), &sc, catalogOnly{testassets.Catalog(t)}, newModel, []string{collection}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.close)
	return tg.idx
}

// checkLive checks that collection's live version holds exactly texts,
// each once, embedded by model from its text, in both stores.
func checkLive(t *testing.T, x *index.Index, collection, model string, texts map[string]string, exactCount bool) store.VersionInfo {
	t.Helper()
	ctx := context.Background()
	mv := testassets.Model(t, model).Version
	vs, err := x.Versions(ctx, collection)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(vs, func(v store.VersionInfo) bool { return v.Live })
	if i < 0 {
		t.Fatalf("no live version among %+v", vs)
	}
	live := vs[i]
	if live.ModelVersion != mv || (exactCount && live.Count != int64(len(texts))) || live.Count < int64(len(texts)) {
		t.Errorf("live version %+v; want model %s and %d records", live, mv, len(texts))
	}
	seen := map[string]int{}
	err = x.ScanVersion(ctx, collection, live.Version, func(r store.Record) error {
		seen[r.ID]++
		if text, ok := texts[r.ID]; !ok || r.ModelVersion != mv || r.TextHash != index.TextHash(text) {
			t.Errorf("record %s: model %s, hash %s; want one of the source's, model %s, hash of its text", r.ID, r.ModelVersion, r.TextHash, mv)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id := range texts {
		if seen[id] != 1 {
			t.Errorf("id %s is in the live version %d times; want exactly once", id, seen[id])
		}
	}
	ids := slices.Sorted(func(y func(string) bool) {
		for id := range texts {
			if !y(id) {
				return
			}
		}
	})
	for chunk := range slices.Chunk(ids, 256) {
		items, missing, err := x.Get(ctx, collection, chunk, false)
		if err != nil || len(missing) > 0 {
			t.Fatalf("get: missing %v, %v", missing, err)
		}
		for _, it := range items {
			if it.ModelVersion != mv || len(it.Int8) == 0 {
				t.Fatalf("get %s: model %s, %d int8 codes; want %s in both stores", it.ID, it.ModelVersion, len(it.Int8), mv)
			}
		}
	}
	return live
}

func readCheckpoint(path string) (reembed.Checkpoint, bool) {
	var cp reembed.Checkpoint
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &cp) != nil {
		return cp, false
	}
	return cp, true
}

// TestReembedKillResume: a job killed with SIGKILL midway and run again
// leaves every id in the new version exactly once, embedded with the new
// model, and swaps the alias; the bad record is listed once (exit status
// 1); a run with a changed argument is refused with exit status 2.
func TestReembedKillResume(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, oldModel)
	testassets.Model(t, newModel)
	bin := embeddBinary(t)
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			coll := fmt.Sprintf("docs_%d", time.Now().UnixNano())
			src, texts := reembedCorpus(t, dir, 1500)
			out, err := runCLI(t, "", append(reembedArgs(data, coll, oldModel, be), src)...)
			if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "1 records failed") {
				t.Fatalf("first job: %v; want exit status 1 for the record without text\n%s", err, out)
			}
			cpPath := filepath.Join(data, "reembed", coll, "shard-0000-of-0001.json")
			first, _ := readCheckpoint(cpPath)
			args := reembedArgs(data, coll, newModel, be, "--batch-size", "32", "--in-flight", "2")
			cmd := exec.Command(bin, append(args, "--max-rate", "300", src)...)
			cmd.Stderr = &strings.Builder{}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(90 * time.Second)
			for {
				if cp, ok := readCheckpoint(cpPath); ok && cp.Target != first.Target && cp.Counters.Embedded >= 300 {
					break
				}
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatalf("no checkpoint with 300 records after 90s\n%s", cmd.Stderr)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			if _, err := os.Stat(filepath.Join(data, "reembed", coll, "finalized.json")); err == nil {
				t.Fatal("the job finished before it was killed")
			}
			cp, _ := readCheckpoint(cpPath)
			t.Logf("killed at %+v", cp.Counters)
			// A changed argument is refused: exit status 2.
			changed := exec.Command(bin, append(reembedArgs(data, coll, newModel, be, "--id-field", "key"), src)...)
			if out, err := changed.CombinedOutput(); changed.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), `--id-field was "id", now "key"`) {
				t.Errorf("changed argument: %v\n%s", err, out)
			}
			out, err = runCLI(t, "", append(args, src)...)
			if err == nil || errors.Is(err, errUsage) || !strings.Contains(out, "embedded 1500, skipped 0, failed 1") || !strings.Contains(out, "alias "+coll+" -> ") {
				t.Fatalf("resumed job: %v; want all 1500 embedded, 1 failed, the alias swapped\n%s", err, out)
			}
			x := openCollection(t, data, coll, be)
			live := checkLive(t, x, coll, newModel, texts, be.name == "embedded")
			dl, err := os.ReadFile(filepath.Join(data, "reembed", coll, "dead-letter-0000-of-0001.jsonl"))
			if err != nil || strings.Count(string(dl), "\n") != 1 || !strings.Contains(string(dl), `"id":"no-text"`) {
				t.Errorf("dead letters: %q, %v; want the record without text, once", dl, err)
			}
			t.Logf("live version %s (%d records)", live.Version, live.Count)
		})
	}
}

// TestReembedShards: four shard processes (--shards 4 with
// JOB_COMPLETION_INDEX, as a Kubernetes Indexed Job runs them) write the
// same collection as one process: same ids, texts, model and vectors; the
// last shard to finish swaps the alias.
func TestReembedShards(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, newModel)
	bin := embeddBinary(t)
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			dir := t.TempDir()
			src, texts := reembedCorpus(t, dir, 800)
			one, four := filepath.Join(dir, "one"), filepath.Join(dir, "four")
			run := time.Now().UnixNano()
			collOne, collFour := fmt.Sprintf("one_%d", run), fmt.Sprintf("four_%d", run)
			// --version: a new version beside the v1 that opening the
			// collection creates, so the last shard swaps the alias.
			if out, err := runCLI(t, "", append(reembedArgs(one, collOne, newModel, be, "--version", "v2"), src)...); err == nil || errors.Is(err, errUsage) {
				t.Fatalf("one process: %v\n%s", err, out)
			}
			// The collection exists before the job (as the live collection a
			// job re-embeds does); opening it also creates its v1.
			if out, err := runCLI(t, "", append([]string{"collections", "list", "--data-dir", four, "--collection", collFour, "--model", newModel}, be.flags...)...); err != nil {
				t.Fatalf("create %s: %v\n%s", collFour, err, out)
			}
			var wg sync.WaitGroup
			outs := make([]string, 4)
			codes := make([]int, 4)
			for i := range 4 {
				shard := func() {
					cmd := exec.Command(bin, append(reembedArgs(four, collFour, newModel, be, "--shards", "4", "--version", "v2"), src)...)
					cmd.Env = append(os.Environ(), fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i))
					b, _ := cmd.CombinedOutput()
					outs[i], codes[i] = string(b), cmd.ProcessState.ExitCode()
				}
				if be.concurrent {
					wg.Go(shard)
				} else {
					shard() // the embedded store is one process's at a time
				}
			}
			wg.Wait()
			swapped := 0
			for i := range 4 {
				// The bad record has one owner: one shard exits 1.
				if codes[i] != 0 && codes[i] != 1 {
					t.Fatalf("shard %d exit %d\n%s", i, codes[i], outs[i])
				}
				swapped += strings.Count(outs[i], "alias "+collFour+" -> ")
			}
			if swapped != 1 {
				t.Errorf("%d shards swapped the alias; want 1\n%s", swapped, strings.Join(outs, "\n"))
			}
			x1 := openCollection(t, one, collOne, be)
			x4 := openCollection(t, four, collFour, be)
			checkLive(t, x1, collOne, newModel, texts, be.name == "embedded")
			checkLive(t, x4, collFour, newModel, texts, be.name == "embedded")
			ids := slices.Sorted(func(y func(string) bool) {
				for id := range texts {
					if !y(id) {
						return
					}
				}
			})
			for chunk := range slices.Chunk(ids, 200) {
				a, _, err1 := x1.Get(context.Background(), collOne, chunk, true)
				b, _, err2 := x4.Get(context.Background(), collFour, chunk, true)
				if err1 != nil || err2 != nil || len(a) != len(b) {
					t.Fatalf("get: %v %v, %d vs %d items", err1, err2, len(a), len(b))
				}
				for k := range a {
					// Vectors of one text may differ in the last bits with
					// the batch it ran in (GEMM blocking).
					if cos := cosine(a[k].Vector, b[k].Vector); a[k].ID != b[k].ID || cos < 0.9999 || string(a[k].Metadata) != string(b[k].Metadata) {
						t.Fatalf("%s differs between one process and four shards: %s, cosine %v, metadata %s vs %s", a[k].ID, b[k].ID, cos, a[k].Metadata, b[k].Metadata)
					}
				}
			}
		})
	}
}

// TestCollectionsCommands: list, rollback, swap and gc on a collection with
// three versions; gc drops only versions the alias does not point at.
func TestCollectionsCommands(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, oldModel)
	testassets.Model(t, newModel)
	be := backends(t)[0]
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	src, _ := reembedCorpus(t, dir, 40)
	jobs := [][]string{
		reembedArgs(data, "g", oldModel, be, src),
		reembedArgs(data, "g", newModel, be, src),
		reembedArgs(data, "g", oldModel, be, "--no-swap", "--version", "later", src),
	}
	for _, args := range jobs {
		if out, err := runCLI(t, "", args...); err == nil || errors.Is(err, errUsage) {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	coll := func(args ...string) string {
		t.Helper()
		out, err := runCLI(t, "", append(append([]string{"collections", args[0], "--data-dir", data, "--collection", "g"}, be.flags...), args[1:]...)...)
		if err != nil {
			t.Fatalf("collections %v: %v\n%s", args, err, out)
		}
		return out
	}
	list := coll("list")
	if strings.Count(list, "\n") != 4 || !strings.Contains(list, "later") {
		t.Fatalf("list: want a header and 3 versions\n%s", list)
	}
	live := func() string {
		for _, line := range strings.Split(coll("list"), "\n") {
			if strings.HasSuffix(line, "*") {
				return strings.Fields(line)[0]
			}
		}
		return ""
	}
	second := live()
	coll("rollback")
	if first := live(); first == second || first == "later" {
		t.Errorf("rollback: live %s; want the version before %s", first, second)
	}
	coll("swap", second)
	if out := coll("gc", "--keep", "1"); !strings.Contains(out, "dropped") || strings.Contains(out, "later") || strings.Contains(out, second) {
		t.Errorf("gc --keep 1: %s; want the oldest version dropped, 'later' kept", out)
	}
	if out := coll("gc", "--keep", "0"); !strings.Contains(out, "dropped later") {
		t.Errorf("gc --keep 0: %s; want 'later' dropped", out)
	}
	if list := coll("list"); strings.Count(list, "\n") != 2 || live() != second {
		t.Errorf("after gc: want only the live version %s\n%s", second, list)
	}
}

// BenchmarkReembed (make bench, section reembed): items/s of a job of
// EMBEDD_REEMBED_N short texts (default 10,000) from a JSONL file into
// both stores, on each backend (the embedded store; Milvus + Redis when
// configured, required with EMBEDD_REQUIRE_STORES=1), against the engine's
// own rate on the same texts, the mean of one measure just before the job
// and one just after, in the same run (batches of 256 at bulk priority, 4
// in flight, as the job sends them).
// One iteration is the whole job, into a new collection.
func BenchmarkReembed(b *testing.B) {
	testassets.Runtime(b)
	testassets.Model(b, newModel)
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("EMBEDD_REEMBED_N")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	src, texts := reembedCorpus(b, dir, n)
	all := slices.Collect(maps.Values(texts))
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			for i := range b.N {
				b.StopTimer()
				before := engineRate(b, all)
				b.StartTimer()
				coll := fmt.Sprintf("bench_%d", time.Now().UnixNano())
				start := time.Now()
				out, err := runCLI(b, "", append(reembedArgs(filepath.Join(dir, fmt.Sprint("data", i)), coll, newModel, be), src)...)
				job := float64(len(all)) / time.Since(start).Seconds()
				if err == nil || errors.Is(err, errUsage) { // the corpus has bad records: exit 1
					b.Fatalf("job: %v\n%s", err, out)
				}
				b.StopTimer()
				after := engineRate(b, all)
				b.StartTimer()
				// The engine's rate before and after the job: their mean is
				// the reference, their ratio shows how much the machine's
				// load moved meanwhile (a shared machine's noise).
				raw := (before + after) / 2
				b.ReportMetric(raw, "engine-texts/s")
				b.ReportMetric(100*after/before, "engine-after-%-of-before")
				b.ReportMetric(job, "job-items/s")
				b.ReportMetric(100*job/raw, "job-%-of-engine")
			}
		})
	}
}

// engineRate embeds texts with the engine alone, as the job sends them,
// and returns texts/s.
func engineRate(b *testing.B, texts []string) float64 {
	var c reembedConfig
	fs := newFlagSet("reembed", "")
	c.register(fs)
	if err := c.common.parse(fs, []string{"--cache-dir", testassets.CacheDir(), "--threads", "2"}); err != nil {
		b.Fatal(err)
	}
	eng, err := c.engine(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	ctx := context.Background()
	if _, err := eng.Embed(ctx, newModel, texts[:256], engineBulk()); err != nil { // load and warm up
		b.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for chunk := range slices.Chunk(texts, 256) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := eng.Embed(ctx, newModel, chunk, engineBulk()); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	return float64(len(texts)) / time.Since(start).Seconds()
}

func engineBulk() engine.EmbedOptions {
	return engine.EmbedOptions{Truncate: true, Priority: batch.Bulk}
}

func cosine(a, b []float32) float64 {
	var d, na, nb float64
	for i := range a {
		d += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return d / math.Sqrt(na*nb)
}

// TestReembedFromCollection: a collection source re-embeds the texts kept
// in the live version's metadata into a new version with the new model.
func TestReembedFromCollection(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, oldModel)
	testassets.Model(t, newModel)
	be := backends(t)[0]
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	src, texts := reembedCorpus(t, dir, 60)
	if out, err := runCLI(t, "", append(reembedArgs(data, "c", oldModel, be), src)...); err == nil || errors.Is(err, errUsage) {
		t.Fatalf("first job: %v\n%s", err, out)
	}
	out, err := runCLI(t, "", append(reembedArgs(data, "c", newModel, be, "--text-field", "text"), "collection:c")...)
	if err != nil || !strings.Contains(out, "embedded 60, skipped 0, failed 0") || !strings.Contains(out, "alias c -> ") {
		t.Fatalf("job from the collection: %v\n%s", err, out)
	}
	checkLive(t, openCollection(t, data, "c", be), "c", newModel, texts, true)
}
