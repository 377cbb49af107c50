package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/server"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// fullBatch is 32 texts of 256 tokens when truncated: one full CPU batch,
// seconds of work on a 2-core CPU.
func fullBatch() *embeddv1.EmbedRequest {
	req := &embeddv1.EmbedRequest{Truncate: true}
	for i := range 32 {
		var sb strings.Builder
		for k := range 300 {
			fmt.Fprintf(&sb, "word%d ", (i*7919+k*104729)%5000)
		}
		req.Texts = append(req.Texts, sb.String())
	}
	return req
}

// TestRunTimeoutStatus: a run stopped at the engine's RunTimeout reaches
// the client as DEADLINE_EXCEEDED saying so, though the client set no
// deadline.
func TestRunTimeoutStatus(t *testing.T) {
	f := start(t, func(e *engine.Options, _ *server.Options) { e.RunTimeout = 50 * time.Millisecond })
	begin := time.Now()
	_, err := f.client.Embed(context.Background(), fullBatch())
	wantCode(t, err, codes.DeadlineExceeded, "run timed out", "RunTimeout 50ms")
	t.Logf("returned after %v", time.Since(begin))
}

// TestForcedShutdownStatus: an engine shutdown whose ctx has ended stops
// the run of an RPC in flight, which gets UNAVAILABLE at once.
func TestForcedShutdownStatus(t *testing.T) {
	f := start(t, nil)
	done := make(chan error, 1)
	go func() {
		_, err := f.client.Embed(context.Background(), fullBatch())
		done <- err
	}()
	time.Sleep(200 * time.Millisecond) // the batch is queued or running
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	begin := time.Now()
	f.eng.Shutdown(expired)
	err := <-done
	took := time.Since(begin)
	t.Logf("RPC returned %v after the forced shutdown", took)
	wantCode(t, err, codes.Unavailable, "shutting down")
	if took > time.Second {
		t.Errorf("RPC returned %v after the forced shutdown; want the run stopped at once", took)
	}
}
