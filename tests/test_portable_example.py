"""Issue 6's acceptance: one spec plans on local, SageMaker, Vertex, Databricks and Kubernetes,
differing only in its `targets` blocks; every plan carries the same gang."""

from pathlib import Path

import pytest

from unijob import registry
from unijob.loading import load_spec

SPEC = Path(__file__).parents[1] / "examples" / "portable" / "job.yaml"
TARGETS = ["local", "sagemaker", "vertex", "databricks", "kubernetes", "slurm", "ray"]


@pytest.mark.parametrize("target", TARGETS)
def test_same_spec_plans_everywhere(target):
    if target not in registry.names():
        pytest.skip(f"adapter {target} not installed")
    spec = load_spec(SPEC).spec
    plan = registry.get(target).plan(spec, "portable-1")
    assert plan.target == target and plan.requests
    # the gang: 2 nodes (Databricks adds its driver node to what is billed)
    assert plan.resources.instance_count in (2, 3)
    if target != "local":
        assert plan.resources.accelerator == "L4" and plan.resources.accelerators_per_node == 1


def test_only_targets_blocks_are_target_specific():
    import yaml

    data = yaml.safe_load(SPEC.read_text())
    assert set(data["targets"]) == set(TARGETS)
