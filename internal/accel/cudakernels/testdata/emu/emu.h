// emu.h: a CPU emulator of the CUDA C++ subset that kernels.cu uses, so that
// the kernel *source* can be compiled by the host C++ compiler and run
// against the pure-Go twins (../../emu_test.go). Test-only.
//
// What it is NOT: a model of the GPU. It never sees the PTX, the driver's JIT
// or ptxas; it does not model FMA contraction (the harness is built with
// -ffp-contract=off, NVRTC contracts), CUDA's expf/erff/sqrt implementations
// (the host's libm is used), warp scheduling, lockstep execution, or the GPU
// memory model. A kernel that passes here can still be wrong on a GPU; a
// kernel that fails here is wrong in its source (indexing, tiling, barrier
// placement, reductions, arithmetic).
//
// Execution model:
//   - A block's threads are cooperative fibers on one OS thread; blocks of
//     a launch run one after the other. A thread runs without interruption
//     between two synchronization points (__syncthreads, a warp shuffle) or
//     until it returns.
//   - __syncthreads completes when every thread of the block has reached a
//     __syncthreads; a warp shuffle when all 32 lanes of the warp have
//     reached a shuffle (all kernels use the full mask). A thread that
//     returns never arrives again, so a barrier or shuffle that not all
//     threads reach (divergent barrier, early return) is a deadlock, which
//     is reported with the state of every waiting thread (exit status 3)
//     instead of hanging.
//   - The order in which ready threads (and blocks) run is a parameter:
//     Order::Forward runs the lowest-numbered ready thread first and blocks
//     in grid order, Order::Reverse the highest-numbered thread and blocks
//     in reverse. A kernel whose result depends on that order races (a read
//     of shared or global memory written by another thread without a barrier
//     in between, two threads or blocks writing one element): the harness
//     runs both orders and requires bit-identical outputs. Each order is
//     deterministic, so a failure reproduces.
//   - __shared__ variables are function-scope statics: shared by the
//     threads of a block, and (as nothing runs concurrently) by successive
//     blocks. A kernel that reads shared memory its block has not written
//     sees the previous block's values, which differ between the two orders.
//   - __trap() prints "trap" and exits with status 4 (the launch fails).
//
// The real threads of an earlier version of this emulator (std::thread per
// GPU thread, std::barrier) cost milliseconds per barrier on a 2-core CI
// machine and hung on a divergent barrier; a fiber switch costs ~20 ns.
#pragma once

#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700  // ucontext on glibc and macOS
#endif

#include <ucontext.h>
#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

// kernels.cu: take the conversions below instead of the PTX inline asm.
#define EMBEDD_KERNEL_EMU 1

// ---- CUDA qualifiers and built-in variables ------------------------------

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __restrict__ __restrict

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
// Plain globals: all fibers run on one OS thread, and the scheduler sets
// threadIdx before it switches to a thread.
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

// ---- fp16 <-> float32 (kernels.cu's to_f32 / from_f32 under EMBEDD_KERNEL_EMU)

// The host compiler's _Float16 (GCC >= 12, Clang >= 15 on x86-64 and
// arm64): exact widening, and narrowing rounded to nearest even with
// overflow to inf, as PTX cvt.f32.f16 and cvt.rn.f16.f32. emu_test.go checks
// both against the host encoder's converter (all 65536 halves, and rounding
// ties, subnormals and overflow).
inline float embedd_emu_f16_to_f32(unsigned short h) {
  return static_cast<float>(std::bit_cast<_Float16>(h));
}
inline unsigned short embedd_emu_f32_to_f16(float v) {
  return std::bit_cast<unsigned short>(static_cast<_Float16>(v));
}

// ---- device functions kernels.cu calls ---------------------------------------

