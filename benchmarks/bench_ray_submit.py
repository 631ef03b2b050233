#!/usr/bin/env python3
"""Ray: seconds from submit to the user's first line, unijob against a bare ``submit_job``.

Starts the test cluster of ``unijob_adapters.ray.testing`` (a head and a worker node on 127.0.0.1,
run by a cluster Python without unijob: a venv with the same ``ray[default]``, cached under the
system temp dir), then, ``-n`` times each, submits a script whose first statement prints
``time.time()``:

- **unijob, 1 node**: ``RayAdapter.submit(plan)`` (the plan built beforehand, as the CLI does): the
  idempotency lookup, the fit check (the dashboard's ``list_nodes``), the runtime wheel written,
  ``submit_job`` with ``working_dir`` and ``py_modules`` (runtime wheel, gang launcher); in the job,
  the launcher's placement group, its node agent actor and the rank process;
- **unijob, 2 nodes**: the same with a STRICT_SPREAD gang of two (one rank on each raylet);
- **bare submit_job**: ``JobSubmissionClient.submit_job(entrypoint="python -u first.py",
  runtime_env={"working_dir": src})``.

Each run has its own copy of the source directory (a fresh ``working_dir`` package), so no run
reuses another's upload. The figure per run is the earliest printed stamp (read from
``get_job_logs``, polled every 20 ms) minus the time just before submitting. The first run of each
side (Ray's first package and worker start-up) is reported apart ("cold") and left out of the median.

    .venv/bin/python benchmarks/bench_ray_submit.py [-n 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = "import time\nprint('STAMP', repr(time.time()), flush=True)\n"


def first_stamp(client, sid: str, timeout: float = 180) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in client.get_job_logs(sid).splitlines():
            if "STAMP " in line:
                return float(line.split("STAMP ", 1)[1])
        time.sleep(0.02)
    raise TimeoutError(f"{sid}: no first line: {client.get_job_logs(sid)[-2000:]}")


def wait_final(client, sid: str) -> None:
    while str(client.get_job_status(sid)) not in ("JobStatus.SUCCEEDED", "JobStatus.FAILED", "JobStatus.STOPPED",
                                                  "SUCCEEDED", "FAILED", "STOPPED"):
        time.sleep(0.1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="runs per side (default 5)")
    args = ap.parse_args()

    from importlib.metadata import version

    from ray.job_submission import JobSubmissionClient

    from unijob.loading import load_spec
    from unijob.testing.contracts import job_python
    from unijob_adapters.ray.adapter import RayAdapter
    from unijob_adapters.ray.testing import RayTestCluster

    root = Path(tempfile.gettempdir()) / "unijob-test-pythons"
    root.mkdir(exist_ok=True)
    py = job_python(root, [f"ray[default]=={version('ray')}", "scikit-learn"])
    work = Path(tempfile.mkdtemp(prefix="ujbench-ray-"))
    sides: dict[str, list[float]] = {"unijob-1": [], "unijob-2": [], "bare": []}

    def source(i: int, side: str, nodes: int) -> Path:
        d = work / f"{side}-{i}"
        d.mkdir()
        (d / "first.py").write_text(SCRIPT + f"# {side} {i}\n")
        (d / "job.yaml").write_text(f"name: first\nscript: first.py\nresources: {{nodes: {nodes}}}\n")
        return d

    with RayTestCluster(work / "cluster", python=str(py)) as cluster:
        client = JobSubmissionClient(cluster.address)
        adapter = RayAdapter()
        for i in range(args.n + 1):
            for side, nodes in (("unijob-1", 1), ("unijob-2", 2)):
                spec = load_spec(source(i, side, nodes) / "job.yaml").spec
                spec = spec.model_copy(update={"targets": {"ray": {"address": cluster.address}}})
                plan = adapter.plan(spec, f"bench-{side}-{i}")
                t0 = time.time()
                h = adapter.submit(plan)
                sides[side].append(first_stamp(client, h.native_id) - t0)
                wait_final(client, h.native_id)
            src = source(i, "bare", 1)
            t0 = time.time()
            sid = client.submit_job(entrypoint="python -u first.py", runtime_env={"working_dir": str(src)})
            sides["bare"].append(first_stamp(client, sid) - t0)
            wait_final(client, sid)
    med = {k: statistics.median(v[1:]) for k, v in sides.items()}
    print(f"submit -> first line, median of {args.n} (test Ray cluster: 2 nodes on one host, {sys.platform})")
    print(f"  unijob, 1-node gang:          {med['unijob-1']:6.2f} s   (cold: {sides['unijob-1'][0]:.2f} s)")
    print(f"  unijob, 2-node STRICT_SPREAD: {med['unijob-2']:6.2f} s   (cold: {sides['unijob-2'][0]:.2f} s)")
    print(f"  bare submit_job:              {med['bare']:6.2f} s   (cold: {sides['bare'][0]:.2f} s)")
    print(f"  ratio unijob 1-node / bare:   {med['unijob-1'] / med['bare']:6.2f}")
    print(f"  ratio unijob 2-node / bare:   {med['unijob-2'] / med['bare']:6.2f}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
