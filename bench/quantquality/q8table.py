#!/usr/bin/env python3
"""Join q8variants.sh's outputs into one markdown quality-vs-speed table.

Reads variants.json (bench/quantquality/q8variants: options, sha256, size),
quality*.json (bench/quantquality -onnx -json: cosine and recall@k against
the fp32 model on the Go sentences and the parity corpus) and speed.json
(bench/quantquality/q8speed.py: throughput relative to fp32), and prints
markdown: one row per variant, with whether it meets the targets (cosine
mean >= --cos and recall@k >= --recall on both sets, best-batch speed >=
--speed x fp32) and, among those that do, the fastest.

Usage: q8table.py WORKDIR [--cos 0.99] [--recall 0.97] [--speed 1.7]
"""

import argparse
import json
import os


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work")
    ap.add_argument("--cos", type=float, default=0.99)
    ap.add_argument("--recall", type=float, default=0.97)
    ap.add_argument("--speed", type=float, default=1.7)
    args = ap.parse_args()

    def load(name):
        p = os.path.join(args.work, name)
        if not os.path.exists(p):
            return None
        with open(p, encoding="utf-8") as f:
            return json.load(f)

    variants = {v["name"]: v for v in load("variants.json") or []}
    # quality*.json: several quality runs (e.g. of variants added later) may
    # be joined; a later file (in name order) wins for the same label.
    quality = {}
    for name in sorted(f for f in os.listdir(args.work) if f.startswith("quality") and f.endswith(".json")):
        quality.update({r["label"]: r for r in (load(name) or {}).get("files", [])})
    speed_doc = load("speed.json") or {}
    speed = {r["label"]: r for r in speed_doc.get("rows", [])}
    ref = speed_doc.get("reference", "fp32")
    sizes = sorted({int(b) for r in speed.values() for b in r["sentences_per_s"]})

    print(f"| variant | fp32 parts | size MB | sent cos mean | sent cos min | sent R@10 | parity cos mean | parity cos min "
          f"| parity R@10 | {' | '.join(f'b{b}/s' for b in sizes)} | best b | x {ref} best (median) | x {ref} b32 | meets |")
    print("|" + "---|" * (12 + len(sizes)))
    names = list(dict.fromkeys([ref] + list(variants) + list(quality) + list(speed)))
    best = None
    for n in names:
        v, q, s = variants.get(n), quality.get(n), speed.get(n)
        spec = (v["spec"] or "(none)") if v else ("all (reference)" if n == ref else "?")
        size = f"{v['size'] / 1e6:.1f}" if v else "-"
        cells = []
        ok = n != ref
        for key in ("go-sentences", "parity-corpus"):
            c = (q or {}).get("comparisons", {}).get(key)
            if c:
                cells += [f"{c['cosine_mean']:.4f}", f"{c['cosine_min']:.4f}", f"{c['recall']:.3f}"]
                ok = ok and c["cosine_mean"] >= args.cos and c["recall"] >= args.recall
            else:
                cells += ["1", "1", "1"] if n == ref else ["-", "-", "-"]
                ok = False
        if s:
            cells += [f"{s['sentences_per_s'][str(b)]:.0f}" if str(b) in s["sentences_per_s"] else "-" for b in sizes]
            cells += [str(s["best_batch"]), f"{s['ratio_best']:.2f} ({s['ratio_best_median']:.2f})",
                      f"{s['ratio_b32']:.2f}" if s.get("ratio_b32") else "-"]
            ok = ok and s["ratio_best"] >= args.speed
        else:
            cells += ["-"] * (len(sizes) + 3)
            ok = False
        if ok and (best is None or s["ratio_best"] > speed[best]["ratio_best"]):
            best = n
        print(f"| {n} | {spec} | {size} | " + " | ".join(cells) + f" | {'yes' if ok else ''} |")
    print()
    print(f"Targets: cosine mean >= {args.cos} and recall@10 >= {args.recall} on both sets, "
          f">= {args.speed}x {ref} at best batch (Python onnxruntime in process).")
    if best:
        v = variants[best]
        print(f"Fastest variant meeting them: **{best}** (fp32 parts: {v['spec']}; "
              f"model.onnx sha256 {v['sha256']}, {v['size']} bytes).")
    else:
        print("No variant meets all targets.")


if __name__ == "__main__":
    main()
