package client

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// TestEveryMethodClassified: each RPC of embedd.v1 is either safe to
// repeat or not, so a method added later cannot be retried by accident on
// UNAVAILABLE, nor forgotten.
func TestEveryMethodClassified(t *testing.T) {
	files := []protoreflect.FileDescriptor{
		embeddv1.File_embedd_v1_embedd_proto, embeddv1.File_embedd_v1_vectors_proto,
		embeddv1.File_embedd_v1_features_proto, embeddv1.File_embedd_v1_jobs_proto,
	}
	n := 0
	for _, f := range files {
		for i := 0; i < f.Services().Len(); i++ {
			svc := f.Services().Get(i)
			for k := 0; k < svc.Methods().Len(); k++ {
				m := svc.Methods().Get(k)
				full := "/" + string(svc.FullName()) + "/" + string(m.Name())
				n++
				safe, unsafe := safeToRepeat[full], notRepeatable[full]
				if safe == unsafe {
					t.Errorf("%s: safe to repeat %v, not repeatable %v; want exactly one", full, safe, unsafe)
				}
				if m.IsStreamingClient() || m.IsStreamingServer() {
					if !unsafe {
						t.Errorf("%s streams: want it in notRepeatable", full)
					}
				}
			}
		}
	}
	if n < 18 {
		t.Errorf("found %d methods; want the 18 or more of embedd.v1", n)
	}
}
