"""Checkpointer save (with fsync) and load throughput against what the disk does.

Measures, in one run and on one file system:

- ``dd if=/dev/zero of=F bs=16M count=N conv=fdatasync``: the disk's sequential write rate
  including the flush (the reference);
- ``Checkpointer.save(path, step)`` of a SIZE-byte file (streamed in 16 MiB chunks, sha256 on the
  way, fsync of file, manifest and directories, atomic rename);
- ``Checkpointer.save(bytes, step)`` of a SIZE-byte object in memory;
- ``Checkpointer.load()`` (read + sha256 verification; the file is usually in the page cache).

Prints MB/s (10**6 bytes per second) and save/dd ratios (the aim is >= 0.9). Deletes its files.

Usage::

    python benchmarks/bench_checkpoint.py [--size-mib 1024] [--dir DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _dd(path: Path, size_mib: int) -> float:
    count = max(size_mib // 16, 1)
    t = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=16M", f"count={count}", "conv=fdatasync"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dt = time.perf_counter() - t
    path.unlink()
    return count * 16 * (1 << 20) / dt / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="payload size in MiB (default 1024 = 1 GiB)")
    ap.add_argument("--dir", default=None, help="directory on the file system to test (default: a temp dir "
                                                "beside this repository)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved runs of each measurement; medians are "
                    "printed (shared machines are noisy)")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from unijob.runtime import Checkpointer, Context

    parent = Path(args.dir) if args.dir else Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix=".bench-ckpt-", dir=parent))
    size = args.size_mib << 20
    try:
        src = work / "payload.bin"
        block = os.urandom(16 << 20)  # random data: nothing compresses or dedups it
        with open(src, "wb") as f:
            for _ in range(max(args.size_mib // 16, 1)):
                f.write(block)
        os.sync()
        size = src.stat().st_size
        ckpt = Checkpointer(work / "ckpt", keep=1, ctx=Context())
        dd, save_file, save_bytes, load = [], [], [], []
        step = 0
        for _ in range(args.repeat):
            dd.append(_dd(work / "dd.bin", args.size_mib))
            os.sync()
            t = time.perf_counter()
            ckpt.save(src, step)
            save_file.append(size / (time.perf_counter() - t) / 1e6)
            step += 1
            os.sync()
            data = src.read_bytes()
            t = time.perf_counter()
            ckpt.save(data, step)
            save_bytes.append(size / (time.perf_counter() - t) / 1e6)
            step += 1
            del data
            t = time.perf_counter()
            out = ckpt.load()
            load.append(len(out) / (time.perf_counter() - t) / 1e6)
            assert len(out) == size
            del out
        med = statistics.median
        print(f"payload {size / (1 << 20):.0f} MiB on {work.parent} ({args.repeat} run(s), median)")
        print(f"  dd conv=fdatasync          {med(dd):8.0f} MB/s")
        print(f"  Checkpointer.save(file)    {med(save_file):8.0f} MB/s   ratio {med(save_file) / med(dd):.2f}x dd")
        print(f"  Checkpointer.save(bytes)   {med(save_bytes):8.0f} MB/s   ratio {med(save_bytes) / med(dd):.2f}x dd")
        print(f"  Checkpointer.load()        {med(load):8.0f} MB/s   (sha256-verified, page cache)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
