#!/usr/bin/env python3
"""Baselines of `benches/src/bin/video.rs`, in Python with PyAV (FFmpeg's libraries):

- `sample`: 1-in-F sampling of one video as a PyAV user writes it — decode every frame in
  order, keep sample k as the last frame whose time is <= k / F, convert the samples to RGB
  (numpy). Prints {"frames", "samples", "secs"}.
- `job`: the whole job over a folder of videos: PyAV sampling as above, each sample through
  the model's transformers image processor, PyTorch eager on batches, top-1 through id2label,
  one CSV row per sample (image_id, frame, time_s, classification). The model is the folder's
  architecture from its config.json (random weights, as our side's ONNX export of it).
  Prints {"videos", "samples", "secs"}.

    python3 benches/python/video_baseline.py sample --video V --fps 1
    python3 benches/python/video_baseline.py job --input DIR --model DIR --output F --fps 1 \
        [--threads 2] [--batch 64]
"""

import argparse
import csv
import json
import os
import time
from fractions import Fraction

import av

EPS = 1e-7


def samples(path, fps):
    """Yields (k, rgb ndarray) of the video at `path`, decoding every frame."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        tb = Fraction(stream.time_base)
        if stream.duration:
            end = float(stream.duration * tb)
        else:
            end = container.duration / 1e6
        origin, prev, k = None, None, 0
        for frame in container.decode(stream):
            if origin is None:
                origin = frame.pts
            t = float((frame.pts - origin) * tb)
            while prev is not None and k / fps < t - EPS:
                yield k, prev.to_ndarray(format="rgb24")
                k += 1
            prev = frame
        while prev is not None and k / fps < end - EPS:
            yield k, prev.to_ndarray(format="rgb24")
            k += 1


def sample(args):
    start = time.perf_counter()
    n = sum(1 for _ in samples(args.video, args.fps))
    secs = time.perf_counter() - start
    with av.open(args.video) as c:
        frames = c.streams.video[0].frames
    print(json.dumps({"frames": frames, "samples": n, "secs": secs}))


def job(args):
    import torch
    from PIL import Image
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    config = AutoConfig.from_pretrained(args.model)
    model = AutoModelForImageClassification.from_config(config).eval()
    processor = AutoImageProcessor.from_pretrained(args.model)
    rows, batch, keys = [], [], []

    def flush():
        if not batch:
            return
        with torch.no_grad():
            pixels = processor(images=batch, return_tensors="pt")["pixel_values"]
            top = model(pixel_values=pixels).logits.argmax(-1).tolist()
        for (stem, k), i in zip(keys, top):
            rows.append((stem, k, f"{k / args.fps:.3f}", config.id2label[i]))
        batch.clear()
        keys.clear()

    videos = sorted(os.listdir(args.input))
    for name in videos:
        stem = os.path.splitext(name)[0]
        for k, rgb in samples(os.path.join(args.input, name), args.fps):
            batch.append(Image.fromarray(rgb))
            keys.append((stem, k))
            if len(batch) == args.batch:
                flush()
    flush()
    with open(args.output, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "frame", "time_s", "classification"])
        w.writerows(rows)
    secs = time.perf_counter() - start
    print(json.dumps({"videos": len(videos), "samples": len(rows), "secs": secs}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--video", required=True)
    s.add_argument("--fps", type=float, default=1.0)
    j = sub.add_parser("job")
    j.add_argument("--input", required=True)
    j.add_argument("--model", required=True)
    j.add_argument("--output", required=True)
    j.add_argument("--fps", type=float, default=1.0)
    j.add_argument("--threads", type=int, default=2)
    j.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    sample(args) if args.mode == "sample" else job(args)


if __name__ == "__main__":
    main()
