package milvus

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
)

// TestCallTimeout: a call without a deadline gets CallTimeout; one with an
// earlier deadline keeps it; a later one is cut to CallTimeout.
func TestCallTimeout(t *testing.T) {
	ic := callTimeout(time.Second)
	left := func(ctx context.Context) time.Duration {
		var got time.Duration
		ic(ctx, "/m", nil, nil, nil, func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			dl, ok := ctx.Deadline()
			if !ok {
				t.Fatal("no deadline")
			}
			got = time.Until(dl)
			return nil
		})
		return got
	}
	if d := left(context.Background()); d <= 900*time.Millisecond || d > time.Second {
		t.Errorf("no deadline: got %v left; want about 1s", d)
	}
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if d := left(short); d > 100*time.Millisecond {
		t.Errorf("earlier deadline: got %v left; want it kept (<= 100ms)", d)
	}
	long, cancel2 := context.WithTimeout(context.Background(), time.Hour)
	defer cancel2()
	if d := left(long); d > time.Second {
		t.Errorf("later deadline: got %v left; want cut to 1s", d)
	}
}