inline float __int_as_float(int i) { return std::bit_cast<float>(i); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
// fmaxf, fabsf, expf, erff, sqrtf, sqrt, round: the host's <cmath>.

[[noreturn]] inline void __trap() {
  std::fprintf(stderr, "emu: trap in block (%u, %u, %u) thread %u\n", blockIdx.x, blockIdx.y,
               blockIdx.z, threadIdx.x);
  std::fflush(stderr);
  std::_Exit(4);
}

namespace emu {

enum class Order { Forward, Reverse };

enum : unsigned { kMaxThreads = 1024, kWarpSize = 32, kMaxWarps = kMaxThreads / kWarpSize };

// [[noreturn]] error exit with a message; status 2 (bad use of the emulator)
// unless given.
[[noreturn]] inline void fail(const std::string& msg, int status = 2) {
  std::fprintf(stderr, "emu: %s\n", msg.c_str());
  std::fflush(stderr);
  std::_Exit(status);
}

// ---- fibers -------------------------------------------------------------------
//
// Context switches: a few lines of assembly on x86-64 Linux (saving the
// callee-saved registers on the fiber's stack and swapping stack pointers,
// ~20 ns), POSIX ucontext elsewhere or with -DEMBEDD_EMU_UCONTEXT (~200 ns:
// swapcontext makes a system call for the signal mask; the whole test takes
// about four times as long). A fiber's function never returns. MXCSR and
// the x87 control word, also callee-saved, are never changed here.
#if defined(__x86_64__) && defined(__ELF__) && !defined(EMBEDD_EMU_UCONTEXT)
#define EMBEDD_EMU_ASM_SWITCH 1
// embedd_emu_switch(save, load): push the callee-saved registers, store the
// stack pointer in *save, load it from load, pop the registers and return
// into the other fiber.
extern "C" void embedd_emu_switch(void** save, void* load);
asm(R"(
  .text
  .p2align 4
  .type embedd_emu_switch, @function
embedd_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size embedd_emu_switch, .-embedd_emu_switch
)");

struct Context {
  void* sp = nullptr;
};
inline void switchTo(Context& from, Context& to) { embedd_emu_switch(&from.sp, to.sp); }
// makeFiber prepares c to start fn on the stack [base, base + size).
inline void makeFiber(Context& c, char* base, size_t size, void (*fn)()) {
  auto* top = reinterpret_cast<uintptr_t*>(reinterpret_cast<uintptr_t>(base + size) & ~uintptr_t(15));
  // From the top: a null return address for fn (so that fn starts with the
  // stack pointer at 8 mod 16, as after a call), fn for the ret, then the
  // six registers popped before it.
  *--top = 0;
  *--top = reinterpret_cast<uintptr_t>(fn);
  for (int i = 0; i < 6; ++i) *--top = 0;
  c.sp = top;
}
#else
struct Context {
  ucontext_t uc{};
};
inline void switchTo(Context& from, Context& to) {
  if (swapcontext(&from.uc, &to.uc) != 0) std::abort();
}
inline void makeFiber(Context& c, char* base, size_t size, void (*fn)()) {
  if (getcontext(&c.uc) != 0) std::abort();
  c.uc.uc_stack.ss_sp = base;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, fn, 0);
}
#endif

enum class State : unsigned char { Ready, Barrier, Shuffle, Done };

// The state of the block being run.
struct Block {
  unsigned n = 0;  // threads
  Order order = Order::Forward;
  const std::function<void()>* kernel = nullptr;
  Context main;                      // the launcher's context
  std::vector<Context> ctx;          // one per thread
  std::vector<State> state;          // one per thread
  uint64_t ready[kMaxThreads / 64];  // bit set of ready threads
  unsigned cur = 0;                  // the running thread
  unsigned atBarrier = 0, done = 0;
  struct Warp {
    unsigned arrived = 0;
    uint64_t val[kWarpSize];   // each lane's value (bits), written on arrival
    unsigned src[kWarpSize];   // the lane each lane reads
    unsigned size[kWarpSize];  // sizeof the value
    uint64_t out[kWarpSize];   // each lane's result, written when the warp completes
  } warps[kMaxWarps];
};

inline Block blk;

// Fiber stacks, allocated once, each with a guard page below it.
inline std::vector<char*> stacks;
constexpr size_t kStack = 256 * 1024;

inline char* stack(unsigned i) {
  while (stacks.size() <= i) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void* p = mmap(nullptr, kStack + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail("mmap of a fiber stack failed");
    if (mprotect(p, page, PROT_NONE) != 0) fail("mprotect of a guard page failed");
    stacks.push_back(static_cast<char*>(p) + page);
  }
  return stacks[i];
}

inline void setReady(unsigned i) {
  blk.state[i] = State::Ready;
  blk.ready[i / 64] |= uint64_t(1) << (i % 64);
}
inline void clearReady(unsigned i) { blk.ready[i / 64] &= ~(uint64_t(1) << (i % 64)); }

// pick returns the ready thread the order runs next, or kMaxThreads if none.
inline unsigned pick() {
  const unsigned words = (blk.n + 63) / 64;
  if (blk.order == Order::Forward) {
    for (unsigned w = 0; w < words; ++w)
      if (blk.ready[w]) return w * 64 + (unsigned)std::countr_zero(blk.ready[w]);
  } else {
    for (unsigned w = words; w-- > 0;)
      if (blk.ready[w]) return w * 64 + 63 - (unsigned)std::countl_zero(blk.ready[w]);
  }
  return kMaxThreads;
}

[[noreturn]] inline void deadlock() {
  std::string msg = "deadlock in block (" + std::to_string(blockIdx.x) + ", " +
                    std::to_string(blockIdx.y) + ", " + std::to_string(blockIdx.z) + "): " +
                    std::to_string(blk.atBarrier) + " of " + std::to_string(blk.n) +
                    " threads wait at __syncthreads, " + std::to_string(blk.done) + " returned";
  for (unsigned w = 0; w < blk.n / kWarpSize; ++w) {
    if (blk.warps[w].arrived)
      msg += "; warp " + std::to_string(w) + ": " + std::to_string(blk.warps[w].arrived) +
             " of 32 lanes wait at a shuffle";
  }
  msg += " (a barrier or shuffle not reached by every thread)";
  fail(msg, 3);
}

// run switches from the current thread to the next ready one (possibly
// itself) and returns when the current thread is resumed.
inline void run() {
  const unsigned me = blk.cur, next = pick();
  if (next == kMaxThreads) {
    if (blk.done == blk.n) {  // the last thread returned: back to launch
      switchTo(blk.ctx[me], blk.main);
      fail("a finished thread was resumed");
    }
    deadlock();
  }
  if (next == me) return;
  blk.cur = next;
  threadIdx = dim3{next, 0, 0};
  switchTo(blk.ctx[me], blk.ctx[next]);
  threadIdx = dim3{me, 0, 0};  // resumed
}

// wait blocks the current thread in state s until another thread makes it
// ready.
inline void wait(State s) {
  blk.state[blk.cur] = s;
  clearReady(blk.cur);
  run();
}

inline void syncthreads() {
  if (++blk.atBarrier < blk.n) {
    wait(State::Barrier);
    return;
  }
  blk.atBarrier = 0;  // the last to arrive releases every thread
  for (unsigned i = 0; i < blk.n; ++i)
    if (blk.state[i] == State::Barrier) setReady(i);
  run();
}

template <class V> V shuffle(unsigned mask, V v, unsigned srcLane) {
  static_assert(sizeof(V) <= 8);
  if (mask != 0xffffffffu) fail("shuffle with a partial mask is not emulated");
  const unsigned lane = threadIdx.x % kWarpSize, wi = threadIdx.x / kWarpSize;
  Block::Warp& w = blk.warps[wi];
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof v);
  w.val[lane] = bits;
  w.src[lane] = srcLane % kWarpSize;
  w.size[lane] = sizeof v;
  if (++w.arrived < kWarpSize) {
    wait(State::Shuffle);
  } else {  // the last lane computes every lane's result and releases the warp
    w.arrived = 0;
    for (unsigned l = 0; l < kWarpSize; ++l) {
      if (w.size[l] != w.size[0])
        fail("lanes of warp " + std::to_string(wi) + " shuffle values of different sizes");
      w.out[l] = w.val[w.src[l]];
      const unsigned t = wi * kWarpSize + l;
      if (blk.state[t] == State::Shuffle) setReady(t);
    }
    run();
  }
  // w.out[lane] stays until every lane, this one included, reaches the
  // warp's next shuffle.
  V r;
  std::memcpy(&r, &w.out[lane], sizeof r);
  return r;
}

