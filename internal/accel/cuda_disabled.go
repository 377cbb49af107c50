//go:build !cuda

package accel

// GPU describes a CUDA device found by native device discovery.
type GPU struct {
	Ordinal     int
	Name        string
	MemoryBytes int64
	// ComputeCapability is "major.minor".
	ComputeCapability string
}

// CUDADevices lists the CUDA devices with the native driver API. Without the
// `cuda` build tag it returns ErrNotEnabled.
func CUDADevices() ([]GPU, error) { return nil, ErrNotEnabled }
