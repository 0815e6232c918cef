#!/usr/bin/env python3
"""The same-run baselines of benches/gpu-check.sh, on the GPU machine's own PyTorch:

    gpu_baselines.py throughput --model DIR --batch 64 --batch 256 [--device cuda] [--dtype bf16]
    gpu_baselines.py job --model DIR --input DIR --output FILE [--device cuda] [--dtype bf16]
        [--batch 64] [--workers N]

`throughput`: Hugging Face's ViTForImageClassification (the checkpoint gpu_check wrote) in
bf16, forward passes on random pixels at each batch size, as `gpu_check throughput` measures
ours. `job`: the GKE tutorial's job over the same JPEGs — a torch DataLoader (PIL open +
convert("RGB"), Resize((224, 224)), ToTensor, Normalize(0.5, 0.5) as the tutorial writes it),
the model in bf16 on the GPU, top-1 through id2label, a CSV written at the end. Each prints one
JSON line per measurement.
"""

import argparse
import csv
import json
import os
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset


def dtype_of(name):
    return {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[name]


def load(model_dir, device, dtype):
    from transformers import ViTForImageClassification

    model = ViTForImageClassification.from_pretrained(model_dir, torch_dtype=dtype)
    return model.to(device).eval()


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput(args):
    dtype = dtype_of(args.dtype)
    model = load(args.model, args.device, dtype)
    size = model.config.image_size
    for batch in args.batch:
        pixels = torch.randn(batch, 3, size, size, device=args.device, dtype=dtype)
        with torch.inference_mode():
            for _ in range(args.warmup):
                model(pixel_values=pixels)
            sync(args.device)
            start = time.perf_counter()
            for _ in range(args.iters):
                model(pixel_values=pixels)
            sync(args.device)
            secs = time.perf_counter() - start
        print(json.dumps({
            "baseline": "transformers_vit",
            "dtype": args.dtype,
            "device": args.device,
            "batch": batch,
            "images_per_s": round(batch * args.iters / secs, 1),
            "torch": torch.__version__,
        }), flush=True)


class Photos(Dataset):
    def __init__(self, folder, size):
        from torchvision import transforms

        self.paths = sorted(
            os.path.join(folder, n) for n in os.listdir(folder)
            if n.lower().endswith((".jpg", ".jpeg", ".png"))
        )
        self.transform = transforms.Compose([
            transforms.Resize((size, size)),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
        ])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        path = self.paths[i]
        image = Image.open(path).convert("RGB")
        return self.transform(image), os.path.splitext(os.path.basename(path))[0]


def job(args):
    start = time.perf_counter()
    dtype = dtype_of(args.dtype)
    model = load(args.model, args.device, dtype)
    data = Photos(args.input, model.config.image_size)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    loader = DataLoader(data, batch_size=args.batch, num_workers=workers,
                        pin_memory=args.device.startswith("cuda"))
    rows = []
    busy = 0.0
    labels = model.config.id2label
    with torch.inference_mode():
        for pixels, ids in loader:
            t = time.perf_counter()
            logits = model(pixel_values=pixels.to(args.device, dtype=dtype, non_blocking=True)).logits
            top = logits.float().argmax(-1).tolist()
            busy += time.perf_counter() - t
            rows.extend((i, labels.get(k, str(k))) for i, k in zip(ids, top))
    with open(args.output, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "classification"])
        w.writerows(rows)
    wall = time.perf_counter() - start
    print(json.dumps({
        "baseline": "tutorial_dataloader_job",
        "dtype": args.dtype,
        "device": args.device,
        "images": len(rows),
        "rows": len(rows),
        "wall_s": round(wall, 3),
        "images_per_s": round(len(rows) / wall, 1),
        "model_busy_fraction": round(busy / wall, 3),
        "workers": workers,
        "batch": args.batch,
    }), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--model", required=True)
    t.add_argument("--batch", type=int, action="append", required=True)
    t.add_argument("--device", default="cuda")
    t.add_argument("--dtype", default="bf16")
    t.add_argument("--warmup", type=int, default=3)
    t.add_argument("--iters", type=int, default=10)
    j = sub.add_parser("job")
    j.add_argument("--model", required=True)
    j.add_argument("--input", required=True)
    j.add_argument("--output", required=True)
    j.add_argument("--device", default="cuda")
    j.add_argument("--dtype", default="bf16")
    j.add_argument("--batch", type=int, default=64)
    j.add_argument("--workers", type=int, default=None)
    args = p.parse_args()
    if args.command == "throughput":
        throughput(args)
    else:
        job(args)


if __name__ == "__main__":
    main()