inline void fiberMain() {
  (*blk.kernel)();
  const unsigned me = blk.cur;
  blk.state[me] = State::Done;
  clearReady(me);
  ++blk.done;
  run();  // never returns
  fail("a finished thread was resumed");
}

// launch runs kernel (a call of one kernel entry with its arguments) on
// every thread of grid × block, in the given order. It rejects what the
// driver would: a block of more than maxThreads threads (the entries'
// __launch_bounds__), grid or block dimensions out of range; and what the
// emulator does not do: 2-D or 3-D blocks, a block not a multiple of 32.
inline void launch(dim3 grid, dim3 block, unsigned maxThreads, Order order,
                   const std::function<void()>& kernel) {
  if (block.x < 1 || block.x > maxThreads || block.x > kMaxThreads)
    fail("block of " + std::to_string(block.x) + " threads: the entry allows 1.." +
         std::to_string(maxThreads));
  if (block.x % kWarpSize != 0 || block.y != 1 || block.z != 1)
    fail("the emulator runs 1-D blocks of whole warps only");
  if (grid.x < 1 || grid.x > 0x7fffffffu || grid.y < 1 || grid.y > 65535 || grid.z < 1 ||
      grid.z > 65535)
    fail("grid (" + std::to_string(grid.x) + ", " + std::to_string(grid.y) + ", " +
         std::to_string(grid.z) + ") out of CUDA's range");
  gridDim = grid;
  blockDim = block;
  blk.n = block.x;
  blk.order = order;
  blk.kernel = &kernel;
  blk.ctx.assign(blk.n, Context{});
  blk.state.assign(blk.n, State::Ready);
  const bool fwd = order == Order::Forward;
  for (unsigned zi = 0; zi < grid.z; ++zi)
    for (unsigned yi = 0; yi < grid.y; ++yi)
      for (unsigned xi = 0; xi < grid.x; ++xi) {
        blockIdx = dim3{fwd ? xi : grid.x - 1 - xi, fwd ? yi : grid.y - 1 - yi,
                        fwd ? zi : grid.z - 1 - zi};
        std::memset(blk.ready, 0, sizeof blk.ready);
        for (unsigned i = 0; i < blk.n; ++i) {
          makeFiber(blk.ctx[i], stack(i), kStack, fiberMain);
          setReady(i);
        }
        for (auto& w : blk.warps) w.arrived = 0;
        blk.atBarrier = blk.done = 0;
        blk.cur = pick();
        threadIdx = dim3{blk.cur, 0, 0};
        switchTo(blk.main, blk.ctx[blk.cur]);  // returns when all threads are done
      }
}

}  // namespace emu

// ---- synchronization intrinsics --------------------------------------------

inline void __syncthreads() { emu::syncthreads(); }
template <class V> V __shfl_sync(unsigned mask, V v, int srcLane) {
  return emu::shuffle(mask, v, (unsigned)srcLane);
}
template <class V> V __shfl_xor_sync(unsigned mask, V v, int laneMask) {
  return emu::shuffle(mask, v, (threadIdx.x % 32) ^ (unsigned)laneMask);
}
