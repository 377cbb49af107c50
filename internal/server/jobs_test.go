package server_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/embedd/embedd/internal/auth"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/jobs"
	"github.com/embedd/embedd/internal/reembed"
	"github.com/embedd/embedd/internal/server"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// fakeJobs is a JobManager holding fixed jobs; every call fails with err.
type fakeJobs struct {
	mu        sync.Mutex // guards the fields below
	err       error
	jobs      map[string]jobs.Job
	started   []jobs.Spec
	cancelled []string
}

func (f *fakeJobs) Start(_ context.Context, s jobs.Spec) (jobs.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, s)
	return jobs.Job{ID: "new", Spec: s, State: jobs.Queued}, f.err
}

func (f *fakeJobs) Get(id string) (jobs.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return jobs.Job{}, f.err
	}
	j, ok := f.jobs[id]
	if !ok {
		return j, fmt.Errorf("%w: %q", jobs.ErrNotFound, id)
	}
	return j, nil
}

func (f *fakeJobs) List(flt jobs.Filter) ([]jobs.Job, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []jobs.Job
	for _, j := range f.jobs {
		if flt.Allowed == nil || flt.Allowed(j.Spec.Collection) {
			out = append(out, j)
		}
	}
	return out, "", f.err
}

func (f *fakeJobs) Cancel(_ context.Context, id string) (jobs.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelled = append(f.cancelled, id)
	j := f.jobs[id]
	j.State = jobs.Cancelled
	return j, f.err
}

// calls returns the specs started and the ids cancelled so far.
func (f *fakeJobs) calls() ([]jobs.Spec, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]jobs.Spec(nil), f.started...), append([]string(nil), f.cancelled...)
}

// serveJobs runs the JobService over f with the auth interceptors: key
// "all" may use every collection, "docs" only docs. It returns a client
// and the secrets.
func serveJobs(t *testing.T, f *fakeJobs) (embeddv1.JobServiceClient, map[string]string) {
	t.Helper()
	secrets := map[string]string{}
	file := "keys:\n"
	for id, colls := range map[string]string{"all": "", "docs": "\n    collections: [docs]"} {
		k, err := auth.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		secrets[id] = k
		file += fmt.Sprintf("  - id: %s\n    sha256: %s\n    scopes: [jobs]%s\n", id, auth.HashKey(k), colls)
	}
	path := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := auth.LoadKeys(path, quiet())
	if err != nil {
		t.Fatal(err)
	}
	unary, stream := auth.Interceptors(auth.Options{Keys: keys, DefaultCollection: "docs", Audit: quiet()})
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	embeddv1.RegisterJobServiceServer(gs, server.NewJobs(f, server.New(nil, server.Options{Logger: quiet()})))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop() })
	return embeddv1.NewJobServiceClient(conn), secrets
}

func withKey(secret string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+secret)
}

// TestJobsErrorCodes: the manager's, the index's and the engine's errors
// map to their gRPC codes, the message kept.
func TestJobsErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{jobs.ErrInvalid, codes.InvalidArgument},
		{reembed.ErrSource, codes.InvalidArgument},
		{jobs.ErrOutsideRoot, codes.PermissionDenied},
		{jobs.ErrNoSourceRoot, codes.FailedPrecondition},
		{jobs.ErrBusy, codes.FailedPrecondition},
		{jobs.ErrFinished, codes.FailedPrecondition},
		{jobs.ErrFull, codes.ResourceExhausted},
		{jobs.ErrClosed, codes.Unavailable},
		{jobs.ErrNotFound, codes.NotFound},
		{index.ErrUnknownCollection, codes.NotFound},
		{engine.ErrUnknownModel, codes.NotFound},
		{errors.New("disk on fire"), codes.Internal},
	} {
		jc, secrets := serveJobs(t, &fakeJobs{err: fmt.Errorf("detail: %w", tc.err)})
		_, err := jc.StartReembed(withKey(secrets["all"]), &embeddv1.StartReembedRequest{Sources: []string{"x.jsonl"}})
		if status.Code(err) != tc.want {
			t.Errorf("%v: %v; want %v", tc.err, err, tc.want)
		}
		if tc.want != codes.Internal && status.Convert(err).Message() != "detail: "+tc.err.Error() {
			t.Errorf("%v: message %q; want the error's text", tc.err, status.Convert(err).Message())
		}
	}
}

