//go:build cuda

package accel_test

import (
	"regexp"
	"testing"

	"github.com/embedd/embedd/internal/accel"
)

// TestCUDADevices needs a GPU: a cuda-tagged test binary does not start
// without the NVIDIA driver (see CUDADevices).
func TestCUDADevices(t *testing.T) {
	gpus, err := accel.CUDADevices()
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) == 0 {
		t.Fatal("no CUDA devices; want at least one where the driver initialized")
	}
	cc := regexp.MustCompile(`^[1-9][0-9]*\.[0-9]+$`)
	for i, g := range gpus {
		if g.Ordinal != i || g.Name == "" || g.MemoryBytes <= 0 || !cc.MatchString(g.ComputeCapability) {
			t.Errorf("gpus[%d] = %+v; want ordinal %d, a name, memory > 0 and a major.minor compute capability", i, g, i)
		}
		t.Logf("cuda:%d %s %d MiB cc %s", g.Ordinal, g.Name, g.MemoryBytes>>20, g.ComputeCapability)
	}
}
