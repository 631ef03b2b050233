"""Nothing heavy at import: `unijob --help`, `validate` and `plan --target local` load no cloud SDK."""

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = {"boto3", "botocore", "google", "databricks", "kubernetes", "sagemaker", "torch", "pandas", "grpc", "ray"}
QUICKSTART = Path(__file__).parents[1] / "examples" / "quickstart" / "job.yaml"

CODE = """
import sys
base = set(sys.modules)  # *-nspkg.pth files may preload e.g. `google`; new submodules still count
from unijob.cli import main
code = main(sys.argv[1:])
print("MODULES", " ".join(sorted({m.split('.')[0] for m in set(sys.modules) - base})), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("argv", [["--help"], ["validate", str(QUICKSTART)], ["plan", str(QUICKSTART), "--target", "local"],
                                  ["plan", str(QUICKSTART), "-o", "json"], ["plan", str(QUICKSTART), "--target", "ray"]])
def test_no_cloud_sdk_imported(argv):
    if "ray" in argv and "ray" not in __import__("unijob.registry").registry.names():
        pytest.skip("the ray adapter is not installed")
    r = subprocess.run([sys.executable, "-c", CODE, *argv], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stderr.split("MODULES", 1)[1].split())
    assert not (loaded & HEAVY), f"unijob {' '.join(argv)} imported {loaded & HEAVY}"


FULL = """
import sys
from unijob.cli import main
code = main(sys.argv[1:])
print("MODULES", " ".join(sorted(sys.modules)), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("argv", [["validate", str(QUICKSTART)], ["plan", str(QUICKSTART), "-o", "json"]])
def test_job_spec_commands_build_no_pipeline_models(argv):
    """Telling a job spec from a pipeline file reads its YAML only: the pipeline models (and the
    pipeline compilers) are not imported, let alone built, for a job spec."""
    r = subprocess.run([sys.executable, "-c", FULL, *argv], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stderr.split("MODULES", 1)[1].split())
    assert "unijob.spec" in loaded  # the job spec was built (the check below is not vacuous)
    assert not {m for m in loaded if m.startswith("unijob.pipeline.")}, sorted(m for m in loaded if "pipeline" in m)


@pytest.mark.parametrize("argv", [["validate", str(QUICKSTART)], ["plan", str(QUICKSTART), "-o", "json"]])
def test_with_the_model_cache_warm_no_model_is_built(argv):
    """The second start reads every model it uses from unijob.modelcache: pydantic's plugin loader
    (and importlib.metadata, which it imports) is never needed, so no model was built."""
    for attempt in ("cold", "warm"):
        r = subprocess.run([sys.executable, "-c", FULL, *argv], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        loaded = set(r.stderr.split("MODULES", 1)[1].split())
        assert "unijob.spec" in loaded
        if attempt == "cold":
            assert "pydantic.plugin._loader" in loaded  # built by pydantic (the check below can fail)
    assert not loaded & {"pydantic.plugin._loader", "importlib.metadata"}, sorted(loaded & {"pydantic.plugin._loader", "importlib.metadata"})


def test_validate_checks_every_targets_block_with_options_modules_only():
    """`unijob validate` checks each `targets.<name>` block with the options model registered under
    the `unijob.options` entry point: the adapters themselves (plan, client, registry) stay unloaded."""
    from unijob import registry

    portable = QUICKSTART.parents[1] / "portable" / "job.yaml"
    r = subprocess.run([sys.executable, "-c", FULL, "validate", str(portable)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stderr.split("MODULES", 1)[1].split())
    with_options = [n for n, _ in registry.entry_points(registry.OPTIONS_GROUP)]
    assert len(with_options) >= 2, with_options
    for name, value in registry.entry_points(registry.OPTIONS_GROUP):
        assert value.split(":")[0] in loaded, f"{name}'s options model was not used"
    adapters = {value.split(":")[0] for _, value in registry.entry_points(registry.GROUP)}
    assert not (adapters & loaded), sorted(adapters & loaded)


def test_a_broken_options_entry_point_falls_back_to_the_adapter(monkeypatch):
    from unijob import registry

    real = registry.entry_points

    def broken(group):
        if group == registry.OPTIONS_GROUP:
            return (("local", "unijob.no_such_module:Nothing"),)
        return real(group)

    monkeypatch.setattr(registry, "entry_points", broken)
    from unijob.local.adapter import LocalAdapter

    assert registry.options_model("local") is LocalAdapter.options_model
