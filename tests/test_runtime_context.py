"""unijob.runtime.context(): resolution order, typed hyperparameters, derivation of ranks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unijob.contract import RuntimeEnv
from unijob.runtime import environment
from unijob.runtime.environment import Context, context, parse_hyperparameters


class FakeSageMaker(RuntimeEnv):
    """A platform env shaped like SageMaker's: every hyperparameter arrives as a string."""

    name = "fakesm"

    def detect(self, environ):
        return "SM_CURRENT_HOST" in environ

    def read(self, environ):
        hosts = json.loads(environ["SM_HOSTS"])
        return {
            "node_rank": hosts.index(environ["SM_CURRENT_HOST"]),
            "nodes": len(hosts),
            "master_addr": hosts[0],
            "model_dir": environ["SM_MODEL_DIR"],
            "channels": {"train": "/opt/ml/input/data/train"},
            "hyperparameters": json.loads(environ["SM_HPS"]),
        }


class Exploding(RuntimeEnv):
    name = "exploding"

    def detect(self, environ):
        raise RuntimeError("metadata server unreachable")

    def read(self, environ):  # pragma: no cover - never reached
        return {}


class Never(RuntimeEnv):
    name = "never"

    def detect(self, environ):
        return False

    def read(self, environ):  # pragma: no cover
        raise AssertionError("read() called although detect() was false")


def test_plain_python_is_rank_0_of_1():
    ctx = context({}, runtime_envs=[])
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.local_world_size, ctx.node_rank, ctx.nodes) == (0, 1, 0, 1, 0, 1)
    assert ctx.is_main and not ctx.distributed
    assert ctx.master_addr == "127.0.0.1" and ctx.master_port == 29500
    assert ctx.hyperparameters == {} and ctx.channels == {}
    assert ctx.checkpoint_uri is None and ctx.checkpoint_dir is None and ctx.job_id is None
    assert ctx.model_dir == ctx.output_dir
    assert ctx.source == "default" and ctx.restart_count == 0


def test_torchrun_env():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1",
           "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29611", "TORCHELASTIC_RESTART_COUNT": "2"}
    ctx = context(env, runtime_envs=[])
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.local_world_size, ctx.node_rank, ctx.nodes) == (3, 4, 1, 2, 1, 2)
    assert ctx.master_addr == "10.0.0.7" and ctx.master_port == 29611
    assert not ctx.is_main and ctx.distributed and ctx.restart_count == 2 and ctx.source == "env"


def test_node_rank_wins_over_group_rank_and_missing_fields_are_derived():
    ctx = context({"RANK": "5", "WORLD_SIZE": "6", "UNIJOB_NODES": "3", "NODE_RANK": "2", "GROUP_RANK": "0"},
                  runtime_envs=[])
    assert (ctx.local_world_size, ctx.local_rank, ctx.node_rank, ctx.nodes) == (2, 1, 2, 3)
    ctx = context({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}, runtime_envs=[])
    assert (ctx.local_rank, ctx.node_rank, ctx.nodes) == (1, 1, 2)


def test_unijob_contract(tmp_path):
    env = {
        "UNIJOB_JOB_ID": "j-123", "UNIJOB_JOB_NAME": "quickstart", "UNIJOB_TARGET": "local",
        "UNIJOB_CHECKPOINT_URI": "s3://bucket/ckpt", "UNIJOB_CHECKPOINT_DIR": str(tmp_path / "ck"),
        "UNIJOB_OUTPUT_URI": f"file://{tmp_path}/out", "UNIJOB_RESTART_COUNT": "1",
        "UNIJOB_CHANNELS": json.dumps({"train": str(tmp_path / "train"), "eval": "s3://b/eval"}),
        "UNIJOB_HYPERPARAMETERS": json.dumps({"epochs": 20, "lr": 0.05, "amp": True, "opt": "adam",
                                              "tag": "123", "layers": [64, 32]}),
    }
    ctx = context(env, runtime_envs=[])
    assert ctx.job_id == "j-123" and ctx.job_name == "quickstart" and ctx.target == "local"
    assert ctx.checkpoint_uri == "s3://bucket/ckpt" and ctx.checkpoint_dir == tmp_path / "ck"
    assert ctx.output_dir == tmp_path / "out" and ctx.model_dir == tmp_path / "out"
    assert ctx.output_uri == f"file://{tmp_path}/out" and ctx.restart_count == 1
    assert ctx.channels == {"train": str(tmp_path / "train"), "eval": "s3://b/eval"}
    # JSON values keep their types; a JSON string stays a string even when it looks like a number
    assert ctx.hyperparameters == {"epochs": 20, "lr": 0.05, "amp": True, "opt": "adam", "tag": "123",
                                   "layers": [64, 32]}
    assert type(ctx.hyperparameters["epochs"]) is int and type(ctx.hyperparameters["amp"]) is bool


def test_remote_output_uri_keeps_a_local_output_dir(tmp_path):
    ctx = context({"UNIJOB_OUTPUT_URI": "gs://b/out", "UNIJOB_OUTPUT_DIR": str(tmp_path)}, runtime_envs=[])
    assert ctx.output_uri == "gs://b/out" and ctx.output_dir == tmp_path


