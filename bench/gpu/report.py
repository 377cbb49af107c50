#!/usr/bin/env python3
"""Assemble the GPU device check's report (bench/gpu/check.sh, last step).

Reads what the check left in --work and writes --out/gpu-report.json and
--out/gpu-report.md: the machine, parity (cosine of embedd on CUDA to the
CPU reference computed by prepare.sh and to sentence-transformers on the
same weights), in-process throughput and latency, IoBinding and worker
variants, the out-of-memory split run, the gRPC server under the Go load
generator, sentence-transformers' best batch in the same run, achieved
TFLOP/s, the server's device metrics, and each target with pass/fail.

The native CUDA encoder (call 3) has its own section: its test binary's
results, compute-sanitizer's error counts, parity, throughput beside ONNX
Runtime CUDA (in process and under the server) and sentence-transformers,
and the GPU footprint of the cuda-tagged binary. A step the check skipped
(native steps in a dry run: they need a GPU) makes its targets SKIP, not
FAIL. Needs only Python 3 and numpy.
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
        rep["probe"] = open(os.path.join(W, "probe.txt")).read()
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

    native_section(rep, W, a.out, par, refs, st, inproc, load, torch)

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

    T.update(rep["native"].pop("targets"))

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "gpu-report.json"), "w") as f:
        json.dump(rep, f, indent=2)
    with open(os.path.join(a.out, "gpu-report.md"), "w") as f:
        f.write(markdown(rep, cfg))


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def sanitizer_errors(log):
    """Errors compute-sanitizer reported in a step's log, or None if it has
    no summary (the run did not finish)."""
    if log is None:
        return None
    m = re.findall(r"(?:ERROR|RACECHECK) SUMMARY: (\d+) (?:error|hazard)", log)
    if not m:
        return None
    # racecheck: "RACECHECK SUMMARY: N hazards displayed (E errors, W warnings)"
    e = re.findall(r"SUMMARY: \d+ hazards? displayed \((\d+) errors?", log)
    return int(e[-1]) if e else int(m[-1])


OWN_KERNELS = ("embed_ln", "bias_gelu", "bias_residual_ln", "attention", "pool")


def hazards_by_kernel(log):
    """Racecheck hazards by the kernel of their reading or writing thread
    ("Read Thread (..) at KERNEL+0x.."), or None without a summary."""
    if log is None or sanitizer_errors(log) is None:
        return None
    counts = {}
    for m in re.finditer(r"Error: Potential \w+ hazard.*?\n=+\s+(?:Read|Write) Thread \([^)]*\) at (\w+)", log):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def kernel_times(log):
    """GPU time by kernel from ncu's CSV (gpu__time_duration.sum), largest
    first, or None."""
    if not log:
        return None
    import csv
    rows = [r for r in csv.reader(l for l in log.splitlines() if l.startswith('"')) if len(r) > 10]
    if not rows or "Kernel Name" not in rows[0]:
        return None
    h = rows[0]
    ki, vi, ui = h.index("Kernel Name"), h.index("Metric Value"), h.index("Metric Unit")
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}
    agg = {}
    for r in rows[1:]:
        if r[ui] not in scale:
            continue
        name = re.sub(r"\(.*", "", r[ki])[:60]
        n, t = agg.get(name, (0, 0.0))
        agg[name] = (n + 1, t + float(r[vi].replace(",", "")) * scale[r[ui]])
    total = sum(t for _, t in agg.values()) or 1.0
    return [{"kernel": k, "n": n, "total_us": round(t, 1), "mean_us": round(t / n, 1), "share": t / total}
            for k, (n, t) in sorted(agg.items(), key=lambda kv: -kv[1][1])]


def go_test_counts(log):
    if log is None:
        return None
    c = {k: len(re.findall(rf"^\s*--- {k.upper()}: ", log, re.M)) for k in ("pass", "fail", "skip")}
    c["failed"] = re.findall(r"^\s*--- FAIL: (\S+)", log, re.M)
    c["skipped"] = re.findall(r"^\s*--- SKIP: (\S+)", log, re.M)
    c["ok"] = bool(re.search(r"^PASS$", log, re.M)) and c["fail"] == 0
    return c


def ratio(a, b):
    """a / b rounded, or None when either is missing or b is zero."""
    if not a or not b:
        return None
    return round(a / b, 2)


def native_section(rep, W, out, par, refs, st, inproc, load, torch):
    """Fill rep["native"] (with a "targets" dict the caller merges)."""
    steps = {s["step"]: s for s in rep["steps"]}
    N = {"targets": {}, "skipped": {k: v.get("skipped") for k, v in steps.items() if v.get("skipped") and k.startswith(("native", "load-native"))}}
    T = N["targets"]
    rep["native"] = N

    def skipped(*names):
        for n in names:
            s = steps.get(n)
            if s and s.get("skipped"):
                return s["skipped"]
        return None

    def target(name, step_names, got, pass_):
        why = skipped(*step_names)
        if why:
            T[name] = {"skipped": why, "pass": None}
        elif not any(n in steps for n in step_names):
            T[name] = {"not_run": True, "pass": None}
        else:
            T[name] = dict(got, **{"pass": bool(pass_)})

    # The test binary (step logs are kept in $W/steps, so the report after
    # call 3 still reads those of call 2).
    tlog = read_text(os.path.join(W, "steps", "native-cuda-test.log"))
    tc = go_test_counts(tlog)
    N["cuda_test"] = tc
    rc = steps.get("native-cuda-test", {}).get("rc")
    target("native cuda.test (kernels, parity with the CPU twin)", ["native-cuda-test"],
           {"rc": rc, "pass_count": tc and tc["pass"], "fail_count": tc and tc["fail"], "skip_count": tc and tc["skip"],
            "failed": tc and tc["failed"][:10], "skipped_tests": tc and tc["skipped"][:10]},
           rc == 0 and tc and tc["ok"] and tc["pass"] > 0)

    # compute-sanitizer.
    san = {}
    for name in ("native-memcheck-fp16", "native-memcheck-fp32", "native-racecheck-fp16"):
        log = read_text(os.path.join(W, "steps", name + ".log"))
        san[name] = {"errors": sanitizer_errors(log),
                     "rc": steps.get(name, {}).get("rc"), "seconds": steps.get(name, {}).get("seconds")}
        if "racecheck" in name:
            san[name]["hazards_by_kernel"] = hazards_by_kernel(log)
    N["sanitizer"] = san
    for name, v in san.items():
        if "racecheck" in name:
            # racecheck runs with every kernel instrumented (its kernel filter
            # crashes the tool on cuBLAS's fp16 Hopper kernels) and reports
            # hazards in cuBLAS's nvjet kernels, which synchronize through
            # mbarriers and TMA that racecheck does not model: the target is
            # no hazard in embedd's own kernels, with a finished run.
            own = {k: n for k, n in (v["hazards_by_kernel"] or {}).items() if k.split("_f")[0] in OWN_KERNELS}
            v["own_kernel_hazards"] = own
            hk = v["hazards_by_kernel"]
            v["attributed"] = hk is not None and sum(hk.values()) == v["errors"]
            target(f"compute-sanitizer {name[len('native-'):]}: 0 hazards in embedd's kernels", [name], v,
                   v["attributed"] and not own)
            continue
        target(f"compute-sanitizer {name[len('native-'):]}: 0 errors", [name], v, v["errors"] == 0 and v["rc"] == 0)

    N["kernel_times"] = kernel_times(read_text(os.path.join(W, "steps", "native-ncu-long256.log")))

    # Parity.
    for prec in ("fp32", "fp16"):
        v, dev = vectors_embedd(os.path.join(W, "vec", f"native-{prec}.json"))
        ort, _ = vectors_embedd(os.path.join(W, "vec", f"cuda-{prec}.json"))
        rep["parity_devices"][f"native-{prec}"] = dev
        par[f"native-{prec} vs torch-{prec}"] = cos_stats(v, st[prec])
        par[f"native-{prec} vs torch-fp32"] = cos_stats(v, st["fp32"])
        par[f"native-{prec} vs cpu-{prec}"] = cos_stats(v, refs[prec])
        par[f"native-{prec} vs onnxruntime-cuda-{prec}"] = cos_stats(v, ort)
    for prec, want in (("fp32", 0.9999), ("fp16", 0.999)):
        for ref in (f"torch-{prec}", f"cpu-{prec}"):
            s = par.get(f"native-{prec} vs {ref}")
            dev = rep["parity_devices"].get(f"native-{prec}")
            target(f"native parity {prec} (vs {ref})", [f"native-parity-{prec}"],
                   {"want_min_cos": want, "got": s, "device": dev},
                   s and s["min"] >= want and dev and dev.startswith("cuda-native"))

    # In process, native beside ONNX Runtime CUDA (same texts, batch).
    ratios = []
    for prec in ("fp16", "fp32"):
        nat, ort = inproc.get(f"native-{prec}"), inproc.get(prec)
        if not nat:
            continue
        ort_runs = {(os.path.basename(r["texts"]), r["batch"]): r for r in (ort or {}).get("runs", [])}
        for r in nat.get("runs", []):
            key = (os.path.basename(r["texts"]), r["batch"])
            o = ort_runs.get(key)
            ratios.append({"precision": prec, "texts": key[0][:-len(".jsonl")] if key[0].endswith(".jsonl") else key[0], "batch": key[1],
                           "native_backend": nat.get("backend"), "native_sentences_per_s": round(r["sentences_per_s"], 1),
                           "native_p50_ms": round(r["p50_ms"], 3), "native_p99_ms": round(r["p99_ms"], 3),
                           "ort_sentences_per_s": o and round(o["sentences_per_s"], 1), "ort_p99_ms": o and round(o["p99_ms"], 3),
                           "ratio": ratio(r["sentences_per_s"], o and o["sentences_per_s"])})
    N["inproc"] = ratios

    # The server: native vs ONNX Runtime CUDA vs sentence-transformers, mixed texts.
    def closed(label, conc):
        for run in (load.get(label) or {}).get("runs", []):
            if run.get("concurrency") == conc:
                return run
        return None
    srv = {}
    for texts in ("mixed", "short16"):
        for conc in (1, 256):
            n, o = closed(f"native-fp16-{texts}", conc), closed(f"fp16-{texts}", conc)
            srv[f"{texts} c={conc}"] = {
                "native_sentences_per_s": n and round(n["sentences_per_s"], 1), "native_p50_ms": n and round(n["latency_ms"]["p50"], 3),
                "native_p99_ms": n and round(n["latency_ms"]["p99"], 3),
                "ort_sentences_per_s": o and round(o["sentences_per_s"], 1), "ort_p99_ms": o and round(o["latency_ms"]["p99"], 3),
                "ratio": ratio(n and n["sentences_per_s"], o and o["sentences_per_s"])}
    N["server"] = srv
    n, o = closed("native-fp16-mixed", 256), closed("fp16-mixed", 256)
    best = (torch.get("best") or {}).get("fp16/mixed")
    r = ratio(n and n["sentences_per_s"], o and o["sentences_per_s"])
    target("native server mixed c=256 vs ONNX Runtime CUDA", ["load-native-fp16-mixed"],
           {"want_ratio": 1.3, "native_sentences_per_s": n and round(n["sentences_per_s"], 1),
            "ort_sentences_per_s": o and round(o["sentences_per_s"], 1), "ratio": r}, r and r >= 1.3)
    r = ratio(n and n["sentences_per_s"], best and best["sentences_per_s"])
    target("native server mixed c=256 vs torch fp16 best batch", ["load-native-fp16-mixed"],
           {"want_ratio": 2.0, "native_sentences_per_s": n and round(n["sentences_per_s"], 1),
            "torch_sentences_per_s": best and best["sentences_per_s"], "torch_batch": best and best["batch"], "ratio": r}, r and r >= 2.0)

    # The native server's metrics: native backend for both models, no
    # fallback, no CPU retry; GPU memory gauges present.
    lines = (read_text(os.path.join(W, "metrics-native.txt")) or "").splitlines()
    keep = [l for l in lines if re.match(r"embedd_(model_backend|cpu_retries_total|oom_splits_total|batch_errors_total|gpu_memory)", l)]
    N["metrics"] = keep
    backends = [l for l in keep if l.startswith("embedd_model_backend")]
    retries = [l for l in keep if l.startswith("embedd_cpu_retries_total") and not l.rstrip().endswith(" 0")]
    gpumem = [l for l in keep if l.startswith("embedd_gpu_memory")]
    target("native server: native backend, no fallback, GPU memory gauges", ["load-native-fp16-mixed"],
           {"model_backend": backends, "cpu_retries": retries, "gpu_memory": gpumem},
           len(backends) == 2 and all('backend="native/cuda:0"' in l and 'fallback="false"' in l for l in backends) and not retries and len(gpumem) == 2)

    # Footprint: the cuda-tagged binary with the PTX inside it.
    sizes = load_json(os.path.join(W, "sizes.json")) or {}
    N["sizes"] = sizes
    if sizes.get("embedd_cuda_bytes"):
        b = sizes["embedd_cuda_bytes"]
        T["native GPU footprint (cuda-tagged embedd, PTX embedded)"] = {
            "want_bytes_below": 100_000_000, "embedd_cuda_bytes": b, "ptx_bytes": sizes.get("ptx_bytes"),
            "embedd_cpu_bytes": sizes.get("embedd_bytes"), "onnxruntime_gpu_bytes": sizes.get("ort_gpu_bytes"),
            "note": "stripped binary; cuBLAS comes from the CUDA install (dlopen), as for every CUDA program",
            "pass": b < 100_000_000}


def status(v):
    p = v.get("pass")
    if p is None:
        return "SKIP" if v.get("skipped") else "NOT RUN"
    return "PASS" if p else "FAIL"


def markdown(rep, cfg):
    L = ["# embedd GPU device check", ""]
    L += ["```", rep.get("probe", "").strip(), "```", ""]
    L += ["## Targets", "", "| target | result | pass |", "|---|---|---|"]
    for k, v in rep["targets"].items():
        shown = {kk: vv for kk, vv in v.items() if kk != "pass"}
        L.append(f"| {k} | `{json.dumps(shown)}` | {status(v)} |")
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
    L += native_markdown(rep.get("native") or {})
    L += ["", "## Server metrics (device)", "", "```"] + rep.get("metrics", []) + ["```", "", "## Steps", "", "| step | rc | seconds | skipped |", "|---|---|---|---|"]
    for s in rep["steps"]:
        L.append(f"| {s['step']} | {s['rc']} | {s['seconds']} | {s.get('skipped', '')} |")
    return "\n".join(L) + "\n"


def native_markdown(N):
    L = ["", "## Native CUDA encoder (--provider cuda-native, no ONNX Runtime)", ""]
    if N.get("skipped"):
        L += ["Steps not run:", ""] + [f"- {k}: {v}" for k, v in N["skipped"].items()] + [""]
    tc = N.get("cuda_test")
    if tc:
        L += [f"cuda.test: {tc['pass']} passed, {tc['fail']} failed, {tc['skip']} skipped" +
              (f"; failed: {', '.join(tc['failed'])}" if tc["failed"] else "") +
              (f"; skipped: {', '.join(tc['skipped'])}" if tc["skipped"] else ""), ""]
    san = N.get("sanitizer") or {}
    if any(v.get("rc") not in (None, -2) for v in san.values()):
        L += ["| compute-sanitizer run | errors | rc | seconds |", "|---|---|---|---|"]
        for k, v in san.items():
            L.append(f"| {k} | {v['errors'] if v['errors'] is not None else 'no summary'} | {v['rc']} | {v['seconds']} |")
        L.append("")
        for k, v in san.items():
            if v.get("hazards_by_kernel"):
                L += [f"{k}, hazards by kernel: " + ", ".join(f"{n} {c}" for n, c in sorted(v["hazards_by_kernel"].items())), ""]
    if N.get("kernel_times"):
        L += ["GPU time per kernel (ncu, fp16, batches of 256 texts of 256 tokens; 120 launches):", "",
              "| kernel | launches | total us | mean us | share |", "|---|---|---|---|---|"]
        for r in N["kernel_times"]:
            L.append(f"| {r['kernel']} | {r['n']} | {r['total_us']} | {r['mean_us']} | {r['share']:.1%} |")
        L.append("")
    if N.get("inproc"):
        L += ["In process (engine, no gRPC), native vs ONNX Runtime CUDA, same texts and batch:", "",
              "| precision | texts | batch | native sentences/s | native p50 ms | native p99 ms | ORT sentences/s | ORT p99 ms | native/ORT |",
              "|---|---|---|---|---|---|---|---|---|"]
        for r in N["inproc"]:
            L.append(f"| {r['precision']} | {r['texts']} | {r['batch']} | {r['native_sentences_per_s']} | {r['native_p50_ms']} | {r['native_p99_ms']} | "
                     f"{r['ort_sentences_per_s'] or '-'} | {r['ort_p99_ms'] or '-'} | {r['ratio'] or '-'} |")
        L.append("")
    if any(v.get("native_sentences_per_s") for v in (N.get("server") or {}).values()):
        L += ["gRPC server under the load generator, fp16, native vs ONNX Runtime CUDA:", "",
              "| texts, concurrency | native sentences/s | native p50 ms | native p99 ms | ORT sentences/s | ORT p99 ms | native/ORT |",
              "|---|---|---|---|---|---|---|"]
        for k, v in N["server"].items():
            L.append(f"| {k} | {v['native_sentences_per_s'] or '-'} | {v['native_p50_ms'] or '-'} | {v['native_p99_ms'] or '-'} | "
                     f"{v['ort_sentences_per_s'] or '-'} | {v['ort_p99_ms'] or '-'} | {v['ratio'] or '-'} |")
        L.append("")
    if N.get("metrics"):
        L += ["```"] + N["metrics"] + ["```", ""]
    sz = N.get("sizes") or {}
    if sz:
        mb = lambda k: f"{sz[k] / 1e6:.1f} MB" if sz.get(k) else "-"
        L += [f"Sizes: embedd (cuda tag, stripped) {mb('embedd_cuda_bytes')}, of which PTX {mb('ptx_bytes')}; embedd (untagged) {mb('embedd_bytes')}; "
              f"cuda.test {mb('cuda_test_bytes')}; ONNX Runtime GPU libraries {mb('ort_gpu_bytes')}; "
              f"carries a {mb('carry_a_bytes')}, b {mb('carry_b_bytes')}, c {mb('carry_c_bytes')} + tree {mb('tree_bytes')}", ""]
    return L


if __name__ == "__main__":
    main()