// TestJobsCollectionKeys: a key limited to collections sees, starts and
// cancels only their jobs, and reads only them as a source.
func TestJobsCollectionKeys(t *testing.T) {
	now := time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC)
	f := &fakeJobs{jobs: map[string]jobs.Job{
		"d": {ID: "d", Spec: jobs.Spec{Collection: "docs", Sources: []string{"a.jsonl"}, BatchSize: 8}, State: jobs.Running,
			Counters: reembed.Counters{Read: 10, Embedded: 9, Failed: 1}, Rate: 4.5, ETA: 3 * time.Second, CreatedAt: now, StartedAt: now, Runs: 2},
		"o": {ID: "o", Spec: jobs.Spec{Collection: "other"}, State: jobs.Partial, CreatedAt: now, FinishedAt: now},
	}}
	jc, secrets := serveJobs(t, f)
	docs := withKey(secrets["docs"])
	j, err := jc.GetJob(docs, &embeddv1.GetJobRequest{Id: "d"})
	if err != nil || j.GetState() != embeddv1.JobState_JOB_STATE_RUNNING || j.GetCounts().GetEmbedded() != 9 || j.GetCounts().GetFailed() != 1 ||
		j.GetEta().AsDuration() != 3*time.Second || j.GetItemsPerSecond() != 4.5 || j.GetRuns() != 2 || j.GetRequest().GetBatchSize() != 8 ||
		!j.GetStartedAt().AsTime().Equal(now) || j.GetFinishedAt() != nil {
		t.Errorf("get: %v %v", j, err)
	}
	if _, err := jc.GetJob(docs, &embeddv1.GetJobRequest{Id: "o"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("get another collection's job: %v; want PERMISSION_DENIED", err)
	}
	_, err = jc.CancelJob(docs, &embeddv1.CancelJobRequest{Id: "o"})
	if _, cancelled := f.calls(); status.Code(err) != codes.PermissionDenied || len(cancelled) != 0 {
		t.Errorf("cancel another collection's job: %v (cancelled %v); want PERMISSION_DENIED and no cancel", err, cancelled)
	}
	if l, err := jc.ListJobs(docs, &embeddv1.ListJobsRequest{}); err != nil || len(l.GetJobs()) != 1 || l.GetJobs()[0].GetId() != "d" {
		t.Errorf("list: %v %v; want docs' job only", l, err)
	}
	if l, err := jc.ListJobs(withKey(secrets["all"]), &embeddv1.ListJobsRequest{}); err != nil || len(l.GetJobs()) != 2 {
		t.Errorf("list with the unrestricted key: %v %v; want both", l, err)
	}
	for _, req := range []*embeddv1.StartReembedRequest{
		{Collection: "other", Sources: []string{"a.jsonl"}},
		{Collection: "docs", Sources: []string{"collection:other@v1"}},
	} {
		if _, err := jc.StartReembed(docs, req); status.Code(err) != codes.PermissionDenied {
			t.Errorf("start %v: %v; want PERMISSION_DENIED", req, err)
		}
	}
	if started, _ := f.calls(); len(started) != 0 {
		t.Errorf("refused starts reached the manager: %v", started)
	}
	j, err = jc.StartReembed(docs, &embeddv1.StartReembedRequest{Sources: []string{"collection:docs"}, MetadataFields: []string{"t"}, DiscardState: true, MaxRate: 5})
	started, _ := f.calls()
	if err != nil || j.GetState() != embeddv1.JobState_JOB_STATE_QUEUED || len(started) != 1 || !started[0].Reset || started[0].MaxRate != 5 || started[0].MetadataFields[0] != "t" {
		t.Errorf("start: %v %v (spec %+v)", j, err, started)
	}
	if _, err := jc.ListJobs(docs, &embeddv1.ListJobsRequest{States: []embeddv1.JobState{99}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown state: %v; want INVALID_ARGUMENT", err)
	}
}
