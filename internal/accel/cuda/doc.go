// Package cuda is embedd's native GPU encoder: a BERT-family encoder run on
// packed batches (no padding, no mask) by the kernels of
// internal/accel/cudakernels and by cuBLAS, with pooling, normalization,
// Matryoshka truncation and int8 quantization fused in the last kernel, so
// only [texts, dims] values cross the bus. The design, the forward pass and
// the kernel contracts are in docs/native-cuda.md; internal/accel/packed is
// the CPU twin every kernel is tested against.
//
// The encoder itself (New, NewFromSpec, Encoder, Devices, MemInfo) is built
// only with the `cuda` build tag: it drives the CUDA driver API through
// gorgonia.org/cu, which links libcuda.so.1 and initializes the driver when
// the program starts (so a `cuda` binary starts only where the NVIDIA driver
// is installed). cuBLAS is not linked: it is opened at run time with dlopen,
// libcublas.so.13 first, then libcublas.so.12, so one binary works with
// either.
//
// Without the tag the package holds only its pure-Go host helpers (the
// float32 <-> fp16 conversion the weights are uploaded with), which the
// ordinary test run covers.
package cuda
