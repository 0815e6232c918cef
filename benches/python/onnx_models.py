#!/usr/bin/env python3
"""Makes the ONNX models of `onnx_cpu`: random-weight ResNet-50 (microsoft/resnet-50's shape)
and ViT-B/16 (google/vit-base-patch16-224's shape), exported with optimum as a user would
(`optimum-cli export onnx --task image-classification`), each folder holding model.onnx,
config.json and preprocessor_config.json. Speed does not depend on the weights' values.

    python3 benches/python/onnx_models.py OUT_DIR     # OUT_DIR/resnet50, OUT_DIR/vit-b16

Needs torch, transformers < 4.58 and optimum-onnx (see inference/fixtures/make_onnx_fixtures.py).
Prints one JSON line naming the folders.
"""

import json
import os
import sys
import tempfile

import torch
from optimum.exporters.onnx import main_export
from transformers import (
    ConvNextImageProcessor,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)


def export(model, processor, out):
    if os.path.isfile(os.path.join(out, "model.onnx")):
        return
    with tempfile.TemporaryDirectory() as src:
        model.save_pretrained(src)
        processor.save_pretrained(src)
        main_export(src, output=out, task="image-classification", opset=17, no_post_process=False)


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    resnet = ResNetForImageClassification(
        ResNetConfig(layer_type="bottleneck", depths=[3, 4, 6, 3], num_labels=1000)
    ).eval()
    export(
        resnet,
        ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875, resample=2),
        os.path.join(out, "resnet50"),
    )
    vit = ViTForImageClassification(ViTConfig(num_labels=1000)).eval()
    export(
        vit,
        ViTImageProcessor(size={"height": 224, "width": 224}, resample=2),
        os.path.join(out, "vit-b16"),
    )
    print(json.dumps({"resnet50": os.path.join(out, "resnet50"), "vit-b16": os.path.join(out, "vit-b16")}))


if __name__ == "__main__":
    main()
