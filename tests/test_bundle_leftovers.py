"""What a local run leaves in the quickstart's directory (output/, checkpoints/, __pycache__, 6 MiB)
changes no target's bundle: each plan is the clean copy's (paths aside), and what each target's
``submit`` packs from the plan's upload is the same bytes (Ray: Ray's own package hash)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import unijob
from unijob import bundle
from unijob.testing.jobs import local_run_leftovers, spec_with

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
#: targets.<name> options, and the fields a target needs remote (the local paths stay in the file)
TARGETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "sagemaker": ({"role_arn": "arn:aws:iam::123456789012:role/SageMakerRole", "region": "us-east-1"},
                  {"output": "s3://demo-out/qs", "checkpoint": "s3://demo-out/qs-ckpt"}),
    "vertex": ({"project": "demo-project", "location": "us-central1", "staging_bucket": "gs://demo-staging"},
               {"output": "gs://demo-out/qs", "checkpoint": "gs://demo-out/qs-ckpt"}),
    "kubernetes": ({"provider": "eks"}, {"output": "s3://demo-out/qs", "checkpoint": "pvc://ckpt/qs"}),
    "databricks": ({}, {}),
    "slurm": ({"spot_partition": "preempt"}, {}),
    "ray": ({}, {}),
}


def _copy(dest: Path, leftovers: bool) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("output", "checkpoints", "__pycache__"))
    if leftovers:
        local_run_leftovers(dest)
    return dest


def _plan(root: Path, target: str):
    options, remote = TARGETS[target]
    spec = spec_with(root / "job.yaml", target, options)
    update: dict[str, Any] = {}
    if "output" in remote:
        update["output"] = remote["output"]
    if "checkpoint" in remote:
        update["checkpoint"] = spec.checkpoint.model_copy(update={"uri": remote["checkpoint"]})
    return unijob.plan(spec.model_copy(update=update), target)


def _packed(target: str, plan) -> list[Any]:
    """What ``submit`` sends of the source directory, re-packed from the plan as each adapter does."""
    out: list[Any] = []
    for up in plan.uploads:
        if target == "sagemaker" and up.kind == "sourcedir":
            from unijob_adapters.sagemaker import sourcedir

            out.append(sourcedir.pack(up.source, plan.extra.get("requirements"), exclude=up.exclude))
        elif target == "vertex" and up.kind == "sourcedir":
            from unijob_adapters.vertex.plan import source_bytes

            out.append(source_bytes(up))
        elif target == "slurm" and up.kind == "directory":
            from unijob_adapters.slurm.adapter import SlurmAdapter

            out.append(bundle.pack_dir(up.source, SlurmAdapter._plan_extra_files(plan), exclude=up.exclude))
        elif target == "databricks" and up.kind == "directory":
            out.append([(rel, p.read_bytes()) for rel, p in bundle.iter_source_files(up.source, up.exclude)])
    if target == "ray":
        packaging = pytest.importorskip("ray._private.runtime_env.packaging")
        env = plan.requests[0].body["runtime_env"]
        out.append(packaging.get_uri_for_directory(env["working_dir"], include_gitignore=True, excludes=env["excludes"]))
    if target == "kubernetes":  # the source travels in the plan itself, as the ConfigMap
        out.append(next(r.body for r in plan.requests if r.body.get("kind") == "ConfigMap"))
    return out


def _normal(plan, root: Path) -> str:
    return json.dumps(plan.model_dump(mode="json"), sort_keys=True).replace(str(root), "<ROOT>")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_local_runs_leftovers_change_no_bundle(target, tmp_path):
    pytest.importorskip(f"unijob_adapters.{target}")
    clean, dirty = _copy(tmp_path / "clean" / "qs", False), _copy(tmp_path / "dirty" / "qs", True)
    # the leftovers are there and big: a bundle carrying them would differ (and overflow a ConfigMap)
    assert bundle.source_size(dirty).total_bytes > bundle.source_size(clean).total_bytes + 6 * 2**20
    p_clean, p_dirty = _plan(clean, target), _plan(dirty, target)
    assert _normal(p_dirty, dirty) == _normal(p_clean, clean)
    packed = _packed(target, p_dirty)
    assert packed and packed == _packed(target, p_clean)


def test_a_local_run_between_plan_and_submit_changes_nothing(tmp_path):
    """The plan's Upload.exclude travels to submit: leftovers written after the plan are not packed,
    so submit's "changed since the plan" check passes."""
    pytest.importorskip("unijob_adapters.vertex")
    from unijob_adapters.vertex.plan import source_bytes

    root = _copy(tmp_path / "qs", False)
    plan = _plan(root, "vertex")
    up = next(u for u in plan.uploads if u.kind == "sourcedir")
    assert up.exclude == ["checkpoints", "output"]
    local_run_leftovers(root)
    assert bundle.sha256(source_bytes(up)) == up.sha256
    (root / "train.py").write_text((root / "train.py").read_text() + "\n# edited\n")
    with pytest.raises(unijob.errors.SpecError, match="changed after the plan"):
        source_bytes(up)


def test_unijob_plan_says_what_it_leaves_out(tmp_path, capsys):
    pytest.importorskip("unijob_adapters.slurm")
    from unijob.cli import main

    root = _copy(tmp_path / "qs", True)
    (root / "job.yaml").write_text((root / "job.yaml").read_text() + "targets: {slurm: {spot_partition: preempt}}\n")
    assert main(["plan", str(root / "job.yaml"), "-t", "slurm"]) == 0
    assert "(leaving out what a local run writes there: checkpoints, output)" in capsys.readouterr().out
