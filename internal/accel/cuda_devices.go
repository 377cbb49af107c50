//go:build cuda

package accel

import (
	"fmt"

	"gorgonia.org/cu"
)

// CUDADevices lists the CUDA devices with the driver API (gorgonia.org/cu).
//
// A binary built with the `cuda` tag links libcuda.so.1, so it starts only
// where the NVIDIA driver is installed, and gorgonia.org/cu initializes the
// driver when the program starts (cuInit in its package init, which exits
// the process if that fails, e.g. with no GPU). Build it for GPU machines
// only; the default build runs everywhere and finds CUDA at run time through
// ONNX Runtime's CUDA provider.
func CUDADevices() ([]GPU, error) {
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("accel: cuda device count: %w", err)
	}
	gpus := make([]GPU, 0, n)
	for i := range n {
		d, err := cu.GetDevice(i)
		if err != nil {
			return nil, fmt.Errorf("accel: cuda device %d: %w", i, err)
		}
		name, err := d.Name()
		if err != nil {
			return nil, fmt.Errorf("accel: cuda device %d: name: %w", i, err)
		}
		mem, err := d.TotalMem()
		if err != nil {
			return nil, fmt.Errorf("accel: cuda device %d: memory: %w", i, err)
		}
		major, minor, err := d.ComputeCapability()
		if err != nil {
			return nil, fmt.Errorf("accel: cuda device %d: compute capability: %w", i, err)
		}
		gpus = append(gpus, GPU{Ordinal: i, Name: name, MemoryBytes: mem, ComputeCapability: fmt.Sprintf("%d.%d", major, minor)})
	}
	return gpus, nil
}
