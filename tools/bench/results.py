#!/usr/bin/env python3
"""Write the committed summary of `make bench` (scripts/bench.sh).

For each section that ran, reads its raw output in bench/out/ (not
committed) and writes bench/results/<section>.json: the numbers the README
quotes, with the date, the commit and the machine (CPU model, logical CPUs,
Go version) they were measured on. Then rebuilds bench/results/README.md, one
table per section, from every <section>.json present, so a partial run
updates its own sections and keeps the others.

Usage: results.py [--out bench/out] [--results bench/results] SECTION...
Sections: tokenizer quant memory cache server stores features reembed parity exporter.
Only Python's standard library is used. Never edit the outputs by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import platform
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
SECTIONS = ["tokenizer", "quant", "memory", "cache", "server", "stores", "features", "reembed", "parity", "exporter"]
TITLES = {
    "tokenizer": "Tokenizer throughput: Go vs Hugging Face tokenizers",
    "quant": "Quantization: kernels and quality on real embeddings",
    "memory": "Engine memory over 10,000 batches",
    "cache": "Embedding cache: no-repeat overhead, Zipf speedup, cost per text",
    "server": "gRPC server under load",
    "reembed": "embedd reembed end to end vs the engine alone",
    "stores": "Stores: upsert pipeline, Redis, embedded and Milvus search",
    "features": "Features: ingest and GetFeatures",
    "parity": "Embedding parity: engine vs the Python reference pipeline",
    "exporter": "ONNX exporter vs an independent numpy BertModel",
}
# Go benchmark units left out of the summary: the raw files keep them.
SKIP_UNITS = {"B/op", "allocs/op", "MB/s"}


def rnd(x: float, sig: int) -> float | int:
    """x to sig significant digits, so that reruns give small diffs."""
    if isinstance(x, int) or x == 0 or x != x:
        return x
    return float(f"{x:.{sig}g}")


def row(what: str, value, unit: str = "", sig: int = 6) -> dict:
    """One number of the summary; sig significant digits (more for cosines
    near 1, whose interesting digits come late)."""
    return {"what": what, "value": rnd(value, sig) if isinstance(value, float) else value, "unit": unit}


def go_bench(path: pathlib.Path) -> list[dict]:
    """Every metric of every benchmark line of a `go test -bench` output."""
    rows = []
    for line in path.read_text().splitlines():
        m = re.match(r"^Benchmark(\S+?)(-\d+)?\s+\d+\s+(.*)$", line)
        if not m:
            continue
        fields = m.group(3).split()
        for value, unit in zip(fields[0::2], fields[1::2]):
            if unit in SKIP_UNITS:
                continue
            try:
                rows.append(row(m.group(1), float(value), unit))
            except ValueError:
                pass
    return rows


def tokenizer(out: pathlib.Path) -> list[dict]:
    go = {(r["what"], r["unit"]): r["value"] for r in go_bench(out / "tokenize-go.txt")}
    rows = []
    for line in (out / "tokenize-hf.jsonl").read_text().splitlines():
        hf = json.loads(line)
        limit = f"max{hf['max_length']}" if hf["max_length"] else "full"
        name = f"{hf['subset']}/{limit}"
        gs = go.get((f"Encode/{name}/single", "tokens/s"))
        gp = go.get((f"Encode/{name}/parallel", "tokens/s"))
        rows += [row(f"{name} Go single", gs, "tokens/s"),
                 row(f"{name} HF encode", hf["single_tokens_per_s"], "tokens/s")]
        if gs:
            rows.append(row(f"{name} Go single / HF encode", gs / hf["single_tokens_per_s"], "x"))
        rows += [row(f"{name} Go parallel", gp, "tokens/s"),
                 row(f"{name} HF encode_batch", hf["batch_tokens_per_s"], "tokens/s")]
        if gp:
            rows.append(row(f"{name} Go parallel / HF encode_batch", gp / hf["batch_tokens_per_s"], "x"))
    return rows


def quant(out: pathlib.Path) -> list[dict]:
    rows = [r for r in go_bench(out / "quant-go.txt") if r["unit"] == "ns/op"]
    q = json.loads((out / "quant-quality.json").read_text())
    for name, rep in sorted(q["reports"].items()):
        for key, value in rep.items():
            if isinstance(value, (int, float)):
                rows.append(row(f"{q['model']} {name} {key}", value))
    return rows


def memory(out: pathlib.Path) -> list[dict]:
    return go_bench(out / "engine-memory.txt")


def cache(out: pathlib.Path) -> list[dict]:
    return go_bench(out / "engine-cache.txt") + go_bench(out / "embedcache.txt")


def server(out: pathlib.Path) -> list[dict]:
    """The load runs, the Python baselines, the GEMM peak, then the targets
    as bench/summarize computed them (load/targets.json)."""
    load = out / "load"
    rows = []
    for label in ["batched", "batched-medium", "max_batch_size=1", "q8", "zipf-cache-off", "zipf-cache-on"]:
        rep = json.loads((load / label / "results.json").read_text())
        for run in rep["runs"]:
            c = run.get("concurrency", 0)
            name = f"{label} c={c}" if run["mode"] == "closed" else f"{label} {run['mode']} {run.get('rate', 0):g}/s"
            rows += [row(f"{name} sentences/s", run["sentences_per_s"], "1/s"),
                     row(f"{name} p50", run["latency_ms"]["p50"], "ms"),
                     row(f"{name} p99", run["latency_ms"]["p99"], "ms")]
            if run.get("batch"):
                rows.append(row(f"{name} mean batch", run["batch"][0]["mean"]))
            if run.get("model_run"):
                rows.append(row(f"{name} model run p99 (server histogram)", run["model_run"]["p99_ms"], "ms"))
    for name, file in [("fp32, short", "python-short.json"), ("fp32, medium", "python-medium.json"), ("q8, short", "python-q8-short.json")]:
        for r in json.loads((load / file).read_text())["results"]:
            rows.append(row(f"Python onnxruntime {name}, batch {r['batch_size']}", r["sentences_per_s"], "1/s"))
    peak = json.loads((load / "gemm-peak.json").read_text())
    rows += [row("ONNX Runtime GEMM peak fp32", peak["fp32_peak_gops"], "GFLOP/s"),
             row("ONNX Runtime GEMM peak int8", peak["int8_peak_gops"], "GOP/s")]
    for t in json.loads((load / "targets.json").read_text()):
        verdict = "" if t.get("met") is None else (" (target %s: %s)" % (t["target"], "met" if t["met"] else "MISSED"))
        rows.append(row(t["what"].strip() + ": " + t["measured"] + verdict, t["value"], t["unit"].strip()))
    return rows


def reembed(out: pathlib.Path) -> list[dict]:
    return go_bench(out / "reembed.txt")


def stores(out: pathlib.Path) -> list[dict]:
    rows = []
    for name in ["stores-upsert.txt", "stores-redis.txt", "stores-embedded-search.txt"]:
        rows += go_bench(out / name)
    # The embedded benchmark logs its ef sweep and its reopen time.
    for line in (out / "stores-embedded-search.txt").read_text().splitlines():
        if m := re.search(r"ef (\d+): p50 ([\d.]+) ms, p99 ([\d.]+) ms, recall@10 ([\d.]+)", line):
            what = f"EmbeddedSearch100k ef {m.group(1)}"
            rows += [row(f"{what} p50", float(m.group(2)), "ms"), row(f"{what} p99", float(m.group(3)), "ms"),
                     row(f"{what} recall@10", float(m.group(4)))]
        elif m := re.search(r"reopen from the graph snapshot: (\S+)", line):
            rows.append(row("EmbeddedSearch100k reopen from the graph snapshot", m.group(1)))
    for line in (out / "stores-milvus.txt").read_text().splitlines():
        if m := re.match(r"upsert: [\d.]+s, ([\d.]+) vectors/s", line):
            rows.append(row("Milvus upsert", float(m.group(1)), "vectors/s"))
        elif m := re.match(r"search top-(\d+), consistency (\w+),.*p50 ([\d.]+) ms, p99 ([\d.]+) ms.*recall@\d+ ([\d.]+)", line):
            what = f"Milvus top-{m.group(1)} {m.group(2)}"
            rows += [row(f"{what} p50", float(m.group(3)), "ms"), row(f"{what} p99", float(m.group(4)), "ms"),
                     row(f"{what} recall@{m.group(1)}", float(m.group(5)))]
    return rows


def features(out: pathlib.Path) -> list[dict]:
    return go_bench(out / "features.txt")


def parity(out: pathlib.Path) -> list[dict]:
    rows = []
    text = (out / "parity.txt").read_text()
    for m in re.finditer(r"(\S+): (\d+) texts, min cosine ([\d.]+) \(text \d+\), max \|diff\| (\S+)", text):
        rows += [row(f"{m.group(1)}: min cosine over {m.group(2)} texts", float(m.group(3)), sig=10),
                 row(f"{m.group(1)}: max abs diff", float(m.group(4)))]
    rows.append(row("TestParity", "PASS" if re.search(r"^--- PASS: TestParity ", text, re.M) else "FAIL"))
    return rows


def exporter(out: pathlib.Path) -> list[dict]:
    v = json.loads((out / "exporter-verify.json").read_text())
    p = v["parity"]
    rows = [
        row("token graph sha256", v["sha256"]),
        row("onnx.checker (full)", v["checker"]),
        row("canonical protobuf (onnx re-serializes to the same bytes)", v["canonical_protobuf"]),
        row(f"max abs diff over real tokens ({p['sentences']} sentences)", p["max_abs_diff_real_tokens"]),
        row("max abs diff over all positions", p["max_abs_diff_all_positions"]),
        row("min sentence cosine vs numpy", p["min_cosine_vs_numpy"], sig=13),
    ]
    if "vs_int8" in v:
        rows += [row("int8 export: mean cosine vs numpy", v["vs_int8"]["mean_cosine_int8_vs_numpy"]),
                 row("int8 export: min cosine vs numpy", v["vs_int8"]["min_cosine_int8_vs_numpy"])]
    t = v["timing"]
    rows.append(row(f"onnxruntime batch {t['batch']} x {t['sequence']} tokens, median", t["ours_ms_median"], "ms"))
    variants = json.loads((out / "exporter-variants.json").read_text())
    checks = variants["checks"]
    rows.append(row("variant checks passed (verify_variants.py)", f"{sum(c['ok'] for c in checks)}/{len(checks)}"))
    rows += [row(c["what"], "ok" if c["ok"] else "FAIL") for c in checks if "cosine" in c["what"]]
    return rows


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gover = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cpus": os.cpu_count(), "os": f"{platform.system().lower()}/{platform.machine()}", "go": gover}


def commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short=12", "HEAD")
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not v.is_integer() or abs(v) >= 1e15:
            return repr(v)  # the shortest form of the stored digits
        v = int(v)
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    return str(v)


def readme(results: pathlib.Path) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (scripts/bench.sh, then tools/bench/results.py) from",
        "the raw output in bench/out/, one `<section>.json` per section; never edited",
        "by hand. `scripts/bench.sh SECTION...` reruns some sections and keeps the",
        "others. Each section says when, at which commit and on which machine it ran.",
        "",
    ]
    for s in SECTIONS:
        path = results / f"{s}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        m = r["machine"]
        lines += [f"## {TITLES[s]} (`{s}.json`)", "",
                  f"{r['date']}, commit {r['commit']}, {m['cpu']} ({m['cpus']} CPUs), {m['os']}, {m['go']}.", "",
                  "| what | value | unit |", "|---|---|---|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in (x["what"], fmt(x["value"]), x["unit"])) + " |"
                  for x in r["rows"]]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=REPO / "bench/out")
    ap.add_argument("--results", type=pathlib.Path, default=REPO / "bench/results")
    ap.add_argument("sections", nargs="+", choices=SECTIONS)
    args = ap.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)
    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"), "commit": commit(), "machine": machine()}
    for s in args.sections:
        rows = globals()[s](args.out)
        doc = {"section": s, "title": TITLES[s], **meta, "command": f"scripts/bench.sh {s}", "rows": rows}
        (args.results / f"{s}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {args.results / (s + '.json')} ({len(rows)} numbers)", file=sys.stderr)
    (args.results / "README.md").write_text(readme(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
