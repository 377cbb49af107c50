package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// RetryPolicy says how often and how long a unary call is retried. Which
// calls and codes are retried is fixed (see the package doc); the policy
// only bounds the attempts and the waits.
type RetryPolicy struct {
	// MaxAttempts counts the first call too. Default 5; 1 turns retries
	// off; negative is an error.
	MaxAttempts int
	// InitialBackoff is the wait before the first retry when the server
	// sent no RetryInfo hint; each further one doubles it, up to
	// MaxBackoff, and waits a random time between half of it and all of
	// it. Default 50ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the computed backoff (not a server's hint, which is
	// bounded by the caller's deadline only). Default 2s.
	MaxBackoff time.Duration
}

// DefaultRetryPolicy returns the documented defaults.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 5, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second}
}

func (p *RetryPolicy) validate() error {
	d := DefaultRetryPolicy()
	switch {
	case p.MaxAttempts < 0:
		return fmt.Errorf("client: RetryPolicy.MaxAttempts %d is negative", p.MaxAttempts)
	case p.InitialBackoff < 0 || p.MaxBackoff < 0:
		return fmt.Errorf("client: RetryPolicy backoff %v / %v is negative", p.InitialBackoff, p.MaxBackoff)
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.InitialBackoff == 0 {
		p.InitialBackoff = d.InitialBackoff
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = d.MaxBackoff
	}
	p.MaxBackoff = max(p.MaxBackoff, p.InitialBackoff)
	return nil
}

// safeToRepeat lists the unary methods that may run twice with the effect
// of once: reads, and writes idempotent by id. UNAVAILABLE is retried on
// these only. Every method of embedd.v1 is either here or in notRepeatable
// (a test checks the service descriptors against both).
var safeToRepeat = map[string]bool{
	"/embedd.v1.EmbeddingService/Embed":      true,
	"/embedd.v1.EmbeddingService/ListModels": true,
	"/embedd.v1.EmbeddingService/GetModel":   true,

	"/embedd.v1.VectorService/Upsert":          true, // the last write of an id wins
	"/embedd.v1.VectorService/Delete":          true,
	"/embedd.v1.VectorService/UpsertHybrid":    true, // rebuilds from current values
	"/embedd.v1.VectorService/Search":          true,
	"/embedd.v1.VectorService/Get":             true,
	"/embedd.v1.VectorService/ListCollections": true,

	"/embedd.v1.FeatureService/GetFeatures":     true,
	"/embedd.v1.FeatureService/ListFeatures":    true,
	"/embedd.v1.FeatureService/GetFeatureStats": true,

	"/embedd.v1.JobService/GetJob":    true,
	"/embedd.v1.JobService/ListJobs":  true,
	"/embedd.v1.JobService/CancelJob": true,

	"/grpc.health.v1.Health/Check": true,
}

// notRepeatable lists the methods a repeat could apply twice: events
// counted twice, a second job started. They are retried on
// RESOURCE_EXHAUSTED with RetryInfo only, which embedd returns before
// doing any work;
// IngestEvents also on UNAVAILABLE when every event carries an id (the
// server applies an id once).
var notRepeatable = map[string]bool{
	"/embedd.v1.EmbeddingService/EmbedStream": true, // a stream: never retried
	"/embedd.v1.FeatureService/IngestEvents":  true,
	"/embedd.v1.JobService/StartReembed":      true,
}

const ingestMethod = "/embedd.v1.FeatureService/IngestEvents"

// retryable reports whether err of the call of method with req may be
// retried.
func retryable(method string, req any, err error) bool {
	switch status.Code(err) {
	case codes.ResourceExhausted:
		// embedd's refusals for load carry a hint; gRPC's own (a message
		// over a size limit) do not, and would fail again.
		_, hinted := RetryDelay(err)
		return hinted
	case codes.Unavailable:
		if method == ingestMethod {
			return allEventIDs(req)
		}
		return safeToRepeat[method]
	}
	return false
}

// allEventIDs reports whether every event of an IngestEvents request has
// an id.
func allEventIDs(req any) bool {
	r, ok := req.(*embeddv1.IngestEventsRequest)
	if !ok || len(r.Events) == 0 {
		return false
	}
	for _, e := range r.Events {
		if e.GetEventId() == "" {
			return false
		}
	}
	return true
}

// RetryDelay returns the server's RetryInfo hint in err's status details.
func RetryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			if w := ri.GetRetryDelay().AsDuration(); w >= 0 {
				return w, true
			}
		}
	}
	return 0, false
}

// interceptor retries unary calls by the policy.
func (p RetryPolicy) interceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		backoff := p.InitialBackoff
		for attempt := 1; ; attempt++ {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if err == nil || attempt >= p.MaxAttempts || !retryable(method, req, err) {
				return err
			}
			wait, hinted := RetryDelay(err)
			if !hinted {
				wait = backoff/2 + rand.N(backoff/2+1)
				backoff = min(2*backoff, p.MaxBackoff)
			}
			// Never wait past the deadline: the retry could not finish.
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
				return err
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return status.FromContextError(ctx.Err()).Err()
			case <-t.C:
			}
		}
	}
}
