#!/usr/bin/env python3
"""Slurm: seconds from submit to the user's first line, unijob against a hand-written ``sbatch``.

Starts the test cluster of ``unijob_adapters.slurm.testing`` (munge, slurmctld, two slurmd on
127.0.0.1), then, ``-n`` times each, submits a 2-node gang whose script prints ``time.time()`` as its
first statement:

- **unijob**: ``SlurmAdapter.submit(plan)`` (the plan built beforehand, as the CLI does): the
  idempotency lookup, staging (source and runtime wheel, skipped when already there), ``sbatch``;
  in the job, the runtime wheel on ``PYTHONPATH``, the master address lookup and ``srun``;
- **hand-written**: ``sbatch --parsable -N2 --ntasks-per-node=1 --wrap 'srun python -u first.py'``.

The figure per run is the earliest rank's printed stamp minus the time just before submitting.
The first unijob run also installs the runtime wheel into the staging directory (once per wheel);
it is reported apart ("cold") and left out of the median. Needs root and ``slurm-wlm munge``.

    .venv/bin/python benchmarks/bench_slurm_submit.py [-n 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

SCRIPT = "import time\nprint(repr(time.time()), flush=True)\n"


def first_stamp(files, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stamps = []
        for f in files():
            for line in f.read_text().splitlines():
                try:
                    stamps.append(float(line.split("] ")[-1]))
                except ValueError:
                    continue
        if stamps:
            return min(stamps)
        time.sleep(0.01)
    raise TimeoutError("no first line")


def wait_empty(cluster) -> None:
    while cluster.run(["squeue", "-h", "-o", "%i"]).stdout.strip():
        time.sleep(0.1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="runs per side (default 5)")
    args = ap.parse_args()

    from unijob_adapters.slurm.adapter import SlurmAdapter
    from unijob_adapters.slurm.testing import SlurmTestCluster, missing_binaries

    if missing_binaries():
        print(f"skipped: {', '.join(missing_binaries())} not installed (apt-get install slurm-wlm munge)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="ujbench-"))
    py = work / "jobpy"
    venv.EnvBuilder(with_pip=True).create(py)
    src = work / "src"
    src.mkdir()
    (src / "first.py").write_text(SCRIPT)
    (src / "job.yaml").write_text("name: first\nscript: first.py\nresources: {nodes: 2}\n")
    from unijob.loading import load_spec

    spec = load_spec(src / "job.yaml").spec
    spec = spec.model_copy(update={"targets": {"slurm": {"staging_dir": str(work / "staging"),
                                                         "python": str(py / "bin" / "python")}}})
    unijob_s: list[float] = []
    hand_s: list[float] = []
    with SlurmTestCluster(work / "cluster") as cluster:
        adapter = SlurmAdapter(env=cluster.env, poll_interval=0.2)
        for i in range(args.n + 1):
            plan = adapter.plan(spec, f"bench-{i}")
            job_dir = Path(plan.requests[0].body["cwd"])
            t0 = time.time()
            adapter.submit(plan)
            unijob_s.append(first_stamp(lambda: job_dir.glob("rank-*.out")) - t0)
            wait_empty(cluster)

            out = work / f"hand-{i}"
            out.mkdir()
            t0 = time.time()
            subprocess.run(["sbatch", "--parsable", "-N2", "--ntasks-per-node=1", f"--chdir={src}",
                            f"--output={out}/slurm-%j.out", "--wrap",
                            f"srun --output={out}/rank-%t.out {py / 'bin' / 'python'} -u first.py"],
                           env={**__import__('os').environ, **cluster.env}, check=True, capture_output=True)
            hand_s.append(first_stamp(lambda: out.glob("rank-*.out")) - t0)
            wait_empty(cluster)
    cold, warm = unijob_s[0], unijob_s[1:]
    hand = hand_s[1:]
    u, h = statistics.median(warm), statistics.median(hand)
    print(f"submit -> first line, 2 nodes, median of {args.n} (test cluster, {sys.platform})")
    print(f"  unijob (SlurmAdapter.submit):   {u:6.2f} s   (cold, installing the runtime wheel: {cold:.2f} s)")
    print(f"  hand-written sbatch + srun:     {h:6.2f} s")
    print(f"  ratio unijob / hand-written:    {u / h:6.2f}")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
