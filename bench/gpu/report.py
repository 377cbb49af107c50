#!/usr/bin/env python3
"""Assemble the GPU device check's report (bench/gpu/check.sh, last step).

Reads what the check left in --work and writes --out/gpu-report.json and
--out/gpu-report.md: the machine, parity (cosine of embedd on CUDA to the
CPU reference computed by prepare.sh and to sentence-transformers on the
same weights), in-process throughput and latency, IoBinding and worker
variants, the out-of-memory split run, the gRPC server under the Go load
generator, sentence-transformers' best batch in the same run, achieved
TFLOP/s, the server's device metrics, and each target with pass/fail.
Needs only Python 3 and numpy.
"""

import argparse
import glob
import json
import os
import re


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def vectors_f32(path, dims=384):
    import numpy as np
    try:
        return np.fromfile(path, dtype="<f4").reshape(-1, dims)
    except (OSError, ValueError):
        return None


def vectors_embedd(path):
    import numpy as np
    d = load_json(path)
    if not d:
        return None, None
    return np.asarray([r["embedding"] for r in d["data"]], dtype="float64"), d.get("device")


def cos_stats(a, b):
    import numpy as np
    if a is None or b is None or a.shape != b.shape:
        return None
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    c = (a * b).sum(axis=1)
    return {"n": int(len(c)), "min": round(float(c.min()), 7), "mean": round(float(c.mean()), 7)}


def flops_per_token(cfg, seq):
    """Forward FLOPs per token of a BERT encoder (multiply-add = 2 FLOPs):
    the dense layers plus attention's QKᵀ and AV over a sequence of seq."""
    h, i, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    return n * (2 * (4 * h * h + 2 * h * i) + 4 * seq * h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--repo", default=".")
    a = ap.parse_args()
    W = a.work
    rep = {"steps": [], "targets": {}}
    try:
        with open(os.path.join(W, "steps.jsonl")) as f:
            rep["steps"] = [json.loads(l) for l in f if l.strip()]
    except OSError:
        pass
    try:
        rep["probe"] = open(os.path.join(a.out, "probe.txt")).read()
    except OSError:
        rep["probe"] = ""
    cfg = load_json(os.path.join(W, "st", "config.json")) or {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6}

    # Parity.
    refs = {k: vectors_f32(os.path.join(W, f"cpu-{k}.f32")) for k in ("fp32", "fp16")}
    st = {k: vectors_f32(os.path.join(W, "vec", f"st-{k}.f32")) for k in ("fp32", "fp16")}
    par, devices = {}, {}
    for prec in ("fp32", "fp16"):
        v, dev = vectors_embedd(os.path.join(W, "vec", f"cuda-{prec}.json"))
        devices[prec] = dev
        par[f"embedd-{prec} vs cpu-{prec}"] = cos_stats(v, refs[prec])
        par[f"embedd-{prec} vs cpu-fp32"] = cos_stats(v, refs["fp32"])
        par[f"embedd-{prec} vs torch-{prec}"] = cos_stats(v, st[prec])
        par[f"embedd-{prec} vs torch-fp32"] = cos_stats(v, st["fp32"])
    par["torch-fp16 vs torch-fp32"] = cos_stats(st["fp16"], st["fp32"])
    par["cpu-fp32 vs torch-fp32"] = cos_stats(refs["fp32"], st["fp32"])
    rep["parity"] = par
    rep["parity_devices"] = devices

    # In process.
    inproc = {}
    for path in sorted(glob.glob(os.path.join(W, "inproc-*.json"))):
        name = os.path.basename(path)[len("inproc-"):-len(".json")]
        inproc[name] = load_json(path)
    rep["inproc"] = inproc

    # Server under load.
    load = {}
    for path in sorted(glob.glob(os.path.join(W, "load", "*", "results.json"))):
        r = load_json(path)
        if r:
            load[r["label"]] = r
    rep["server"] = load

    torch = load_json(os.path.join(W, "torch.json")) or {}
    rep["torch"] = torch
    try:
        rep["metrics"] = open(os.path.join(W, "metrics.txt")).read().splitlines()
        rep["metrics"] = [l for l in rep["metrics"] if re.match(r"embedd_(model_backend|cpu_retries_total|oom_splits_total|batch_errors_total|texts_total)", l)]
    except OSError:
        rep["metrics"] = []

    # Targets.
    T = rep["targets"]
    def parity_target(key, want):
        s = par.get(key)
        return {"want_min_cos": want, "got": s, "pass": bool(s and s["min"] >= want)}
    T["parity fp32 (cuda vs cpu)"] = parity_target("embedd-fp32 vs cpu-fp32", 0.9999)
    T["parity fp16 (cuda vs cpu fp32)"] = parity_target("embedd-fp16 vs cpu-fp32", 0.999)
    T["parity fp32 (cuda vs torch fp32)"] = parity_target("embedd-fp32 vs torch-fp32", 0.9999)
    T["parity fp16 (cuda vs torch fp16)"] = parity_target("embedd-fp16 vs torch-fp16", 0.999)

    def closed(label, conc):
        r = load.get(label)
        for run in (r or {}).get("runs", []):
            if run.get("concurrency") == conc:
                return run
        return None
    srv = closed("fp16-short16", 256)
    best = (torch.get("best") or {}).get("fp16/short16")
    if srv and best:
        ratio = srv["sentences_per_s"] / best["sentences_per_s"]
        seq = srv.get("mean_tokens") or best.get("mean_tokens") or 16
        T["server fp16 short c=256 vs torch fp16 best batch"] = {
            "want_ratio": 1.5, "server_sentences_per_s": round(srv["sentences_per_s"], 1),
            "torch_sentences_per_s": best["sentences_per_s"], "torch_batch": best["batch"],
            "ratio": round(ratio, 2), "pass": ratio >= 1.5,
            "server_tflops": round(srv["tokens_per_s"] * flops_per_token(cfg, seq) / 1e12, 2),
            "torch_tflops": round(best["tokens_per_s"] * flops_per_token(cfg, seq) / 1e12, 2),
        }
    c1 = closed("fp16-short16", 1)
    if c1:
        p99 = c1["latency_ms"]["p99"]
        T["server p99 c=1 short fp16"] = {"want_ms": 2.0, "got_ms": round(p99, 3), "p50_ms": round(c1["latency_ms"]["p50"], 3), "pass": p99 <= 2.0}
    fallback = [l for l in rep["metrics"] if l.startswith("embedd_model_backend") and 'fallback="true"' in l]
    retries = [l for l in rep["metrics"] if l.startswith("embedd_cpu_retries_total") and not l.rstrip().endswith(" 0")]
    backends = [l for l in rep["metrics"] if l.startswith("embedd_model_backend")]
    T["no CPU fallback during the server run"] = {"model_backend": backends, "cpu_retries": retries,
                                                  "pass": bool(backends) and not fallback and not retries and all("cuda" in l for l in backends)}
    oom = inproc.get("oom")
    if oom:
        T["out-of-memory splits lose no text"] = {"oom_splits": oom.get("oom_splits"), "cpu_retries": oom.get("cpu_retries"),
                                                 "batch_errors": oom.get("batch_errors"),
                                                 "errors": sum(r.get("errors", 0) for r in oom.get("runs", [])),
                                                 "pass": (oom.get("oom_splits") or 0) > 0 and oom.get("batch_errors") == 0 and all(r.get("errors", 1) == 0 for r in oom.get("runs", []))}

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "gpu-report.json"), "w") as f:
        json.dump(rep, f, indent=2)
    with open(os.path.join(a.out, "gpu-report.md"), "w") as f:
        f.write(markdown(rep, cfg))


