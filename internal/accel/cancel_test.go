package accel_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/testassets"
)

// longBatch is rows texts of seq tokens each: [CLS] random word pieces [SEP].
func longBatch(rows, seq int) accel.Batch {
	r := rand.New(rand.NewPCG(1, 2))
	b := accel.Batch{Size: rows, SeqLen: seq, IDs: make([]int64, rows*seq), Mask: make([]int64, rows*seq), TypeIDs: make([]int64, rows*seq)}
	for i := range rows {
		for j := range seq {
			id := int64(1000 + r.IntN(29000))
			switch j {
			case 0:
				id = 101
			case seq - 1:
				id = 102
			}
			b.IDs[i*seq+j], b.Mask[i*seq+j] = id, 1
		}
	}
	return b
}

// TestEncodeCancelMidRun: a ctx that ends while ONNX Runtime is running a
// batch stops the run (RunOptions terminate flag) and Encode returns ctx's
// error well before the run would have finished; the encoder then works as
// before. The uncancelled time of the same batch is measured first.
func TestEncodeCancelMidRun(t *testing.T) {
	testassets.Runtime(t)
	opts := accel.DefaultOptions()
	opts.IntraOpThreads = 2
	enc, err := accel.NewEncoder(spec(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	const hid, stopAfter = 384, 5 * time.Millisecond

	// A batch that takes at least 40 times stopAfter to run in full.
	var b accel.Batch
	var full time.Duration
	for rows := 8; ; rows *= 2 {
		b = longBatch(rows, 256)
		start := time.Now()
		if err := enc.Encode(context.Background(), b, make([]float32, rows*hid), make([]float32, rows)); err != nil {
			t.Fatal(err)
		}
		if full = time.Since(start); full >= 40*stopAfter || rows >= 1024 {
			break
		}
	}
	t.Logf("full run of %d x %d tokens: %v", b.Size, b.SeqLen, full)

	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(stopAfter, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), stopAfter)
		}, context.DeadlineExceeded},
	} {
		ctx, cancel := tc.ctx()
		start := time.Now()
		err := enc.Encode(ctx, b, make([]float32, b.Size*hid), make([]float32, b.Size))
		took := time.Since(start)
		cancel()
		t.Logf("%s after %v: returned after %v (%v)", tc.name, stopAfter, took, err)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v; want %v", tc.name, err, tc.want)
		}
		if took > full/4 {
			t.Errorf("%s: returned after %v; the full run takes %v, so the run was not stopped", tc.name, took, full)
		}
	}

	// The terminate flag belongs to the stopped run, not to the session.
	small := longBatch(2, 16)
	if err := enc.Encode(context.Background(), small, make([]float32, 2*hid), make([]float32, 2)); err != nil {
		t.Errorf("after a stopped run: %v", err)
	}
}
