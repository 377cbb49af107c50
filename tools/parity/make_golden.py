#!/usr/bin/env python3
"""Reference embeddings for the engine's parity test.

The reference pipeline is what a Python user would run: Hugging Face
`tokenizers` + `onnxruntime` on the same ONNX file the Go engine loads, mean
pooling over the attention mask and L2 normalization (sentence-transformers'
Pooling + Normalize modules) -- or, for a graph that pools and normalizes
itself, its sentence_embedding output -- one text per run so padding cannot
influence the reference.

Texts: every 4th line of the tokenizer golden corpus (internal/tokenize/
testdata/corpus.jsonl), which mixes plain sentences with accents, CJK, emoji,
control characters and texts long enough to be truncated.

Writes internal/engine/testdata/parity/texts.jsonl and, per model,
<model>.f32 (little-endian float32, row-major [n, dims]) and <model>.json
(metadata: versions, file hashes, shapes).

Usage: make_golden.py CACHE_DIR
"""
import hashlib
import json
import pathlib
import sys

import numpy as np
import onnxruntime as ort
import tokenizers

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "internal/tokenize/testdata/corpus.jsonl"
OUT = ROOT / "internal/engine/testdata/parity"
MODELS = ["all-minilm-l6-v2", "all-minilm-l6-v2-int8"]
STRIDE = 4
MAX_LEN = 256


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    cache = pathlib.Path(sys.argv[1])
    lines = [json.loads(l)["text"] for l in CORPUS.read_text(encoding="utf-8").split("\n") if l]
    texts = lines[::STRIDE]
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "texts.jsonl", "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    for name in MODELS:
        d = cache / "models" / name
        tok = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length=MAX_LEN)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        sess = ort.InferenceSession(str(d / "model.onnx"), so, providers=["CPUExecutionProvider"])
        vecs = np.zeros((len(texts), 384), dtype=np.float32)
        pooled_graph = "sentence_embedding" in [o.name for o in sess.get_outputs()]
        for i, t in enumerate(texts):
            enc = tok.encode(t)
            ids = np.array([enc.ids], dtype=np.int64)
            mask = np.array([enc.attention_mask], dtype=np.int64)
            types = np.array([enc.type_ids], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            if pooled_graph:
                # The graph pools and normalizes itself (sentence_embedding).
                (vecs[i],) = sess.run(["sentence_embedding"], feed)[0]
                continue
            (hidden,) = sess.run(["last_hidden_state"], feed)
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            norm = np.linalg.norm(pooled, axis=1, keepdims=True)
            vecs[i] = (pooled / np.clip(norm, 1e-12, None))[0]
        vecs.astype("<f4").tofile(OUT / f"{name}.f32")
        meta = {
            "model": name,
            "n": len(texts),
            "dims": 384,
            "max_len": MAX_LEN,
            "onnx_sha256": sha256(d / "model.onnx"),
            "tokenizer_sha256": sha256(d / "tokenizer.json"),
            "onnxruntime": ort.__version__,
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
        }
        (OUT / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"{name}: {len(texts)} vectors", file=sys.stderr)


if __name__ == "__main__":
    main()
