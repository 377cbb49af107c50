package milvus

import (
	"testing"

	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/storetest"
)

// TestConformance runs the suite every store.Vectors implementation passes,
// so the server behaves the same on Milvus and on the embedded store.
func TestConformance(t *testing.T) {
	storetest.TestVectors(t, func(t *testing.T) store.Vectors { return newStore(t, DefaultOptions()) })
}
