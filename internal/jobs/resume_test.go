package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/jobs"
)

// slow is a job spec that takes seconds: max_rate bounds it.
func slow(src string, collection string) jobs.Spec {
	return jobs.Spec{Collection: collection, Sources: []string{src}, Truncate: true, MaxRate: 40, BatchSize: 8}
}

// onDisk reads a job's record file.
func onDisk(t *testing.T, e *env, id string) jobs.Job {
	t.Helper()
	var j jobs.Job
	b, err := os.ReadFile(filepath.Join(e.data, "jobs", id+".json"))
	if err == nil {
		err = json.Unmarshal(b, &j)
	}
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestResumeAfterRestart: one job runs at a time, the next waits QUEUED,
// a second job on a busy collection is refused; the server stops with one
// job midway and one queued, and when it starts again both finish, the
// first continuing where it stopped: every id once, the counters those of
// one run.
func TestResumeAfterRestart(t *testing.T) {
	e := newEnv(t)
	a, b := e.corpus("a", 160, false), e.corpus("b", 24, false)
	s := e.open(nil)
	ctx := context.Background()
	ja, err := s.m.Start(ctx, slow(a, "docs"))
	if err != nil {
		t.Fatal(err)
	}
	jb, err := s.m.Start(ctx, jobs.Spec{Collection: "other", Sources: []string{b}, Truncate: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.Start(ctx, jobs.Spec{Collection: "docs", Sources: []string{b}}); !errors.Is(err, jobs.ErrBusy) {
		t.Errorf("a second job on docs: %v; want ErrBusy", err)
	}
	mid := waitFor(t, s.m, ja.ID, time.Minute, func(j jobs.Job) bool { return j.Counters.Embedded >= 32 })
	if mid.State != jobs.Running || mid.Rate <= 0 || mid.Progress <= 0 || mid.Target == "" {
		t.Errorf("running job %+v; want RUNNING with a rate, progress and its target", mid)
	}
	if got, _ := s.m.Get(jb.ID); got.State != jobs.Queued {
		t.Errorf("second job %s; want QUEUED behind the first (concurrency 1)", got.State)
	}
	s.close() // the server stops
	if _, err := s.m.Cancel(ctx, ja.ID); !errors.Is(err, jobs.ErrClosed) {
		t.Errorf("cancel after Close: %v; want ErrClosed (the job stays RUNNING, to resume)", err)
	}
	if _, err := s.m.Start(ctx, jobs.Spec{Collection: "third", Sources: []string{b}}); !errors.Is(err, jobs.ErrClosed) {
		t.Errorf("start after Close: %v; want ErrClosed", err)
	}
	stopped := onDisk(t, e, ja.ID)
	if stopped.State != jobs.Running || stopped.Counters.Embedded == 0 || stopped.Counters.Embedded >= 160 {
		t.Fatalf("record after the stop: %+v; want RUNNING midway", stopped)
	}
	if st := onDisk(t, e, jb.ID).State; st != jobs.Queued {
		t.Fatalf("queued record after the stop: %s; want QUEUED", st)
	}

	s = e.open(nil) // the server starts again
	ra := waitFor(t, s.m, ja.ID, 2*time.Minute, finished)
	rb := waitFor(t, s.m, jb.ID, 2*time.Minute, finished)
	if ra.State != jobs.Succeeded || ra.Runs != 2 || ra.Counters.Read != 160 || ra.Counters.Embedded != 160 || !ra.Swapped {
		t.Errorf("resumed job %+v; want SUCCEEDED in 2 runs, read and embedded 160, swapped", ra)
	}
	if rb.State != jobs.Succeeded || rb.Runs != 1 || rb.Counters.Embedded != 24 {
		t.Errorf("queued job %+v; want SUCCEEDED in 1 run, embedded 24", rb)
	}
	if n := countIDs(t, s.idx, "docs", ra.Target); n != 160 || live(t, s.idx, "docs").Version != ra.Target {
		t.Errorf("docs: %d ids in %s (live %s); want 160, live", n, ra.Target, live(t, s.idx, "docs").Version)
	}
}

// TestCancel: cancelling a running job stops it CANCELLED with the alias
// left alone; the same arguments started again continue its version; a
// queued job cancels at once, a finished one refuses.
func TestCancel(t *testing.T) {
	e := newEnv(t)
	a, b := e.corpus("a", 160, false), e.corpus("b", 8, false)
	s := e.open(nil)
	ctx := context.Background()
	before := live(t, s.idx, "docs")
	ja, err := s.m.Start(ctx, slow(a, "docs"))
	if err != nil {
		t.Fatal(err)
	}
	jb, err := s.m.Start(ctx, jobs.Spec{Collection: "other", Sources: []string{b}})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := s.m.Cancel(ctx, jb.ID); err != nil || c.State != jobs.Cancelled || c.Runs != 0 {
		t.Errorf("cancel a queued job: %+v, %v; want CANCELLED, never run", c, err)
	}
	waitFor(t, s.m, ja.ID, time.Minute, func(j jobs.Job) bool { return j.Counters.Embedded >= 16 })
	c, err := s.m.Cancel(ctx, ja.ID)
	if err != nil || c.State != jobs.Cancelled || c.Swapped || c.FinishedAt.IsZero() || c.Counters.Embedded >= 160 {
		t.Fatalf("cancel a running job: %+v, %v; want CANCELLED midway, not swapped", c, err)
	}
	if now := live(t, s.idx, "docs"); now.Version != before.Version {
		t.Errorf("live version %s after the cancel; want %s still", now.Version, before.Version)
	}
	if st := onDisk(t, e, ja.ID).State; st != jobs.Cancelled {
		t.Errorf("record %s; want CANCELLED", st)
	}
	if again, err := s.m.Cancel(ctx, ja.ID); err != nil || again.State != jobs.Cancelled {
		t.Errorf("cancel again: %v %v; want the CANCELLED job", again.State, err)
	}

	spec := slow(a, "docs")
	spec.MaxRate = 0
	jr, err := s.m.Start(ctx, spec) // the rate is not an argument of the version
	if err != nil {
		t.Fatal(err)
	}
	jr = waitFor(t, s.m, jr.ID, 2*time.Minute, finished)
	if jr.State != jobs.Succeeded || jr.Target != c.Target || jr.Counters.Embedded != 160 || !jr.Swapped {
		t.Errorf("restarted job %+v; want SUCCEEDED into %s, 160 embedded over both, swapped", jr, c.Target)
	}
	if n := countIDs(t, s.idx, "docs", jr.Target); n != 160 {
		t.Errorf("%d ids; want 160", n)
	}
	if _, err := s.m.Cancel(ctx, jr.ID); !errors.Is(err, jobs.ErrFinished) {
		t.Errorf("cancel a finished job: %v; want ErrFinished", err)
	}
}

// TestPrune: the history keeps MaxHistory records, the oldest finished
// one removed (record and dead-letter file) to make room; when every
// record is of an active job, Start refuses with ErrFull.
func TestPrune(t *testing.T) {
	e := newEnv(t)
	a, b := e.corpus("a", 160, false), e.corpus("b", 4, false)
	s := e.open(func(o *jobs.Options) { o.MaxHistory = 3 })
	ctx := context.Background()
	running, err := s.m.Start(ctx, slow(a, "docs"))
	if err != nil {
		t.Fatal(err)
	}
	var cancelled []string
	for range 4 { // queued behind the running one, cancelled at once
		j, err := s.m.Start(ctx, jobs.Spec{Collection: "other", Sources: []string{b}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.m.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		cancelled = append(cancelled, j.ID)
		time.Sleep(5 * time.Millisecond) // distinct creation times
	}
	list, _, err := s.m.List(jobs.Filter{})
	if err != nil || len(list) != 3 || list[0].ID != cancelled[3] || list[1].ID != cancelled[2] || list[2].ID != running.ID {
		t.Fatalf("history %v, %v; want the running job and the two newest cancelled, newest first", list, err)
	}
	for _, id := range cancelled[:2] {
		if _, err := s.m.Get(id); !errors.Is(err, jobs.ErrNotFound) {
			t.Errorf("pruned job %s: %v; want ErrNotFound", id, err)
		}
		if _, err := os.Stat(filepath.Join(e.data, "jobs", id+".json")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pruned record %s: %v; want it removed", id, err)
		}
	}
	page, next, err := s.m.List(jobs.Filter{PageSize: 2})
	if err != nil || len(page) != 2 || next == "" {
		t.Fatalf("page 1: %v %q %v", page, next, err)
	}
	if rest, last, err := s.m.List(jobs.Filter{PageSize: 2, PageToken: next}); err != nil || len(rest) != 1 || rest[0].ID != running.ID || last != "" {
		t.Errorf("page 2: %v %q %v; want the oldest job and no token", rest, last, err)
	}
	s.m.Cancel(ctx, running.ID)
	s.close()

	s = e.open(func(o *jobs.Options) { o.MaxHistory = 1 })
	if _, err := s.m.Start(ctx, slow(a, "docs")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.Start(ctx, jobs.Spec{Collection: "other", Sources: []string{b}}); !errors.Is(err, jobs.ErrFull) {
		t.Errorf("history full of active jobs: %v; want ErrFull", err)
	}
}
