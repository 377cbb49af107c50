#!/usr/bin/env python3
"""Measure this CPU's practical matrix-multiply peak with ONNX Runtime.

The ceiling `make bench` compares the models' achieved GFLOP/s with: the
best rate ONNX Runtime's own GEMM kernels (MLAS, the ones the models run on)
reach on this machine, with one intra-op thread per available core, for
fp32 MatMul and for int8 MatMulInteger (uint8 activations x int8 weights,
the VNNI path the dynamically quantized model uses). Weights are graph
initializers, as in the models, so ORT prepacks them. Shapes: the model's
own (rows = batch x tokens, 384 <-> 1536) and a large square one; the
best of them is the peak. A multiply-add counts as 2 operations.

Prints one JSON object (and writes it to --out when given).
"""

import argparse
import json
import os
import platform
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SHAPES = [(4096, 384, 1536), (4096, 1536, 384), (2048, 2048, 2048)]


def session(kind, k, n):
    rng = np.random.default_rng(1)
    if kind == "fp32":
        w = rng.standard_normal((k, n), dtype=np.float32)
        node = helper.make_node("MatMul", ["a", "w"], ["y"])
        a_type, y_type, inits = TensorProto.FLOAT, TensorProto.FLOAT, [numpy_helper.from_array(w, "w")]
    else:
        w = rng.integers(-127, 128, (k, n), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["a", "w", "az"], ["y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(128, dtype=np.uint8), "az")]
    graph = helper.make_graph(
        [node], "gemm",
        [helper.make_tensor_value_info("a", a_type, ["m", k])],
        [helper.make_tensor_value_info("y", y_type, ["m", n])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = len(os.sched_getaffinity(0))
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def rate(kind, m, k, n, seconds):
    sess = session(kind, k, n)
    rng = np.random.default_rng(2)
    a = rng.standard_normal((m, k), dtype=np.float32) if kind == "fp32" else rng.integers(0, 256, (m, k), dtype=np.uint8)
    sess.run(None, {"a": a})
    runs, t0 = 0, time.perf_counter()
    while True:
        sess.run(None, {"a": a})
        runs += 1
        el = time.perf_counter() - t0
        if el >= seconds:
            return 2.0 * m * k * n * runs / el / 1e9


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.5, help="time per shape")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    res = {"cpu": cpu_model(), "threads": len(os.sched_getaffinity(0)),
           "onnxruntime": ort.__version__, "shapes": {}}
    for kind in ("fp32", "int8"):
        rates = {f"{m}x{k}x{n}": round(rate(kind, m, k, n, args.seconds), 1) for m, k, n in SHAPES}
        res["shapes"][kind] = rates
        res[f"{kind}_peak_gops"] = max(rates.values())
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
