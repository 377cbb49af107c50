// harness.cpp: runs one kernel entry of kernels.cu under the CPU emulator
// (emu.h) for emu_test.go, which builds it with
//
//   g++ -std=c++20 -O1 -ffp-contract=off -I <this dir> -I <cudakernels> harness.cpp
//
// and drives it over stdin/stdout. It runs the kernel source, not the PTX:
// see emu.h for what the emulation does not cover.
//
// Launch request (stdin, little-endian):
//   "EMUL"  u16 nameLen, name        entry name, e.g. "attention_f16"
//   u32 grid.x, grid.y, grid.z, u32 block.x
//   u32 nargs, then per parameter, in the entry's order, a tag byte:
//     'p' u64 nbytes, bytes         a device buffer (pointer parameter)
//     '0'                           a null pointer
//     'i' i32                       an int parameter
//     'f' f32                       a float parameter
// Response (stdout): "EMUL" u32 nbuf, then every 'p' buffer in parameter
// order as u64 nbytes, bytes, after the launch.
//
// The launch runs twice, in emu::Order::Forward and emu::Order::Reverse,
// each on a fresh copy of the buffers; the two results must be
// bit-identical (else exit 5: the result depends on the order of threads or
// blocks, a race). Each buffer lies between 256-byte guard zones of 0xff
// bytes (NaN as float or fp16, -1 as int), 256-byte aligned like the GPU
// encoder's allocations; a guard byte changed by the kernel is an
// out-of-bounds write (exit 6).
//
// `harness convert`: reads u32 n and n float32, writes kernels.cu's
// from_f32<unsigned short> of each (n u16), then its to_f32 of every half
// 0..65535 (65536 f32): the fp16 conversions the emulated kernels use.
//
// Exit status: 0 ok, 2 bad request or launch, 3 deadlock, 4 __trap, 5
// order-dependent result, 6 out-of-bounds write; the message is on stderr.
#include "emu.h"
#include "kernels.cu"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace harness {

using emu::fail;

std::vector<unsigned char> readAll(FILE* f) {
  std::vector<unsigned char> b;
  unsigned char tmp[1 << 16];
  size_t n;
  while ((n = std::fread(tmp, 1, sizeof tmp, f)) > 0) b.insert(b.end(), tmp, tmp + n);
  return b;
}

struct Reader {
  const std::vector<unsigned char>& b;
  size_t off = 0;
  const unsigned char* take(size_t n) {
    if (n > b.size() - off) fail("request truncated");
    const unsigned char* p = b.data() + off;
    off += n;
    return p;
  }
  template <class T> T get() {
    T v;
    std::memcpy(&v, take(sizeof v), sizeof v);  // little-endian host
    return v;
  }
};

void put(const void* p, size_t n) {
  if (n && std::fwrite(p, 1, n, stdout) != n) fail("write to stdout failed");
}

constexpr size_t kGuard = 256;
constexpr unsigned char kCanary = 0xff;

// A device buffer: size bytes at data, between two guard zones.
struct Buffer {
  size_t size = 0;
  unsigned char* base = nullptr;
  unsigned char* data = nullptr;
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { std::free(base); }
  void init(const unsigned char* src, size_t n) {
    size = n;
    const size_t total = (kGuard + n + kGuard + 255) / 256 * 256;
    base = static_cast<unsigned char*>(std::aligned_alloc(256, total));
    if (!base) fail("out of memory");
    std::memset(base, kCanary, total);
    data = base + kGuard;
    if (n) std::memcpy(data, src, n);
  }
  // intact reports whether both guard zones still hold kCanary.
  bool intact() const {
    for (size_t i = 0; i < kGuard; ++i)
      if (base[i] != kCanary || data[size + i] != kCanary) return false;
    return true;
  }
};

struct Arg {
  char tag = 0;
  int32_t i = 0;
  float f = 0;
  const unsigned char* bytes = nullptr;  // 'p': the request's bytes
  size_t size = 0;
  size_t buf = 0;  // 'p': index into the buffers
};

// convert turns request argument k into the entry's parameter type P.
template <class P>
P convert(const Arg& a, size_t k, const char* name, std::vector<Buffer>& bufs) {
  auto want = [&](char tag, const char* what) {
    if (a.tag != tag && !(tag == 'p' && a.tag == '0'))
      fail(std::string(name) + ": parameter " + std::to_string(k) + " is " + what +
           ", the request has tag '" + a.tag + "'");
  };
  if constexpr (std::is_pointer_v<P>) {
    want('p', "a pointer");
    return a.tag == '0' ? nullptr : static_cast<P>(static_cast<void*>(bufs[a.buf].data));
  } else if constexpr (std::is_same_v<P, int>) {
    want('i', "an int");
    return a.i;
  } else {
    static_assert(std::is_same_v<P, float>, "unsupported parameter type");
    want('f', "a float");
    return a.f;
  }
}

