package batch

import (
	"context"
	"errors"
	"fmt"
)

// Errors returned by this package. They are wrapped with the offending
// field, index or limit; test for them with errors.Is.
var (
	// ErrQueueFull reports an item or request rejected at admission because
	// the queue holds QueueSize items (or a request is larger than QueueSize).
	// It is returned at once; admission never blocks.
	ErrQueueFull = errors.New("batch: queue full")
	// ErrClosed reports a Submit or SubmitAll after Shutdown or Abort
	// began, and an item that Abort failed.
	ErrClosed = errors.New("batch: shut down")
	// ErrAborted is the error of the items that Abort failed: those queued
	// and those of a batch whose RunFunc returned its cancelled ctx's error.
	// It matches ErrClosed.
	ErrAborted = fmt.Errorf("%w: aborted", ErrClosed)
	// ErrRunTimeout is the error of the items of a batch whose RunFunc ran
	// past Options.RunTimeout and returned its ctx's error. It matches
	// context.DeadlineExceeded, so a transport reports a deadline.
	ErrRunTimeout = fmt.Errorf("batch: run timed out: %w", context.DeadlineExceeded)
	// ErrInvalidOptions reports an Options field out of range in New.
	ErrInvalidOptions = errors.New("batch: invalid options")
	// ErrInvalidInput reports a negative token count, an unknown Priority or
	// SubmitAll inputs and token counts of different lengths.
	ErrInvalidInput = errors.New("batch: invalid input")
	// ErrPanic is matched (errors.Is) by the *PanicError that every item of a
	// batch receives when the RunFunc computing it panicked.
	ErrPanic = errors.New("batch: run func panicked")
	// ErrBadOutput reports a RunFunc that broke its contract by returning a
	// number of outputs or per-item errors different from its inputs; every
	// item of that batch receives it.
	ErrBadOutput = errors.New("batch: run func returned wrong number of results")
)

// ItemError is returned by SubmitAll when an item failed; Index is the
// position of the first failing item in the request.
type ItemError struct {
	Index int
	Err   error
}

func (e *ItemError) Error() string { return fmt.Sprintf("batch: item %d: %v", e.Index, e.Err) }

func (e *ItemError) Unwrap() error { return e.Err }

// PanicError is the error every item of a batch gets when its RunFunc
// panicked. Error() carries the panic value only, so that it can be shown to
// a client; Stack is for logs.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the stack of the panicking goroutine
}

func (e *PanicError) Error() string { return fmt.Sprintf("%v: %v", ErrPanic, e.Value) }

// Is makes errors.Is(err, ErrPanic) true.
func (e *PanicError) Is(target error) bool { return target == ErrPanic }

// Unwrap returns the panic value when it is an error, so errors.Is and
// errors.As see through a panic(err).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}
