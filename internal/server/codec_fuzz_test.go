package server

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/embedd/embedd/internal/fuzzcheck"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// Fuzz targets for the server's hand-written protobuf wire parsing: the
// codec's lenient EmbedRequest decoding (unmarshalLenient) and the UTF-8
// sanitizer of every other request (sanitizeUTF8). The seeds run in plain
// `go test`; the long runs are by hand (make fuzz):
//
//	go test -run '^$' -fuzz '^FuzzCodecUnmarshal$' -fuzztime 1000000x -parallel 1 ./internal/server/

// fuzzRequestTypes is the input type of every RPC of the three services,
// sorted by name, so that a new RPC is fuzzed without editing this file.
func fuzzRequestTypes(tb testing.TB) []protoreflect.MessageType {
	tb.Helper()
	seen := map[protoreflect.FullName]bool{}
	var out []protoreflect.MessageType
	for _, fd := range []protoreflect.FileDescriptor{embeddv1.File_embedd_v1_embedd_proto, embeddv1.File_embedd_v1_features_proto, embeddv1.File_embedd_v1_vectors_proto} {
		for i := range fd.Services().Len() {
			ms := fd.Services().Get(i).Methods()
			for j := range ms.Len() {
				name := ms.Get(j).Input().FullName()
				if seen[name] {
					continue
				}
				seen[name] = true
				mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
				if err != nil {
					tb.Fatal(err)
				}
				out = append(out, mt)
			}
		}
	}
	slices.SortFunc(out, func(a, b protoreflect.MessageType) int {
		return strings.Compare(string(a.Descriptor().FullName()), string(b.Descriptor().FullName()))
	})
	return out
}

