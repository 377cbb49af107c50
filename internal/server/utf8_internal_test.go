package server

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// badGet is a GetRequest whose second id is not UTF-8.
func badGet() []byte {
	b := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "docs")
	b = protowire.AppendString(protowire.AppendTag(b, 2, protowire.BytesType), "a")
	return protowire.AppendString(protowire.AppendTag(b, 2, protowire.BytesType), "b\xc3")
}

// TestFindingTravelsWithRequest: the codec's finding is carried by the
// decoded request alone. Each request has its own, taking it removes it, and
// the request is then an ordinary message again.
func TestFindingTravelsWithRequest(t *testing.T) {
	var m1, m2 embeddv1.GetRequest
	for _, m := range []*embeddv1.GetRequest{&m1, &m2} {
		if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(badGet())}, m); err != nil {
			t.Fatal(err)
		}
	}
	if got := m2.GetIds(); len(got) != 2 || got[0] != "a" || got[1] != "" {
		t.Errorf("ids = %q; want the bad one emptied", got)
	}
	for i, m := range []*embeddv1.GetRequest{&m1, &m2} {
		bad, ok := takeFinding(m)
		if want := "ids[1]: invalid UTF-8 at byte offset 1"; !ok || bad != want {
			t.Errorf("request %d: finding %q, %v; want %q", i, bad, ok, want)
		}
		if _, ok := takeFinding(m); ok || len(m.ProtoReflect().GetUnknown()) != 0 {
			t.Errorf("request %d: finding still there after it was taken", i)
		}
		if _, err := proto.Marshal(m); err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	// A valid request carries nothing, and a decode error is not a UTF-8
	// problem and stays one.
	var ok embeddv1.GetRequest
	valid := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "docs")
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(valid)}, &ok); err != nil {
		t.Fatal(err)
	}
	if _, found := takeFinding(&ok); found {
		t.Error("valid request has a finding")
	}
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(badGet()[:8])}, &ok); err == nil {
		t.Error("truncated request decoded")
	}
}

// fakeStream receives one encoded message through the codec.
type fakeStream struct {
	grpc.ServerStream
	msg []byte
}

func (s *fakeStream) Context() context.Context { return context.Background() }
func (s *fakeStream) RecvMsg(m any) error {
	return Codec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(s.msg)}, m)
}

// TestFindingStream: a streamed message with a finding fails its RecvMsg
// with INVALID_ARGUMENT naming the field; a valid one is received.
func TestFindingStream(t *testing.T) {
	recv := func(msg []byte) error {
		return rejectBadUTF8Stream(nil, &fakeStream{msg: msg}, nil, func(_ any, ss grpc.ServerStream) error {
			return ss.RecvMsg(new(embeddv1.GetRequest))
		})
	}
	err := recv(badGet())
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != "ids[1]: invalid UTF-8 at byte offset 1" {
		t.Errorf("bad message: %v", err)
	}
	if err := recv(badGet()[:6]); err != nil {
		t.Errorf("valid message: %v", err)
	}
}
