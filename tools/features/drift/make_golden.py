#!/usr/bin/env python3
"""Regenerate internal/features/drift/testdata/golden.json, the NumPy/SciPy
reference that internal/features/drift's golden tests compare against.

    "$(scripts/pyenv.sh)" tools/features/drift/make_golden.py

Run it from anywhere; it writes beside the Go package. The output is
deterministic for the pinned numpy/scipy (tools/requirements.txt). Never edit
the JSON by hand.

Sections:
  pairs   pairs of samples (a = reference, b = current): same distribution,
          shifted mean, scaled variance, very different sizes, heavy ties,
          tiny samples, disjoint supports. For each pair:
            ks_d, ks_p   scipy.stats.ks_2samp(a, b, method="asymp")
            psi          psi_reference(a, b) below (10 bins, eps 1e-4)
            cuts         the deduplicated reference cut points
            stats        count, mean, std (ddof=1), min, max and
                         np.quantile(a, [0.5, 0.9, 0.99]) (method "linear")
                         for a and for b.
          Values are rounded to 3 decimals so the file stays small and ties
          occur naturally.
  kstwo   scipy.stats.kstwo.sf(x, n) on a grid of (n, x) that visits every
          branch of scipy's Simard-L'Ecuyer switch (Ruben-Gambino ends,
          Durbin matrix, Pomeranz, Pelz-Good, Smirnov), the function
          ks_2samp(method="asymp") evaluates at n = round(n1*n2/(n1+n2)).
"""

import json
import pathlib

import numpy as np
from scipy import stats

OUT = (pathlib.Path(__file__).resolve().parents[3]
       / "internal" / "features" / "drift" / "testdata" / "golden.json")
PROBS = [0.5, 0.9, 0.99]
BINS = 10
EPS = 1e-4


def psi_reference(ref, cur, bins=BINS, eps=EPS):
    """PSI with the drift package's binning rule, written plainly.

    Cut points are the reference quantiles k/bins, k = 1..bins-1 (numpy
    "linear"), deduplicated. Bin i holds x with cuts[i-1] < x <= cuts[i]
    (searchsorted side="left"); the first and last bins are open. A
    proportion below eps is raised to eps before the sum
    sum((p_cur - p_ref) * ln(p_cur / p_ref)).
    """
    cuts = np.unique(np.quantile(ref, np.arange(1, bins) / bins))
    nb = len(cuts) + 1
    pr = np.bincount(np.searchsorted(cuts, ref, side="left"), minlength=nb) / len(ref)
    pc = np.bincount(np.searchsorted(cuts, cur, side="left"), minlength=nb) / len(cur)
    pr = np.maximum(pr, eps)
    pc = np.maximum(pc, eps)
    return float(np.sum((pc - pr) * np.log(pc / pr))), cuts


def describe(x):
    return {
        "count": len(x),
        "mean": float(np.mean(x)),
        "std": float(np.std(x, ddof=1)) if len(x) > 1 else None,
        "min": float(np.min(x)),
        "max": float(np.max(x)),
        "quantiles": [float(q) for q in np.quantile(x, PROBS)],
    }


def pairs():
    rng = np.random.default_rng(20240611)
    r3 = lambda x: np.round(x, 3)
    cases = [
        ("same_distribution", r3(rng.normal(0, 1, 200)), r3(rng.normal(0, 1, 180))),
        ("shifted_mean", r3(rng.normal(0, 1, 300)), r3(rng.normal(0.5, 1, 300))),
        ("scaled_variance", r3(rng.normal(0, 1, 250)), r3(rng.normal(0, 2, 260))),
        ("different_sizes", r3(rng.normal(0, 1, 40)), r3(rng.normal(0.2, 1, 700))),
        ("ties_poisson", rng.poisson(3, 200).astype(float), rng.poisson(3.5, 150).astype(float)),
        ("tiny", r3(rng.normal(0, 1, 5)), r3(rng.normal(1, 1, 7))),
        ("large_same", r3(rng.normal(0, 1, 400)), r3(rng.normal(0, 1, 400))),
        ("large_shift", r3(rng.normal(0, 1, 400)), r3(rng.normal(1.5, 1, 400))),
        ("disjoint", r3(rng.uniform(0, 1, 60)), r3(rng.uniform(2, 3, 50))),
        ("exponential_vs_lognormal", r3(rng.exponential(1, 500)), r3(rng.lognormal(0, 0.6, 450))),
        ("constant_reference", np.full(50, 2.0), r3(rng.normal(2, 0.1, 60))),
    ]
    out = []
    for name, a, b in cases:
        res = stats.ks_2samp(a, b, method="asymp")
        psi, cuts = psi_reference(a, b)
        out.append({
            "name": name,
            "a": [float(v) for v in a],
            "b": [float(v) for v in b],
            "ks_d": float(res.statistic),
            "ks_p": float(res.pvalue),
            "psi": psi,
            "cuts": [float(c) for c in cuts],
            "stats_a": describe(a),
            "stats_b": describe(b),
        })
    return out


def kstwo_grid():
    ns = [1, 2, 3, 5, 10, 20, 50, 100, 140, 141, 150, 300, 1000, 2048, 10000]
    xs = [0.001, 0.005, 0.01, 0.02, 0.03, 0.045, 0.06, 0.08, 0.1, 0.12, 0.15,
          0.2, 0.25, 0.3, 0.4, 0.49, 0.5, 0.6, 0.75, 0.9, 0.99]
    out = []
    for n in ns:
        extra = [0.75 / n, 1.0 / n, (n - 1) / n + 0.5 / n if n > 1 else 0.9,
                 np.sqrt(0.7 / n), np.sqrt(2.0 / n), np.sqrt(3.0 / n),
                 np.sqrt(5.0 / n), (1.4 / n) ** (2 / 3), 1.01 * (1.4 / n) ** (2 / 3)]
        for x in sorted(set(xs + [float(e) for e in extra])):
            if not 0 < x < 1:
                continue
            out.append({"n": n, "x": x, "sf": float(stats.kstwo.sf(x, n))})
    # n > 100000 and just under: Pelz-Good versus Durbin for small x.
    for n, x in [(100001, 0.0004), (100001, 0.003), (50000, 0.0005), (50000, 0.004)]:
        out.append({"n": n, "x": x, "sf": float(stats.kstwo.sf(x, n))})
    return out


def main():
    doc = {
        "generator": "tools/features/drift/make_golden.py",
        "numpy": np.__version__,
        "scipy": __import__("scipy").__version__,
        "quantile_probs": PROBS,
        "bins": BINS,
        "eps": EPS,
        "pairs": pairs(),
        "kstwo": kstwo_grid(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
