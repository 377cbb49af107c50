//go:build cuda

package cuda

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// cuBLAS is opened with dlopen, so none of its headers are needed: the few
// types are declared here with their ABI. Every cuBLAS enum is a C int
// (cublasStatus_t, cublasOperation_t, cudaDataType, cublasComputeType_t,
// cublasGemmAlgo_t, cublasMath_t); cublasHandle_t and cudaStream_t are
// pointers.
typedef int (*embedd_cublasCreate_t)(void **handle);
typedef int (*embedd_cublasDestroy_t)(void *handle);
typedef int (*embedd_cublasSetStream_t)(void *handle, void *stream);
typedef int (*embedd_cublasSetMathMode_t)(void *handle, int mode);
typedef int (*embedd_cublasGetVersion_t)(void *handle, int *version);
typedef int (*embedd_cublasGemmEx_t)(void *handle, int transa, int transb, int m, int n, int k,
                                     const void *alpha, const void *A, int Atype, int lda,
                                     const void *B, int Btype, int ldb, const void *beta,
                                     void *C, int Ctype, int ldc, int computeType, int algo);

typedef struct {
	void *lib;
	embedd_cublasCreate_t create;
	embedd_cublasDestroy_t destroy;
	embedd_cublasSetStream_t setStream;
	embedd_cublasSetMathMode_t setMathMode;
	embedd_cublasGetVersion_t getVersion;
	embedd_cublasGemmEx_t gemmEx;
} embedd_cublas;

// embedd_cublas_open dlopens soname (RTLD_NOW | RTLD_LOCAL: every symbol
// resolved now, none added to the global namespace) and resolves the entry
// points into *l. It returns 1, or 0 with the reason (dlerror()) in err.
// The library is never closed: cuBLAS keeps process-wide state.
static int embedd_cublas_open(const char *soname, embedd_cublas *l, char *err, size_t errlen) {
	memset(l, 0, sizeof *l);
	dlerror();
	void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		snprintf(err, errlen, "%s", e != NULL ? e : "dlopen failed");
		return 0;
	}
	struct { const char *name; void **slot; } syms[] = {
		{"cublasCreate_v2", (void **)&l->create},
		{"cublasDestroy_v2", (void **)&l->destroy},
		{"cublasSetStream_v2", (void **)&l->setStream},
		{"cublasSetMathMode", (void **)&l->setMathMode},
		{"cublasGetVersion_v2", (void **)&l->getVersion},
		{"cublasGemmEx", (void **)&l->gemmEx},
	};
	for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
		dlerror();
		void *p = dlsym(h, syms[i].name);
		const char *e = dlerror();
		if (p == NULL) {
			snprintf(err, errlen, "%s", e != NULL ? e : syms[i].name);
			dlclose(h);
			memset(l, 0, sizeof *l);
			return 0;
		}
		*syms[i].slot = p;
	}
	l->lib = h;
	return 1;
}

static int embedd_cublas_create(const embedd_cublas *l, uintptr_t *handle) {
	void *h = NULL;
	int st = l->create(&h);
	*handle = (uintptr_t)h;
	return st;
}

static int embedd_cublas_destroy(const embedd_cublas *l, uintptr_t handle) {
	return l->destroy((void *)handle);
}

static int embedd_cublas_set_stream(const embedd_cublas *l, uintptr_t handle, uintptr_t stream) {
	return l->setStream((void *)handle, (void *)stream);
}

static int embedd_cublas_set_math_mode(const embedd_cublas *l, uintptr_t handle, int mode) {
	return l->setMathMode((void *)handle, mode);
}

static int embedd_cublas_version(const embedd_cublas *l, uintptr_t handle, int *version) {
	return l->getVersion((void *)handle, version);
}

// alpha and beta are host scalars (the default CUBLAS_POINTER_MODE_HOST),
// float for CUBLAS_COMPUTE_32F; cuBLAS reads them before it returns.
static int embedd_cublas_gemm(const embedd_cublas *l, uintptr_t handle, int transa, int transb,
                              int m, int n, int k, float alpha, uintptr_t A, int Atype, int lda,
                              uintptr_t B, int Btype, int ldb, float beta, uintptr_t C, int Ctype,
                              int ldc, int computeType, int algo) {
	return l->gemmEx((void *)handle, transa, transb, m, n, k, &alpha, (const void *)A, Atype, lda,
	                 (const void *)B, Btype, ldb, &beta, (void *)C, Ctype, ldc, computeType, algo);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/embedd/embedd/internal/accel"
)

