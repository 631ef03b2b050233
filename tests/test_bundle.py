"""The runtime wheel (unijob.bundle): deterministic, installable with no index into a Python without
unijob, and the runtime it carries reads each platform's environment there."""

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from unijob import bundle
from unijob.errors import SpecError
from unijob.testing.contracts import clean_env, job_python


def test_wheel_is_deterministic_and_well_formed():
    a, b = bundle.runtime_wheel(), bundle.runtime_wheel()
    assert a.data == b.data and a.sha256 == b.sha256
    import unijob

    assert a.filename.startswith(f"unijob-{unijob.__version__}+runtime.") and a.filename.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(io.BytesIO(a.data)).namelist()
    assert "unijob/runtime/checkpoint.py" in names and "unijob/runtime_env.py" in names
    assert not any(n.startswith(("unijob/cli", "unijob/spec", "unijob/local", "unijob/cost")) for n in names)
    assert names[-1].endswith(".dist-info/RECORD")


def test_wheel_per_target_carries_only_that_runtime_env():
    installed = bundle.runtime_wheel().targets
    if "sagemaker" not in installed:
        pytest.skip("the SageMaker adapter is not installed")
    w = bundle.runtime_wheel(["sagemaker", "local"])
    assert w.targets == ("sagemaker",)
    zf = zipfile.ZipFile(io.BytesIO(w.data))
    ep = next(n for n in zf.namelist() if n.endswith("entry_points.txt"))
    assert zf.read(ep).decode().strip().splitlines() == [
        "[unijob.runtime_envs]", "sagemaker = unijob_adapters.sagemaker.runtime_env:SageMakerRuntimeEnv"]
    assert w.sha256 != bundle.runtime_wheel(["vertex"]).sha256


