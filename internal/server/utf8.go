package server

import (
	"context"
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Invalid UTF-8 in any request: proto3 decoding rejects a string field that
// is not UTF-8, and gRPC reports that as INTERNAL with no field named (a
// codec's error reaches the client only as "grpc: error unmarshalling
// request: ..."). So the codec instead decodes such a request with the
// offending strings emptied and writes the path of the first one into the
// request itself, as an unknown field (findingField); the interceptors take
// it out and answer INVALID_ARGUMENT naming it, e.g. `items[3].text: invalid
// UTF-8 at byte offset 4`, before the handler runs. The finding lives and
// dies with its request: no state outside it. (EmbedRequest keeps its own
// lenient decoding so the engine can name every bad text.)

// findingField is the field number under which the codec records a finding
// in a decoded request's unknown fields: the largest number protobuf allows,
// which no embedd message defines (the codec checks). The codec removes any
// copy a client sends, so what the interceptor finds there is the codec's.
const findingField = protowire.MaxValidNumber

// rejectBadUTF8 is the unary interceptor half.
func rejectBadUTF8(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if bad, ok := takeFinding(req); ok {
		return nil, status.Error(codes.InvalidArgument, bad)
	}
	return h(ctx, req)
}

// rejectBadUTF8Stream is the stream interceptor half: a received message
// with a finding fails its RecvMsg with INVALID_ARGUMENT naming the field.
func rejectBadUTF8Stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, findingStream{ss})
}

type findingStream struct{ grpc.ServerStream }

func (s findingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if bad, ok := takeFinding(m); ok {
		return status.Error(codes.InvalidArgument, bad)
	}
	return nil
}

// takeFinding removes the codec's finding from req's unknown fields and
// returns it.
func takeFinding(req any) (string, bool) {
	m, ok := req.(proto.Message)
	if !ok {
		return "", false
	}
	r := m.ProtoReflect()
	u := r.GetUnknown()
	if len(u) == 0 { // every request decoded without a finding or unknown field
		return "", false
	}
	rest, finding, found := cutFinding(u)
	if found {
		r.SetUnknown(rest)
	}
	return finding, found
}

// cutFinding returns the unknown fields b without any findingField, and the
// value of the last one.
func cutFinding(b []byte) (rest []byte, finding string, found bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return rest, finding, found // unknown fields are well-formed; keep what parsed
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return rest, finding, found
		}
		if num == findingField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n:])
			finding, found = string(v), true
		} else {
			rest = append(rest, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return rest, finding, found
}

// dropForgedFinding removes a findingField that a client sent in a request
// that decoded normally, so that only the codec's own findings reach the
// interceptor. It costs nothing for a request without unknown fields.
func dropForgedFinding(m proto.Message) {
	r := m.ProtoReflect()
	if u := r.GetUnknown(); len(u) > 0 {
		if rest, _, found := cutFinding(u); found {
			r.SetUnknown(rest)
		}
	}
}

// unmarshalMarkingUTF8 decodes buf into m with invalid strings emptied and,
// if there were any, records the first one's path in m (findingField). It
// reports whether buf had an invalid string; when it had none, m is
// untouched and the caller keeps its own decode error.
func unmarshalMarkingUTF8(buf []byte, m proto.Message) (bool, error) {
	md := m.ProtoReflect().Descriptor()
	if md.Fields().ByNumber(findingField) != nil {
		return false, nil // cannot happen in embedd's API; decode as strictly as proto does
	}
	clean, bad, err := sanitizeUTF8(buf, md, "")
	if err != nil || bad == "" {
		return false, nil // not a UTF-8 problem
	}
	clean, _, _ = cutFinding(clean) // the client's, if it sent one
	clean = protowire.AppendString(protowire.AppendTag(clean, findingField, protowire.BytesType), bad)
	return true, proto.Unmarshal(clean, m)
}

// sanitizeUTF8 returns b with every string field (at any depth) that is not
// valid UTF-8 replaced by an empty one, and the path of the first, like
// "items[3].text: invalid UTF-8 at byte offset 4". With nothing to
// replace, out equals b.
func sanitizeUTF8(b []byte, md protoreflect.MessageDescriptor, prefix string) (out []byte, bad string, err error) {
	seen := map[protowire.Number]int{}
	out = make([]byte, 0, len(b))
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, "", protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, "", protowire.ParseError(m)
		}
		field := b[:n+m]
		fd := md.Fields().ByNumber(num)
		if fd != nil && typ == protowire.BytesType && (fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.MessageKind) {
			path := prefix + string(fd.Name())
			if fd.IsList() || fd.IsMap() { // a map entry is named by its position
				path = fmt.Sprintf("%s[%d]", path, seen[num])
			}
			seen[num]++
			val, _ := protowire.ConsumeBytes(b[n:])
			var repl []byte
			replaced := false
			if fd.Kind() == protoreflect.StringKind {
				if !utf8.Valid(val) {
					if bad == "" {
						bad = fmt.Sprintf("%s: invalid UTF-8 at byte offset %d", path, firstInvalid(val))
					}
					repl, replaced = []byte{}, true
				}
			} else {
				inner, ibad, err := sanitizeUTF8(val, fd.Message(), path+".")
				if err != nil {
					return nil, "", err
				}
				if ibad != "" {
					if bad == "" {
						bad = ibad
					}
					repl, replaced = inner, true
				}
			}
			if replaced {
				field = protowire.AppendBytes(protowire.AppendTag(nil, num, typ), repl)
			}
		}
		out = append(out, field...)
		b = b[n+m:]
	}
	return out, bad, nil
}

// hasInvalidUTF8 reports whether a string field of b (at any depth) is not
// valid UTF-8; it is false for bytes that do not parse.
func hasInvalidUTF8(b []byte, md protoreflect.MessageDescriptor) bool {
	_, bad, err := sanitizeUTF8(b, md, "")
	return err == nil && bad != ""
}

func firstInvalid(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(b)
}