// bindEntry returns a call of entry f with the request's arguments on bufs,
// checking their number and kinds against f's parameter list.
template <class... P>
std::function<void()> bindEntry(void (*f)(P...), const char* name, const std::vector<Arg>& args,
                           std::vector<Buffer>& bufs) {
  if (args.size() != sizeof...(P))
    fail(std::string(name) + " has " + std::to_string(sizeof...(P)) + " parameters, the request " +
         std::to_string(args.size()));
  return [&]<size_t... K>(std::index_sequence<K...>) {
    auto tup = std::make_tuple(convert<P>(args[K], K, name, bufs)...);
    return std::function<void()>([f, tup] { std::apply(f, tup); });
  }(std::index_sequence_for<P...>{});
}

using Binder = std::function<std::function<void()>(const std::vector<Arg>&, std::vector<Buffer>&)>;

struct Entry {
  const char* name;
  Binder bind;
};

#define HARNESS_ENTRY(f) \
  Entry { #f, [](const std::vector<Arg>& a, std::vector<Buffer>& b) { return bindEntry(&f, #f, a, b); } }

const Entry entries[] = {
    HARNESS_ENTRY(embed_ln_f32),         HARNESS_ENTRY(embed_ln_f16),
    HARNESS_ENTRY(bias_gelu_f32),        HARNESS_ENTRY(bias_gelu_f16),
    HARNESS_ENTRY(bias_residual_ln_f32), HARNESS_ENTRY(bias_residual_ln_f16),
    HARNESS_ENTRY(attention_f32),        HARNESS_ENTRY(attention_f16),
    HARNESS_ENTRY(pool_f32),             HARNESS_ENTRY(pool_f16),
};

int convertMode() {
  const auto req = readAll(stdin);
  Reader r{req};
  const uint32_t n = r.get<uint32_t>();
  for (uint32_t k = 0; k < n; ++k) {
    const unsigned short h = from_f32<unsigned short>(r.get<float>());
    put(&h, sizeof h);
  }
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = to_f32((unsigned short)h);
    put(&f, sizeof f);
  }
  return 0;
}

int launchMode() {
  const auto req = readAll(stdin);
  Reader r{req};
  if (std::memcmp(r.take(4), "EMUL", 4) != 0) fail("bad request magic");
  const uint16_t nameLen = r.get<uint16_t>();
  const std::string name(reinterpret_cast<const char*>(r.take(nameLen)), nameLen);
  dim3 grid, block;
  grid.x = r.get<uint32_t>();
  grid.y = r.get<uint32_t>();
  grid.z = r.get<uint32_t>();
  block.x = r.get<uint32_t>();
  std::vector<Arg> args(r.get<uint32_t>());
  size_t nbuf = 0;
  for (auto& a : args) {
    a.tag = r.get<char>();
    switch (a.tag) {
      case 'p':
        a.size = (size_t)r.get<uint64_t>();
        a.bytes = r.take(a.size);
        a.buf = nbuf++;
        break;
      case '0':
        break;
      case 'i':
        a.i = r.get<int32_t>();
        break;
      case 'f':
        a.f = r.get<float>();
        break;
      default:
        fail(std::string("bad argument tag '") + a.tag + "'");
    }
  }
  if (r.off != req.size()) fail("trailing bytes after the request");
  const Entry* e = nullptr;
  for (const auto& c : entries)
    if (name == c.name) e = &c;
  if (!e) fail("no entry " + name);

  std::vector<Buffer> result[2];
  const emu::Order orders[2] = {emu::Order::Forward, emu::Order::Reverse};
  for (int o = 0; o < 2; ++o) {
    std::vector<Buffer>& bufs = result[o];
    bufs = std::vector<Buffer>(nbuf);
    for (const auto& a : args)
      if (a.tag == 'p') bufs[a.buf].init(a.bytes, a.size);
    const std::function<void()> call = e->bind(args, bufs);
    emu::launch(grid, block, kBlock, orders[o], call);
    for (size_t k = 0; k < args.size(); ++k)
      if (args[k].tag == 'p' && !bufs[args[k].buf].intact())
        fail(name + ": out-of-bounds write next to the buffer of parameter " + std::to_string(k), 6);
  }
  for (size_t k = 0; k < args.size(); ++k) {
    if (args[k].tag != 'p') continue;
    const Buffer &f = result[0][args[k].buf], &b = result[1][args[k].buf];
    for (size_t i = 0; i < f.size; ++i)
      if (f.data[i] != b.data[i])
        fail(name + ": parameter " + std::to_string(k) + " byte " + std::to_string(i) +
                 " differs between the forward and the reverse thread order (a race)",
             5);
  }
  put("EMUL", 4);
  const uint32_t n = (uint32_t)nbuf;
  put(&n, sizeof n);
  for (const auto& b : result[0]) {
    const uint64_t size = b.size;
    put(&size, sizeof size);
    put(b.data, b.size);
  }
  if (std::fflush(stdout) != 0) fail("write to stdout failed");
  return 0;
}

}  // namespace harness

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "convert") return harness::convertMode();
  if (argc != 1) emu::fail("usage: harness [convert] < request > response");
  return harness::launchMode();
}
