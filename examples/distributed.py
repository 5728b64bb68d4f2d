"""Distributed reading: each rank reads its shard of a FITS directory.

    python3 -m torch.distributed.run --nproc_per_node=2 \\
        --master_addr=127.0.0.1 --master_port=29511 --redirects 1 --tee 1 \\
        examples/distributed.py [--files 40]

(`--redirects 1 --tee 1` only works around torch 1.13's launcher on
Python 3.11, whose default "0" parses to None; torch 2.x needs neither.)

Every process joins a gloo process group (CPU, loopback is enough). Rank 0
writes the files, then each rank reads its shard twice: through
FitsDataset with DistributedSampler, and through FitsIterableDataset,
which shards by rank and world size from torch.distributed itself. The
sample ids read are gathered on rank 0, which checks that the ranks
together read every file exactly once, and writes them to --out as JSON.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler  # noqa: E402

from torchfits_ops.data import FitsDataset, FitsIterableDataset  # noqa: E402


def sample_id(path):
    """The file's number, from its name: img_<n>.fits."""
    return int(os.path.basename(path)[4:-5])


def write_files(folder, n):
    from astropy.io import fits

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"img_{i}.fits")
        # Pixel values encode the id, so the check covers the data too.
        fits.PrimaryHDU(np.full((16, 16), i, dtype=np.int16)).writeto(path, overwrite=True)
        paths.append(path)
    return paths


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None, help="data folder (default: next to --out)")
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default="distributed_result.json")
    args = ap.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    folder = args.dir or os.path.join(os.path.dirname(os.path.abspath(args.out)), "dist_data")
    if rank == 0:
        write_files(folder, args.files)
    dist.barrier()
    paths = [os.path.join(folder, f"img_{i}.fits") for i in range(args.files)]

    ds = FitsDataset(paths, label_fn=sample_id)
    sampler = DistributedSampler(ds, shuffle=True, seed=0)
    sampler.set_epoch(0)
    loader = DataLoader(ds, batch_size=args.batch_size, sampler=sampler,
                        num_workers=args.workers, timeout=120 if args.workers else 0)
    mine = []
    for images, ids in loader:
        assert torch.equal(images[:, 0, 0].long(), ids), "pixels do not match the file"
        mine += ids.tolist()

    stream = FitsIterableDataset(paths, label_fn=sample_id)
    streamed = []
    for images, ids in DataLoader(stream, batch_size=args.batch_size, num_workers=args.workers,
                                  timeout=120 if args.workers else 0):
        assert torch.equal(images[:, 0, 0].long(), ids), "pixels do not match the file"
        streamed += ids.tolist()

    gathered = [None] * world
    dist.all_gather_object(gathered, {"rank": rank, "sampler": mine, "iterable": streamed})
    if rank == 0:
        every = list(range(args.files))
        result = {"world_size": world, "files": args.files, "ranks": gathered}
        for key in ("sampler", "iterable"):
            ids = sorted(i for g in gathered for i in g[key])
            result[f"{key}_exactly_once"] = ids == every
        with open(args.out, "w") as f:
            json.dump(result, f)
        print(f"world size {world}: DistributedSampler read each of {args.files} files exactly "
              f"once: {result['sampler_exactly_once']}; FitsIterableDataset: "
              f"{result['iterable_exactly_once']}")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
