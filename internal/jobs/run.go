package jobs

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/embedd/embedd/internal/reembed"
)

// run runs one job to its end (or its context's) and records the outcome.
// It owns nothing but the job's run; it reports to m under m.mu.
func (m *Manager) run(ctx context.Context, e *entry, j Job) {
	defer m.wg.Done()
	sum, err := m.runJob(ctx, e, j)
	m.finish(ctx, e, sum, err)
}

// runJob builds the job's reembed options, as `embedd reembed` does, and
// runs it.
func (m *Manager) runJob(ctx context.Context, e *entry, j Job) (*reembed.Summary, error) {
	o, err := m.options(j)
	if err != nil {
		return nil, err
	}
	// The dead-letter file is created here, 0600, so that reembed opens it
	// with that mode rather than creating it 0644.
	f, err := os.OpenFile(o.DeadLetter, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	f.Close()
	o.Progress = &progress{m: m, e: e, collection: j.Spec.Collection}
	return reembed.Run(ctx, m.o.Target, o)
}

// options maps a job's Spec to reembed options.
func (m *Manager) options(j Job) (reembed.Options, error) {
	s := j.Spec
	o := reembed.DefaultOptions()
	mf, err := m.o.Models.Manifest(s.Model)
	if err != nil {
		return o, err
	}
	o.Collection, o.Model, o.ModelVersion, o.Version = s.Collection, s.Model, mf.Version, s.Version
	o.Fields = reembed.Fields{ID: s.IDField, Text: s.TextField, Metadata: s.MetadataFields}
	o.Truncate, o.MaxRate, o.BatchSize = s.Truncate, s.MaxRate, min(s.BatchSize, m.o.MaxBatchSize)
	if o.BatchSize <= 0 {
		o.BatchSize = min(reembed.DefaultOptions().BatchSize, m.o.MaxBatchSize)
	}
	if m.o.InFlight > 0 {
		o.InFlight = m.o.InFlight
	}
	o.Limits.MaxTextBytes = m.o.MaxTextBytes
	o.StateDir, o.DeadLetter = m.o.StateDir, j.DeadLetter
	o.NoSwap, o.DeleteMissing = s.NoSwap, s.DeleteMissing
	o.Reset = s.Reset && !j.ResetDone
	o.Logger = m.o.Logger.With("job", j.ID)
	if name, version := collectionSource(s.Sources); name != "" {
		o.FromCollection, o.FromVersion = name, version
		return o, nil
	}
	o.Files, err = m.files(s)
	return o, err
}

// finish records the end of a run: SUCCEEDED or PARTIAL when it
// finished, CANCELLED when CancelJob stopped it, FAILED on an error; a run
// stopped by Close stays RUNNING on disk (the next Manager resumes it).
func (m *Manager) finish(ctx context.Context, e *entry, sum *reembed.Summary, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer close(e.done)
	m.running--
	e.cancel(nil)
	e.cancel = nil
	j := &e.job
	if sum != nil {
		j.Counters, j.Target, j.Incremental = sum.Counters, sum.Target, sum.Incremental
		if sum.Finalized != nil {
			j.Swapped = sum.Finalized.Swapped
		}
	}
	cause := context.Cause(ctx)
	switch {
	case err == nil && sum.Counters.Failed > 0:
		j.State = Partial
	case err == nil:
		j.State, j.Progress = Succeeded, 1
	case ctx.Err() != nil && errors.Is(cause, errShutdown):
		m.o.Logger.Info("jobs: stopped by the shutdown; it resumes at the next start", "job", j.ID, "embedded", j.Counters.Embedded)
		j.ETA = 0
		m.saveLogged(*j)
		return
	case ctx.Err() != nil && errors.Is(cause, errCancelled):
		j.State = Cancelled
	default:
		j.State, j.Error = Failed, err.Error()
	}
	j.ETA, j.FinishedAt, j.ResetDone = 0, time.Now().UTC(), true
	m.saveLogged(*j)
	m.o.Logger.Info("jobs: finished", "job", j.ID, "state", j.State, "embedded", j.Counters.Embedded, "failed", j.Counters.Failed, "swapped", j.Swapped, "err", j.Error)
	m.scheduleLocked()
}

// progress is a running job's reembed.Progress: it updates the record and
// saves it at most every Options.SaveEvery.
type progress struct {
	m          *Manager
	e          *entry
	collection string
	target     string // the version written, once known
	startBytes int64
	started    bool
}

// Update implements reembed.Progress.
func (p *progress) Update(r reembed.Report) {
	if !p.started {
		p.startBytes, p.started = r.BytesDone, true
	}
	if p.target == "" {
		p.target, _ = reembed.UnfinishedTarget(p.m.o.StateDir, p.collection)
	}
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	j := &p.e.job
	// The first report follows reembed's open: a reset, if any, is done.
	j.Counters, j.Rate, j.ETA, j.ResetDone = r.Counters, r.Rate, r.ETA(p.startBytes), true
	if p.target != "" {
		j.Target = p.target
	}
	if r.BytesTotal > 0 {
		j.Progress = float64(r.BytesDone) / float64(r.BytesTotal)
	}
	if time.Since(p.e.lastSave) >= p.m.o.SaveEvery {
		p.e.lastSave = time.Now()
		p.m.saveLogged(*j)
	}
}
