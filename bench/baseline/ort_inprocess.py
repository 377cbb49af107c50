#!/usr/bin/env python3
"""Embed the load generator's texts in-process with Python onnxruntime + tokenizers.

The baseline for the embedd server's throughput: the same model.onnx and
tokenizer.json, the same texts (bench/load -dump-texts), the same work per
text -- tokenize (truncation at 256 tokens, no padding), pad each batch to its
longest text, run the encoder, mean-pool over the attention mask and
L2-normalize -- with no network, no queueing and no server in between. Each
batch size is timed end to end (tokenization included) after a warmup.
ONNX Runtime uses one intra-op thread per available core. Tokens count the
ids the model sees, special tokens included, as the server's token counts do.

Prints one JSON object (and writes it to --out when given): sentences/s and
tokens/s per batch size, and the best of them.

Usage (from the repository root):
    go run ./bench/load -texts short -dump-texts /tmp/short.jsonl
    $(scripts/pyenv.sh) bench/baseline/ort_inprocess.py --texts /tmp/short.jsonl \\
        ${EMBEDD_CACHE_DIR:-~/.cache/embedd}/models/all-minilm-l6-v2-int8
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import onnxruntime as ort
import tokenizers
from tokenizers import Tokenizer


def read_texts(path):
    """Read a -dump-texts file: JSON Lines of {"set": ..., "text": ...}."""
    texts, sets = [], set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                texts.append(rec["text"])
                sets.add(rec.get("set", ""))
    if not texts:
        raise SystemExit(f"{path}: no texts")
    return texts, ",".join(sorted(sets))


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Embedder:
    """Tokenize, run and pool like the server: one call per batch."""

    def __init__(self, model_dir, max_length, threads):
        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=max_length)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(
            os.path.join(model_dir, "model.onnx"), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.sess.get_inputs()}
        outputs = [o.name for o in self.sess.get_outputs()]
        self.output = next((o for o in ("last_hidden_state", "sentence_embedding") if o in outputs), outputs[0])

    def embed(self, texts):
        """Return (embeddings [n, dims] float32, tokens counted)."""
        encs = self.tok.encode_batch(texts, add_special_tokens=True)
        lengths = [len(e.ids) for e in encs]
        n, width = len(encs), max(lengths)
        ids = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, : lengths[i]] = e.ids
            mask[i, : lengths[i]] = 1
            types[i, : lengths[i]] = e.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feeds = {k: v for k, v in feeds.items() if k in self.inputs}
        hidden = self.sess.run([self.output], feeds)[0]  # [n, width, dims], or [n, dims] pooled
        if hidden.ndim == 2:  # the graph pooled and normalized (sentence_embedding)
            return hidden, sum(lengths)
        m = mask[:, :, None].astype(hidden.dtype)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12), sum(lengths)


def measure(embedder, texts, batch_size, seconds, warmup):
    """Embed consecutive batches (wrapping around texts) for about seconds."""
    pos = 0

    def next_batch():
        nonlocal pos
        batch = [texts[(pos + i) % len(texts)] for i in range(batch_size)]
        pos = (pos + batch_size) % len(texts)
        return batch

    deadline, runs = time.perf_counter() + warmup, 0
    while runs < 2 or time.perf_counter() < deadline:
        embedder.embed(next_batch())
        runs += 1

    batches = sentences = tokens = 0
    start = time.perf_counter()
    while True:
        emb, n_tokens = embedder.embed(next_batch())
        batches += 1
        sentences += len(emb)
        tokens += n_tokens
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and batches >= 3:
            break
    return {
        "batch_size": batch_size,
        "sentences_per_s": sentences / elapsed,
        "tokens_per_s": tokens / elapsed,
        "ms_per_batch": 1000 * elapsed / batches,
        "batches": batches,
        "seconds": elapsed,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", help="directory with model.onnx and tokenizer.json")
    ap.add_argument("--texts", required=True, help="texts written by go run ./bench/load -dump-texts FILE")
    ap.add_argument("--batch-sizes", default="1,8,16,32,64,128")
    ap.add_argument("--seconds", type=float, default=5.0, help="measured time per batch size")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured time per batch size")
    ap.add_argument("--max-length", type=int, default=256, help="truncate texts at this many tokens")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads; 0: one per available core")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()

    texts, text_set = read_texts(args.texts)
    threads = args.threads or available_cpus()
    embedder = Embedder(args.model_dir, args.max_length, threads)

    # Sanity check, and the texts' mean token count for the report.
    emb, n_tokens = embedder.embed(texts)
    if not np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-3):
        raise SystemExit("embeddings are not L2-normalized")

    results = []
    for bs in (int(b) for b in args.batch_sizes.split(",") if b.strip()):
        r = measure(embedder, texts, bs, args.seconds, args.warmup)
        results.append(r)
        print(
            f"batch {bs:4d}: {r['sentences_per_s']:9.1f} sentences/s {r['tokens_per_s']:10.0f} tokens/s "
            f"{r['ms_per_batch']:8.2f} ms/batch",
            flush=True,
            file=sys.stderr,
        )
    best = max(results, key=lambda r: r["sentences_per_s"])
    report = {
        "model_dir": os.path.abspath(args.model_dir),
        "model": os.path.basename(os.path.normpath(args.model_dir)),
        "onnxruntime": ort.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpus": available_cpus(),
        "intra_op_threads": threads,
        "max_length": args.max_length,
        "dims": int(emb.shape[1]),
        "texts": {"file": args.texts, "set": text_set, "count": len(texts), "mean_tokens": n_tokens / len(texts)},
        "results": results,
        "best": best,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
