#!/usr/bin/env python3
"""Compare models side by side in one run with Python onnxruntime + tokenizers.

The same pipeline as ort_inprocess.py (tokenize, pad each batch to its
longest text, run, pool if the graph does not, L2-normalize; one intra-op
thread per available core), for several model directories on the same texts.
The models are measured in turns: for each batch size, each model runs
--seconds, and that is repeated --rounds times, keeping each model's best
round, so that load from other processes on a shared machine falls on all the
models alike rather than on whichever ran while it lasted. Then every model's
best batch size is compared with the first model's (the baseline): ratio =
model's best sentences/s / baseline's best sentences/s.

Before timing, every model embeds all the texts once, in batches of 32, and
the report gives each model's cosine to the first model's vectors (mean and
min over the texts), so a speedup is shown beside what it costs.

Prints a table to stderr and one JSON object to stdout (and --out).

Usage (from the repository root):
    go run ./bench/load -texts short -n 1024 -dump-texts /tmp/short.jsonl
    m=${EMBEDD_CACHE_DIR:-~/.cache/embedd}/models
    $(scripts/pyenv.sh) bench/baseline/ort_compare.py --texts /tmp/short.jsonl \\
        $m/all-minilm-l6-v2 $m/all-minilm-l6-v2-q8 $m/all-minilm-l6-v2-int8
"""

import argparse
import json
import os
import platform
import sys

import numpy as np
import onnxruntime as ort
import tokenizers

from ort_inprocess import Embedder, available_cpus, measure, read_texts


def embed_all(embedder, texts, batch_size=32):
    """Embed texts in order, in batches of batch_size."""
    return np.concatenate([embedder.embed(texts[i : i + batch_size])[0] for i in range(0, len(texts), batch_size)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dirs", nargs="+", help="directories with model.onnx and tokenizer.json; the first is the baseline")
    ap.add_argument("--texts", required=True, help="texts written by go run ./bench/load -dump-texts FILE")
    ap.add_argument("--batch-sizes", default="8,32,64,128")
    ap.add_argument("--seconds", type=float, default=3.0, help="measured time per model, batch size and round")
    ap.add_argument("--rounds", type=int, default=2, help="turns per batch size; each model keeps its best")
    ap.add_argument("--warmup", type=float, default=0.5, help="unmeasured time before each measurement")
    ap.add_argument("--max-length", type=int, default=256, help="truncate texts at this many tokens")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads; 0: one per available core")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()

    texts, text_set = read_texts(args.texts)
    threads = args.threads or available_cpus()
    names = [os.path.basename(os.path.normpath(d)) for d in args.model_dirs]
    embedders = [Embedder(d, args.max_length, threads) for d in args.model_dirs]

    vectors = [embed_all(e, texts) for e in embedders]
    quality = []
    for v in vectors:
        cos = (v * vectors[0]).sum(axis=1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(vectors[0], axis=1))
        quality.append({"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())})

    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    results = [[] for _ in embedders]
    for bs in batch_sizes:
        best = [None] * len(embedders)
        for _ in range(args.rounds):
            for i, e in enumerate(embedders):
                r = measure(e, texts, bs, args.seconds, args.warmup)
                if best[i] is None or r["sentences_per_s"] > best[i]["sentences_per_s"]:
                    best[i] = r
        for i, r in enumerate(best):
            results[i].append(r)
        print(f"batch {bs:4d}: " + "  ".join(f"{n} {r['sentences_per_s']:8.1f}/s" for n, r in zip(names, best)),
              flush=True, file=sys.stderr)

    models = []
    base = max(r["sentences_per_s"] for r in results[0])
    for name, d, q, rs in zip(names, args.model_dirs, quality, results):
        best = max(rs, key=lambda r: r["sentences_per_s"])
        models.append({
            "model": name, "model_dir": os.path.abspath(d), **q,
            "best": best, "ratio_to_baseline": best["sentences_per_s"] / base, "results": rs,
        })
    print(f"{'model':32s} {'best batch':>10s} {'sentences/s':>12s} {'ratio':>6s} {'mean cos':>9s} {'min cos':>9s}",
          file=sys.stderr)
    for m in models:
        print(f"{m['model']:32s} {m['best']['batch_size']:10d} {m['best']['sentences_per_s']:12.1f} "
              f"{m['ratio_to_baseline']:6.2f} {m['mean_cosine']:9.5f} {m['min_cosine']:9.5f}", file=sys.stderr)
    report = {
        "onnxruntime": ort.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpus": available_cpus(),
        "intra_op_threads": threads,
        "max_length": args.max_length,
        "texts": {"file": args.texts, "set": text_set, "count": len(texts)},
        "seconds": args.seconds,
        "rounds": args.rounds,
        "baseline": names[0],
        "models": models,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
