//go:build cuda

package main

import (
	"fmt"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/accel/cuda"
	"github.com/embedd/embedd/internal/metrics"
)

// nativeCompiled says this binary holds the native CUDA encoder (built with
// the `cuda` tag: `make build-cuda`).
const nativeCompiled = true

// nativeEncoder is the factory of accel.Options.Native: the native CUDA
// encoder of internal/accel/cuda.
func nativeEncoder() accel.NativeFunc { return cuda.NewFromSpec }

// gpuMemory reads CUDA device dev's memory at each metrics scrape.
func gpuMemory(dev int) metrics.GPUMemoryFunc {
	label := fmt.Sprintf("cuda:%d", dev)
	return func() ([]metrics.GPUMemory, error) {
		free, total, err := cuda.MemInfo(dev)
		if err != nil {
			return nil, err
		}
		return []metrics.GPUMemory{{Device: label, Free: free, Total: total}}, nil
	}
}
