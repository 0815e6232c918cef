#!/usr/bin/env python3
"""Baseline of `onnx_cpu --job`: the GKE tutorial's job shape on CPU over a folder of photos —
a torch DataLoader over the files (PIL open + convert("RGB"), the model's own transformers image
processor), PyTorch eager on batches, top-1 through id2label, a CSV written at the end. The model
is the ONNX folder's architecture from its config.json (random weights). Prints one JSON line.

    python3 benches/python/tutorial_job_baseline.py --model DIR --input DIR --output FILE \
        [--threads 2] [--batch 64] [--workers 0]

`--workers 0` is the tutorial's own loading (no DataLoader workers).
"""

import argparse
import csv
import json
import os
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification


class Photos(Dataset):
    def __init__(self, folder, processor):
        self.paths = sorted(os.path.join(folder, n) for n in os.listdir(folder))
        self.processor = processor

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        path = self.paths[i]
        image = Image.open(path).convert("RGB")
        pixels = self.processor(images=image, return_tensors="pt")["pixel_values"][0]
        return pixels, os.path.splitext(os.path.basename(path))[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    config = AutoConfig.from_pretrained(args.model)
    torch.manual_seed(0)
    model = AutoModelForImageClassification.from_config(config).eval()
    processor = AutoImageProcessor.from_pretrained(args.model, use_fast=False)
    loader = DataLoader(Photos(args.input, processor), batch_size=args.batch, num_workers=args.workers)
    rows = []
    with torch.inference_mode():
        for pixels, ids in loader:
            logits = model(pixel_values=pixels).logits
            for image_id, k in zip(ids, logits.argmax(-1).tolist()):
                rows.append((image_id, config.id2label[k]))
    with open(args.output, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "classification"])
        w.writerows(rows)
    secs = time.perf_counter() - start
    print(json.dumps({"images": len(rows), "secs": secs, "images_per_s": len(rows) / secs,
                      "torch": torch.__version__, "workers": args.workers}))


if __name__ == "__main__":
    main()
