//go:build !cuda

package main

import (
	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/metrics"
)

// nativeCompiled says this binary holds the native CUDA encoder; without
// the `cuda` build tag it does not, and --provider cuda-native falls back
// to ONNX Runtime, saying why.
const nativeCompiled = false

// nativeEncoder is the factory of accel.Options.Native: none in this build.
func nativeEncoder() accel.NativeFunc { return nil }

// gpuMemory reads a CUDA device's memory for the metrics: not in this build
// (no embedd_gpu_memory_* series).
func gpuMemory(int) metrics.GPUMemoryFunc { return nil }
