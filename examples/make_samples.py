"""Writes the sample images the batch-inference job runs on by default.

They are drawn here (no third-party photos), so they carry the project's license.
Run by developers only: python3 examples/make_samples.py (needs Pillow).
"""
import math
import pathlib

from PIL import Image, ImageDraw

OUT = pathlib.Path(__file__).parent / "samples"


def sky_and_sun(w=640, h=480):
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = (70 + y * 100 // h, 130 + y * 80 // h, 230)
    d = ImageDraw.Draw(img)
    d.ellipse((w * 0.72, h * 0.12, w * 0.9, h * 0.37), fill=(255, 220, 60))
    d.rectangle((0, h * 0.8, w, h), fill=(40, 140, 50))
    return img


def checkerboard(w=500, h=375, n=8):
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    for i in range(n):
        for j in range(n):
            if (i + j) % 2:
                d.rectangle((i * w // n, j * h // n, (i + 1) * w // n, (j + 1) * h // n), fill=(20, 20, 20))
    return img


def rings(w=480, h=640):
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            r = math.hypot(x - w / 2, y - h / 2)
            v = int(127 + 127 * math.sin(r / 9))
            px[x, y] = (v, 255 - v, 128)
    return img


def stripes_gray(w=320, h=320):
    img = Image.new("L", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = 255 if (x // 16) % 2 else 30
    return img


def shapes_rgba(w=300, h=200):
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.polygon([(150, 10), (290, 190), (10, 190)], fill=(200, 30, 30, 255))
    d.ellipse((110, 90, 190, 170), fill=(30, 30, 200, 180))
    return img


sky_and_sun().save(OUT / "000000000139.jpg", quality=90)
checkerboard().save(OUT / "000000000285.jpg", quality=85)
rings().save(OUT / "000000000632.jpg", quality=80)
stripes_gray().save(OUT / "000000000724.png")
shapes_rgba().save(OUT / "000000000776.png")
sky_and_sun(256, 256).convert("P", palette=Image.ADAPTIVE).save(OUT / "000000000785.gif")