def test_platform_env_first_then_contract_then_defaults():
    env = {
        "SM_CURRENT_HOST": "algo-2", "SM_HOSTS": '["algo-1", "algo-2"]', "SM_MODEL_DIR": "/opt/ml/model",
        "SM_HPS": json.dumps({"epochs": "20", "lr": "0.05", "amp": "true", "opt": "adam", "q": '"7"'}),
        "RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "MASTER_ADDR": "ignored-by-platform",
        "UNIJOB_JOB_ID": "j-9", "UNIJOB_HYPERPARAMETERS": json.dumps({"epochs": 1}),
    }
    ctx = context(env, runtime_envs=[Never(), FakeSageMaker()])
    assert ctx.source == "fakesm"
    assert ctx.node_rank == 1 and ctx.nodes == 2 and ctx.master_addr == "algo-1"  # platform
    assert ctx.rank == 2 and ctx.world_size == 4 and ctx.job_id == "j-9"        # contract
    assert ctx.local_world_size == 2 and ctx.local_rank == 0                      # derived
    assert ctx.model_dir == Path("/opt/ml/model") and ctx.channels == {"train": "/opt/ml/input/data/train"}
    # SageMaker-style strings are parsed as JSON where they parse
    assert ctx.hyperparameters == {"epochs": 20, "lr": 0.05, "amp": True, "opt": "adam", "q": "7"}


def test_a_runtime_env_that_raises_is_skipped_with_a_warning():
    with pytest.warns(RuntimeWarning, match="exploding.*metadata server unreachable"):
        ctx = context({"RANK": "1", "WORLD_SIZE": "2"}, runtime_envs=[Exploding()])
    assert ctx.rank == 1 and ctx.source == "env"


def test_unknown_keys_from_a_runtime_env_warn():
    class Extra(Never):
        name = "extra"

        def detect(self, environ):
            return True

        def read(self, environ):
            return {"rank": 0, "gpu_count": 8}

    with pytest.warns(RuntimeWarning, match="gpu_count"):
        ctx = context({}, runtime_envs=[Extra()])
    assert ctx.source == "extra"


@pytest.mark.parametrize("env, fragment", [
    ({"RANK": "x"}, "RANK='x' is not an integer"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 WORLD_SIZE=2"),
    ({"UNIJOB_CHANNELS": "{not json"}, "UNIJOB_CHANNELS is not valid JSON"),
    ({"UNIJOB_HYPERPARAMETERS": "[1, 2]"}, "must be a JSON object"),
    ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_RANK=3"),
])
def test_malformed_env_is_a_clear_error(env, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("(", r"\(")):
        context(env, runtime_envs=[])


def test_runtime_envs_are_discovered_through_the_registry(tmp_path, monkeypatch):
    (tmp_path / "fake_rt_plugin.py").write_text(textwrap.dedent("""
        from unijob.contract import RuntimeEnv
        class PluginEnv(RuntimeEnv):
            name = "plugin"
            def detect(self, environ):
                return environ.get("PLUGIN_JOB") == "1"
            def read(self, environ):
                return {"job_id": "from-plugin", "hyperparameters": {"n": "3"}}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    from unijob import registry

    monkeypatch.setattr(registry, "runtime_envs", lambda: ["fake_rt_plugin:PluginEnv", "no_such_module_xyz:Env"])
    environment._registered_envs.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="no_such_module_xyz:Env failed to load"):
            ctx = context({"PLUGIN_JOB": "1"})
        assert ctx.source == "plugin" and ctx.job_id == "from-plugin" and ctx.hyperparameters == {"n": 3}
        assert context({"UNIJOB_JOB_ID": "x"}).source == "env"  # detect() false: contract
    finally:
        environment._registered_envs.cache_clear()


def test_context_is_frozen():
    ctx = Context()
    with pytest.raises(Exception):
        ctx.rank = 3  # type: ignore[misc]


_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                          st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
_hps = st.dictionaries(st.text(min_size=1, max_size=12), _json_scalars | st.lists(_json_scalars, max_size=3),
                       max_size=8)


@settings(max_examples=75, deadline=None)
@given(_hps)
def test_typed_hyperparameters_round_trip(hps):
    ctx = context({"UNIJOB_HYPERPARAMETERS": json.dumps(hps)}, runtime_envs=[])
    assert ctx.hyperparameters == hps


@settings(max_examples=75, deadline=None)
@given(_hps)
def test_sagemaker_style_strings_parse_back(hps):
    as_strings = {k: json.dumps(v) for k, v in hps.items()}  # what a platform that stringifies sends
    assert parse_hyperparameters(as_strings, strings_as_json=True) == hps


def _modules_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(sorted(sys.modules))"],
                         capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    return eval(out.stdout.strip().splitlines()[-1])


def _cloud(mods: list[str]) -> list[str]:
    # ("google" and "google.cloud" alone are namespace packages a .pth file of google-cloud-* imports
    # at interpreter start-up; they are not SDKs.)
    roots = ("boto3", "botocore", "google.cloud.aiplatform", "google.cloud.secretmanager", "google.api_core",
             "databricks.sdk", "kubernetes")
    return [m for m in mods if any(m == r or m.startswith(r + ".") for r in roots)]


def test_import_is_cheap():
    mods = _modules_after("import unijob.runtime\n"
                          "from unijob.runtime import Checkpointer, preempted, secret, on_preemption, context\n"
                          "preempted()")
    assert [m for m in mods if m.split(".")[0] in ("pydantic", "fsspec", "yaml")] == []
    assert _cloud(mods) == []


def test_context_imports_no_cloud_sdk():
    # context() loads the registered RuntimeEnvs (stdlib-only by contract), never a cloud SDK.
    mods = _modules_after("from unijob.runtime import context\ncontext()")
    assert _cloud(mods) == []
