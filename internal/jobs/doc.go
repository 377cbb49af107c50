// Package jobs runs batch re-embedding jobs (internal/reembed) inside the
// server process, for the JobService API: it queues them, runs at most
// Options.MaxConcurrent at once through the server's index (at bulk
// priority, so online requests go first), reports their progress, cancels
// them, and keeps their records on disk so that they survive a restart.
//
// Records: one JSON file per job, <Dir>/<id>.json (Job), written
// atomically (internal/fsutil: temporary file, fsync, rename, directory
// fsync) with mode 0600 in a 0700 directory, on every change of state and,
// while the job runs, at most every Options.SaveEvery with its counters.
// Its dead-letter file is <Dir>/<id>.dead-letter.jsonl. The reembed state
// (checkpoints) lives in Options.StateDir, which `embedd reembed` uses too.
//
// Invariants:
//   - Resume is exact: a job found QUEUED or RUNNING when the Manager is
//     created (the server stopped or died) is queued again and run with the
//     same arguments; reembed's checkpoints make it continue where it
//     stopped, with no duplicates and no gaps, or fail it with the list of
//     what changed (a source file modified meanwhile). A Spec.Reset is
//     applied once: a resumed job does not discard its own progress.
//   - One active job per collection: the reembed state of a collection is
//     one job's, so a second QUEUED or RUNNING job on it is refused
//     (ErrBusy).
//   - Files are read only under Options.SourceRoot: a source is cleaned
//     (relative ones joined to the root) and must be inside the root, and
//     so must every file it matches once its symbolic links are resolved;
//     with no root, file sources are refused (ErrNoSourceRoot). Collection
//     sources need no root.
//   - Every input is bounded (the Max* constants, Options.MaxBatchSize),
//     and so is the history: at most Options.MaxHistory records, the
//     oldest finished ones removed first (ErrFull when all are active).
//   - Cancel stops a job through its context: it ends CANCELLED, the
//     version it wrote stays and the alias is not swapped. Close stops the
//     running jobs the same way but leaves their records RUNNING, so the
//     next Manager resumes them.
//
// Concurrency: a Manager's methods are safe for concurrent use. It owns
// one goroutine per running job and stops them in Close.
package jobs
