#!/usr/bin/env python3
"""Write a real, decodable baseline JPEG of about 1 MiB for `scripts/bench worker`.

Usage: make_jpeg.py OUT.jpg [TARGET_BYTES]

The picture is gradients plus random noise, 1600x1200, so it
compresses like a photo; the JPEG quality is chosen so the file lands closest to
TARGET_BYTES (default 1 MiB). Needs Pillow.
"""
import io
import sys

from PIL import Image


def main() -> int:
    out = sys.argv[1]
    target = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 20
    w, h = 1600, 1200
    noise = Image.effect_noise((w, h), 64)  # unseeded: the size varies by a few KB only
    img = Image.merge(
        "RGB",
        (
            Image.radial_gradient("L").resize((w, h)),
            Image.linear_gradient("L").resize((w, h)),
            noise,
        ),
    )
    best = None
    for q in range(70, 100):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=q)
        data = buf.getvalue()
        if best is None or abs(len(data) - target) < abs(len(best) - target):
            best = data
        if len(data) > target:
            break
    with open(out, "wb") as f:
        f.write(best)
    print(f"make_jpeg: {out} {w}x{h} {len(best)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