// fuzzSeeds adds real encoded requests of every type, as they are and with
// one string byte made invalid UTF-8.
func fuzzSeeds(f *testing.F, types []protoreflect.MessageType) {
	ts := timestamppb.New(timestamppb.Now().AsTime().Truncate(1e9))
	norm := true
	msgs := []proto.Message{
		&embeddv1.EmbedRequest{Model: "all-minilm-l6-v2", Texts: []string{"hello", "wörld", ""}, Truncate: true, Normalize: &norm, Dimensions: 128, OutputType: embeddv1.OutputType_OUTPUT_TYPE_INT8, RequestId: "r1"},
		&embeddv1.UpsertRequest{Collection: "docs", Items: []*embeddv1.Item{
			{Id: "a", Text: "some text", Metadata: `{"k":"v"}`, Features: map[string]float64{"f": 1.5}},
			{Id: "b", Vector: []float32{0.1, -0.2, 0.3}},
		}},
		&embeddv1.SearchRequest{Collection: "docs", Query: &embeddv1.SearchRequest_Text{Text: "query"}, TopK: 5, Filter: `metadata["k"] == "v"`, Features: map[string]float64{"f": 2}},
		&embeddv1.GetRequest{Collection: "docs", Ids: []string{"a", "b"}},
		&embeddv1.DeleteRequest{Collection: "docs", Ids: []string{"a"}},
		&embeddv1.UpsertHybridRequest{Collection: "docs", Ids: []string{"u1"}},
		&embeddv1.IngestEventsRequest{Events: []*embeddv1.Event{
			{EntityId: "u1", EventType: "click", Timestamp: ts, Values: map[string]float64{"amount": 3}, Context: map[string]string{"tier": "gold"}},
			{EntityId: "u2", Timestamp: ts},
		}},
		&embeddv1.GetFeaturesRequest{EntityIds: []string{"u1"}, Features: []string{"events_1h@1"}},
		&embeddv1.GetFeatureStatsRequest{},
	}
	index := map[protoreflect.FullName]uint8{}
	for i, mt := range types {
		index[mt.Descriptor().FullName()] = uint8(i)
	}
	for _, m := range msgs {
		i, ok := index[m.ProtoReflect().Descriptor().FullName()]
		if !ok {
			f.Fatalf("%s is not a request type", m.ProtoReflect().Descriptor().FullName())
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(i, b)
		// Corrupt the last byte of the last string-looking run of letters.
		for j := len(b) - 1; j > 0; j-- {
			if b[j] >= 'a' && b[j] <= 'z' {
				bad := bytes.Clone(b)
				bad[j] = 0xff
				f.Add(i, bad)
				break
			}
		}
	}
	f.Add(uint8(0), []byte{})
}

var badPath = regexp.MustCompile(`^[a-z0-9_]+(\[[0-9]+\])?(\.[a-z0-9_]+(\[[0-9]+\])?)*: invalid UTF-8 at byte offset [0-9]+$`)

// wireErrors are the errors protowire.ParseError returns.
var wireErrors = func() []error {
	var out []error
	for n := -1; n >= -6; n-- {
		out = append(out, protowire.ParseError(n))
	}
	return out
}()

func isUTF8Error(err error) bool { return err != nil && strings.Contains(err.Error(), "UTF-8") }

// FuzzCodecUnmarshal decodes arbitrary bytes as every request type with the
// server codec and checks it against the standard proto decoding:
//   - it never panics, and allocates at most a small multiple of the input;
//   - what proto accepts, the codec decodes identically (less any finding
//     field a client forged) and marks nothing;
//   - what proto rejects and holds no invalid UTF-8 string, the codec
//     rejects with proto's error;
//   - what holds an invalid UTF-8 string the codec decodes leniently: an
//     EmbedRequest keeps the raw bytes of its strings and equals the
//     sanitized decoding in every other field and in every valid string;
//     any other request is marked with the path of its first bad string and
//     holds only valid strings, so it re-encodes and re-decodes unchanged.
func FuzzCodecUnmarshal(f *testing.F) {
	types := fuzzRequestTypes(f)
	fuzzSeeds(f, types)
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		mt := types[int(which)%len(types)]
		want := mt.New().Interface()
		stdErr := proto.Unmarshal(data, want)
		_, bad, serr := sanitizeUTF8(data, mt.Descriptor(), "")
		invalid := serr == nil && bad != ""
		if isUTF8Error(stdErr) && serr == nil && bad == "" {
			t.Fatalf("proto finds invalid UTF-8 the sanitizer missed: %v", stdErr)
		}

		var got proto.Message
		var err error
		fuzzcheck.CheckAllocs(t, 0, len(data), func() {
			got = mt.New().Interface()
			err = Codec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, got)
		})
		path, marked := takeFinding(got)

		embed, isEmbed := got.(*embeddv1.EmbedRequest)
		if err == nil && isEmbed && marked { // (a rejected request is dropped, whatever it holds)
			t.Fatal("an EmbedRequest was marked; it has its own lenient decoding")
		}
		switch {
		case stdErr == nil:
			if err != nil {
				t.Fatalf("codec rejects what proto accepts: %v", err)
			}
			if marked {
				t.Fatalf("valid request marked %q", path)
			}
			dropForgedFinding(want)
			if !proto.Equal(got, want) {
				t.Fatalf("codec decoded %v; proto %v", got, want)
			}
			if isEmbed { // the lenient decoder agrees with proto on valid input
				var lenient embeddv1.EmbedRequest
				if err := unmarshalLenient(data, &lenient); err != nil {
					t.Fatalf("unmarshalLenient rejects a valid request: %v", err)
				}
				want.ProtoReflect().SetUnknown(nil)
				if !proto.Equal(&lenient, want) {
					t.Fatalf("unmarshalLenient decoded %v; proto %v", &lenient, want)
				}
			}
		case !invalid: // (what a rejected request holds is unspecified: gRPC drops it)
			if err == nil || err.Error() != stdErr.Error() {
				t.Fatalf("proto error %q; codec %v", stdErr, err)
			}
		case err != nil:
			if !strings.Contains(err.Error(), stdErr.Error()) {
				t.Fatalf("codec error %q does not carry proto's %q", err, stdErr)
			}
		case isEmbed:
			checkLenientEmbed(t, data, embed)
		default:
			if !marked {
				t.Fatal("request with invalid UTF-8 decoded but not marked")
			}
			if path != bad || !badPath.MatchString(path) {
				t.Fatalf("marked %q; the sanitizer found %q", path, bad)
			}
			b, err := proto.Marshal(got)
			if err != nil {
				t.Fatalf("sanitized request does not re-encode: %v", err)
			}
			again := mt.New().Interface()
			if err := proto.Unmarshal(b, again); err != nil || !proto.Equal(again, got) {
				t.Fatalf("sanitized request does not round-trip: %v", err)
			}
		}
	})
}

