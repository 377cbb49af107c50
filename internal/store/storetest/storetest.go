// Package storetest is the conformance suite every store.Vectors and
// store.Online implementation runs, so that the server behaves the same on
// the embedded store, Milvus and Redis.
//
// Use it from an implementation's own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.TestVectors(t, func(t *testing.T) store.Vectors {
//			s := open(t) // fresh or shared; names are unique per subtest
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The open function is called once per subtest and must register the
// store's Close with t.Cleanup. The suite never relies on a store being
// empty: every subtest uses its own collection name and its own entity ids,
// so a shared server (Milvus, Redis) works. Collection names match
// [a-z][a-z0-9_]* and are at most 64 bytes, which Milvus accepts.
//
// Vectors are unit length so that cosine and inner-product metrics order
// them the same way; timestamps are compared at millisecond precision.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/store"
)

// dims is the dimension of the suite's collections; small keeps it fast.
const dims = 8

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// uniqueName returns a collection name or id prefix that is unique to this
// subtest and run.
func uniqueName(t *testing.T) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("rand: %v", err)
	}
	var sb strings.Builder
	sb.WriteString("st_")
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			sb.WriteRune(r)
		default:
			sb.WriteByte('_')
		}
	}
	name := sb.String()
	if len(name) > 54 {
		name = name[:54]
	}
	return name + "_" + hex.EncodeToString(b[:])
}

// unit returns a deterministic unit vector for seed.
func unit(seed uint64) []float32 {
	r := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	v := make([]float32, dims)
	var n float64
	for i := range v {
		v[i] = float32(r.NormFloat64())
		n += float64(v[i]) * float64(v[i])
	}
	n = math.Sqrt(n)
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
	return v
}

func rec(id string, seed uint64) store.Record {
	return store.Record{
		ID:           id,
		Vector:       unit(seed),
		Metadata:     []byte(fmt.Sprintf(`{"seed":%d,"color":"red"}`, seed)),
		ModelVersion: "m1",
		UpdatedAt:    time.UnixMilli(1_700_000_000_000 + int64(seed)).UTC(),
	}
}

func ids(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func hitIDs(hits []store.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.ID
	}
	return out
}

func equalVec(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-6 {
			return false
		}
	}
	return true
}

func checkRecord(t *testing.T, got, want store.Record) {
	t.Helper()
	if got.ID != want.ID {
		t.Errorf("id: got %q; want %q", got.ID, want.ID)
	}
	if !equalVec(got.Vector, want.Vector) {
		t.Errorf("%s vector: got %v; want %v", want.ID, got.Vector, want.Vector)
	}
	if !jsonEqual(got.Metadata, want.Metadata) {
		t.Errorf("%s metadata: got %s; want %s", want.ID, got.Metadata, want.Metadata)
	}
	if got.ModelVersion != want.ModelVersion {
		t.Errorf("%s model version: got %q; want %q", want.ID, got.ModelVersion, want.ModelVersion)
	}
	if got.UpdatedAt.UnixMilli() != want.UpdatedAt.UnixMilli() {
		t.Errorf("%s updated_at: got %v; want %v", want.ID, got.UpdatedAt, want.UpdatedAt)
	}
}

func wantErr(t *testing.T, err, target error, contains string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err: got %v; want %v", err, target)
	}
	if contains != "" && !strings.Contains(err.Error(), contains) {
		t.Errorf("err %q does not name %q", err, contains)
	}
}
