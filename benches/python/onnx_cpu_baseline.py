#!/usr/bin/env python3
"""Baselines of `onnx_cpu`, same run, same threads: the model alone through ONNX Runtime's
Python API (the same model.onnx) and through PyTorch eager (the same architecture, from the
folder's config.json, random weights). Prints one JSON line.

    python3 benches/python/onnx_cpu_baseline.py --model DIR [--threads 2] [--batch 8] [--iters 3]
"""

import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort
import torch
from transformers import AutoConfig, AutoModelForImageClassification


def best_of(fn, iters):
    fn()
    best = float("inf")
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args()

    x = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224), dtype=np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(
        os.path.join(args.model, "model.onnx"), so, providers=["CPUExecutionProvider"]
    )
    name = sess.get_inputs()[0].name
    ort_s = best_of(lambda: sess.run(None, {name: x}), args.iters)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AutoModelForImageClassification.from_config(AutoConfig.from_pretrained(args.model)).eval()
    t = torch.from_numpy(x)
    with torch.inference_mode():
        torch_s = best_of(lambda: model(pixel_values=t), args.iters)

    print(json.dumps({
        "threads": args.threads,
        "batch": args.batch,
        "ort_python_images_per_s": args.batch / ort_s,
        "torch_images_per_s": args.batch / torch_s,
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
