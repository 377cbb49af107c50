#!/usr/bin/env python3
"""Zero the CUDA kernel images of every architecture but one in a shared library.

The device check (bench/gpu) carries ONNX Runtime's CUDA provider library to
a machine whose upload limit is 64 MiB. The library (272 MB) holds machine
code for sm_75/80/86/89/90/120; the device is a Hopper GPU (sm_90). This tool
parses the library's .nv_fatbin section (fatbin containers: magic 0xBA55ED50,
then entries of kind, header size, padded payload size and SM version) and
overwrites the payload of every entry whose SM version is not --keep with
zeros, leaving every header, offset and size as it was, so the driver still
finds the sm_90 images where they were and never reads the zeroed ones. The
result compresses to ~50 MB with xz instead of ~180 MB.

It is a carrying trick for the benchmark only: `embedd runtime pull --gpu`
installs the library unmodified, checked against its pinned sha256.

Usage: slim_fatbin.py SRC DST [--keep 90]
"""

import argparse
import struct
import sys

FATBIN_MAGIC = 0xBA55ED50


def section(data, name):
    """Return (offset, size) of the named section of a 64-bit little-endian ELF."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise SystemExit("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def header(i):
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
    strtab = header(shstrndx)
    str_off = strtab[4]
    for i in range(shnum):
        h = header(i)
        end = data.index(b"\0", str_off + h[0])
        if data[str_off + h[0]:end].decode() == name:
            return h[4], h[5]
    raise SystemExit(f"no section {name}")


def slim(data, keep):
    off, size = section(data, ".nv_fatbin")
    pos, end = off, off + size
    kept = zeroed = 0
    while pos < end:
        magic, _version, hsize, fsize = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # containers are 8-byte aligned
            continue
        entry, cend = pos + hsize, pos + hsize + fsize
        while entry < cend:
            (_kind, _ev, ehsize, padded, _u0, _payload, _u1, _u2, sm) = struct.unpack_from("<HHIIIIIII", data, entry)
            body = entry + ehsize
            if sm == keep:
                kept += padded
            else:
                data[body:body + padded] = bytes(padded)
                zeroed += padded
            entry = body + padded
        pos = cend
    return kept, zeroed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--keep", type=int, default=90, help="SM version to keep (90 = Hopper)")
    a = ap.parse_args()
    data = bytearray(open(a.src, "rb").read())
    kept, zeroed = slim(data, a.keep)
    if kept == 0:
        raise SystemExit(f"no sm_{a.keep} images in {a.src}")
    with open(a.dst, "wb") as f:
        f.write(data)
    print(f"{a.dst}: kept {kept >> 20} MiB of sm_{a.keep} images, zeroed {zeroed >> 20} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
