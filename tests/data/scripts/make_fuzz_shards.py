"""Writes the two shards the data fuzz test damages, with h5py (an independent writer):
  DIR/contiguous.h5  inputs float32 (N, 16) and targets int64 (N,), contiguous
  DIR/gzip.h5        the same layout in chunks of 64 samples, gzip level 4 with shuffle
N = 512, 4 classes, values from a fixed seed.
  make_fuzz_shards.py DIR"""
import sys

import h5py
import numpy as np

out = sys.argv[1]
rng = np.random.default_rng(20261202)
n = 512
targets = rng.integers(0, 4, size=n, dtype=np.int64)
inputs = (rng.standard_normal((n, 16)) + targets[:, None]).astype(np.float32)
with h5py.File(f"{out}/contiguous.h5", "w") as f:
    f.create_dataset("inputs", data=inputs)
    f.create_dataset("targets", data=targets)
with h5py.File(f"{out}/gzip.h5", "w") as f:
    f.create_dataset("inputs", data=inputs, chunks=(64, 16), compression="gzip", compression_opts=4, shuffle=True)
    f.create_dataset("targets", data=targets, chunks=(64,), compression="gzip", compression_opts=4)
