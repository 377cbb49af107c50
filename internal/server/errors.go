package server

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/features/drift"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/features/window"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/store"
)

// errMonitorOff reports GetFeatureStats on a server without a drift monitor.
var errMonitorOff = errors.New("feature monitoring is off (--feature-monitor=false)")

// toStatus is the one error table of the transport: core errors to gRPC
// status codes, for every RPC of every service. Messages keep the core
// error's text, which names the item, index and limit. Unknown errors
// become INTERNAL and are logged to o.Logger; their text is not sent to the
// client. o supplies the back-off hint of RESOURCE_EXHAUSTED (RetryAfter).
func toStatus(err error, o *Options) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return status.FromContextError(err).Err()
	case errors.Is(err, errInvalid), errors.Is(err, engine.ErrInvalidInput),
		errors.Is(err, index.ErrInvalid), errors.Is(err, store.ErrInvalid),
		errors.Is(err, service.ErrInvalid), errors.Is(err, window.ErrBeyondHorizon):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, engine.ErrUnknownModel), errors.Is(err, index.ErrUnknownCollection),
		errors.Is(err, index.ErrNotFound), errors.Is(err, store.ErrNotFound),
		errors.Is(err, service.ErrUnknown), errors.Is(err, drift.ErrUnknownFeature):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, batch.ErrQueueFull):
		st := status.New(codes.ResourceExhausted, err.Error()+"; retry later")
		if d, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(o.RetryAfter)}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, batch.ErrClosed), errors.Is(err, engine.ErrClosed):
		return status.Error(codes.Unavailable, "server is shutting down")
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, service.ErrUnavailable):
		// The message names the store ("redis: store: unavailable: ...").
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, index.ErrNoFeatures), errors.Is(err, errMonitorOff), errors.Is(err, index.ErrModelMismatch):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, manifest.ErrMissing), errors.Is(err, manifest.ErrChecksum):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	o.Logger.Error("internal error", "err", err)
	return status.Error(codes.Internal, "internal error")
}

// eventCode is the gRPC code of one event that IngestEvents rejected, sent
// in the response beside the events accepted. It is not toStatus: a call
// fails as a whole through toStatus, while an event's code tells the client
// whether to resend it (UNAVAILABLE: a store was unreachable) or not.
func eventCode(err error) codes.Code {
	switch {
	case errors.Is(err, window.ErrTooLate):
		return codes.OutOfRange
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Code()
	case service.Permanent(err):
		return codes.InvalidArgument
	}
	return codes.Unavailable // retry: a store was unreachable
}
