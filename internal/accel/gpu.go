package accel

// GPU describes a CUDA device found by native device discovery (CUDADevices).
type GPU struct {
	// Ordinal is the CUDA device ordinal (Options.DeviceID).
	Ordinal int
	// Name is the driver's name of the device ("NVIDIA H100 80GB HBM3").
	Name string
	// MemoryBytes is the device's total memory in bytes.
	MemoryBytes int64
	// ComputeCapability is "major.minor".
	ComputeCapability string
}
