// Package cudafallback holds only a test: it loads the GPU build of ONNX
// Runtime (which a test process can do once, so not beside the accel tests
// that load the CPU build) and checks what --provider cuda does where the
// CUDA libraries are missing: the model runs on the CPU and the reason names
// the library that did not load. On a machine with CUDA the same test checks
// that the model runs on the GPU and matches the CPU.
package cudafallback
