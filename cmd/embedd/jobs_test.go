package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/embedd/embedd/internal/testassets"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// jobsCorpus writes n records as JSONL into root and returns the file's
// name relative to root, and id -> text.
func jobsCorpus(t *testing.T, root, name string, n int) (string, map[string]string) {
	t.Helper()
	var b strings.Builder
	texts := map[string]string{}
	for i := range n {
		id := fmt.Sprintf("%s-%04d", name, i)
		texts[id] = fmt.Sprintf("%s record %d is about topic %d", name, i, i%11)
		line, _ := json.Marshal(map[string]any{"id": id, "text": texts[id]})
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(filepath.Join(root, name+".jsonl"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return name + ".jsonl", texts
}

// pollJob calls GetJob until ok or the timeout.
func pollJob(t *testing.T, jc embeddv1.JobServiceClient, id string, timeout time.Duration, ok func(*embeddv1.Job) bool) *embeddv1.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := jc.GetJob(context.Background(), &embeddv1.GetJobRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s after %v: %v", id, timeout, j)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jobEnded(j *embeddv1.Job) bool {
	s := j.GetState()
	return s != embeddv1.JobState_JOB_STATE_QUEUED && s != embeddv1.JobState_JOB_STATE_RUNNING
}

// TestServeJobs: a job started over gRPC on a JSONL file under
// --jobs-source-root runs to SUCCEEDED, ListJobs lists it, and the
// collection's live version is the new one, bound to the job's model, with
// every record; a file outside the root is refused naming both.
func TestServeJobs(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, oldModel)
	testassets.Model(t, newModel)
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			data, root := t.TempDir(), t.TempDir()
			coll := fmt.Sprintf("jobs_%d", time.Now().UnixNano())
			src, texts := jobsCorpus(t, root, "corpus", 50)
			args := append([]string{"--data-dir", data, "--collections", coll, "--jobs-source-root", root}, be.flags...)
			conn, stop := runServe(t, testServeConfig(t, args...))
			defer func() { stop() }()
			ctx := context.Background()
			jc := embeddv1.NewJobServiceClient(conn)
			h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: jobService})
			if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health of %s: %v %v", jobService, h, err)
			}
			job, err := jc.StartReembed(ctx, &embeddv1.StartReembedRequest{
				Collection: coll, Model: newModel, Sources: []string{src}, MetadataFields: []string{"text"}, Truncate: true, BatchSize: 16,
			})
			if err != nil {
				t.Fatal(err)
			}
			job = pollJob(t, jc, job.GetId(), 3*time.Minute, jobEnded)
			c := job.GetCounts()
			if job.GetState() != embeddv1.JobState_JOB_STATE_SUCCEEDED || c.GetRead() != 50 || c.GetEmbedded() != 50 || c.GetFailed() != 0 ||
				!job.GetSwapped() || job.GetTargetVersion() == "" || job.GetFinishedAt() == nil || job.GetRequest().GetSources()[0] != src {
				t.Fatalf("job %v; want SUCCEEDED, 50 read and embedded, swapped", job)
			}
			list, err := jc.ListJobs(ctx, &embeddv1.ListJobsRequest{Collection: coll, States: []embeddv1.JobState{embeddv1.JobState_JOB_STATE_SUCCEEDED}})
			if err != nil || len(list.GetJobs()) != 1 || list.GetJobs()[0].GetId() != job.GetId() {
				t.Errorf("list: %v %v; want the job", list, err)
			}
			mv := testassets.Model(t, newModel).Version
			g, err := embeddv1.NewVectorServiceClient(conn).Get(ctx, &embeddv1.GetRequest{Collection: coll, Ids: []string{"corpus-0007"}})
			if err != nil || len(g.GetItems()) != 1 || g.GetItems()[0].GetModelVersion() != mv {
				t.Errorf("get through the alias: %v %v; want the record embedded by %s", g, err, mv)
			}
			_, err = jc.StartReembed(ctx, &embeddv1.StartReembedRequest{Collection: coll, Sources: []string{"/etc/passwd"}})
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "/etc/passwd") || !strings.Contains(err.Error(), root) {
				t.Errorf("source outside the root: %v; want PERMISSION_DENIED naming it and %s", err, root)
			}
			if _, err := jc.CancelJob(ctx, &embeddv1.CancelJobRequest{Id: job.GetId()}); status.Code(err) != codes.FailedPrecondition {
				t.Errorf("cancel a finished job: %v; want FAILED_PRECONDITION", err)
			}
			if _, err := jc.GetJob(ctx, &embeddv1.GetJobRequest{Id: "20260101t000000-00000000"}); status.Code(err) != codes.NotFound {
				t.Errorf("unknown job: %v; want NOT_FOUND", err)
			}
			stop()
			stop = func() {}
			live := checkLive(t, openCollection(t, data, coll, be), coll, newModel, texts, be.name == "embedded")
			if live.Version != job.GetTargetVersion() {
				t.Errorf("live version %s; want the job's %s", live.Version, job.GetTargetVersion())
			}
		})
	}
}

