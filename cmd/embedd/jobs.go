package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/jobs"
	"github.com/embedd/embedd/internal/reembed"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// The JobService of `embedd serve`: re-embedding jobs (internal/jobs) run
// in the server process through its engine and index, their records in
// <data-dir>/jobs and their reembed state in <data-dir>/reembed (where
// `embedd reembed` keeps it: `embedd reembed finalize` works on either).

// jobService is the JobService's health name.
var jobService = embeddv1.JobService_ServiceDesc.ServiceName

// jobsConfig is the jobs settings of serve.
type jobsConfig struct {
	sourceRoot  string
	concurrency int
}

func (c *jobsConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.sourceRoot, "jobs-source-root", "", "directory whose files re-embedding jobs (JobService) may read; empty: jobs read collections only, never files")
	fs.IntVar(&c.concurrency, "jobs-concurrency", 1, "re-embedding jobs running at once; the others wait QUEUED")
}

// open starts the job manager over the server's engine and index; jobs
// the server left QUEUED or RUNNING resume.
func (c *jobsConfig) open(sc *serveConfig, eng *engine.Engine, st *openedStores, logger *slog.Logger) (*jobs.Manager, error) {
	if c.concurrency < 1 {
		return nil, fmt.Errorf("%w: --jobs-concurrency %d: want at least 1", errUsage, c.concurrency)
	}
	dir := sc.stores.dir()
	m, err := jobs.New(jobs.Options{
		Dir: filepath.Join(dir, "jobs"), StateDir: filepath.Join(dir, "reembed"), SourceRoot: c.sourceRoot,
		Target: reembed.FromIndex(st.idx), Models: eng,
		DefaultCollection: st.idx.Collections()[0].Name, DefaultModel: sc.defaultModel,
		MaxConcurrent: c.concurrency, MaxBatchSize: sc.maxClientBatch, MaxTextBytes: sc.maxTextBytes,
		Logger: logger,
	})
	if errors.Is(err, jobs.ErrInvalid) {
		return nil, fmt.Errorf("%w: --jobs-source-root: %v", errUsage, err)
	}
	return m, err
}
