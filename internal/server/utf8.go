package server

import (
	"context"
	"fmt"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Invalid UTF-8 in any request: proto3 decoding rejects a string field that
// is not UTF-8, and gRPC reports that as INTERNAL with no field named. The
// codec instead decodes such a request with the offending strings emptied,
// remembers which field was bad (badUTF8), and the unary interceptor
// answers INVALID_ARGUMENT naming it, e.g. `items[3].text: invalid UTF-8 at
// byte offset 4`, before the handler runs. (EmbedRequest keeps its own
// lenient decoding so the engine can name every bad text.)

// badUTF8 maps a decoded request to the path of its first invalid string.
var badUTF8 sync.Map

// rejectBadUTF8 is the unary interceptor half.
func rejectBadUTF8(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if path, ok := badUTF8.LoadAndDelete(req); ok {
		return nil, status.Error(codes.InvalidArgument, path.(string))
	}
	return h(ctx, req)
}

// unmarshalMarkingUTF8 decodes buf into m with invalid strings emptied and
// records the first one's path.
func unmarshalMarkingUTF8(buf []byte, m proto.Message) error {
	clean, bad, err := sanitizeUTF8(buf, m.ProtoReflect().Descriptor(), "")
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(clean, m); err != nil {
		return err
	}
	if bad != "" {
		badUTF8.Store(m, bad)
	}
	return nil
}

// sanitizeUTF8 returns b with every string field (at any depth) that is not
// valid UTF-8 replaced by an empty one, and the path of the first, like
// "items[3].text: invalid UTF-8 at byte offset 4".
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
