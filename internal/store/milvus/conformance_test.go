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

// TestVersionsConformance runs the versions suite; a restart is a new
// client on the same server.
func TestVersionsConformance(t *testing.T) {
	storetest.TestVersions(t,
		func(t *testing.T) storetest.Versioned { return newStore(t, DefaultOptions()) },
		func(t *testing.T, _ storetest.Versioned) storetest.Versioned { return newStore(t, DefaultOptions()) })
}
