#!/usr/bin/env python3
"""Baseline for `cargo run --release -p dataflux-benches --bin vit_cpu`.

Times PyTorch eager `ViTForImageClassification` (google/vit-base-patch16-224 shape, random
weights: speed does not depend on the values) in f32 on CPU. Prints one JSON line.

    python3 benches/python/vit_cpu_baseline.py [--threads 2] [--batch 8] [--iters 3]
"""

import argparse
import json
import time

import torch
from transformers import ViTConfig, ViTForImageClassification


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(num_labels=1000)).eval()
    x = torch.randn(args.batch, 3, 224, 224)
    with torch.inference_mode():
        model(pixel_values=x)
        best = float("inf")
        for _ in range(args.iters):
            start = time.perf_counter()
            model(pixel_values=x)
            best = min(best, time.perf_counter() - start)
    print(json.dumps({
        "threads": args.threads,
        "batch": args.batch,
        "images_per_s": args.batch / best,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
