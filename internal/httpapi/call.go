package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// caller makes one gRPC call of the server per HTTP request, through
// (*grpc.Server).ServeHTTP (see the package doc).
type caller struct {
	grpc       http.Handler
	maxMessage int
}

// errTooLarge is an encoded request over the gRPC server's limit; the
// handlers answer it with 413.
type errTooLarge struct{ size, limit int }

func (e *errTooLarge) Error() string {
	return fmt.Sprintf("request is %d bytes encoded; limit %d (--max-message-bytes)", e.size, e.limit)
}

// forwarded are the HTTP headers that become gRPC metadata: the ones the
// auth interceptor reads, and W3C trace context, so that with tracing on
// an HTTP caller's trace continues into the server span (internal/tracing).
var forwarded = []string{"Authorization", "X-Api-Key", "Traceparent", "Tracestate"}

// invoke calls method (a full method name) with in and decodes the reply
// into out. r supplies the context, the credentials, the peer address and
// TLS state. The error is a gRPC status error, or *errTooLarge.
func (c caller) invoke(r *http.Request, method string, in, out proto.Message) error {
	b, err := proto.Marshal(in)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "encode request: %v", err)
	}
	if len(b) > c.maxMessage {
		return &errTooLarge{size: len(b), limit: c.maxMessage}
	}
	frame := make([]byte, 5+len(b))
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(b)))
	copy(frame[5:], b)
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, method, bytes.NewReader(frame))
	if err != nil {
		return status.Errorf(codes.Internal, "build call of %s: %v", method, err)
	}
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	req.Host, req.RemoteAddr, req.TLS = r.Host, r.RemoteAddr, r.TLS
	req.Header.Set("Content-Type", "application/grpc")
	for _, k := range forwarded {
		for _, v := range r.Header.Values(k) {
			req.Header.Add(k, v)
		}
	}
	rec := &recorder{header: http.Header{}}
	c.grpc.ServeHTTP(rec, req)
	if err := rec.status(); err != nil {
		return err
	}
	msg, err := rec.message()
	if err != nil {
		return status.Errorf(codes.Internal, "reply of %s: %v", method, err)
	}
	if err := proto.Unmarshal(msg, out); err != nil {
		return status.Errorf(codes.Internal, "decode reply of %s: %v", method, err)
	}
	return nil
}

// recorder is the ResponseWriter of one in-process gRPC call. grpc-go
// writes to it only from the goroutine of ServeHTTP, and ServeHTTP returns
// after the last write, so it needs no lock. Headers and trailers share
// one map (trailers are set after the body is flushed).
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.body.Write(b)
}

func (w *recorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

// Flush is required by grpc-go's handler transport; there is nothing to
// flush.
func (w *recorder) Flush() {}

// status returns the call's status error, nil for OK.
func (w *recorder) status() error {
	v := w.header.Get("Grpc-Status")
	if v == "" {
		if w.code != 0 && w.code != http.StatusOK {
			// grpc-go refused the request before the call (it writes an
			// HTTP error and no status): a bug here, not the caller's.
			return status.Errorf(codes.Internal, "gRPC server refused the call: HTTP %d: %s", w.code, bytes.TrimSpace(w.body.Bytes()))
		}
		// A server that has stopped answers nothing.
		return status.Error(codes.Unavailable, "server is shutting down")
	}
	if d := w.header.Get("Grpc-Status-Details-Bin"); d != "" {
		if b, err := decodeBin(d); err == nil {
			var p spb.Status
			if proto.Unmarshal(b, &p) == nil && p.Code != 0 {
				return status.FromProto(&p).Err()
			}
		}
	}
	code, err := strconv.Atoi(v)
	if err != nil {
		return status.Errorf(codes.Internal, "bad grpc-status %q", v)
	}
	if code == 0 {
		return nil
	}
	msg := w.header.Get("Grpc-Message")
	if m, err := url.PathUnescape(msg); err == nil {
		msg = m
	}
	return status.Error(codes.Code(code), msg)
}

// message returns the one reply message of a unary call.
func (w *recorder) message() ([]byte, error) {
	b := w.body.Bytes()
	if len(b) < 5 {
		return nil, fmt.Errorf("%d bytes; want a 5-byte frame header", len(b))
	}
	if b[0] != 0 {
		return nil, fmt.Errorf("compressed frame (flag %d) not asked for", b[0])
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if uint64(len(b)-5) != uint64(n) {
		return nil, fmt.Errorf("frame says %d bytes; got %d", n, len(b)-5)
	}
	return b[5:], nil
}

// decodeBin decodes a binary gRPC header value (base64, padded or not).
func decodeBin(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}
