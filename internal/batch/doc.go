// Package batch is a generic dynamic batcher. Callers submit items one at a
// time (Submit) or as a request (SubmitAll), each with its token count and a
// Priority; one dispatcher goroutine groups waiting items into batches; up
// to Options.Workers worker goroutines compute each batch with one RunFunc
// call; and every caller receives its own result. The engine uses it to put
// texts, tokenized in the callers' goroutines, through a model a batch at a
// time.
//
// # Flow
//
// Admission reserves queue slots with one atomic compare-and-swap (Online
// and Bulk counts share one word) and sends the item, or the whole request
// as one chain, on a channel to the dispatcher. The dispatcher alone owns
// the waiting items: it forms a batch only when a worker is idle, so a batch
// is chosen from everything that arrived while the previous batches
// computed, and an Online item arriving during a Bulk computation still goes
// first. Workers take batches from it and give their buffers back when
// done. No lock is held around RunFunc, and the dispatcher takes no lock at
// all.
//
// # When a batch is flushed
//
// A batch is handed to an idle worker as soon as one of these holds for the
// priority chosen (see Priority below):
//
//   - it has MaxBatchSize items;
//   - it is full by tokens: no other waiting item fits within MaxBatchTokens
//     padded tokens (items × longest item). An item larger than
//     MaxBatchTokens runs alone, at once;
//   - MaxQueueDelay has passed since the oldest waiting item of that
//     priority was admitted (the first item of the forming batch); it then
//     takes what is there. Zero means no wait;
//   - as many items of that priority wait as its last batch took (unless
//     FixedQueueDelay): the load that formed that batch has come back, and
//     waiting longer would add latency rather than items. At low load the
//     last batch had one item, so a lone request runs at once instead of
//     waiting MaxQueueDelay; under load batches still fill. The first batch
//     of a priority has no history and waits;
//   - Shutdown is draining the queue.
//
// While every worker is busy, items simply keep queueing; the next batch is
// formed the moment a worker frees, and it is usually already full.
//
// # Length grouping
//
// Padded tokens are what a model computes, so the dispatcher groups items of
// similar length. It considers the oldest GroupWindow waiting items of the
// chosen priority (default 4×MaxBatchSize), always takes the oldest, then
// adds the others in order of closeness of their token count to the oldest
// one's (ties: shorter first, then older first), skipping any that would
// break MaxBatchTokens, up to MaxBatchSize. When everything waiting fits in
// one batch it takes everything, so a short queue, the usual Online case, is
// served in arrival order. DisableLengthGrouping takes items strictly in
// arrival order instead (FIFO).
//
// Fairness: the oldest waiting item is in the next batch of its priority,
// so no item starves. Once an item is among the oldest GroupWindow of its
// priority, at most GroupWindow-1 batches of that priority run before it,
// where FIFO would run at most GroupWindow/MaxBatchSize; this is the latency
// that grouping may cost an item of unusual length. On a steady backlog of
// realistic text lengths grouping raises padding efficiency (sum of tokens /
// padded tokens) from 0.19 (FIFO) to 0.68 with the default window and 0.80
// with a window of 256 (BenchmarkPadding), that is 3.5 to 4 times less
// computation wasted on padding.
//
// # Priority and starvation
//
// While Online items wait, the next batch is formed from Online items only,
// even if older Bulk items wait, and even if the Online items are not ready
// yet (they will be within MaxQueueDelay): Online latency comes first. To
// keep Bulk from starving under continuous Online load, after BulkEvery
// Online batches in a row (default 8) formed while Bulk items waited, the
// next batch is a Bulk batch, formed at once from what is there. Bulk thus
// gets at least one batch in BulkEvery+1 while it has work.
//
// # Cancellation and deadlines
//
// Every wait of a caller also selects on its ctx. An item whose ctx is done
// is never passed to RunFunc: the dispatcher checks before it picks items,
// and the worker checks again just before the call. A caller whose ctx ends
// returns ctx.Err() at once and asks the dispatcher to purge its item, so
// that it stops holding a queue slot; every item removed this way is
// reported to Observer.Dropped. A batch whose callers have all gone is not
// run. An item whose batch has already started is computed and its result
// discarded. RunFunc gets a ctx of the Batcher's own, not any caller's,
// since a batch serves many callers. That ctx has a deadline of
// Options.RunTimeout from the start of the call, when set, and Abort (a
// forced shutdown) cancels it; when RunFunc then returns its ctx's error,
// the batch's items fail with ErrRunTimeout or ErrAborted. Abort also
// fails every item still queued with ErrAborted without computing it.
//
// # Failures
//
// A per-item error from RunFunc reaches only that item's caller. An error
// returned by RunFunc fails only the items of that batch. A panic in RunFunc
// is recovered and fails that batch's items with a *PanicError (matching
// ErrPanic); the Batcher keeps running. A RunFunc that returns the wrong
// number of outputs or errors fails its batch with ErrBadOutput.
//
// # Tracing
//
// With Options.Tracer set, each RunFunc call is a span (trace.go): the
// root of its own trace, since it serves many requests, linked to the span
// found in each of its items' ctx (one link per request), with the batch's
// size, tokens, priority and queue wait; RunFunc's ctx carries it. A batch
// that serves no traced request records nothing. Without a Tracer nothing
// is recorded and no caller's ctx is read.
//
// # Invariants
//
//   - Intake is bounded by QueueSize items, all priorities together;
//     admission that would exceed it fails at once with ErrQueueFull, and a
//     SubmitAll is admitted whole or not at all. No call blocks past its
//     ctx: admission never blocks, and every wait selects on ctx.Done().
//   - Every admitted item gets exactly one reply, on its own channel of
//     capacity 1, so a worker never blocks on a caller that has gone.
//   - Every admitted item is computed exactly once, or dropped because its
//     ctx ended or Abort was called; none is lost, Shutdown and Abort
//     included.
//   - No batch exceeds MaxBatchSize items, nor MaxBatchTokens padded tokens
//     unless it is a single larger item; no Bulk batch formed within
//     OnlineRecent of an Online arrival exceeds BulkBatchSizeWhileOnline
//     items (batches are not preempted, so this bounds how long an Online
//     arrival waits behind Bulk work).
//
// # Concurrency
//
// All methods of a Batcher are safe for concurrent use. New starts one
// dispatcher goroutine and Workers worker goroutines; the owner stops them
// with Shutdown, which stops intake (later calls get ErrClosed), computes
// every admitted item without waiting for MaxQueueDelay, and waits for
// in-flight batches; Abort cuts that drain short (see above). RunFunc is
// called from up to Workers goroutines at once and must not keep its batch
// slice after returning. Observer methods are called from the dispatcher
// and the workers and must be fast and safe for concurrent use.
//
// Submit allocates nothing in steady state: items and their reply channels
// are pooled. SubmitAll allocates per request (its outputs, its item list
// and a cancelable ctx), not per item.
package batch
