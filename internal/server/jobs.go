package server

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/embedd/embedd/internal/auth"
	"github.com/embedd/embedd/internal/jobs"
	"github.com/embedd/embedd/internal/metrics"
	"github.com/embedd/embedd/internal/reembed"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// JobManager is what the JobService calls: jobs.Manager. Errors are the
// manager's, the index's and the engine's (see jobStatus).
type JobManager interface {
	Start(ctx context.Context, s jobs.Spec) (jobs.Job, error)
	Get(id string) (jobs.Job, error)
	List(f jobs.Filter) ([]jobs.Job, string, error)
	Cancel(ctx context.Context, id string) (jobs.Job, error)
}

var _ JobManager = (*jobs.Manager)(nil)

// Jobs implements embedd.v1.JobService over a JobManager: message
// conversion, the caller's collection restrictions (a key limited to some
// collections sees and controls only their jobs) and error mapping.
type Jobs struct {
	embeddv1.UnimplementedJobServiceServer
	m JobManager
	s *Service
}

var _ embeddv1.JobServiceServer = (*Jobs)(nil)

// NewJobs returns the JobService; it shares s's options and metrics.
func NewJobs(m JobManager, s *Service) *Jobs { return &Jobs{m: m, s: s} }

// StartReembed implements JobService.StartReembed.
func (j *Jobs) StartReembed(ctx context.Context, req *embeddv1.StartReembedRequest) (_ *embeddv1.Job, err error) {
	defer j.s.observe("StartReembed", metrics.Collection, req.GetCollection(), time.Now(), &err)
	spec := specOf(req)
	// The interceptor checked the collection written; the key must be
	// allowed the collection a collection source reads, too.
	if src, ok := sourceCollection(spec.Sources); ok {
		if p := auth.FromContext(ctx); !p.MayCollection(src) {
			return nil, status.Errorf(codes.PermissionDenied, "key %q may not use collection %q (the source)", p.ID, src)
		}
	}
	job, err := j.m.Start(ctx, spec)
	if err != nil {
		return nil, j.status(err)
	}
	return jobProto(job), nil
}

// GetJob implements JobService.GetJob.
func (j *Jobs) GetJob(ctx context.Context, req *embeddv1.GetJobRequest) (_ *embeddv1.Job, err error) {
	defer j.s.observe("GetJob", metrics.NoName, "", time.Now(), &err)
	job, err := j.m.Get(req.GetId())
	if err != nil {
		return nil, j.status(err)
	}
	if err := mayJob(ctx, job); err != nil {
		return nil, err
	}
	return jobProto(job), nil
}

// ListJobs implements JobService.ListJobs.
func (j *Jobs) ListJobs(ctx context.Context, req *embeddv1.ListJobsRequest) (_ *embeddv1.ListJobsResponse, err error) {
	defer j.s.observe("ListJobs", metrics.Collection, req.GetCollection(), time.Now(), &err)
	f := jobs.Filter{Collection: req.GetCollection(), PageSize: int(min(req.GetPageSize(), 1<<20)), PageToken: req.GetPageToken()}
	if p := auth.FromContext(ctx); p != nil {
		f.Allowed = p.MayCollection
	}
	for _, st := range req.GetStates() {
		s, ok := stateOf[st]
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "states: unknown job state %v", st)
		}
		f.States = append(f.States, s)
	}
	list, next, err := j.m.List(f)
	if err != nil {
		return nil, j.status(err)
	}
	out := &embeddv1.ListJobsResponse{NextPageToken: next}
	for _, job := range list {
		out.Jobs = append(out.Jobs, jobProto(job))
	}
	return out, nil
}

// CancelJob implements JobService.CancelJob.
func (j *Jobs) CancelJob(ctx context.Context, req *embeddv1.CancelJobRequest) (_ *embeddv1.Job, err error) {
	defer j.s.observe("CancelJob", metrics.NoName, "", time.Now(), &err)
	job, err := j.m.Get(req.GetId())
	if err == nil {
		err = mayJob(ctx, job)
	}
	if err == nil {
		job, err = j.m.Cancel(ctx, req.GetId())
	}
	if err != nil {
		return nil, j.status(err)
	}
	return jobProto(job), nil
}

