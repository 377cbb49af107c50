#!/usr/bin/env python3
"""Carry an fp32 safetensors file as the difference from its fp16 rounding.

The device check (bench/gpu) carries all-MiniLM-L6-v2 with its weights
rounded to fp16 (carry a, 41 MB with xz). The native CUDA encoder's test
binary wants the catalog's all-minilm-l6-v2 itself, whose fp32 weights take
81 MB with xz: more than one 64 MiB carry. Each fp32 weight x differs from
its fp16 rounding r (read from the fp16 file, converted exactly to fp32) by
a small integer in their bit patterns, bits(x) - bits(r), which fits in an
int16 but for weights in fp16's subnormal range; those few (~2,000) are
kept whole. The int16 differences take 38 MB with xz, so carry c holds them
beside the test binary, and the device rebuilds the exact fp32 file (its
sha256 is checked, and `embedd models pull` checks it again against the
catalog's pin).

  split --fp32 SRC --fp16 F16 --out DELTA.npz   (here, prepare.sh)
  join  --fp16 F16 --delta DELTA.npz --out DST  (on the device, check.sh)

Needs numpy only; safetensors files are parsed here (8-byte little-endian
header length, JSON header, raw little-endian data).
"""

import argparse
import hashlib
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    return data, 8 + n, header


def tensor(data, base, entry):
    lo, hi = entry["data_offsets"]
    return np.frombuffer(data, dtype=DTYPES[entry["dtype"]], count=(hi - lo) // np.dtype(DTYPES[entry["dtype"]]).itemsize, offset=base + lo)


def ordered(header):
    return sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])


def split(a):
    src, base, header = read_safetensors(a.fp32)
    half, hbase, hheader = read_safetensors(a.fp16)
    deltas, raw_names, raw = [], [], []
    exc_idx, exc_bits = [], []
    pos = 0
    for name, e in ordered(header):
        x = tensor(src, base, e)
        if e["dtype"] != "F32":
            raw_names.append(name)
            raw.append(np.frombuffer(x.tobytes(), dtype=np.uint8))
            continue
        he = hheader[name]
        if he["dtype"] != "F16":
            sys.exit(f"{name}: fp16 file has {he['dtype']}")
        r = tensor(half, hbase, he).astype(np.float32)
        d = x.view(np.int32).astype(np.int64) - r.view(np.int32).astype(np.int64)
        bad = np.flatnonzero(np.abs(d) > 32767)
        exc_idx.append(bad + pos)
        exc_bits.append(x.view(np.uint32)[bad])
        d[bad] = 0
        deltas.append(d.astype(np.int16))
        pos += x.size
    np.savez(a.out,
             header=np.frombuffer(src[:base], dtype=np.uint8),
             delta=np.concatenate(deltas),
             exc_idx=np.concatenate(exc_idx).astype(np.int64),
             exc_bits=np.concatenate(exc_bits).astype(np.uint32),
             raw_names=np.array(raw_names),
             raw=np.concatenate(raw) if raw else np.zeros(0, np.uint8),
             raw_sizes=np.array([len(r) for r in raw], dtype=np.int64),
             sha256=np.array(hashlib.sha256(src).hexdigest()))
    print(f"{a.out}: {pos} fp32 weights, {sum(len(i) for i in exc_idx)} kept whole, {len(raw_names)} other tensors")


def join(a):
    z = np.load(a.delta)
    head = z["header"].tobytes()
    (n,) = struct.unpack("<Q", head[:8])
    header = json.loads(head[8:8 + n])
    header.pop("__metadata__", None)
    half, hbase, hheader = read_safetensors(a.fp16)
    delta, exc_idx, exc_bits = z["delta"], z["exc_idx"], z["exc_bits"]
    raw, raw_sizes = z["raw"], z["raw_sizes"]
    raw_off = dict(zip([str(s) for s in z["raw_names"]], np.concatenate([[0], np.cumsum(raw_sizes)[:-1]]).astype(int) if len(raw_sizes) else []))
    raw_len = dict(zip([str(s) for s in z["raw_names"]], raw_sizes.astype(int)))
    h = hashlib.sha256(head)
    pos = 0
    with open(a.out + ".tmp", "wb") as f:
        f.write(head)
        for name, e in ordered(header):
            if e["dtype"] != "F32":
                b = raw[raw_off[name]:raw_off[name] + raw_len[name]].tobytes()
            else:
                r = tensor(half, hbase, hheader[name]).astype(np.float32)
                bits = (r.view(np.int32).astype(np.int64) + delta[pos:pos + r.size]).astype(np.uint32)
                sel = (exc_idx >= pos) & (exc_idx < pos + r.size)
                bits[exc_idx[sel] - pos] = exc_bits[sel]
                pos += r.size
                b = bits.astype("<u4").tobytes()
            f.write(b)
            h.update(b)
    got, want = h.hexdigest(), str(z["sha256"])
    if got != want:
        sys.exit(f"{a.out}: sha256 {got}; want {want}")
    import os
    os.replace(a.out + ".tmp", a.out)
    print(f"{a.out}: sha256 {got} ok")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["split", "join"])
    ap.add_argument("--fp32")
    ap.add_argument("--fp16", required=True)
    ap.add_argument("--delta")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    split(a) if a.mode == "split" else join(a)


if __name__ == "__main__":
    main()
