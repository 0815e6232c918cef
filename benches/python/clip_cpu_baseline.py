#!/usr/bin/env python3
"""Baseline for the CLIP image-embedding CPU bench of dataflux-benches.

Times PyTorch eager `CLIPVisionModelWithProjection` with `CLIPVisionConfig()` defaults, the shape
of openai/clip-vit-base-patch32 (hidden 768, 12 layers, 12 heads, patch 32, 224x224, projection
512, quick_gelu; random weights: speed does not depend on the values) in f32 on CPU. What is timed
is `image_embeds` followed by the L2 normalisation (also in torch, as the Rust side normalises
too), best of ITERS after one warm-up. Prints one JSON line.

    python3 benches/python/clip_cpu_baseline.py [--threads 2] [--batch 8] [--iters 3]
"""

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig()).eval()
    x = torch.randn(args.batch, 3, 224, 224)

    def embed():
        e = model(pixel_values=x).image_embeds
        return e / e.norm(p=2, dim=-1, keepdim=True)

    with torch.inference_mode():
        assert embed().shape == (args.batch, 512)
        best = float("inf")
        for _ in range(args.iters):
            start = time.perf_counter()
            embed()
            best = min(best, time.perf_counter() - start)
    print(json.dumps({
        "threads": args.threads,
        "batch": args.batch,
        "images_per_s": args.batch / best,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
