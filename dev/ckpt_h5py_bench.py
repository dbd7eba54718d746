#!/usr/bin/env python3
"""h5py's figure for `truthgpt bench ckpt`: writes the datasets of a checkpoint truthgpt wrote
(the same data, chunk shapes and zstd level, filter 32015 via hdf5plugin.Zstd, crc32c attributes
copied) to a new file with h5py, fsyncs it, and prints MB/s of raw tensor bytes (1 MB = 1e6).

usage: ${TG_PYTHON:-$(scripts/test-venv.sh)} dev/ckpt_h5py_bench.py [SRC] [--out FILE] [--repeat N]
SRC defaults to /tmp/truthgpt-bench-ckpt.h5 (what `truthgpt bench ckpt` leaves)."""
import argparse
import os
import statistics
import time

import h5py
import hdf5plugin
import numpy as np


def load(src):
    items = []  # (name, array, chunks, attrs) in file order
    with h5py.File(src, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                items.append((name, obj[()], obj.chunks, dict(obj.attrs)))
        f.visititems(visit)
        root = dict(f.attrs)
    return root, items


def write(path, root, items, level):
    t0 = time.perf_counter()
    with h5py.File(path, "w", libver=("v108", "v108"), track_order=False) as f:
        for k, v in root.items():
            f.attrs[k] = v
        for name, arr, chunks, attrs in items:
            kw = {}
            if chunks is not None:
                kw = dict(chunks=chunks, **hdf5plugin.Zstd(clevel=level))
            d = f.create_dataset(name, data=arr, track_times=False, **kw)
            for k, v in attrs.items():
                d.attrs[k] = v
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src", nargs="?", default="/tmp/truthgpt-bench-ckpt.h5")
    ap.add_argument("--out", default="/tmp/truthgpt-bench-ckpt-h5py.h5")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--level", type=int, default=3, help="zstd level (truthgpt writes 3)")
    a = ap.parse_args()
    root, items = load(a.src)
    raw = sum(arr.nbytes for n, arr, c, _ in items if n.split("/")[0] in ("params", "adam_m", "adam_v"))
    ts = []
    for _ in range(a.repeat):
        if os.path.exists(a.out):
            os.unlink(a.out)
        ts.append(write(a.out, root, items, a.level))
    t = statistics.median(ts)
    print(f"h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), zstd level {a.level}: "
          f"{raw / 1e6:.1f} MB raw, file {os.path.getsize(a.out) / 1e6:.1f} MB")
    print(f"write {t:.2f} s  {raw / 1e6 / t:.1f} MB/s   (min {min(ts):.2f} s)")


if __name__ == "__main__":
    main()