def _clean_env(**extra):
    return clean_env(extra)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A fresh venv (pip, no unijob, no pydantic): the Python of a stock job image."""
    return job_python(tmp_path_factory.mktemp("bare"))


def test_installed_in_a_python_without_unijob_reads_the_platform(bare_python, tmp_path):
    wheel = bundle.runtime_wheel()
    path = wheel.write(tmp_path)
    subprocess.run(bundle.install_argv(str(path), python=str(bare_python)), check=True, timeout=120,
                   env=_clean_env(PIP_NO_INDEX="1"))
    code = ("import json, sys; from unijob import runtime; c = runtime.context(); "
            "print(json.dumps({'rank': c.rank, 'world': c.world_size, 'source': c.source, "
            "'version': c.unijob_version, 'master': c.master_addr, 'pydantic': 'pydantic' in sys.modules}))")
    env = _clean_env(HOME=str(tmp_path))
    if "kubernetes" in wheel.targets:
        k8s = {**env, "JOB_COMPLETION_INDEX": "1", "UNIJOB_TARGET": "kubernetes", "UNIJOB_NODES": "2",
               "UNIJOB_PROCESSES_PER_NODE": "1", "NODE_RANK": "1", "RANK": "1", "WORLD_SIZE": "2",
               "MASTER_ADDR": "ranker-0.ranker", "MASTER_PORT": "29500"}
        out = subprocess.run([str(bare_python), "-c", code], env=k8s, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        assert (got["rank"], got["world"], got["master"]) == (1, 2, "ranker-0.ranker")
        assert got["version"] == wheel.filename.split("-")[1] and got["pydantic"] is False
    plain = subprocess.run([str(bare_python), "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["source"] == "default"


def test_pack_dir_is_deterministic_and_skips_caches(tmp_path):
    src = tmp_path / "src"
    (src / "pkg" / "__pycache__").mkdir(parents=True)
    (src / "train.py").write_text("print('hi')\n")
    (src / "pkg" / "m.py").write_text("x = 1\n")
    (src / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    one = bundle.pack_dir(src, {"requirements.txt": b"numpy\n"})
    os.utime(src / "train.py", (1, 1))
    assert bundle.pack_dir(src, {"requirements.txt": b"numpy\n"}) == one
    with tarfile.open(fileobj=io.BytesIO(one)) as tar:
        assert tar.getnames() == ["pkg", "pkg/m.py", "requirements.txt", "train.py"]
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())


def test_oversized_source_dir_is_refused_with_its_largest_files(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"\0" * 3000)
    (tmp_path / "train.py").write_text("pass\n")
    assert bundle.check_source_size(tmp_path, limit=10_000).files == 2
    with pytest.raises(SpecError) as e:
        bundle.check_source_size(tmp_path, limit=2048, why="a test limit")
    msg = str(e.value)
    assert "data.bin" in msg and "a test limit" in msg and "source_dir" in msg


def test_cli_writes_the_wheel(tmp_path):
    out = subprocess.run([sys.executable, "-c", "from unijob.cli import main; main()", "runtime-wheel", "-o", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    files = list(tmp_path.glob("unijob-*.whl"))
    assert len(files) == 1 and files[0].read_bytes() == bundle.runtime_wheel().data


def _spec_file(tmp_path, text: str):
    from unijob.loading import load_spec

    (tmp_path / "src" / "data").mkdir(parents=True, exist_ok=True)
    (tmp_path / "src" / "train.py").write_text("pass\n")
    (tmp_path / "job.yaml").write_text(text)
    return load_spec(tmp_path / "job.yaml").spec


@pytest.mark.parametrize("fields, expected", [
    ("output: src/out\ncheckpoint: {uri: 'file://{root}/src/ckpt/run'}\n", ("ckpt/run", "out")),
    ("output: ./src/out/../out\n", ("out",)),                         # normalised
    ("output: src\n", ()),                                             # the source dir itself: not skippable
    ("output: ./elsewhere\ncheckpoint: {uri: s3://b/ck}\n", ()),       # outside it, or remote
    ("output: src/data\ninputs: {train: src/data/train.csv}\n", ()),   # holds what the job reads
    ("output: src/data/out\ninputs: {train: src/data}\n", ("data/out",)),
])
def test_local_outputs_are_the_spec_s_local_writes_inside_the_source_dir(tmp_path, fields, expected):
    spec = _spec_file(tmp_path, "name: j\nscript: src/train.py\nsource_dir: src\n" + fields.replace("{root}", str(tmp_path)))
    assert bundle.local_outputs(spec) == expected


def test_a_replaced_output_still_skips_the_file_s_own(tmp_path):
    """A caller (or a pipeline step's `with`) that moves output to a bucket: the directory the spec
    file's local runs wrote stays out of the bundle."""
    spec = _spec_file(tmp_path, "name: j\nscript: src/train.py\nsource_dir: src\noutput: src/out\n")
    moved = spec.model_copy(update={"output": "s3://b/out"})
    assert moved.output == "s3://b/out" and bundle.local_outputs(moved) == ("out",)


def test_iter_source_files_excludes_paths_not_names(tmp_path):
    for rel in ("out/model.pkl", "pkg/out/keep.py", "out.py", ".unijob/state.json", "a.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    names = [rel for rel, _ in bundle.iter_source_files(tmp_path, ["out"])]
    assert names == ["a.py", "out.py", "pkg/out/keep.py"]
    assert bundle.pack_dir(tmp_path, exclude=["out"]) != bundle.pack_dir(tmp_path)


def test_ignore_patterns_match_what_iter_source_files_skips(tmp_path):
    """The .gitignore patterns handed to Ray select the same files (checked with Ray's own matcher
    when Ray is installed, else the pathspec library Ray vendors)."""
    try:
        from ray._private.thirdparty.pathspec import PathSpec
    except ImportError:
        PathSpec = pytest.importorskip("pathspec").PathSpec
    for rel in ("out/model.pkl", "pkg/out/keep.py", "we*ird [1]/x.bin", "pkg/__pycache__/m.pyc", "m.pyc",
                ".git/HEAD", "train.py", "pkg/m.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    exclude = ["out", "we*ird [1]"]
    spec = PathSpec.from_lines("gitwildmatch", bundle.ignore_patterns(exclude))
    everything = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    kept = [rel for rel in everything if not spec.match_file(rel)]
    assert kept == [rel for rel, _ in bundle.iter_source_files(tmp_path, exclude)] == ["pkg/m.py", "pkg/out/keep.py", "train.py"]
