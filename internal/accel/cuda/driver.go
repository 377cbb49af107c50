//go:build cuda

package cuda

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>

// embedd_mem_alloc_host allocates page-locked host memory in the current
// context (cuMemAllocHost: portable to every context of the process is not
// needed, the encoder uses one).
static CUresult embedd_mem_alloc_host(void **p, size_t bytes) { return cuMemAllocHost(p, bytes); }

static CUresult embedd_mem_free_host(void *p) { return cuMemFreeHost(p); }

static const char *embedd_cu_error_name(CUresult r) {
	const char *s = NULL;
	if (cuGetErrorName(r, &s) != CUDA_SUCCESS) return NULL;
	return s;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/embedd/embedd/internal/accel"
)

// cuErr wraps a CUDA driver API error with what was being done. A
// CUDA_ERROR_OUT_OF_MEMORY (from gorgonia.org/cu, whose errors compare equal
// to cu.OutOfMemory, or from this package's own driver calls) also matches
// accel.ErrOutOfMemory.
func cuErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, cu.OutOfMemory) {
		return fmt.Errorf("cuda: %s: %w (%w)", what, accel.ErrOutOfMemory, err)
	}
	return fmt.Errorf("cuda: %s: %w", what, err)
}

// driverError is a CUresult from this package's own cgo calls.
type driverError int

func (e driverError) Error() string {
	if s := C.embedd_cu_error_name(C.CUresult(e)); s != nil {
		return C.GoString(s)
	}
	return fmt.Sprintf("CUresult %d", int(e))
}

func (e driverError) Is(target error) bool {
	return target == cu.OutOfMemory && e == C.CUDA_ERROR_OUT_OF_MEMORY
}

// pinned is page-locked host memory (cuMemAllocHost), so that copies to and
// from the device are truly asynchronous.
type pinned struct {
	p     unsafe.Pointer // C memory
	bytes int
}

func allocPinned(bytes int) (pinned, error) {
	var p unsafe.Pointer
	if r := C.embedd_mem_alloc_host(&p, C.size_t(max(bytes, 1))); r != C.CUDA_SUCCESS {
		return pinned{}, cuErr(fmt.Sprintf("cuMemAllocHost(%d bytes)", bytes), driverError(r))
	}
	return pinned{p: p, bytes: bytes}, nil
}

func (h *pinned) free() error {
	if h.p == nil {
		return nil
	}
	r := C.embedd_mem_free_host(h.p)
	h.p = nil
	if r != C.CUDA_SUCCESS {
		return cuErr("cuMemFreeHost", driverError(r))
	}
	return nil
}

// ptr returns the address off bytes into the allocation. The memory is C
// memory that never moves, so Go slices over it (see pinnedSlice) are safe
// to hand to the driver.
func (h *pinned) ptr(off int) unsafe.Pointer { return unsafe.Add(h.p, off) }

func pinnedSlice[T any](h *pinned, off, n int) []T {
	return unsafe.Slice((*T)(h.ptr(off)), n)
}

// Raw driver handles out of gorgonia.org/cu's wrappers, for cuBLAS (which
// takes a cudaStream_t: the same object as a CUstream). cu.Stream is a
// struct holding exactly one C.CUstream pointer; the array bounds below fail
// to compile if that ever changes.
var _ = [1]struct{}{}[unsafe.Sizeof(cu.Stream{})-unsafe.Sizeof(uintptr(0))]

func rawStream(s *cu.Stream) uintptr { return *(*uintptr)(unsafe.Pointer(s)) }

// alignUp rounds n up to a multiple of a (a power of two).
func alignUp(n, a int64) int64 { return (n + a - 1) &^ (a - 1) }

// arena is one device allocation cut into aligned pieces.
type arena struct {
	base cu.DevicePtr
	size int64
	off  int64
}

// arenaAlign aligns every piece to 256 bytes: what cudaMalloc guarantees,
// and more than cuBLAS's tensor-core kernels and the kernels' vector loads
// need.
const arenaAlign = 256

// plan adds a piece of bytes and returns its offset; call alloc after the
// last plan.
func (a *arena) plan(bytes int64) int64 {
	off := alignUp(a.size, arenaAlign)
	a.size = off + max(bytes, 1)
	return off
}

func (a *arena) alloc(what string) error {
	p, err := cu.MemAlloc(alignUp(a.size, arenaAlign))
	if err != nil {
		return cuErr(fmt.Sprintf("cuMemAlloc(%s, %d bytes)", what, a.size), err)
	}
	a.base = p
	return nil
}

func (a *arena) at(off int64) cu.DevicePtr { return a.base + cu.DevicePtr(off) }

func (a *arena) free(what string) error {
	if a.base == 0 {
		return nil
	}
	err := cu.MemFree(a.base)
	a.base = 0
	return cuErr("cuMemFree("+what+")", err)
}

// onContext runs fn on this goroutine's OS thread with ctx current, the
// thread locked for the duration (a CUDA context is current per thread).
func onContext(ctx cu.CUContext, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cu.SetCurrentContext(ctx); err != nil {
		return cuErr("cuCtxSetCurrent", err)
	}
	return fn()
}

// jitLogSize is the size of the JIT compiler's error log buffer.
const jitLogSize = 16 << 10

// loadPTX JIT-compiles and loads the PTX module into the current context.
// A failure carries the driver's JIT error log, and the driver's CUDA
// version (PTX of a newer ISA than the driver knows fails with
// CUDA_ERROR_UNSUPPORTED_PTX_VERSION).
func loadPTX(ptx string) (cu.Module, error) {
	logBuf := &cu.JITErrorLogBuffer{Buffer: make([]byte, jitLogSize)}
	mod, err := cu.LoadDataEx(ptx, logBuf)
	runtime.KeepAlive(logBuf)
	if err == nil {
		return mod, nil
	}
	log := logBuf.Buffer
	for i, c := range log {
		if c == 0 {
			log = log[:i]
			break
		}
	}
	v := cu.Version()
	msg := fmt.Sprintf("load kernels (PTX, driver CUDA %d.%d)", v/1000, v%1000/10)
	if len(log) > 0 {
		msg += ": JIT log: " + string(log)
	}
	return cu.Module{}, cuErr(msg, err)
}
