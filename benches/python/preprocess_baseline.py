#!/usr/bin/env python3
"""Baseline for `cargo run --release -p dataflux-benches --bin preprocess`.

Times the GKE tutorial's preprocessing on one core: PIL open + convert("RGB"), torchvision
Resize((224, 224)) + ToTensor + Normalize(0.5, 0.5), and PIL decode alone. Prints one JSON line.

    python3 benches/python/preprocess_baseline.py DIR [--size 224] [--repeat 3]
"""

import argparse
import glob
import io
import json
import os
import time

import torch
import torchvision.transforms as T
from PIL import Image


def best_rate(fn, items, repeat):
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for b in items:
            fn(b)
        best = max(best, len(items) / (time.perf_counter() - start))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    files = sorted(glob.glob(os.path.join(args.dir, "*.jpg")))
    blobs = [open(f, "rb").read() for f in files]
    tf = T.Compose([T.Resize((args.size, args.size)), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])

    def full(b):
        return tf(Image.open(io.BytesIO(b)).convert("RGB"))

    def decode(b):
        return Image.open(io.BytesIO(b)).convert("RGB")

    full(blobs[0])
    print(json.dumps({
        "images": len(blobs),
        "tutorial_images_per_s": best_rate(full, blobs, args.repeat),
        "decode_images_per_s": best_rate(decode, blobs, args.repeat),
        "torch": torch.__version__,
        "pillow": Image.__version__,
    }))


if __name__ == "__main__":
    main()
