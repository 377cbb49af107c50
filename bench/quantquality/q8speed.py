#!/usr/bin/env python3
"""Throughput of model variants relative to a reference, side by side.

Loads every model directory (model.onnx + tokenizer.json) into one process
with bench/baseline/ort_inprocess.py's Embedder (the same tokenization,
padding, ONNX Runtime settings and pooling as the Python baseline) and times
them on the same texts with its measure(): --rounds rounds, each of which
times every variant at every batch size, the variants in a rotated order
per round so that drifts in the machine's load spread over all of them.
Per variant and batch size the fastest round is reported (--stat max, the
default: on a shared machine other work only ever slows a measurement, so
the best of several short ones is the least disturbed), or the median
(--stat median); both are in the JSON. "best" is the batch size with the
highest rate. Ratios are to the first model directory (the reference, e.g.
the fp32 model): at the variant's best batch against the reference's best
batch, and at batch 32 against the reference's batch 32; plus the ratio of
medians at best batch.

Prints a table and writes JSON to --out.

Usage:
    $(scripts/pyenv.sh) bench/quantquality/q8speed.py --texts /tmp/short.jsonl \\
        fp32=~/.cache/embedd/models/all-minilm-l6-v2 q8=/tmp/q8v/q8 ...
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys

sys.dont_write_bytecode = True  # no __pycache__ next to ort_inprocess.py
HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "ort_inprocess", os.path.join(HERE, "..", "baseline", "ort_inprocess.py")
)
base = importlib.util.module_from_spec(spec)
spec.loader.exec_module(base)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="LABEL=DIR; the first is the reference")
    ap.add_argument("--texts", required=True, help="texts written by go run ./bench/load -dump-texts FILE")
    ap.add_argument("--batch-sizes", default="32,64,128,256")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0, help="measured time per variant, batch size and round")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads; 0: one per available core")
    ap.add_argument("--stat", choices=["max", "median"], default="max", help="statistic over rounds")
    ap.add_argument("--out", help="write the JSON here")
    args = ap.parse_args()

    texts, text_set = base.read_texts(args.texts)
    threads = args.threads or base.available_cpus()
    labels, embedders = [], {}
    for m in args.models:
        label, _, d = m.partition("=")
        if not d:
            label, d = os.path.basename(os.path.normpath(label)), label
        labels.append(label)
        embedders[label] = base.Embedder(os.path.expanduser(d), 256, threads)
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]

    rates = {l: {b: [] for b in sizes} for l in labels}
    for r in range(args.rounds):
        order = labels[r % len(labels):] + labels[: r % len(labels)]
        for l in order:
            for b in sizes:
                res = base.measure(embedders[l], texts, b, args.seconds, args.warmup)
                rates[l][b].append(res["sentences_per_s"])
            print(f"round {r + 1} {l}: " + " ".join(f"b{b} {rates[l][b][-1]:.0f}" for b in sizes), file=sys.stderr, flush=True)

    ref = labels[0]
    stat = max if args.stat == "max" else statistics.median
    val = {l: {b: stat(rates[l][b]) for b in sizes} for l in labels}
    med = {l: {b: statistics.median(rates[l][b]) for b in sizes} for l in labels}
    best = {l: max(sizes, key=lambda b: val[l][b]) for l in labels}
    mbest = {l: max(sizes, key=lambda b: med[l][b]) for l in labels}
    rows = []
    for l in labels:
        bb = best[l]
        rows.append({
            "label": l,
            "stat": args.stat,
            "sentences_per_s": val[l],
            "median_sentences_per_s": med[l],
            "best_batch": bb,
            "best_sentences_per_s": val[l][bb],
            "ratio_best": val[l][bb] / val[ref][best[ref]],
            "ratio_best_median": med[l][mbest[l]] / med[ref][mbest[ref]],
            "ratio_b32": (val[l][32] / val[ref][32]) if 32 in sizes else None,
        })
    print(f"{len(texts)} texts ({text_set}), {threads} threads, {args.rounds} rounds x {args.seconds}s, "
          f"{args.stat} over rounds; ratios to {ref}")
    print(f"{'variant':24s} " + " ".join(f"{'b' + str(b):>7s}" for b in sizes) + "   best  x best  x b32  x best(median)")
    for row in rows:
        b32 = f"{row['ratio_b32']:.2f}" if row["ratio_b32"] is not None else "-"
        print(f"{row['label']:24s} " + " ".join(f"{row['sentences_per_s'][b]:7.0f}" for b in sizes)
              + f" {row['best_batch']:6d} {row['ratio_best']:6.2f} {b32:>6s} {row['ratio_best_median']:8.2f}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"texts": args.texts, "set": text_set, "threads": threads, "rounds": args.rounds,
                       "seconds": args.seconds, "reference": ref, "rows": rows,
                       "raw": {l: {str(b): v for b, v in d.items()} for l, d in rates.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
