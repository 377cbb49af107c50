package batch

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// worker runs the batches the dispatcher hands it until Shutdown has drained
// the queue, giving its batch buffer back after each one.
func (b *Batcher[In, Out]) worker() {
	defer b.workers.Done()
	for bt := range b.work {
		b.runBatch(bt)
		b.free <- bt // never blocks: one slot per buffer
	}
}

// runBatch drops the items whose ctx ended while they were handed over,
// computes the rest with one RunFunc call and replies to every item.
func (b *Batcher[In, Out]) runBatch(bt *batch[In, Out]) {
	n := len(bt.items)
	defer func() {
		clear(bt.items[:n])
		clear(bt.ins)
		bt.items, bt.ins = bt.items[:0], bt.ins[:0]
	}()
	aborted := b.runCtx.Err() != nil // Abort: fail what is left without running it
	live := bt.items[:0]
	for _, it := range bt.items {
		if err := it.ctx.Err(); err != nil || aborted {
			if aborted {
				err = ErrAborted
			}
			b.drop(it, err)
			continue
		}
		live = append(live, it)
	}
	if len(live) == 0 {
		return // every caller has gone: nothing to compute
	}
	tokens, longest, oldest := 0, 0, live[0].enq
	ins := bt.ins[:0]
	for _, it := range live {
		ins = append(ins, it.in)
		tokens += it.tokens
		longest = max(longest, it.tokens)
		if it.enq.Before(oldest) {
			oldest = it.enq
		}
	}
	bt.ins = ins

	ctx, span := b.runCtx, trace.Span(nil)
	if b.opts.Tracer != nil { // span stays nil for a batch of untraced requests
		ctx, span = b.startSpan(live, tokens, len(live)*longest, time.Since(oldest))
	}
	start := time.Now()
	outs, errs, err := b.call(ctx, ins)
	elapsed := time.Since(start)
	if err == nil {
		switch {
		case len(outs) != len(ins):
			err = fmt.Errorf("%w: %d outputs for %d inputs", ErrBadOutput, len(outs), len(ins))
		case errs != nil && len(errs) != len(ins):
			err = fmt.Errorf("%w: %d errors for %d inputs", ErrBadOutput, len(errs), len(ins))
		}
	}
	if span != nil {
		endSpan(span, err, errs) // before the replies: a caller that has its result sees the batch's span ended
	}
	for i, it := range live {
		var r result[Out]
		switch {
		case err != nil:
			r.err = err
		case errs != nil && errs[i] != nil:
			r.err = errs[i]
		default:
			r.out = outs[i]
		}
		it.reply <- r // never blocks: capacity 1, one reply per item
	}
	b.obs.BatchRun(len(live), tokens, len(live)*longest, start.Sub(oldest), elapsed, err)
}

// call runs RunFunc under a ctx of its own: a child of parent (the
// Batcher's run ctx, which Abort cancels, or the batch span's ctx under it)
// with the RunTimeout deadline. A panic becomes a
// *PanicError for the batch so that one bad batch cannot kill the process.
// When RunFunc returns its ctx's error, that error is replaced by why the
// ctx ended (ErrRunTimeout or ErrAborted).
func (b *Batcher[In, Out]) call(parent context.Context, ins []In) (outs []Out, errs []error, err error) {
	ctx, cancel := parent, context.CancelFunc(func() {})
	if b.opts.RunTimeout > 0 {
		ctx, cancel = context.WithTimeoutCause(parent, b.opts.RunTimeout, b.timeoutErr)
	}
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			outs, errs, err = nil, nil, &PanicError{Value: v, Stack: debug.Stack()}
		}
		if ctxErr := ctx.Err(); err != nil && ctxErr != nil && errors.Is(err, ctxErr) {
			err = context.Cause(ctx)
		}
	}()
	return b.run(ctx, ins)
}

// drop replies to an item removed before compute because its ctx ended or
// Abort was called.
func (b *Batcher[In, Out]) drop(it *item[In, Out], err error) {
	b.obs.Dropped(err)
	it.reply <- result[Out]{err: err} // the caller may have gone; the slot is buffered
}
