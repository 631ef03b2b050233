"""JobSpec rules: defaults, normalisation and cross-field checks (no files involved)."""

import pytest
from hypothesis import given, strategies as st
from pydantic import ValidationError

from unijob import accelerators
from unijob.spec import JobSpec, parse_duration

BASE = {"name": "job", "image": "python:3.11", "command": ["python", "-c", "pass"]}


def spec(**kw):
    return JobSpec.model_validate({**BASE, **kw})


@pytest.mark.parametrize("text,seconds", [("90m", 5400), ("4h", 14400), ("1d", 86400), ("1h30m", 5400),
                                          (3600, 3600), ("45s", 45), ("120", 120)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert spec(max_run=text).max_run == seconds


@given(d=st.integers(0, 30), h=st.integers(0, 23), m=st.integers(0, 59), s=st.integers(0, 59))
def test_duration_parts_add_up(d, h, m, s):
    text = f"{d}d{h}h{m}m{s}s"
    assert parse_duration(text) == d * 86400 + h * 3600 + m * 60 + s


@pytest.mark.parametrize("alias,canonical", [("a100-80g:8", "A100-80GB:8"), ("nvidia-tesla-t4", "T4:1"),
                                             ("h100:8", "H100:8"), ("NVIDIA_L4", "L4:1"), ("A10G:4", "A10G:4")])
def test_accelerator_aliases(alias, canonical):
    assert spec(resources={"accelerator": alias}).resources.accelerator == canonical


def test_unknown_accelerator_suggests_close_match():
    with pytest.raises(accelerators.AcceleratorError) as e:
        accelerators.parse("H10:8")
    assert e.value.suggestion == "H100"


def test_processes_per_node_defaults_to_gpu_count():
    s = spec(resources={"accelerator": "H100:8", "nodes": 4})
    assert s.resources.processes_per_node == 8 and s.resources.world_size == 32
    assert spec().resources.processes_per_node == 1


def test_spot_max_wait_below_max_run_is_an_error():
    with pytest.raises(ValidationError, match="max_wait"):
        spec(spot={"policy": "spot", "max_wait": "1h"}, max_run="2h")
    assert spec(spot={"policy": "spot", "max_wait": "3h"}, max_run="2h").spot.max_wait == 10800
    # on-demand ignores max_wait
    spec(spot={"policy": "on_demand", "max_wait": "1h"}, max_run="2h")


def test_traffic_split_must_sum_to_100():
    with pytest.raises(ValidationError, match="sum to 100"):
        spec(endpoint={"model": "s3://b/m", "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 40}]})
    e = spec(endpoint={"model": "s3://b/m", "variants": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}]}).endpoint
    assert [(v.name, v.weight, v.model) for v in e.resolved_variants()] == [("a", 90, "s3://b/m"), ("b", 10, "s3://b/m")]


def test_secret_values_are_rejected_without_echo():
    with pytest.raises(ValidationError) as e:
        spec(secrets={"TOKEN": "hunter2-very-secret"})
    assert "hunter2" not in str(e.value.errors(include_input=False))
    assert spec(secrets={"TOKEN": "k8s-secret://hf/token"}).secrets == {"TOKEN": "k8s-secret://hf/token"}


def test_exactly_one_entrypoint():
    with pytest.raises(ValidationError, match="no entrypoint"):
        JobSpec.model_validate({"name": "x"})
    with pytest.raises(ValidationError, match="not both"):
        JobSpec.model_validate({**BASE, "script": "t.py"}, context={"check_paths": False})


def test_spec_hash_is_stable_and_sensitive():
    assert spec().spec_hash() == spec().spec_hash()
    assert spec().spec_hash() != spec(max_run="2h").spec_hash()


@pytest.mark.parametrize("name", ["Bad_Name", "-x", "x" * 64, ""])
def test_name_must_be_dns_label(name):
    with pytest.raises(ValidationError):
        spec(name=name)
