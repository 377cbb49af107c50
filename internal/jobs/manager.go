package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Causes of a job's context's cancellation.
var (
	errCancelled = errors.New("jobs: cancelled by CancelJob")
	errShutdown  = errors.New("jobs: server shutting down")
)

// Manager queues, runs, reports and cancels jobs; see the package doc.
type Manager struct {
	o    Options
	root string // the source root, resolved; "" refuses file sources
	ctx  context.Context
	stop context.CancelCauseFunc
	wg   sync.WaitGroup // the running jobs' goroutines

	mu      sync.Mutex // guards jobs, running, closed and every entry
	jobs    map[string]*entry
	running int
	closed  bool
}

// entry is a job's record and, while it runs, its controls.
type entry struct {
	job      Job
	cancel   context.CancelCauseFunc // while RUNNING
	done     chan struct{}           // closed when the run ends; while RUNNING
	lastSave time.Time
}

// New loads the records in o.Dir and starts again the jobs that were
// QUEUED or RUNNING when the last Manager stopped.
func New(o Options) (*Manager, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	root, err := openRoot(o.SourceRoot)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancelCause(context.Background())
	m := &Manager{o: o, root: root, ctx: ctx, stop: stop, jobs: map[string]*entry{}}
	loaded, err := m.openDir()
	if err != nil {
		stop(errShutdown)
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, j := range loaded {
		if j.State == Running {
			j.State = Queued
			m.o.Logger.Info("jobs: resuming a job the server stopped", "job", j.ID, "collection", j.Spec.Collection, "embedded", j.Counters.Embedded)
			m.saveLogged(j)
		}
		m.jobs[j.ID] = &entry{job: j}
	}
	m.scheduleLocked()
	return m, nil
}

// Start validates s, queues a job for it and returns its record.
func (m *Manager) Start(ctx context.Context, s Spec) (Job, error) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return Job{}, ErrClosed
	}
	if err := m.check(&s); err != nil {
		return Job{}, err
	}
	if err := m.resolve(ctx, s); err != nil {
		return Job{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Job{}, ErrClosed
	}
	for _, e := range m.jobs {
		if e.job.State.Active() && e.job.Spec.Collection == s.Collection {
			return Job{}, fmt.Errorf("%w: collection %q has job %s %s; wait for it or cancel it", ErrBusy, s.Collection, e.job.ID, e.job.State)
		}
	}
	if err := m.pruneLocked(); err != nil {
		return Job{}, err
	}
	now := time.Now().UTC()
	j := Job{Format: recordFormat, ID: newID(now), Spec: s, State: Queued, CreatedAt: now}
	j.DeadLetter = m.deadLetterPath(j.ID)
	if _, taken := m.jobs[j.ID]; taken {
		return Job{}, fmt.Errorf("%w: job id %s taken; try again", ErrBusy, j.ID)
	}
	if err := m.makeDir(); err != nil {
		return Job{}, err
	}
	if err := m.save(j); err != nil {
		return Job{}, fmt.Errorf("jobs: write the job record: %w", err)
	}
	m.jobs[j.ID] = &entry{job: j}
	m.o.Logger.Info("jobs: queued", "job", j.ID, "collection", s.Collection, "model", s.Model, "sources", strings.Join(s.Sources, ","))
	m.scheduleLocked()
	return m.jobs[j.ID].job, nil
}

