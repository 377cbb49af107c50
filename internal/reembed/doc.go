// Package reembed runs batch re-embedding jobs: it reads records (id, text,
// metadata) from JSONL, CSV or Parquet files or from a version of a stored
// collection, embeds their texts with a model version through the index
// (internal/index, at bulk priority) and writes them to a collection
// version bound to that model, then swaps the collection's alias to it.
// The index embeds with an Embedder: this process's engine, or a running
// server's EmbedStream (internal/reembed/remote); the job writes the
// stores itself either way.
//
// A job is one logical run over its sources, possibly split over N shard
// processes (Shard). Everything a job keeps lives in its state directory
// (Options.StateDir), which every shard of a job shares:
//
//	<state-dir>/<collection>/job.json                 the job: its arguments, target version, mode
//	<state-dir>/<collection>/shard-I-of-N.json        shard I's checkpoint
//	<state-dir>/<collection>/shard-I-of-N.done        shard I finished: its counters
//	<state-dir>/<collection>/shard-I-of-N.export.jsonl a collection source's records (shard I's)
//	<state-dir>/<collection>/dead-letter-I-of-N.jsonl bad records of shard I (unless DeadLetter is set)
//	<state-dir>/<collection>/finalize.lock            the coordinator's claim
//	<state-dir>/<collection>/finalized.json           the alias was swapped (or left, --no-swap)
//
// Invariants:
//   - No duplicates, no gaps on resume. A checkpoint names a source position
//     (file, record, byte offset) before which every record was
//     acknowledged: upserted (both stores answered), skipped, left to another
//     shard or written to the dead-letter file. It is written only after the
//     upserts of all records before it were acknowledged, in source order,
//     whatever order the concurrent upserts finish in. A process killed at
//     any moment (SIGKILL included) and restarted with the same arguments
//     resumes at its last checkpoint and upserts again at most the batches
//     upserted but not yet committed: at most InFlight+2 (the one the
//     committer waits on, its queue of InFlight, and one the producer hands
//     to an upserter before it can queue it); upserts are idempotent by
//     id, so each id ends up
//     in the version exactly once. The dead-letter file is truncated back to
//     the size the checkpoint recorded, so its lines are not repeated either.
//   - Deterministic partition: a record belongs to shard
//     FNV-1a-64(id) mod N (Shard.Owns), the same in every process, so N
//     shards together write exactly the records one process would.
//   - Same arguments or refusal: job.json records the arguments that
//     decide what is written (collection, model and its version, target
//     version, each source with its size and modification time, the field
//     mapping, truncation, the shard count, --delete-missing); a run whose
//     arguments differ from an unfinished job's is refused with the list of
//     what changed, before anything is written (Reset discards the job).
//   - The target version's name, when not given, is derived from a hash of
//     those arguments, so every shard and every restart agrees on it.
//   - One bad record never fails a batch: a record that cannot be parsed,
//     has no id or text, is not valid UTF-8, or that the index refuses (a
//     text too long with truncation off) goes to the dead-letter file, one
//     JSON line {position, id, reason}, and the rest of its batch is written.
//
// Checkpoint format (JSON, written to a temporary file, fsynced, renamed
// over the old one, directory fsynced): {format, shard, args, position,
// dead_letter_bytes, counters, phase, updated_at}; see Checkpoint.
//
// Finalize: a shard that finishes writes its done marker, then looks for
// all N markers; the process that sees them all and wins finalize.lock
// (an exclusive create) verifies that the version holds at least as many
// records as the shards wrote (exactly as many on the embedded store; Milvus
// counts overwritten rows until compaction) and swaps the alias once.
// Finalize (`embedd reembed finalize`) does the same step by hand, for a
// job whose coordinator died or whose shards ran with --no-swap.
//
// Incremental mode: when the model's version equals the live version's,
// the job writes into the live version and skips records whose text hash
// (index.TextHash) and metadata are unchanged; it loads id → hash of this
// shard's records with ScanVersion first (memory: about 80 bytes plus the
// id per record). With DeleteMissing it then deletes this shard's ids that
// the source no longer has (a second pass over the source keeps the set of
// its ids: about 60 bytes plus the id per record).
//
// Exit codes of `embedd reembed` (Summary.ExitCode): 0 every record
// written, 1 some records failed (listed in the dead-letter file), 2 the
// job could not run.
//
// Concurrency: a Job is run once, by one goroutine; it owns the goroutines
// it starts (Options.InFlight upserts and one committer) and stops them
// before Run returns. Shards of one job may run in separate processes at the
// same time against a server store (Milvus and Redis); the embedded store is
// process-local, so against it shards run one after another.
package reembed
