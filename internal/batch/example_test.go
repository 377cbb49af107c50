package batch_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/embedd/embedd/internal/batch"
)

// A model stand-in: it "embeds" each text as its upper-case form, one batch
// per call.
func upper(_ context.Context, texts []string) ([]string, []error, error) {
	outs := make([]string, len(texts))
	for i, t := range texts {
		outs[i] = strings.ToUpper(t)
	}
	return outs, nil, nil
}

func Example() {
	opts := batch.DefaultOptions()
	opts.MaxBatchSize = 16
	opts.MaxQueueDelay = time.Millisecond
	b, err := batch.New(upper, opts)
	if err != nil {
		panic(err)
	}
	defer b.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()

	// One interactive item; tokens would come from the tokenizer.
	out, err := b.Submit(ctx, "hello", 2, batch.Online)
	fmt.Println(out, err)

	// A request of several items, answered in input order.
	outs, err := b.SubmitAll(ctx, []string{"a", "bb", "ccc"}, []int{1, 2, 3}, batch.Bulk)
	fmt.Println(outs, err)
	// Output:
	// HELLO <nil>
	// [A BB CCC] <nil>
}
