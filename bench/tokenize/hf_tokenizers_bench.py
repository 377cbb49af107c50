#!/usr/bin/env python3
"""Measure Hugging Face tokenizers' throughput on the Go tokenizer's parity corpus.

The baseline for BenchmarkEncode in internal/tokenize: same tokenizer.json, same corpus,
same counting (ids returned, special tokens included). It reports tokens/s for a loop of
single-text Tokenizer.encode calls (compare with BenchmarkEncode/*/single) and for
Tokenizer.encode_batch over the whole corpus, which tokenizers spreads over all cores
with Rayon (compare with BenchmarkEncode/*/parallel). Prints one JSON object.

Usage (from the repository root, with tools/requirements.txt installed):
    python bench/tokenize/hf_tokenizers_bench.py [--max-length 128] [--subset english] [--seconds 3]
"""

import argparse
import json
import os
import platform
import time

import tokenizers
from tokenizers import Tokenizer

TESTDATA = "internal/tokenize/testdata/"


def read_corpus(path):
    with open(path, encoding="utf-8", newline="") as f:
        return [json.loads(line)["text"] for line in f.read().split("\n") if line]


def is_printable_ascii(text):
    return all(" " <= c <= "~" for c in text)


def measure(fn, seconds):
    """Run fn (which returns a token count) repeatedly for about seconds; return tokens/s."""
    fn()  # warm up
    tokens, start = 0, time.perf_counter()
    while True:
        tokens += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return tokens / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", default=TESTDATA + "minilm-tokenizer.json")
    ap.add_argument("--corpus", default=TESTDATA + "corpus.jsonl")
    ap.add_argument("--max-length", type=int, default=0, help="truncate at this many tokens; 0: no truncation")
    ap.add_argument("--subset", choices=["all", "english"], default="all", help="english: printable-ASCII lines only")
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum measuring time per mode")
    args = ap.parse_args()

    tok = Tokenizer.from_file(args.tokenizer)
    tok.no_padding()
    if args.max_length > 0:
        tok.enable_truncation(max_length=args.max_length)
    else:
        tok.no_truncation()
    texts = read_corpus(args.corpus)
    if args.subset == "english":
        texts = [t for t in texts if is_printable_ascii(t)]

    def single():
        n = 0
        for text in texts:
            n += len(tok.encode(text, add_special_tokens=True).ids)
        return n

    def batch():
        return sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=True))

    result = {
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "rayon_num_threads": os.environ.get("RAYON_NUM_THREADS"),
        "texts": len(texts),
        "subset": args.subset,
        "max_length": args.max_length,
        "single_tokens_per_s": round(measure(single, args.seconds)),
        "batch_tokens_per_s": round(measure(batch, args.seconds)),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