// TestServeJobsRestart: the server stops with one job midway and another
// QUEUED behind it (--jobs-concurrency 1); started again, it finishes
// both, the first continuing where it stopped.
func TestServeJobsRestart(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, oldModel)
	testassets.Model(t, newModel)
	be := backends(t)[0]
	data, root := t.TempDir(), t.TempDir()
	a, texts := jobsCorpus(t, root, "a", 160)
	b, _ := jobsCorpus(t, root, "b", 20)
	args := []string{"--data-dir", data, "--collections", "docs,faq", "--jobs-source-root", root, "--jobs-concurrency", "1"}
	conn, stop := runServe(t, testServeConfig(t, args...))
	ctx := context.Background()
	jc := embeddv1.NewJobServiceClient(conn)
	ja, err := jc.StartReembed(ctx, &embeddv1.StartReembedRequest{Collection: "docs", Model: newModel, Sources: []string{a}, Truncate: true, MaxRate: 40, BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	jb, err := jc.StartReembed(ctx, &embeddv1.StartReembedRequest{Collection: "faq", Model: newModel, Sources: []string{b}, Truncate: true})
	if err != nil {
		t.Fatal(err)
	}
	mid := pollJob(t, jc, ja.GetId(), time.Minute, func(j *embeddv1.Job) bool { return j.GetCounts().GetEmbedded() >= 16 })
	if q := pollJob(t, jc, jb.GetId(), 0, func(*embeddv1.Job) bool { return true }); q.GetState() != embeddv1.JobState_JOB_STATE_QUEUED {
		t.Errorf("second job %v; want QUEUED", q.GetState())
	}
	if mid.GetState() != embeddv1.JobState_JOB_STATE_RUNNING || mid.GetItemsPerSecond() <= 0 {
		t.Errorf("running job %v; want RUNNING with a rate", mid)
	}
	stop()

	conn, stop = runServe(t, testServeConfig(t, args...))
	jc = embeddv1.NewJobServiceClient(conn)
	ra := pollJob(t, jc, ja.GetId(), 3*time.Minute, jobEnded)
	rb := pollJob(t, jc, jb.GetId(), 3*time.Minute, jobEnded)
	stop()
	if ra.GetState() != embeddv1.JobState_JOB_STATE_SUCCEEDED || ra.GetRuns() != 2 || ra.GetCounts().GetEmbedded() != 160 || !ra.GetSwapped() {
		t.Errorf("resumed job %v; want SUCCEEDED in 2 runs, 160 embedded, swapped", ra)
	}
	if rb.GetState() != embeddv1.JobState_JOB_STATE_SUCCEEDED || rb.GetRuns() != 1 || rb.GetCounts().GetEmbedded() != 20 {
		t.Errorf("queued job %v; want SUCCEEDED in 1 run, 20 embedded", rb)
	}
	live := checkLive(t, openCollection(t, data, "docs", be), "docs", newModel, texts, true)
	if live.Version != ra.GetTargetVersion() {
		t.Errorf("live version %s; want the job's %s", live.Version, ra.GetTargetVersion())
	}
}
