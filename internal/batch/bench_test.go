package batch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// identity is the trivial RunFunc of the throughput benchmarks, so that
// they measure the Batcher alone. It returns its input slice as the outputs,
// which is allowed because the Batcher reads the outputs before it reuses
// the slice, so it allocates nothing itself.
func identity(_ context.Context, batch []int) ([]int, []error, error) {
	return batch, nil, nil
}

// BenchmarkSubmit measures Submit round trips with a trivial RunFunc at
// several numbers of concurrent callers. One op is one item; allocs/op is
// therefore allocations per item.
func BenchmarkSubmit(b *testing.B) {
	for _, delay := range []time.Duration{0, 2 * time.Millisecond} {
		for _, conc := range []int{1, 16, 64, 256} {
			if delay > 0 && conc < 64 {
				continue // a lone caller would just measure the delay
			}
			b.Run(fmt.Sprintf("delay=%v/conc=%d", delay, conc), func(b *testing.B) {
				o := DefaultOptions()
				o.MaxQueueDelay = delay
				sizes := &batchSizes{}
				o.Observer = sizes
				bt, err := New(identity, o)
				if err != nil {
					b.Fatal(err)
				}
				defer bt.Shutdown(context.Background())
				submitters(b, conc, 1000, func(x int) error { // warm up the pools
					_, err := bt.Submit(context.Background(), x, 16, Online)
					return err
				})
				b.ReportAllocs()
				b.ResetTimer()
				submitters(b, conc, b.N, func(x int) error {
					_, err := bt.Submit(context.Background(), x, 16, Online)
					return err
				})
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
				b.ReportMetric(float64(sizes.items.Load())/float64(sizes.batches.Load()), "items/batch")
			})
		}
	}
}

// BenchmarkSubmitAll measures requests of 64 items from 16 callers; one op
// is one item.
func BenchmarkSubmitAll(b *testing.B) {
	const conc, size = 16, 64
	bt, err := New(identity, Options{MaxQueueDelay: 0})
	if err != nil {
		b.Fatal(err)
	}
	defer bt.Shutdown(context.Background())
	ins, toks := seq(0, size), fill(size, 16)
	req := func(int) error {
		_, err := bt.SubmitAll(context.Background(), ins, toks, Bulk)
		return err
	}
	submitters(b, conc, 100, req)
	b.ReportAllocs()
	b.ResetTimer()
	submitters(b, conc, (b.N+size-1)/size, req)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkSubmitTraced is BenchmarkSubmit at 64 callers with tracing on:
// every caller's ctx carries a sampled span of its own and each batch records its span
// with a link per caller (Options.Tracer), through the SDK with no
// exporter. Set against BenchmarkSubmit/delay=0s/conc=64 (tracing off) it
// is what tracing costs per item.
func BenchmarkSubmitTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("bench")
	const conc = 64
	bt, err := New(identity, Options{MaxQueueDelay: 0, Tracer: tracer})
	if err != nil {
		b.Fatal(err)
	}
	defer bt.Shutdown(context.Background())
	ctxs := make([]context.Context, conc) // one request span per caller
	for i := range ctxs {
		var span trace.Span
		ctxs[i], span = tracer.Start(context.Background(), "request")
		defer span.End()
	}
	submit := func(x int) error {
		_, err := bt.Submit(ctxs[x%conc], x, 16, Online)
		return err
	}
	submitters(b, conc, 1000, submit)
	b.ReportAllocs()
	b.ResetTimer()
	submitters(b, conc, b.N, submit)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

// batchSizes is an Observer that counts batches and items.
type batchSizes struct {
	nopObserver
	batches, items atomic.Int64
}

func (s *batchSizes) BatchRun(size, _, _ int, _, _ time.Duration, _ error) {
	s.batches.Add(1)
	s.items.Add(int64(size))
}

// submitters runs n calls of fn spread over conc goroutines.
func submitters(b *testing.B, conc, n int, fn func(x int) error) {
	var wg sync.WaitGroup
	for g := range conc {
		share := n / conc
		if g < n%conc {
			share++
		}
		wg.Go(func() {
			for i := range share {
				if err := fn(g*share + i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkPadding measures the batch-forming policy on a steady backlog:
// each op forms one batch of up to 32 items from a queue kept at a fixed
// depth, refilled with token counts shaped like real inputs (textLengths).
// It reports padding efficiency (sum of tokens / padded tokens, 1 is no
// padding) and ns/op is the cost of forming one batch.
func BenchmarkPadding(b *testing.B) {
	const size, maxTokens = 32, 8192
	for _, depth := range []int{32, 128, 512} {
		for _, window := range []int{0, 32, 64, 128, 256} { // 0: FIFO
			if window > depth {
				continue
			}
			name := fmt.Sprintf("depth=%d/fifo", depth)
			if window > 0 {
				name = fmt.Sprintf("depth=%d/group=%d", depth, window)
			}
			b.Run(name, func(b *testing.B) {
				rng := rand.New(rand.NewPCG(5, 6))
				queue := textLengths(rng, depth)
				var keys []uint64
				var picks []int
				var sum, padded int
				for b.Loop() {
					w := min(len(queue), max(window, size))
					picks, keys, _ = pick(queue[:w], size, maxTokens, window > 0, keys, picks)
					longest := 0
					for _, i := range picks {
						sum += queue[i]
						longest = max(longest, queue[i])
						queue[i] = -1
					}
					padded += len(picks) * longest
					kept := queue[:0]
					for _, t := range queue {
						if t >= 0 {
							kept = append(kept, t)
						}
					}
					queue = append(kept, textLengths(rng, len(picks))...)
				}
				b.ReportMetric(float64(sum)/float64(padded), "efficiency")
			})
		}
	}
}

// BenchmarkPick measures forming one batch of up to 32 items by length
// grouping from windows of waiting items of several sizes.
func BenchmarkPick(b *testing.B) {
	for _, w := range []int{32, 128, 256} {
		b.Run(fmt.Sprint(w), func(b *testing.B) {
			toks := textLengths(rand.New(rand.NewPCG(5, 6)), w)
			var keys []uint64
			var picks []int
			b.ReportAllocs()
			for b.Loop() {
				picks, keys, _ = pick(toks, 32, 8192, true, keys, picks)
			}
		})
	}
}