// checkLenientEmbed compares the lenient decoding of data with the
// sanitizer's: equal wherever the lenient string is valid UTF-8, empty in
// the sanitized one where it is not.
func checkLenientEmbed(t *testing.T, data []byte, got *embeddv1.EmbedRequest) {
	t.Helper()
	clean, bad, err := sanitizeUTF8(data, got.ProtoReflect().Descriptor(), "")
	if err != nil {
		t.Fatalf("lenient decoding accepted what the sanitizer rejects: %v", err)
	}
	if bad == "" {
		t.Fatal("lenient decoding used, but the sanitizer finds no invalid UTF-8")
	}
	var san embeddv1.EmbedRequest
	if err := proto.Unmarshal(clean, &san); err != nil {
		t.Fatalf("sanitized EmbedRequest does not decode: %v", err)
	}
	same := func(field, lenient, sanitized string) {
		if utf8.ValidString(lenient) && lenient != sanitized || !utf8.ValidString(lenient) && sanitized != "" {
			t.Fatalf("%s: lenient %q, sanitized %q", field, lenient, sanitized)
		}
	}
	same("model", got.Model, san.Model)
	same("request_id", got.RequestId, san.RequestId)
	if len(got.Texts) != len(san.Texts) {
		t.Fatalf("texts: lenient %d, sanitized %d", len(got.Texts), len(san.Texts))
	}
	for i := range got.Texts {
		same("texts", got.Texts[i], san.Texts[i])
	}
	if got.Truncate != san.Truncate || (got.Normalize == nil) != (san.Normalize == nil) || got.GetNormalize() != san.GetNormalize() ||
		got.Dimensions != san.Dimensions || got.OutputType != san.OutputType {
		t.Fatalf("other fields: lenient %v, sanitized %v", got, &san)
	}
}

// FuzzSanitizeUTF8 checks the sanitizer against proto's own UTF-8 check on
// every request type:
//   - it never panics, and allocates at most a small multiple of the input;
//   - it rejects only input that proto rejects too;
//   - finding nothing, it returns the input unchanged, and proto finds no
//     invalid UTF-8 either;
//   - finding something (which proto must reject), it names the path and
//     byte offset, and its output has no invalid UTF-8 for proto, is no
//     longer than the input, and is a fixed point of the sanitizer.
func FuzzSanitizeUTF8(f *testing.F) {
	types := fuzzRequestTypes(f)
	fuzzSeeds(f, types)
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		if i := firstInvalid(data); !utf8.Valid(data[:i]) || i < len(data) && func() bool { r, n := utf8.DecodeRune(data[i:]); return r != utf8.RuneError || n != 1 }() {
			t.Fatalf("firstInvalid(%q) = %d", data, i)
		}
		mt := types[int(which)%len(types)]
		md := mt.Descriptor()
		stdErr := proto.Unmarshal(data, mt.New().Interface())
		var out []byte
		var bad string
		var err error
		fuzzcheck.CheckAllocs(t, 0, len(data), func() { out, bad, err = sanitizeUTF8(data, md, "") })
		if err != nil {
			if stdErr == nil {
				t.Fatalf("sanitizer rejects what proto accepts: %v", err)
			}
			if !slices.Contains(wireErrors, err) {
				t.Fatalf("error %v is not a protowire parse error", err)
			}
			return
		}
		if bad == "" {
			if !bytes.Equal(out, data) {
				t.Fatal("nothing found, but the output differs from the input")
			}
			if isUTF8Error(stdErr) {
				t.Fatalf("proto finds invalid UTF-8 the sanitizer missed: %v", stdErr)
			}
			return
		}
		if stdErr == nil {
			t.Fatalf("sanitizer found %q in a request proto accepts", bad)
		}
		if !badPath.MatchString(bad) {
			t.Fatalf("bad path %q", bad)
		}
		if len(out) > len(data) {
			t.Fatalf("output %d bytes longer than the input %d", len(out), len(data))
		}
		if err := proto.Unmarshal(out, mt.New().Interface()); isUTF8Error(err) {
			t.Fatalf("sanitized output still has invalid UTF-8: %v", err)
		}
		out2, bad2, err := sanitizeUTF8(out, md, "")
		if err != nil || bad2 != "" || !bytes.Equal(out2, out) {
			t.Fatalf("sanitizing twice: %q %v", bad2, err)
		}
	})
}
