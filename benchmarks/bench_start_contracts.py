#!/usr/bin/env python3
"""Start contracts: seconds from "container start" to the user's first line under each platform's
start contract (unijob.testing.contracts), against the local target; and the bytes the runtime
adds to each platform's code bundle.

The user's script prints ``FIRST <time.time()>`` as its first statement. Under a contract the
figure is that stamp minus the wall-clock time the runner spawned the container processes (the
runner's own setup before, laying out /opt/ml or /gcs, is not counted); it includes what the
platform's start path does before the script: the SageMaker training toolkit fetching
``sourcedir.tar.gz`` from S3 (moto) and ``pip install -r requirements.txt`` (the runtime wheel);
the Vertex launcher unpacking the tarball and installing the wheel ``--no-deps --no-index``; the
Kubernetes container command installing the wheel from the ConfigMap (the runner's per-pod Python
layer is made before the spawn, not counted); on Databricks the cluster installing the task's
libraries (the wheel) with pip, then the launcher. Bundles: the Kubernetes ConfigMap as stored
(JSON), the Databricks workspace upload (source files, launcher, wheel). On
the local target it is ``LocalAdapter.submit`` to the stamp. Median of ``-n`` runs; the ratio is
contract / local.

    .venv/bin/python benchmarks/bench_start_contracts.py [-n 3] [--pythons DIR]

``--pythons`` caches the job images' Pythons (the first run builds them: about a minute with a
warm pip cache). To add a contract, add a function to ``CONTRACTS``: ``(work: Path, i: int) ->
seconds`` and, for bundles, one to ``BUNDLES``: ``() -> (bytes with the runtime, bytes without)``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

SCRIPT = "import time\nprint('FIRST', repr(time.time()), flush=True)\n"
ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart"
PYTHONS: dict[str, Path] = {}


def _stamp(lines: list[str]) -> float:
    for ln in lines:
        if ln.startswith("FIRST "):
            return float(ln.split()[1])
    raise RuntimeError("the script's first line never came:\n" + "\n".join(lines[-20:]))


def _src(work: Path) -> Path:
    src = work / "src"
    src.mkdir(exist_ok=True)
    (src / "train.py").write_text(SCRIPT)
    return src


def local_once(work: Path, i: int) -> float:
    os.environ["UNIJOB_HOME"] = str(work / "home")
    from unijob.local.adapter import LocalAdapter
    from unijob.spec import JobSpec

    _src(work)
    spec = JobSpec.model_validate({"name": "bench", "script": "src/train.py"}, context={"base_dir": str(work)})
    adapter = LocalAdapter()
    plan = adapter.plan(spec, f"bench-local-{i}")
    t0 = time.time()
    handle = adapter.submit(plan)
    while not adapter.status(handle).state.is_final:
        time.sleep(0.01)
    return _stamp([ln.split("] ", 1)[-1] for ln in adapter.logs(handle)]) - t0


class _Moto:
    url = ""
    server = None

    @classmethod
    def start(cls) -> str:
        if cls.server is None:
            import logging

            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            cls.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            cls.server.start()
            host, port = cls.server.get_host_and_port()
            cls.url = f"http://{host}:{port}"
            for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                         "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": cls.url,
                         "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}.items():
                os.environ[k] = v
            import boto3

            boto3.client("s3").create_bucket(Bucket="bench-bucket")
        return cls.url

    @classmethod
    def stop(cls) -> None:
        if cls.server is not None:
            cls.server.stop()


def sagemaker_once(work: Path, i: int) -> float:
    from unijob import registry
    from unijob.spec import JobSpec
    from unijob.testing.contracts import sagemaker as contract

    url = _Moto.start()
    _src(work)
    spec = JobSpec.model_validate({"name": "bench", "script": "src/train.py", "output": "s3://bench-bucket/out",
                                   "targets": {"sagemaker": {"role_arn": "arn:aws:iam::123456789012:role/R",
                                                             "region": "us-east-1"}}},
                                  context={"base_dir": str(work)})
    adapter = registry.get("sagemaker")
    plan = adapter.plan(spec, f"bench-sm-{i}")
    adapter.submit(plan)
    out = contract.run(plan, python=PYTHONS["sagemaker"], workdir=work / f"sm-{i}", endpoint_url=url, timeout=120,
                       report=False)
    assert out.status == "Completed", out.output()[-2000:]
    return _stamp(out.lines[0]) - out.attempts[0].started


def vertex_once(work: Path, i: int) -> float:
    from unijob import registry
    from unijob.spec import JobSpec
    from unijob.testing.contracts import vertex as contract
    from unijob_adapters.vertex.plan import source_bytes

    _src(work)
    spec = JobSpec.model_validate({"name": "bench", "script": "src/train.py", "output": "gs://bench-bucket/out",
                                   "targets": {"vertex": {"project": "bench-project", "location": "us-central1"}}},
                                  context={"base_dir": str(work)})
    plan = registry.get("vertex").plan(spec, f"bench-v-{i}")
    objects = {u.destination: source_bytes(u) for u in plan.uploads if u.kind == "sourcedir"}
    out = contract.run(plan, python=PYTHONS["vertex"], workdir=work / f"v-{i}", objects=objects, timeout=120)
    rep = out.replicas[0]
    assert out.state == "JOB_STATE_SUCCEEDED", rep.lines[-20:]
    return _stamp(rep.lines) - rep.started


def sagemaker_bundle() -> tuple[int, int]:
    from unijob import bundle
    from unijob_adapters.sagemaker import sourcedir

    req = QUICKSTART / "requirements.txt"
    with_rt = sourcedir.pack(QUICKSTART, req)
    without = bundle.pack_dir(QUICKSTART, {"requirements.txt": req.read_bytes()})
    return len(with_rt), len(without)


def vertex_bundle() -> tuple[int, int]:
    from unijob import bundle
    from unijob_adapters.vertex.plan import pack_source

    return len(pack_source(QUICKSTART)), len(bundle.pack_dir(QUICKSTART))


def kubernetes_once(work: Path, i: int) -> float:
    from unijob import registry
    from unijob.spec import JobSpec
    from unijob.testing.contracts.kubernetes import KubernetesContract

    _src(work)
    spec = JobSpec.model_validate({"name": "bench", "script": "src/train.py",
                                   "targets": {"kubernetes": {"namespace": "ml"}}}, context={"base_dir": str(work)})
    plan = registry.get("kubernetes").plan(spec, f"bench-k8s-{i}")
    with KubernetesContract.from_plan(plan, PYTHONS["kubernetes"], work / f"k8s-{i}") as run:
        result = run.run(timeout=120)
    pod = result.pods[0]
    assert result.condition == "Complete", result.logs()[-2000:]
    return _stamp(pod.log.read_text().splitlines()) - pod.started


def databricks_once(work: Path, i: int) -> float:
    from unijob import registry
    from unijob.spec import JobSpec
    from unijob.testing.contracts.databricks import DatabricksContract

    src = _src(work)
    spec = JobSpec.model_validate({"name": "bench", "script": "src/train.py",
                                   "targets": {"databricks": {"cloud": "aws"}}}, context={"base_dir": str(work)})
    plan = registry.get("databricks").plan(spec, f"bench-dbx-{i}")
    files = _databricks_files(plan, src)
    run = DatabricksContract(plan.requests[0].body, PYTHONS["databricks"], work / f"dbx-{i}", files=files)
    result = run.run(timeout=120)
    assert result.result_state == "SUCCESS", result.logs[-2000:]
    return _stamp(result.logs.splitlines()) - run.started


def _databricks_files(plan, src: Path) -> dict[str, bytes]:
    """What the plan's uploads put in the workspace (client.upload's layout), read locally."""
    from unijob import bundle

    files: dict[str, bytes] = {}
    for u in plan.uploads:
        if u.kind == "directory":
            for rel, p in bundle.iter_source_files(u.source, u.exclude):
                files[f"{u.destination}/{rel}"] = p.read_bytes()
        elif u.kind == "runtime-wheel":
            files[u.destination] = bundle.runtime_wheel(["databricks"]).data
        else:
            files[u.destination] = Path(u.source).read_bytes()
    return files


def kubernetes_bundle() -> tuple[int, int]:
    import json

    from unijob import registry
    from unijob.spec import JobSpec

    spec = JobSpec.model_validate({"name": "bench", "script": "train.py", "requirements": "requirements.txt",
                                   "targets": {"kubernetes": {"namespace": "ml"}}}, context={"base_dir": str(QUICKSTART)})
    cm = registry.get("kubernetes").plan(spec, "bench").request("ConfigMap").body
    with_rt = len(json.dumps(cm, separators=(",", ":")))
    cm["binaryData"].pop("unijob-runtime.whl")
    if not cm["binaryData"]:
        del cm["binaryData"]
    return with_rt, len(json.dumps(cm, separators=(",", ":")))


def databricks_bundle() -> tuple[int, int]:
    from unijob import registry
    from unijob.spec import JobSpec

    spec = JobSpec.model_validate({"name": "bench", "script": "train.py", "requirements": "requirements.txt",
                                   "targets": {"databricks": {"cloud": "aws"}}}, context={"base_dir": str(QUICKSTART)})
    files = _databricks_files(registry.get("databricks").plan(spec, "bench"), QUICKSTART)
    wheel = sum(len(v) for k, v in files.items() if k.endswith(".whl"))
    total = sum(len(v) for v in files.values())
    return total, total - wheel


#: contract name -> (packages of its job image's Python, one measurement). "local" is the baseline.
CONTRACTS: dict[str, tuple[tuple[str, ...], Callable[[Path, int], float]]] = {
    "local": ((), local_once),
    "sagemaker": (("sagemaker-training==5.1.4",), sagemaker_once),
    "vertex": ((), vertex_once),
    "kubernetes": ((), kubernetes_once),
    "databricks": ((), databricks_once),
}
BUNDLES: dict[str, Callable[[], tuple[int, int]]] = {"sagemaker": sagemaker_bundle, "vertex": vertex_bundle,
                                                     "kubernetes": kubernetes_bundle,
                                                     "databricks": databricks_bundle}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--pythons", default=None, help="cache directory of the job images' Pythons")
    args = ap.parse_args()
    from unijob import registry
    from unijob.testing.contracts import job_python

    pythons_root = Path(args.pythons or tempfile.mkdtemp(prefix="unijob-bench-pythons-"))
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, (packages, once) in CONTRACTS.items():
                if name != "local" and name not in registry.names():
                    print(f"{name}: adapter not installed, skipped", file=sys.stderr)
                    continue
                if name != "local":
                    PYTHONS[name] = job_python(pythons_root, list(packages))
                times = []
                for i in range(args.n):
                    work = Path(tmp) / f"{name}-{i}"
                    work.mkdir()
                    times.append(once(work, i))
                rows.append((name, statistics.median(times)))
    finally:
        _Moto.stop()
    base = dict(rows).get("local")
    print(f"container start -> first line of the user's script (median of {args.n})")
    print(f"{'contract':<12}{'seconds':>10}{'x local':>10}")
    for name, sec in rows:
        print(f"{name:<12}{sec:>10.3f}{(sec / base if base else float('nan')):>10.1f}")
    from unijob import bundle

    wheel = bundle.runtime_wheel()
    print(f"\nruntime wheel (every target's runtime env): {len(wheel.data)} bytes")
    print(f"{'bundle (quickstart)':<22}{'with runtime':>14}{'without':>10}{'added':>8}{'ratio':>8}")
    for name, fn in BUNDLES.items():
        if name not in registry.names():
            continue
        w, wo = fn()
        print(f"{name:<22}{w:>14}{wo:>10}{w - wo:>8}{w / wo:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