def markdown(rep, cfg):
    L = ["# embedd GPU device check", ""]
    L += ["```", rep.get("probe", "").strip(), "```", ""]
    L += ["## Targets", "", "| target | result | pass |", "|---|---|---|"]
    for k, v in rep["targets"].items():
        shown = {kk: vv for kk, vv in v.items() if kk != "pass"}
        L.append(f"| {k} | `{json.dumps(shown)}` | {'PASS' if v.get('pass') else 'FAIL'} |")
    L += ["", "## Parity (cosine over the parity texts)", "", "| pair | n | min | mean |", "|---|---|---|---|"]
    for k, v in rep["parity"].items():
        L.append(f"| {k} | {v['n']} | {v['min']} | {v['mean']} |" if v else f"| {k} | - | - | - |")
    L += ["", "## embedd in process (engine, no gRPC)", "",
          "| run | backend | texts | batch | mean tokens | sentences/s | tokens/s | TFLOP/s | p50 ms | p99 ms | errors |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rep["inproc"].items():
        if not r:
            continue
        for run in r.get("runs", []):
            tf = run["tokens_per_s"] * flops_per_token(cfg, run["mean_tokens"] or 1) / 1e12
            L.append(f"| {name} | {r['backend']} | {os.path.basename(run['texts'])} | {run['batch']} | {run['mean_tokens']:.1f} | "
                     f"{run['sentences_per_s']:.0f} | {run['tokens_per_s']:.0f} | {tf:.2f} | {run['p50_ms']:.2f} | {run['p99_ms']:.2f} | {run['errors']} |")
        L.append(f"| {name} (device events) | | | | | model runs {r.get('model_runs')} | oom splits {r.get('oom_splits')} | cpu retries {r.get('cpu_retries')} | batch errors {r.get('batch_errors')} | | |")
    L += ["", "## embedd gRPC server under the Go load generator (closed loop, one text per request)", "",
          "| label | backend | concurrency | sentences/s | tokens/s | mean tokens | p50 ms | p99 ms | mean batch | errors |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in rep["server"].items():
        for run in r.get("runs", []):
            mb = ""
            if run.get("batch"):
                batches = sum(b.get("batches", 0) for b in run["batch"])
                items = sum(b.get("items", 0) for b in run["batch"])
                mb = f"{items / batches:.1f}" if batches else ""
            L.append(f"| {label} | {r.get('backend', '')} | {run.get('concurrency')} | {run['sentences_per_s']:.0f} | {run['tokens_per_s']:.0f} | "
                     f"{run.get('mean_tokens', 0):.1f} | {run['latency_ms']['p50']:.2f} | {run['latency_ms']['p99']:.2f} | {mb} | {run.get('errors') or ''} |")
    t = rep.get("torch") or {}
    L += ["", f"## sentence-transformers {t.get('sentence_transformers', '?')} (torch {t.get('torch', '?')}, CUDA {t.get('torch_cuda', '?')}), same run", "",
          "| precision | texts | batch | mean tokens | sentences/s | tokens/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|---|---|"]
    for run in t.get("runs", []):
        L.append(f"| {run['precision']} | {run['texts']} | {run['batch']} | {run['mean_tokens']} | {run['sentences_per_s']:.0f} | {run['tokens_per_s']:.0f} | {run['p50_ms']} | {run['p99_ms']} |")
    L += ["", "## Server metrics (device)", "", "```"] + rep.get("metrics", []) + ["```", "", "## Steps", "", "| step | rc | seconds |", "|---|---|---|"]
    for s in rep["steps"]:
        L.append(f"| {s['step']} | {s['rc']} | {s['seconds']} |")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
