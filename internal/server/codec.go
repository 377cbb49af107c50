package server

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// Codec is the server's gRPC codec: the standard proto codec, except that a
// request whose strings are not valid UTF-8 still decodes, so that the
// client gets INVALID_ARGUMENT naming the field and byte offset instead of
// the opaque INTERNAL "error unmarshalling request" that gRPC gives for any
// decode failure (utf8.go). An EmbedRequest keeps the bytes of its texts for
// the engine to validate; any other request has them emptied and carries
// the finding to the interceptors. Install it with grpc.ForceServerCodecV2,
// with the interceptors of ServerOptions.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

var protoCodec = encoding.GetCodecV2("proto")

// Name is "proto", so clients need nothing special.
func (Codec) Name() string { return "proto" }

// Marshal is the standard proto marshal.
func (Codec) Marshal(v any) (mem.BufferSlice, error) { return protoCodec.Marshal(v) }

// Unmarshal is the standard proto unmarshal. Only when that fails does it
// look at the bytes: if a string field in them is not valid UTF-8 it decodes
// leniently, else it returns the standard error. The decision rests on what
// the bytes hold, not on the error's text.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := protoCodec.Unmarshal(data, v)
	m, isProto := v.(proto.Message)
	switch {
	case !isProto:
		return err
	case err == nil:
		dropForgedFinding(m)
		return nil
	}
	buf := data.Materialize()
	if req, ok := v.(*embeddv1.EmbedRequest); ok {
		if !hasInvalidUTF8(buf, req.ProtoReflect().Descriptor()) {
			return err
		}
		if lerr := unmarshalLenient(buf, req); lerr != nil {
			return errors.Join(err, lerr)
		}
		return nil
	}
	marked, lerr := unmarshalMarkingUTF8(buf, m)
	switch {
	case !marked:
		return err
	case lerr != nil:
		return errors.Join(err, lerr)
	}
	return nil
}

// unmarshalLenient decodes an EmbedRequest keeping the bytes of its string
// fields as they are; the handler validates them.
func unmarshalLenient(b []byte, req *embeddv1.EmbedRequest) error {
	req.Reset()
	var rest []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		field := b[:n+m]
		if typ == protowire.BytesType && (num == 1 || num == 2 || num == 7) {
			s, _ := protowire.ConsumeString(b[n:])
			switch num {
			case 1:
				req.Model = s
			case 2:
				req.Texts = append(req.Texts, s)
			case 7:
				req.RequestId = s
			}
		} else {
			rest = append(rest, field...)
		}
		b = b[n+m:]
	}
	var other embeddv1.EmbedRequest
	if err := proto.Unmarshal(rest, &other); err != nil {
		return fmt.Errorf("decode request: %w", err)
	}
	req.Truncate, req.Normalize, req.Dimensions, req.OutputType = other.Truncate, other.Normalize, other.Dimensions, other.OutputType
	return nil
}
