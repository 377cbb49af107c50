#!/usr/bin/env python3
"""Regenerate internal/quant/testdata/golden.json, the numpy reference that
internal/quant's golden tests compare against.

    python -m venv /tmp/pyv && /tmp/pyv/bin/pip install -r tools/requirements.txt
    /tmp/pyv/bin/python tools/quant/gen_golden.py

Run it from anywhere; it writes beside the Go package. The output is
deterministic for a given numpy version (pinned in requirements.txt). Never
edit the JSON by hand.

Sections:
  st_int8      sentence-transformers quantize_embeddings(precision="int8",
               ranges=...) on float32 input: ((x - starts) / steps - 128)
               cast to int8, computed in float32 by numpy on x86-64, including
               out-of-range values that wrap and a degenerate dimension.
  calibrated   the Go default for the same input: round half away from zero of
               the float64 expression, clamped to [-128, 127].
  ubinary      np.packbits(x > 0) per row, MSB first (sentence-transformers
               "ubinary"), for a dimension divisible by 8 and one that is not;
               plus Hamming distances between consecutive rows.
  int8         per-vector symmetric int8: scale = max|x|/127, q = round half
               away from zero of x * (127 / max|x|) in float64.
"""

import json
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parents[2] / "internal" / "quant" / "testdata" / "golden.json"
DIM = 40  # divisible by 8, as sentence-transformers' flat packbits needs
DEGENERATE = 5  # a dimension that is constant over the calibration set


def round_half_away(t):
    """math.Round semantics, exactly: t - trunc(t) is exact in float64."""
    whole = np.trunc(t)
    return whole + np.where(np.abs(t - whole) >= 0.5, np.sign(t), 0.0)


def st_int8(x, ranges):
    """sentence-transformers' int8 formula, kept in float32 as it runs there."""
    lo = ranges[0, :]
    step = (ranges[1, :] - ranges[0, :]) / 255
    with np.errstate(all="ignore"):  # the degenerate dimension divides by zero
        return ((x - lo) / step - 128).astype(np.int8)


def calibrated_round(x, ranges):
    lo = ranges[0, :].astype(np.float64)
    width = ranges[1, :].astype(np.float64) - lo
    inv = np.divide(255.0, width, out=np.zeros_like(width), where=width > 0)
    t = (x.astype(np.float64) - lo) * inv - 128
    t = np.clip(t, -129, 128)
    return np.clip(round_half_away(t), -128, 127).astype(np.int8)


def per_vector_int8(x):
    m = np.abs(x).max(axis=1).astype(np.float64)
    r = np.divide(127.0, m, out=np.zeros_like(m), where=m > 0)
    t = x.astype(np.float64) * r[:, None]
    q = np.clip(round_half_away(t), -127, 127).astype(np.int8)
    return q, (m / 127).astype(np.float32)


def f32(a):
    return np.asarray(a, dtype=np.float32).tolist()


def main():
    rng = np.random.default_rng(20260601)

    # Calibration set: anisotropic, off-centre dimensions like sentence
    # embeddings, one of them constant.
    spread = rng.uniform(0.02, 0.3, DIM).astype(np.float32)
    centre = rng.normal(0, 0.1, DIM).astype(np.float32)
    cal = (rng.normal(size=(64, DIM)).astype(np.float32) * spread + centre).astype(np.float32)
    cal[:, DEGENERATE] = np.float32(0.125)
    ranges = np.vstack((cal.min(axis=0), cal.max(axis=0)))

    inside = (rng.normal(size=(12, DIM)).astype(np.float32) * spread + centre).astype(np.float32)
    wide = (rng.normal(size=(8, DIM)).astype(np.float32) * spread * 4 + centre).astype(np.float32)
    special = np.array(
        [
            ranges[0],  # every dimension at its min: -128
            ranges[1],  # every dimension at its max: 127
            (ranges[0] + ranges[1]) / 2,
            np.where(np.arange(DIM) % 2 == 0, 1e6, -1e6),  # far out, wraps
            np.where(np.arange(DIM) % 2 == 0, 1e30, -1e30),  # beyond int32: 0
        ],
        dtype=np.float32,
    )
    x = np.vstack((inside, wide, special)).astype(np.float32)
    x[0, DEGENERATE] = np.float32(0.125)  # degenerate and equal: 0/0
    x[1, DEGENERATE] = np.float32(0.5)  # degenerate and above: +Inf
    x[2, DEGENERATE] = np.float32(-0.5)  # degenerate and below: -Inf
    x[3, :4] = np.array([0.0, -0.0, 1e-45, -1e-45], dtype=np.float32)  # signs of zero and subnormals

    packed = np.packbits(x > 0).reshape(x.shape[0], -1)
    odd = x[:, :13]
    packed_odd = np.packbits(odd > 0, axis=-1)
    hamming = [int(np.unpackbits(packed[i] ^ packed[i + 1]).sum()) for i in range(len(packed) - 1)]

    v = np.vstack(
        (
            rng.normal(size=(6, DIM)).astype(np.float32) * spread + centre,
            np.zeros((1, DIM), dtype=np.float32),
            # scale 1: exact halves, which numpy's np.round would send to even
            np.concatenate(([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5], np.zeros(DIM - 9))),
            np.full((1, DIM), 3e-39),  # subnormal but non-zero
            np.full((1, DIM), -3e38),  # near the float32 limit
        )
    ).astype(np.float32)
    q, scale = per_vector_int8(v)

    golden = {
        "generator": "tools/quant/gen_golden.py",
        "numpy": np.__version__,
        "dim": DIM,
        "calibration": f32(cal),
        "ranges_min": f32(ranges[0]),
        "ranges_max": f32(ranges[1]),
        "steps": f32((ranges[1] - ranges[0]) / 255),
        "x": f32(x),
        "st_int8": st_int8(x, ranges).astype(int).tolist(),
        "calibrated": calibrated_round(x, ranges).astype(int).tolist(),
        "ubinary": packed.astype(int).tolist(),
        "ubinary_odd_dim": 13,
        "ubinary_odd": packed_odd.astype(int).tolist(),
        "hamming_consecutive": hamming,
        "int8_x": f32(v),
        "int8_codes": q.astype(int).tolist(),
        "int8_scales": f32(scale),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(golden, separators=(",", ":")) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