// cuBLAS sonames, in the order they are tried: the CUDA 13 library, then
// the CUDA 12 one. Both export the same _v2 API with the same ABI.
var cublasSonames = []string{"libcublas.so.13", "libcublas.so.12"}

// cuBLAS and CUDA library constants (cublas_api.h, library_types.h; the
// values are the ABI and the same in CUDA 12 and 13).
const (
	cublasOpN = 0 // CUBLAS_OP_N
	cublasOpT = 1 // CUBLAS_OP_T

	cudaR32F = 0 // CUDA_R_32F
	cudaR16F = 2 // CUDA_R_16F

	cublasCompute32F = 68 // CUBLAS_COMPUTE_32F: float accumulation, no TF32, no fp16 down-conversion

	cublasGemmDefault = -1 // CUBLAS_GEMM_DEFAULT

	// Math modes. float32 runs with CUBLAS_DEFAULT_MATH: with
	// CUBLAS_COMPUTE_32F it never uses TF32 (only CUBLAS_TF32_TENSOR_OP_MATH
	// = 3 or CUBLAS_COMPUTE_32F_FAST_TF32 = 77 would), and unlike
	// CUBLAS_PEDANTIC_MATH = 2 it keeps cuBLAS's fastest exact kernels. fp16
	// adds CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION, so that split-K
	// partial sums are reduced in float32, not in the fp16 output type.
	cublasDefaultMath                           = 0  // CUBLAS_DEFAULT_MATH
	cublasMathDisallowReducedPrecisionReduction = 16 // CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION

	cublasStatusAllocFailed = 3 // CUBLAS_STATUS_ALLOC_FAILED
)

