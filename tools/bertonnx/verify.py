#!/usr/bin/env python3
"""Verify the ONNX model that internal/bertonnx exports from safetensors.

Checks, on ~200 tokenized sentences (batches of 32, padded to the longest in
each batch, so the attention mask is exercised):

  1. parity of the Go-exported model, run by onnxruntime, with an independent
     numpy implementation of Hugging Face BertModel (float64) built from the
     same safetensors file: max |last_hidden_state| difference over real
     tokens and over every position, and the min cosine of mean-pooled,
     L2-normalized sentence embeddings;
  2. agreement with a third-party int8 ONNX export of the same model, if given
     (int8 weights, so cosines of ~0.98-0.995 are expected);
  3. onnxruntime latency for one batch of 32 sentences at sequence length 32,
     and which fusions onnxruntime's optimizer applied to each model.

Without --onnx the script exports the model itself with the Go exporter:
with the binary --embedd names, else with the go toolchain and the repository:

  go run ./cmd/embedd models export --config DIR/config.json \
    --weights DIR/model.safetensors --out OUT/model.onnx

Exits 1 when parity misses its targets: max abs diff < 1e-4 over real
(unpadded) tokens and min cosine >= 0.99999; or when the file is not
canonical protobuf (onnx's own re-serialization must give back the same
bytes, which the Go exporter's proto.Marshal output does). The diff over padded positions is
reported too; those outputs are ill-conditioned in float32 (numpy in float32
misses float64 there by about as much) and pooling never reads them.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file
from tokenizers import Tokenizer

REPO = pathlib.Path(__file__).resolve().parents[2]
MAX_ABS_TARGET = 1e-4
MIN_COS_TARGET = 0.99999

# ---------------------------------------------------------------------------
# Sentences


BASE_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner.",
    "Embeddings map text to points in a vector space.",
    "How do I reset my password?",
    "The weather in Lisbon is sunny and warm today.",
    "Quantum computers use qubits instead of bits.",
    "She sells sea shells by the sea shore.",
    "Transformers replaced recurrent networks for most NLP tasks.",
    "Please deliver the package to the back door.",
    "The stock market fell sharply after the announcement.",
    "I love reading books about ancient history.",
    "Can you recommend a good Italian restaurant nearby?",
    "Photosynthesis converts light energy into chemical energy.",
    "The committee will meet again on Thursday at 10am.",
    "Our new phone has a 6.1-inch display and 128 GB of storage.",
    "Das ist ein Satz auf Deutsch.",
    "C'est la vie, mon ami.",
    "東京は日本の首都です。",
    "Emoji test: 🚀🔥 are popular on social media.",
    "E = mc^2 relates mass and energy.",
    "def add(a, b): return a + b",
    "SELECT name FROM users WHERE id = 42;",
    "The mitochondria is the powerhouse of the cell.",
    "He didn't know whether to laugh or cry.",
    "Refunds are processed within 5-7 business days.",
    "Mount Everest is the highest mountain above sea level.",
    "The cat sat on the mat.",
    "A cat is sitting on a rug.",
    "Dogs are loyal companions.",
    "Machine learning models can overfit small datasets.",
    "Hello!",
    "ok",
    "What time does the library close on Sundays?",
    "The patient was prescribed 20 mg of the drug twice daily.",
    "Rain is expected to continue through the weekend in the north.",
    "Vectors with high cosine similarity point in similar directions.",
    "The band released their third album last spring.",
    "Never gonna give you up, never gonna let you down.",
    "In 1969, Apollo 11 landed on the Moon.",
    "Battery life improved by thirty percent in the latest update.",
]


def make_sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = list(BASE_SENTENCES)
    words = " ".join(BASE_SENTENCES).split()
    while len(out) < n:
        kind = len(out) % 4
        if kind == 0:  # two sentences joined
            a, b = rng.choice(len(BASE_SENTENCES), 2, replace=False)
            out.append(BASE_SENTENCES[a] + " " + BASE_SENTENCES[b])
        elif kind == 1:  # short random word salad
            k = int(rng.integers(1, 8))
            out.append(" ".join(rng.choice(words, k)))
        elif kind == 2:  # medium random word salad
            k = int(rng.integers(10, 40))
            out.append(" ".join(rng.choice(words, k)))
        else:  # long text, some beyond 128 tokens
            k = int(rng.integers(60, 220))
            out.append(" ".join(rng.choice(words, k)))
    return out[:n]


def tokenize(tok: Tokenizer, texts: list[str], max_len: int):
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    encs = tok.encode_batch(texts)
    seq = max(len(e.ids) for e in encs)
    ids = np.zeros((len(texts), seq), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, e in enumerate(encs):
        n = len(e.ids)
        ids[i, :n] = e.ids
        mask[i, :n] = e.attention_mask
        types[i, :n] = e.type_ids
    return ids, mask, types


# ---------------------------------------------------------------------------
# Reference BertModel in numpy


def erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1e-15, vectorized (numpy has no erf and scipy is not needed).

    Uses erf(x) = 2x/sqrt(pi) exp(-x^2) sum_n (2x^2)^n / (1*3*...*(2n+1)), whose
    terms are all positive (no cancellation); |x| >= 6 gives +-1 exactly in
    float64 (erfc(6) ~ 2e-17).
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.sign(x)
    a = np.abs(x)
    # Bucket by magnitude: the series needs ~x^2 + a few dozen terms.
    for lo, hi in ((0, 1), (1, 2), (2, 3), (3, 4), (4, 6)):
        sel = (a >= lo) & (a < hi)
        if not sel.any():
            continue
        z = a[sel]
        t = 2.0 * z * z
        term = np.ones_like(z)
        total = np.ones_like(z)
        n = 0
        while True:
            term *= t / (2 * n + 3)
            total += term
            n += 1
            if not np.any(term > total * 1e-17):
                break
        out[sel] = np.sign(x[sel]) * (2.0 / np.sqrt(np.pi)) * z * np.exp(-z * z) * total
    return out


def check_erf():
    import math

    xs = np.concatenate([np.linspace(-7, 7, 20001), np.random.default_rng(1).normal(0, 2, 20000)])
    err = np.abs(erf(xs) - np.array([math.erf(v) for v in xs])).max()
    assert err < 1e-14, f"erf self-check failed: max error {err}"
    return float(err)


class NumpyBert:
    """Hugging Face BertModel (eval) written from the paper/HF source in numpy."""

    def __init__(self, config: dict, weights: dict[str, np.ndarray], dtype=np.float64):
        self.c = config
        self.dtype = dtype
        prefix = "" if "embeddings.word_embeddings.weight" in weights else "bert."
        self.w = {k[len(prefix):]: v.astype(dtype) for k, v in weights.items() if k.startswith(prefix)}

    def _ln(self, x, name):
        g = self.w.get(name + ".weight", self.w.get(name + ".gamma"))
        b = self.w.get(name + ".bias", self.w.get(name + ".beta"))
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.c["layer_norm_eps"]) * g + b

    def _linear(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def __call__(self, ids, mask, types):
        c, w = self.c, self.w
        b, s = ids.shape
        h = w["embeddings.word_embeddings.weight"][ids]
        h = h + w["embeddings.token_type_embeddings.weight"][types]
        h = h + w["embeddings.position_embeddings.weight"][np.arange(s)][None]
        h = self._ln(h, "embeddings.LayerNorm")
        nh = c["num_attention_heads"]
        hd = c["hidden_size"] // nh
        ext = (1.0 - mask[:, None, None, :].astype(self.dtype)) * np.finfo(np.float32).min
        from math import sqrt

        for i in range(c["num_hidden_layers"]):
            p = f"encoder.layer.{i}."

            def heads(x):
                return x.reshape(b, s, nh, hd).transpose(0, 2, 1, 3)

            q = heads(self._linear(h, p + "attention.self.query"))
            k = heads(self._linear(h, p + "attention.self.key"))
            v = heads(self._linear(h, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / sqrt(hd) + ext
            scores = scores - scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, nh * hd)
            a = self._ln(self._linear(ctx, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
            u = self._linear(a, p + "intermediate.dense")
            g = 0.5 * u * (1.0 + erf(u / sqrt(2.0)))
            h = self._ln(self._linear(g, p + "output.dense") + a, p + "output.LayerNorm")
        return h


def mean_pool(h, mask):
    m = mask[..., None].astype(np.float64)
    e = (h.astype(np.float64) * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


# ---------------------------------------------------------------------------
# onnxruntime helpers


def session(path, threads, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, optimized_path=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = level
    if optimized_path:
        so.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run(sess, ids, mask, types):
    names = {i.name for i in sess.get_inputs()}
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return sess.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in names})[0]


def op_counts(path):
    m = onnx.load(str(path), load_external_data=False)
    return collections.Counter(
        (n.domain + "::" if n.domain and n.domain != "ai.onnx" else "") + n.op_type for n in m.graph.node
    )


FUSED_OPS = {
    "attention": ("com.microsoft::Attention", "com.microsoft::MultiHeadAttention"),
    "gelu": ("com.microsoft::Gelu", "com.microsoft::BiasGelu", "com.microsoft::FastGelu", "Gelu"),
    "skip_layernorm": ("com.microsoft::SkipLayerNormalization",),
    "embed_layernorm": ("com.microsoft::EmbedLayerNormalization",),
    "layernorm": ("LayerNormalization",),
    "fused_matmul": ("com.microsoft::FusedMatMul", "Gemm"),
}


def fusion_report(path, threads, workdir, tag):
    opt = pathlib.Path(workdir) / f"{tag}.optimized.onnx"
    session(path, threads, optimized_path=opt)
    counts = op_counts(opt)
    fused = {k: sum(counts.get(o, 0) for o in ops) for k, ops in FUSED_OPS.items()}
    return counts, fused


def bench(sessions, ids, mask, types, warmup=3, iters=20):
    """Median and min ms per run of each session, runs interleaved so that
    load from other processes hits every session alike."""
    for sess in sessions:
        for _ in range(warmup):
            run(sess, ids, mask, types)
    times = [[] for _ in sessions]
    for _ in range(iters):
        for i, sess in enumerate(sessions):
            t0 = time.perf_counter()
            run(sess, ids, mask, types)
            times[i].append((time.perf_counter() - t0) * 1e3)
    return [(statistics.median(t), min(t)) for t in times]


# ---------------------------------------------------------------------------


def embedd_command(binary: pathlib.Path | None) -> list[str]:
    """The command that runs embedd: the given binary, else `go run`."""
    return [str(binary.resolve())] if binary else ["go", "run", "./cmd/embedd"]


def export_with_go(model_dir: pathlib.Path, out: pathlib.Path, binary: pathlib.Path | None = None):
    cmd = [
        *embedd_command(binary), "models", "export",
        f"--config={model_dir / 'config.json'}",
        f"--weights={model_dir / 'model.safetensors'}",
        f"--out={out}",
    ]
    print("exporting:", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=pathlib.Path,
                    default=pathlib.Path.home() / ".cache/embedd/models/all-minilm-l6-v2",
                    help="directory with config.json, model.safetensors, tokenizer.json")
    ap.add_argument("--onnx", type=pathlib.Path, help="Go-exported model; exported with `embedd models export` when omitted")
    ap.add_argument("--embedd", type=pathlib.Path, help="embedd binary to export with (default: go run ./cmd/embedd)")
    ap.add_argument("--int8", type=pathlib.Path,
                    default=pathlib.Path.home() / ".cache/embedd/models/all-minilm-l6-v2-int8/model.onnx",
                    help="third-party int8 export to compare against (skipped if missing)")
    ap.add_argument("--sentences", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=256, help="truncation length in tokens")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra_op_num_threads")
    ap.add_argument("--json", type=pathlib.Path, help="also write the results here")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="bertonnx-verify-")
    onnx_path = args.onnx
    if onnx_path is None:
        onnx_path = pathlib.Path(work) / "model.onnx"
        export_with_go(args.model_dir, onnx_path, args.embedd)
    data = onnx_path.read_bytes()
    res = {"onnx": str(onnx_path), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
           "versions": {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__}}
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    res["checker"] = "ok"
    # The Go exporter writes deterministic proto.Marshal output: fields in
    # field-number order, as the reference protobuf encoder writes them, so
    # re-serializing must give the same bytes.
    res["canonical_protobuf"] = model.SerializeToString() == data
    del model

    res["erf_max_error_vs_math_erf"] = check_erf()
    config = json.loads((args.model_dir / "config.json").read_text())
    weights = load_file(str(args.model_dir / "model.safetensors"))
    ref = NumpyBert(config, weights)
    ref32 = NumpyBert(config, weights, dtype=np.float32)
    tok = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
    tok.no_padding()  # tokenizer.json pads to a fixed 128; batches pad themselves
    tok.enable_truncation(max_length=args.max_len)
    texts = make_sentences(args.sentences)
    # Batch sentences of similar length together, as a serving batcher would;
    # each batch still pads its shorter members.
    texts.sort(key=lambda t: len(tok.encode(t).ids))

    ours = session(onnx_path, args.threads)
    ours_noopt = session(onnx_path, args.threads, level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    int8 = session(args.int8, args.threads) if args.int8 and args.int8.exists() else None

    max_tok = max_all = max_tok_noopt = max_pad_np32 = 0.0
    cos_ref, cos_int8_ref, cos_int8_ours = [], [], []
    longest = 0
    for start in range(0, len(texts), args.batch):
        ids, mask, types = tokenize(tok, texts[start:start + args.batch], args.max_len)
        longest = max(longest, ids.shape[1])
        want = ref(ids, mask, types)
        got = run(ours, ids, mask, types)
        got_noopt = run(ours_noopt, ids, mask, types)
        valid = mask.astype(bool)
        max_tok = max(max_tok, float(np.abs(got - want)[valid].max()))
        max_all = max(max_all, float(np.abs(got - want).max()))
        max_tok_noopt = max(max_tok_noopt, float(np.abs(got_noopt - want)[valid].max()))
        if (~valid).any():
            # How well float32 itself can do at padded positions: their
            # outputs are ill-conditioned and never used by pooling.
            max_pad_np32 = max(max_pad_np32, float(np.abs(ref32(ids, mask, types) - want)[~valid].max()))
        e_ref, e_ours = mean_pool(want, mask), mean_pool(got, mask)
        cos_ref.extend((e_ref * e_ours).sum(1))
        if int8 is not None:
            e_int8 = mean_pool(run(int8, ids, mask, types), mask)
            cos_int8_ref.extend((e_ref * e_int8).sum(1))
            cos_int8_ours.extend((e_ours * e_int8).sum(1))

    res["parity"] = {
        "sentences": len(texts), "longest_tokens": longest,
        "max_abs_diff_real_tokens": max_tok, "max_abs_diff_all_positions": max_all,
        "max_abs_diff_real_tokens_unoptimized_graph": max_tok_noopt,
        "numpy_float32_max_abs_diff_padded_positions": max_pad_np32,
        "min_cosine_vs_numpy": float(min(cos_ref)),
    }
    if int8 is not None:
        res["vs_int8"] = {
            "min_cosine_int8_vs_numpy": float(min(cos_int8_ref)),
            "mean_cosine_int8_vs_numpy": float(np.mean(cos_int8_ref)),
            "min_cosine_int8_vs_ours": float(min(cos_int8_ours)),
            "mean_cosine_int8_vs_ours": float(np.mean(cos_int8_ours)),
        }

    # Latency: 32 sentences at exactly 32 tokens.
    bt = [t for t in texts if len(tok.encode(t).ids) >= 32][: args.batch]
    ids, mask, types = tokenize(tok, bt, 32)
    timing = {"batch": ids.shape[0], "sequence": ids.shape[1], "intra_op_num_threads": args.threads}
    sessions = {"ours": ours} | ({"int8": int8} if int8 is not None else {})
    for name, (med, best) in zip(sessions, bench(list(sessions.values()), ids, mask, types)):
        timing[f"{name}_ms_median"], timing[f"{name}_ms_min"] = med, best
    res["timing"] = timing

    counts, fused = fusion_report(onnx_path, args.threads, work, "ours")
    res["fusion_ours"] = {"fused": fused, "ops": dict(sorted(counts.items()))}
    if int8 is not None:
        counts, fused = fusion_report(args.int8, args.threads, work, "int8")
        res["fusion_int8"] = {"fused": fused, "ops": dict(sorted(counts.items()))}

    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    ok = max_tok < MAX_ABS_TARGET and min(cos_ref) >= MIN_COS_TARGET
    print(f"parity {'PASS' if ok else 'FAIL'}: max abs diff over real tokens {max_tok:.3g} "
          f"(target < {MAX_ABS_TARGET}; all positions {max_all:.3g}), "
          f"min cosine {min(cos_ref):.8f} (target >= {MIN_COS_TARGET})")
    print(f"canonical protobuf {'PASS' if res['canonical_protobuf'] else 'FAIL'}: "
          "onnx re-serializes the file to the same bytes")
    return 0 if ok and res["canonical_protobuf"] else 1


if __name__ == "__main__":
    sys.exit(main())