// mayJob refuses a job of a collection the caller's key may not use.
func mayJob(ctx context.Context, job jobs.Job) error {
	if p := auth.FromContext(ctx); !p.MayCollection(job.Spec.Collection) {
		return status.Errorf(codes.PermissionDenied, "key %q may not use collection %q (job %s)", p.ID, job.Spec.Collection, job.ID)
	}
	return nil
}

// status maps the manager's errors, then the others through toStatus.
func (j *Jobs) status(err error) error {
	switch {
	case errors.Is(err, jobs.ErrInvalid), errors.Is(err, reembed.ErrSource), errors.Is(err, reembed.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, jobs.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, jobs.ErrOutsideRoot):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, jobs.ErrNoSourceRoot), errors.Is(err, jobs.ErrBusy), errors.Is(err, jobs.ErrFinished):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, jobs.ErrFull):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, jobs.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	}
	return toStatus(err, &j.s.opts)
}

func specOf(r *embeddv1.StartReembedRequest) jobs.Spec {
	return jobs.Spec{
		Collection: r.GetCollection(), Model: r.GetModel(), Sources: r.GetSources(), Format: r.GetFormat(),
		IDField: r.GetIdField(), TextField: r.GetTextField(), MetadataFields: r.GetMetadataFields(),
		Truncate: r.GetTruncate(), Version: r.GetVersion(), NoSwap: r.GetNoSwap(), DeleteMissing: r.GetDeleteMissing(),
		MaxRate: r.GetMaxRate(), BatchSize: int(min(r.GetBatchSize(), 1<<20)), Reset: r.GetDiscardState(),
	}
}

// sourceCollection returns the collection a "collection:NAME[@VERSION]"
// source reads.
func sourceCollection(sources []string) (string, bool) {
	if len(sources) != 1 || !strings.HasPrefix(sources[0], "collection:") {
		return "", false
	}
	name, _, _ := strings.Cut(strings.TrimPrefix(sources[0], "collection:"), "@")
	return name, true
}

var stateOf = map[embeddv1.JobState]jobs.State{
	embeddv1.JobState_JOB_STATE_QUEUED: jobs.Queued, embeddv1.JobState_JOB_STATE_RUNNING: jobs.Running,
	embeddv1.JobState_JOB_STATE_SUCCEEDED: jobs.Succeeded, embeddv1.JobState_JOB_STATE_FAILED: jobs.Failed,
	embeddv1.JobState_JOB_STATE_CANCELLED: jobs.Cancelled, embeddv1.JobState_JOB_STATE_PARTIAL: jobs.Partial,
}

func jobProto(j jobs.Job) *embeddv1.Job {
	s, c := j.Spec, j.Counters
	out := &embeddv1.Job{
		Id: j.ID, State: embeddv1.JobState(embeddv1.JobState_value["JOB_STATE_"+string(j.State)]),
		Request: &embeddv1.StartReembedRequest{
			Collection: s.Collection, Model: s.Model, Sources: s.Sources, Format: s.Format, IdField: s.IDField,
			TextField: s.TextField, MetadataFields: s.MetadataFields, Truncate: s.Truncate, Version: s.Version,
			NoSwap: s.NoSwap, DeleteMissing: s.DeleteMissing, MaxRate: s.MaxRate, BatchSize: uint32(s.BatchSize), DiscardState: s.Reset,
		},
		Counts: &embeddv1.JobCounts{
			Read: c.Read, Embedded: c.Embedded, Skipped: c.Skipped, Failed: c.Failed, Deleted: c.Deleted, Duplicates: c.Duplicates,
		},
		ItemsPerSecond: j.Rate, Progress: j.Progress, CreatedAt: timestamppb.New(j.CreatedAt), Error: j.Error,
		DeadLetter: j.DeadLetter, TargetVersion: j.Target, Swapped: j.Swapped, Incremental: j.Incremental, Runs: uint32(j.Runs),
	}
	if j.ETA > 0 {
		out.Eta = durationpb.New(j.ETA)
	}
	if !j.StartedAt.IsZero() {
		out.StartedAt = timestamppb.New(j.StartedAt)
	}
	if !j.FinishedAt.IsZero() {
		out.FinishedAt = timestamppb.New(j.FinishedAt)
	}
	return out
}
