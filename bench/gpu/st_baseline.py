#!/usr/bin/env python3
"""The baseline a GPU user would pick: sentence-transformers on PyTorch, in process.

Part of the device check (bench/gpu/check.sh), run on the GPU machine with
its own Python (torch + sentence-transformers). Same weights as embedd's
device models (all-MiniLM-L6-v2 rounded to fp16, carried by prepare.sh),
same texts (the load generator's -dump-texts files), same work per text:
tokenize (truncation at 256), pad per batch, encode, mean-pool, L2-normalize,
and return numpy arrays, as `model.encode` does for a user. Each batch size
is timed end to end, tokenization included, after a warmup.

Writes one JSON object to --out: environment, throughput and latency per
precision (fp32, fp16), text set and batch size, the best batch of each,
and the parity vectors of the --parity texts (float32 little-endian files
st-fp32.f32 and st-fp16.f32 under --vectors).
"""

import argparse
import json
import os
import platform
import statistics
import time


def read_texts(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def timed(fn, min_seconds):
    """Run fn until min_seconds have passed; return (calls, seconds, latencies)."""
    lat = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        lat.append(t1 - t0)
        if t1 - start >= min_seconds:
            return len(lat), t1 - start, lat


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--texts", nargs="+", required=True, help="-dump-texts files")
    ap.add_argument("--parity", required=True, help="JSON Lines texts for parity vectors")
    ap.add_argument("--vectors", required=True, help="directory for st-*.f32")
    ap.add_argument("--batches", default="1,32,128,512")
    ap.add_argument("--seconds", type=float, default=1.5, help="measured time per cell")
    ap.add_argument("--device", default="cuda", help="torch device (cpu for a dry run)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import numpy as np
    import torch
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    t0 = time.perf_counter()
    model = SentenceTransformer(a.model_dir, device=a.device)
    model.max_seq_length = 256
    load_s = time.perf_counter() - t0
    report = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "sentence_transformers": sentence_transformers.__version__,
        "device": torch.cuda.get_device_name(0) if a.device == "cuda" else a.device,
        "load_seconds": round(load_s, 2),
        "tf32": False,
        "runs": [],
        "best": {},
    }
    parity = read_texts(a.parity)
    sets = {os.path.splitext(os.path.basename(p))[0]: read_texts(p) for p in a.texts}
    batches = [int(b) for b in a.batches.split(",")]
    os.makedirs(a.vectors, exist_ok=True)
    for prec in ("fp32", "fp16"):
        if prec == "fp16":
            model.half()
        emb = model.encode(parity, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
        emb.astype("<f4").tofile(os.path.join(a.vectors, f"st-{prec}.f32"))
        for name, texts in sets.items():
            tok = model.tokenizer(texts[:2048], truncation=True, max_length=256)["input_ids"]
            mean_tokens = statistics.fmean(len(t) for t in tok)
            for bs in batches:
                n = bs if bs <= 32 else min(len(texts), max(bs * 4, 2048))
                chunk = texts[:n]
                call = lambda: model.encode(chunk, batch_size=bs, convert_to_numpy=True, normalize_embeddings=True)
                call()  # warmup: kernels, allocator
                if a.device == "cuda":
                    torch.cuda.synchronize()
                calls, secs, lat = timed(call, a.seconds)
                run = {
                    "precision": prec, "texts": name, "batch": bs, "mean_tokens": round(mean_tokens, 1),
                    "sentences_per_s": round(calls * n / secs, 1),
                    "tokens_per_s": round(calls * n * mean_tokens / secs, 1),
                    "call_texts": n, "calls": calls,
                    "p50_ms": round(pct(lat, 50) * 1e3, 3), "p99_ms": round(pct(lat, 99) * 1e3, 3),
                }
                report["runs"].append(run)
                print(json.dumps(run), flush=True)
            best = max((r for r in report["runs"] if r["precision"] == prec and r["texts"] == name),
                       key=lambda r: r["sentences_per_s"])
            report["best"][f"{prec}/{name}"] = best
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
