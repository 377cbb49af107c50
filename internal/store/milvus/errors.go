package milvus

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/embedd/embedd/internal/store"
)

func isNotExist(err error) bool {
	var ne client.ErrCollectionNotExists
	if errors.As(err, &ne) {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "can't find collection") ||
		strings.Contains(msg, "collection not found") ||
		strings.Contains(msg, "does not exist")
}

// isBadExpr reports Milvus rejecting a filter expression. Milvus 2.3 returns
// these as a failed status whose reason starts "failed to create query plan:
// cannot parse expression: ..." (syntax errors, unknown fields, type errors).
func isBadExpr(err error) bool {
	if transportErr(err) {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "failed to create query plan") ||
		strings.Contains(msg, "cannot parse expression")
}

// transportErr reports a gRPC-level failure: the server could not be
// reached or did not answer in time.
func transportErr(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return errors.Is(err, client.ErrClientNotReady)
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

// mapErr translates a Milvus or transport error; op says what was tried.
func (s *Store) mapErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("milvus: %s: %w", op, ctx.Err())
	}
	if transportErr(err) {
		return fmt.Errorf("%w: milvus at %s: %s: %v", store.ErrUnavailable, s.opts.Address, op, err)
	}
	if isNotExist(err) {
		return fmt.Errorf("%w: milvus: %s: %v", store.ErrNotFound, op, err)
	}
	return fmt.Errorf("milvus: %s: %w", op, err)
}
