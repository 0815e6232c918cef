#!/usr/bin/env python3
"""Baseline for the CLIP preprocessing bench of dataflux-benches.

Times transformers' PIL CLIP image processor on one core, from encoded bytes to the normalised
array: `CLIPImageProcessorPil` (transformers 5.x; `CLIPImageProcessor` on 4.x, which is the PIL
one there) with openai/clip-vit-base-patch32's settings: convert to RGB (alpha composited on
white), resize the shortest edge to SIZE (bicubic, PIL `Image.resize`), centre crop SIZE x SIZE,
rescale 1/255, normalise with CLIP's mean/std; one image per call, decode included
(`Image.open(BytesIO(bytes))` is handed to the processor, which decodes while converting). Also
times PIL decode alone (open + convert("RGB")), as preprocess_baseline.py does. Needs only
transformers, pillow and numpy (no torchvision). Prints one JSON line.

    python3 benches/python/clip_preprocess_baseline.py DIR [--size 224] [--repeat 3]

DIR/*.jpg are the inputs, sorted, as in preprocess_baseline.py.
"""

import argparse
import glob
import io
import json
import os
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402

try:
    from transformers import CLIPImageProcessorPil as Processor
except ImportError:  # transformers 4: CLIPImageProcessor is the PIL one
    from transformers import CLIPImageProcessor as Processor

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


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
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    files = sorted(glob.glob(os.path.join(args.dir, "*.jpg")))
    blobs = [open(f, "rb").read() for f in files]
    proc = Processor(
        size={"shortest_edge": args.size},
        crop_size={"height": args.size, "width": args.size},
        resample=3,
        do_center_crop=True,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        do_convert_rgb=True,
    )

    def full(b):
        return proc(images=Image.open(io.BytesIO(b)), return_tensors="np")["pixel_values"]

    def decode(b):
        return Image.open(io.BytesIO(b)).convert("RGB")

    first = full(blobs[0])
    assert first.shape == (1, 3, args.size, args.size) and first.dtype == np.float32, first.shape
    print(json.dumps({
        "images": len(blobs),
        "images_per_s": best_rate(full, blobs, args.repeat),
        "decode_images_per_s": best_rate(decode, blobs, args.repeat),
        "processor": Processor.__name__,
        "transformers": transformers.__version__,
        "pillow": Image.__version__,
    }))


if __name__ == "__main__":
    main()