// Get returns a job's record.
func (m *Manager) Get(id string) (Job, error) {
	if err := checkID(id); err != nil {
		return Job{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.jobs[id]
	if !ok {
		return Job{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return e.job, nil
}

// Filter selects the jobs List returns.
type Filter struct {
	// Collection: only its jobs; "": all.
	Collection string
	// States: only jobs in these; empty: all.
	States []State
	// Allowed, when set, hides the jobs of collections it refuses (a
	// caller's key restricted to collections).
	Allowed func(collection string) bool
	// PageSize: most jobs returned; 0: 100; at most 1000.
	PageSize int
	// PageToken: List's next page token.
	PageToken string
}

// List returns the jobs f selects, newest first, a page at a time; the
// token is "" on the last page.
func (m *Manager) List(f Filter) ([]Job, string, error) {
	switch {
	case f.PageSize < 0 || f.PageSize > 1000:
		return nil, "", fmt.Errorf("%w: page_size %d: at most 1000", ErrInvalid, f.PageSize)
	case f.PageSize == 0:
		f.PageSize = 100
	}
	var after *Job
	if f.PageToken != "" {
		ns, id, ok := strings.Cut(f.PageToken, "_")
		n, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil || checkID(id) != nil {
			return nil, "", fmt.Errorf("%w: page_token %q is not one ListJobs returned", ErrInvalid, f.PageToken)
		}
		after = &Job{ID: id, CreatedAt: time.Unix(0, n).UTC()}
	}
	m.mu.Lock()
	var out []Job
	for _, e := range m.jobs {
		j := e.job
		if (f.Collection == "" || j.Spec.Collection == f.Collection) && (len(f.States) == 0 || slices.Contains(f.States, j.State)) &&
			(f.Allowed == nil || f.Allowed(j.Spec.Collection)) && (after == nil || older(j, *after) < 0) {
			out = append(out, j)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Job) int { return older(b, a) })
	if len(out) <= f.PageSize {
		return out, "", nil
	}
	out = out[:f.PageSize]
	last := out[len(out)-1]
	return out, fmt.Sprintf("%d_%s", last.CreatedAt.UnixNano(), last.ID), nil
}

// Cancel stops a QUEUED or RUNNING job and returns its record once it has
// stopped (or ctx ended: then the job stops on its own shortly). A job
// that finished meanwhile keeps its final state.
func (m *Manager) Cancel(ctx context.Context, id string) (Job, error) {
	if err := checkID(id); err != nil {
		return Job{}, err
	}
	m.mu.Lock()
	e, ok := m.jobs[id]
	switch {
	case m.closed: // a job Close stopped stays RUNNING, to resume
		m.mu.Unlock()
		return Job{}, ErrClosed
	case !ok:
		m.mu.Unlock()
		return Job{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	switch e.job.State {
	case Cancelled:
		m.mu.Unlock()
		return e.job, nil
	case Queued:
		e.job.State, e.job.FinishedAt = Cancelled, time.Now().UTC()
		m.saveLogged(e.job)
		m.mu.Unlock()
		return e.job, nil
	case Running:
	default:
		m.mu.Unlock()
		return Job{}, fmt.Errorf("%w: job %s is %s", ErrFinished, id, e.job.State)
	}
	e.cancel(errCancelled)
	done := e.done
	m.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return m.Get(id)
}

// Close stops the running jobs, leaving their records RUNNING so that the
// next Manager resumes them, and waits for them. Later calls of Start
// return ErrClosed. Close is idempotent.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.stop(errShutdown)
	m.wg.Wait()
}

// scheduleLocked starts the oldest QUEUED jobs while fewer than
// MaxConcurrent run. m.mu is held.
func (m *Manager) scheduleLocked() {
	if m.closed {
		return
	}
	var queued []*entry
	for _, e := range m.jobs {
		if e.job.State == Queued {
			queued = append(queued, e)
		}
	}
	slices.SortFunc(queued, func(a, b *entry) int { return older(a.job, b.job) })
	for _, e := range queued {
		if m.running >= m.o.MaxConcurrent {
			return
		}
		m.running++
		e.job.State, e.job.StartedAt, e.job.Runs = Running, time.Now().UTC(), e.job.Runs+1
		e.job.Error, e.job.Rate, e.job.ETA = "", 0, 0
		m.saveLogged(e.job)
		ctx, cancel := context.WithCancelCause(m.ctx)
		e.cancel, e.done = cancel, make(chan struct{})
		m.wg.Add(1)
		go m.run(ctx, e, e.job)
	}
}
