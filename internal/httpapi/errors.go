package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// httpStatus is Google's standard mapping of gRPC codes to HTTP status
// codes (google/rpc/code.proto), which the Connect protocol uses too.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499 // client closed request
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError // Unknown, Internal, DataLoss
}

// apiError is a failed request as the handlers see it: an HTTP code, the
// gRPC status it came from (nil for errors of the HTTP layer) and the
// message.
type apiError struct {
	code  int
	st    *status.Status
	msg   string
	param string // the request field at fault, when known here
}

// toAPIError classifies err: a gRPC status, *errTooLarge, or a body that
// exceeded the read limit.
func toAPIError(err error) *apiError {
	var tl *errTooLarge
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &tl):
		return &apiError{code: http.StatusRequestEntityTooLarge, msg: tl.Error()}
	case errors.As(err, &mb):
		return &apiError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body exceeds %d bytes (--http-max-body-bytes)", mb.Limit)}
	}
	st := status.Convert(err)
	return &apiError{code: httpStatus(st.Code()), st: st, msg: st.Message()}
}

// badRequest is an error of the HTTP layer: a body that is not the JSON
// the route takes.
func badRequest(param, format string, args ...any) *apiError {
	return &apiError{code: http.StatusBadRequest, st: status.New(codes.InvalidArgument, fmt.Sprintf(format, args...)), msg: fmt.Sprintf(format, args...), param: param}
}

// grpcCode is the error's gRPC code; HTTP-layer errors without a status
// map from their HTTP code.
func (e *apiError) grpcCode() codes.Code {
	if e.st != nil {
		return e.st.Code()
	}
	if e.code == http.StatusRequestEntityTooLarge {
		return codes.ResourceExhausted
	}
	return codes.InvalidArgument
}

// setRetryAfter sets Retry-After from the status's RetryInfo, in whole
// seconds rounded up.
func (e *apiError) setRetryAfter(w http.ResponseWriter) {
	if e.st == nil {
		return
	}
	for _, d := range e.st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			secs := math.Ceil(ri.GetRetryDelay().AsDuration().Seconds())
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(secs))))
			return
		}
	}
}

// connectError is the Connect protocol's error body, used by the RPC
// routes.
type connectError struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Details []connectDetail `json:"details,omitempty"`
}

type connectDetail struct {
	Type  string          `json:"type"`
	Value string          `json:"value"` // base64 (no padding) of the message
	Debug json.RawMessage `json:"debug,omitempty"`
}

// codeName is the lower snake_case name of c ("invalid_argument").
func codeName(c codes.Code) string {
	var b strings.Builder
	lower := false // the previous letter was lower case
	for _, r := range c.String() {
		if r >= 'A' && r <= 'Z' {
			if lower {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
			lower = false
		} else {
			lower = true
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (e *apiError) writeConnect(w http.ResponseWriter) {
	body := connectError{Code: codeName(e.grpcCode()), Message: e.msg}
	if e.st != nil {
		for _, a := range e.st.Proto().GetDetails() {
			d := connectDetail{Type: string(a.MessageName()), Value: base64.RawStdEncoding.EncodeToString(a.GetValue())}
			if m, err := a.UnmarshalNew(); err == nil {
				d.Debug, _ = protojson.Marshal(m)
			}
			body.Details = append(body.Details, d)
		}
	}
	e.setRetryAfter(w)
	writeJSON(w, e.code, body)
}

// writeJSON writes v as the JSON reply with code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // messages quote "<key>"; this is not HTML
	_ = enc.Encode(v)
}

// writeProto writes m as the protojson reply.
func writeProto(w http.ResponseWriter, m proto.Message) {
	b, err := protojson.Marshal(m)
	if err != nil {
		(&apiError{code: http.StatusInternalServerError, st: status.New(codes.Internal, "encode reply"), msg: "encode reply: " + err.Error()}).writeConnect(w)
		return
	}
	// protojson varies its spacing on purpose; a compact reply reads the
	// same from one call to the next.
	var out bytes.Buffer
	if json.Compact(&out, b) == nil {
		b = append(out.Bytes(), '\n')
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// readBody reads the request body up to the limit.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
}
