#!/usr/bin/env python3
"""Verify the fp16 and pooled graph variants of internal/bertonnx on the real
all-MiniLM-L6-v2, against an independent numpy forward pass.

  1. checkpoint invariance: the fp16 graph exported from the fp32
     model.safetensors is byte-identical to the one exported from an F16
     safetensors that numpy makes with astype(np.float16); an fp32 graph from
     that F16 file is byte-identical to one from an F32 file holding the same
     (float16) values;
  2. onnx.checker (full check, with shape inference) accepts every variant,
     and onnx re-serializes each to the same bytes (canonical protobuf);
  3. on ~200 sentences (batches of 32, padded): the pooled, normalized fp32
     graph against the float64 numpy BertModel mean-pooled and normalized in
     numpy (min cosine >= 0.99999; sentence_embedding * sentence_norm against
     the raw mean, max relative error <= 1e-5); the fp16 graph (run by
     onnxruntime's CPU provider) against the same reference (min cosine
     >= 0.999, raw vector within 5e-3 relative); CLS pooling and no
     normalization likewise;
  4. which fusions onnxruntime's CPU optimizer applies to the fp16 graph.

The variants are exported with `embedd models export`: the binary --embedd
names, else `go run ./cmd/embedd` (needs the go toolchain and the repository). Exits 1 when a check fails. --json writes
every check and its outcome.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import verify  # noqa: E402  (same directory: sentences, numpy BertModel, sessions)

VARIANTS = {  # name: export flags
    "fp32-mean-norm": ["--pooling=mean", "--normalize"],
    "fp32-mean": ["--pooling=mean"],
    "fp32-cls-norm": ["--pooling=cls", "--normalize"],
    "fp16-mean-norm": ["--precision=fp16", "--pooling=mean", "--normalize"],
}


def export(binary: pathlib.Path | None, config: pathlib.Path, weights: pathlib.Path, out: pathlib.Path,
           flags: list[str]) -> bytes:
    cmd = [*verify.embedd_command(binary), "models", "export",
           f"--config={config}", f"--weights={weights}", f"--out={out}", *flags]
    subprocess.run(cmd, cwd=verify.REPO, check=True, stdout=subprocess.DEVNULL)
    return out.read_bytes()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=pathlib.Path,
                    default=pathlib.Path.home() / ".cache/embedd/models/all-minilm-l6-v2",
                    help="directory with config.json, model.safetensors, tokenizer.json")
    ap.add_argument("--sentences", type=int, default=192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=pathlib.Path, help="also write the checks here")
    ap.add_argument("--embedd", type=pathlib.Path, help="embedd binary to export with (default: go run ./cmd/embedd)")
    args = ap.parse_args()
    ok = True
    checks = []

    def check(cond: bool, what: str):
        nonlocal ok
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        checks.append({"ok": bool(cond), "what": what})
        ok = ok and cond

    cfg_path, st_path = args.model_dir / "config.json", args.model_dir / "model.safetensors"
    weights = load_file(str(st_path))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        # 1. checkpoint invariance
        half = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in weights.items()}
        save_file(half, str(tmp / "f16.safetensors"))
        widened = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in half.items()}
        save_file(widened, str(tmp / "f16-as-f32.safetensors"))
        flags = VARIANTS["fp16-mean-norm"]
        a = export(args.embedd, cfg_path, st_path, tmp / "a.onnx", flags)
        b = export(args.embedd, cfg_path, tmp / "f16.safetensors", tmp / "b.onnx", flags)
        check(a == b, f"fp16 graph from F32 == from numpy F16 checkpoint ({len(a)} bytes)")
        flags = VARIANTS["fp32-mean-norm"]
        a = export(args.embedd, cfg_path, tmp / "f16.safetensors", tmp / "a.onnx", flags)
        b = export(args.embedd, cfg_path, tmp / "f16-as-f32.safetensors", tmp / "b.onnx", flags)
        check(a == b, "fp32 graph from F16 checkpoint == from F32 checkpoint of the same values")

        # 2. export every variant, check it
        paths = {}
        for name, flags in VARIANTS.items():
            paths[name] = tmp / f"{name}.onnx"
            export(args.embedd, cfg_path, st_path, paths[name], flags)
            data = paths[name].read_bytes()
            model = onnx.load_from_string(data)
            try:
                onnx.checker.check_model(model, full_check=True)
                check(True, f"onnx.checker {name}")
            except Exception as e:  # noqa: BLE001
                check(False, f"onnx.checker {name}: {e}")
            check(model.SerializeToString() == data, f"canonical protobuf {name} ({len(data)} bytes)")

        # 3. numerics against numpy float64
        config = json.loads(cfg_path.read_text())
        ref_model = verify.NumpyBert(config, weights)
        tok = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
        texts = verify.make_sentences(args.sentences)
        sessions = {name: verify.session(p, args.threads) for name, p in paths.items()}
        outs = {name: [] for name in paths}
        raw_mean, cls = [], []
        for i in range(0, len(texts), 32):
            ids, mask, types = verify.tokenize(tok, texts[i:i + 32], 256)
            h = ref_model(ids, mask, types)
            m = mask[..., None].astype(np.float64)
            raw_mean.append((h * m).sum(1) / np.maximum(m.sum(1), 1))
            cls.append(h[:, 0])
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            for name, s in sessions.items():
                outs[name].append(s.run(None, feed))
        raw_mean, cls = np.concatenate(raw_mean), np.concatenate(cls)
        cat = {name: [np.concatenate([o[j] for o in v]) for j in range(len(v[0]))] for name, v in outs.items()}

        for name, ref, target in [("fp32-mean-norm", raw_mean, 0.99999), ("fp32-cls-norm", cls, 0.99999),
                                  ("fp16-mean-norm", raw_mean, 0.999)]:
            emb, norm = cat[name]
            c = cosines(emb, ref)
            check(c.min() >= target, f"{name}: cosine vs numpy min {c.min():.10f} mean {c.mean():.10f} (target >= {target})")
            rel = np.linalg.norm(emb * norm - ref, axis=1) / np.linalg.norm(ref, axis=1)
            # fp16 weights and matmuls: about 1e-3 relative error in the raw vector.
            limit = 1e-5 if name.startswith("fp32") else 5e-3
            check(rel.max() <= limit, f"{name}: sentence_embedding*sentence_norm vs raw: max rel {rel.max():.2g} (<= {limit})")
        (emb,) = cat["fp32-mean"]
        rel = np.linalg.norm(emb - raw_mean, axis=1) / np.linalg.norm(raw_mean, axis=1)
        check(rel.max() <= 1e-5, f"fp32-mean (not normalized) vs raw mean: max rel {rel.max():.2g}")

        # 4. fusions
        counts, fused = verify.fusion_report(paths["fp16-mean-norm"], args.threads, tmp, "fp16")
        print("fp16 graph, onnxruntime CPU fusions:", {k: v for k, v in fused.items() if v})
    if args.json:
        res = {"sentences": len(texts), "checks": checks, "fusion_fp16_mean_norm": fused,
               "versions": {"onnx": onnx.__version__, "numpy": np.__version__}}
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