// cublasStatusNames names the cublasStatus_t values.
var cublasStatusNames = map[int]string{
	0:  "CUBLAS_STATUS_SUCCESS",
	1:  "CUBLAS_STATUS_NOT_INITIALIZED",
	3:  "CUBLAS_STATUS_ALLOC_FAILED",
	7:  "CUBLAS_STATUS_INVALID_VALUE",
	8:  "CUBLAS_STATUS_ARCH_MISMATCH",
	11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR",
	15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// cublasError is a failed cuBLAS call: the library it came from, the call
// and the status. CUBLAS_STATUS_ALLOC_FAILED matches accel.ErrOutOfMemory.
type cublasError struct {
	lib, call string
	status    int
}

func (e *cublasError) Error() string { return "cuda: " + e.detail() }

// detail is the error without the package prefix: "libcublas.so.12:
// cublasGemmEx(m=1152 n=64 k=384): CUBLAS_STATUS_EXECUTION_FAILED".
func (e *cublasError) detail() string {
	name, ok := cublasStatusNames[e.status]
	if !ok {
		name = fmt.Sprintf("cublasStatus %d", e.status)
	}
	return fmt.Sprintf("%s: %s: %s", e.lib, e.call, name)
}

func (e *cublasError) Unwrap() error {
	if e.status == cublasStatusAllocFailed {
		return accel.ErrOutOfMemory
	}
	return nil
}

// cublasLib is one opened cuBLAS library. Its C struct lives in C memory
// for the life of the process.
type cublasLib struct {
	soname string
	c      *C.embedd_cublas
}

var (
	cublasMu     sync.Mutex
	cublasOpened = map[string]*cublasLib{} // soname -> opened library
	cublasFailed = map[string]string{}     // soname -> why it did not open
)

// openCublas opens soname once per process; later calls return the same
// library or the same reason.
func openCublas(soname string) (*cublasLib, error) {
	cublasMu.Lock()
	defer cublasMu.Unlock()
	if l, ok := cublasOpened[soname]; ok {
		return l, nil
	}
	if why, ok := cublasFailed[soname]; ok {
		return nil, errors.New(why)
	}
	const errLen = 1024
	cname := C.CString(soname)
	defer C.free(unsafe.Pointer(cname))
	cerr := (*C.char)(C.malloc(errLen))
	defer C.free(unsafe.Pointer(cerr))
	c := (*C.embedd_cublas)(C.malloc(C.size_t(unsafe.Sizeof(C.embedd_cublas{}))))
	if C.embedd_cublas_open(cname, c, cerr, errLen) == 0 {
		C.free(unsafe.Pointer(c))
		why := C.GoString(cerr)
		cublasFailed[soname] = why
		return nil, errors.New(why)
	}
	l := &cublasLib{soname: soname, c: c}
	cublasOpened[soname] = l
	return l, nil
}

// cublasUnavailable is the reason no cuBLAS could be used: each soname
// tried and why it failed (dlerror(), or the status of cublasCreate_v2),
// and the CUDA version the driver supports (a library newer than the
// driver loads but fails to create a handle).
type cublasUnavailable struct {
	reasons []string
	driver  int // cuDriverGetVersion: 1000*major + 10*minor
}

func (e *cublasUnavailable) Error() string {
	return fmt.Sprintf("cuda: no usable cuBLAS (%s; the driver supports CUDA %d.%d)",
		strings.Join(e.reasons, "; "), e.driver/1000, e.driver%1000/10)
}

func (e *cublasUnavailable) Unwrap() error { return ErrUnavailable }

// pickCublas returns the first cuBLAS of cublasSonames that opens and
// creates a handle in the current context, with that handle. A library
// that opens but cannot create a handle (libcublas.so.13 on a driver too
// old for CUDA 13 fails with CUBLAS_STATUS_NOT_INITIALIZED) is passed over
// for the next one. The caller's context must be current.
func pickCublas() (*cublasLib, uintptr, error) {
	var reasons []string
	for _, name := range cublasSonames {
		l, err := openCublas(name)
		if err != nil {
			why := err.Error() // dlerror() names the file it could not open
			if !strings.Contains(why, name) {
				why = name + ": " + why
			}
			reasons = append(reasons, why)
			continue
		}
		h, err := l.create()
		if err != nil {
			var ce *cublasError
			if errors.Is(err, accel.ErrOutOfMemory) || !errors.As(err, &ce) {
				return nil, 0, err
			}
			reasons = append(reasons, ce.detail())
			continue
		}
		return l, h, nil
	}
	return nil, 0, &cublasUnavailable{reasons: reasons, driver: cu.Version()}
}

func (l *cublasLib) check(call string, st C.int) error {
	if st == 0 {
		return nil
	}
	return &cublasError{lib: l.soname, call: call, status: int(st)}
}

// create makes a handle in the current context (cuBLAS uses the context
// current on the calling thread, here the device's primary context).
func (l *cublasLib) create() (uintptr, error) {
	var h C.uintptr_t
	if err := l.check("cublasCreate_v2", C.embedd_cublas_create(l.c, &h)); err != nil {
		return 0, err
	}
	return uintptr(h), nil
}

func (l *cublasLib) destroy(h uintptr) error {
	return l.check("cublasDestroy_v2", C.embedd_cublas_destroy(l.c, C.uintptr_t(h)))
}

func (l *cublasLib) setStream(h, stream uintptr) error {
	return l.check("cublasSetStream_v2", C.embedd_cublas_set_stream(l.c, C.uintptr_t(h), C.uintptr_t(stream)))
}

func (l *cublasLib) setMathMode(h uintptr, mode int) error {
	return l.check(fmt.Sprintf("cublasSetMathMode(%d)", mode), C.embedd_cublas_set_math_mode(l.c, C.uintptr_t(h), C.int(mode)))
}

// version is cublasGetVersion_v2: major*10000 + minor*100 + patch.
func (l *cublasLib) version(h uintptr) (int, error) {
	var v C.int
	if err := l.check("cublasGetVersion_v2", C.embedd_cublas_version(l.c, C.uintptr_t(h), &v)); err != nil {
		return 0, err
	}
	return int(v), nil
}

// describe is "libcublas.so.12 12.9.1" (or without the version when it is
// not known).
func (l *cublasLib) describe(version int) string {
	if version <= 0 {
		return l.soname
	}
	return fmt.Sprintf("%s %d.%d.%d", l.soname, version/10000, version/100%100, version%100)
}

// gemm is cublasGemmEx with alpha 1, beta 0, A, B and C all of dtype
// (cudaR32F or cudaR16F), CUBLAS_COMPUTE_32F and CUBLAS_GEMM_DEFAULT, in
// cuBLAS's column-major terms: C[m,n] = op(A)[m,k] · op(B)[k,n]. It only
// enqueues the work on the handle's stream.
func (l *cublasLib) gemm(h uintptr, transa, transb, m, n, k int, a uintptr, lda int, b uintptr, ldb int, c uintptr, ldc int, dtype int) error {
	st := C.embedd_cublas_gemm(l.c, C.uintptr_t(h), C.int(transa), C.int(transb),
		C.int(m), C.int(n), C.int(k),
		1, C.uintptr_t(a), C.int(dtype), C.int(lda),
		C.uintptr_t(b), C.int(dtype), C.int(ldb),
		0, C.uintptr_t(c), C.int(dtype), C.int(ldc),
		cublasCompute32F, cublasGemmDefault)
	if st == 0 {
		return nil
	}
	return &cublasError{lib: l.soname, call: fmt.Sprintf("cublasGemmEx(m=%d n=%d k=%d)", m, n, k), status: int(st)}
}
