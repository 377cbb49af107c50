//go:build !cuda

package accel

// CUDADevices lists the CUDA devices with the native driver API. Without the
// `cuda` build tag it returns ErrNotEnabled.
func CUDADevices() ([]GPU, error) { return nil, ErrNotEnabled }
