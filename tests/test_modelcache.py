"""unijob.modelcache: models completed from the cache behave exactly as pydantic-built ones, and a
stale, corrupt or foreign-writable cache is never used."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BAD_SPECS = [ROOT / "examples" / "portable" / "job.yaml"]

DIGEST = """
import inspect, json, re, sys
from unijob import modelcache
def norm(text):  # memory addresses, and the id() pydantic puts in each model's schema ref, differ per process
    return re.sub(r"(0x[0-9a-f]+|(?<=:)[0-9]{6,}(?='))", "N", text)
hits = {}
orig = modelcache.install
def spy(name, models):
    hits[name] = orig(name, models)
    return hits[name]
modelcache.install = spy
import unijob.spec, unijob.contract
from unijob import registry
for t in registry.names():
    registry.options_model(t)
from pydantic import BaseModel
models = {}
todo = [BaseModel]
while todo:
    for sub in todo.pop().__subclasses__():
        todo.append(sub)
        if sub.__module__.startswith("unijob") and sub.__module__ + ":" + sub.__qualname__ not in models:
            models[sub.__module__ + ":" + sub.__qualname__] = sub
out = {}
for key, m in sorted(models.items()):
    out[key] = {
        "complete": m.__pydantic_complete__,
        "core_schema": norm(repr(m.__pydantic_core_schema__)),
        "json_schema": m.model_json_schema(),
        "signature": norm(str(inspect.signature(m))),
        "computed": norm(repr(m.__pydantic_computed_fields__)),
        "validator": type(m.__pydantic_validator__).__name__,
        "serializer": type(m.__pydantic_serializer__).__name__,
    }
print(json.dumps({"hits": hits, "models": out}, default=repr))
"""


def _run(code, home, *args, cache=True):
    env = {**os.environ, "UNIJOB_HOME": str(home), "UNIJOB_MODEL_CACHE": "1" if cache else "0"}
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_cached_models_equal_pydantic_built_ones(tmp_path):
    built = json.loads(_run(DIGEST, tmp_path, cache=False))
    first = json.loads(_run(DIGEST, tmp_path))   # a miss: builds and writes
    second = json.loads(_run(DIGEST, tmp_path))  # a hit
    assert not any(first["hits"].values())
    assert second["hits"] and all(second["hits"].values()), second["hits"]
    assert {"spec", "unijob.contract", "unijob.local.options"} <= set(second["hits"])
    assert len(list((tmp_path / "cache" / "models").iterdir())) == len(second["hits"])
    assert built["models"] == second["models"] == first["models"]
    assert "unijob.spec:JobSpec" in built["models"] and "unijob.contract:Plan" in built["models"]


def test_errors_dumps_and_plans_are_the_same_from_the_cache(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        name: Bad_Name
        image: x
        resources: {acelerator: H100:8, nodes: 0}
        spot: {policy: spot, max_wait: 10m}
        max_run: 2h
        endpoint: {variants: [{name: a, weight: 60, model: s3://b/m}, {name: b, weight: 30, model: s3://b/n}]}
        targets: {local: {simulate_preemptions: 0}, kubernetes: {namespace: 7}, vertex: {nope: 1}}
        """))
    cli = "import sys\nfrom unijob.cli import main\nsys.exit(main(sys.argv[1:]))"

    def outputs(home, cache):
        env = {**os.environ, "UNIJOB_HOME": str(home), "UNIJOB_MODEL_CACHE": "1" if cache else "0"}
        got = []
        for argv in (["validate", str(bad)], ["plan", str(BAD_SPECS[0]), "-t", "local", "-o", "json"],
                     ["plan", str(BAD_SPECS[0]), "-t", "kubernetes", "-o", "json"]):
            r = subprocess.run([sys.executable, "-c", cli, *argv], capture_output=True, text=True, env=env)
            got.append((r.returncode, r.stdout, r.stderr))
        return got

    reference = outputs(tmp_path / "b", cache=False)  # the same home: the local plan names its job dir
    assert reference[0][0] == 2 and "acelerator" in reference[0][1] + reference[0][2]
    outputs(tmp_path / "b", cache=True)  # writes the cache
    assert outputs(tmp_path / "b", cache=True) == reference
    assert any((tmp_path / "b" / "cache" / "models").iterdir())


MODULE = '''
from typing import Optional
from pydantic import BaseModel, ConfigDict, Field

class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    size: int = Field(ge=1)
    {extra}

from unijob import modelcache
HIT = modelcache.install_module(__name__)
'''

PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
import unijob_cachetest_mod as m
from pydantic import ValidationError
try:
    m.Thing.model_validate({"size": 2, "colour": "red"})
    print(m.HIT, "accepted")
except ValidationError as e:
    print(m.HIT, "rejected", e.errors()[0]["type"])
"""


def test_an_edited_model_module_is_rebuilt_not_read_from_the_stale_cache(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    mod = src / "unijob_cachetest_mod.py"
    mod.write_text(MODULE.format(extra=""))
    assert _run(PROBE, tmp_path, str(src)).split() == ["False", "rejected", "extra_forbidden"]  # built, written
    assert _run(PROBE, tmp_path, str(src)).split() == ["True", "rejected", "extra_forbidden"]   # from the cache
    mod.write_text(MODULE.format(extra="colour: Optional[str] = None"))
    assert _run(PROBE, tmp_path, str(src)).split() == ["False", "accepted"]  # stale: rebuilt
    assert _run(PROBE, tmp_path, str(src)).split() == ["True", "accepted"]


def test_a_corrupt_or_foreign_writable_cache_is_not_used(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "unijob_cachetest_mod.py").write_text(MODULE.format(extra=""))
    _run(PROBE, tmp_path, str(src))
    (cached,) = (tmp_path / "cache" / "models").iterdir()
    assert cached.stat().st_mode & 0o777 == 0o600
    cached.chmod(0o666)
    assert _run(PROBE, tmp_path, str(src)).split() == ["False", "rejected", "extra_forbidden"]  # not read; rewritten
    assert cached.stat().st_mode & 0o777 == 0o600
    cached.write_bytes(b"\x80\x05garbage")
    assert _run(PROBE, tmp_path, str(src)).split() == ["False", "rejected", "extra_forbidden"]
    assert _run(PROBE, tmp_path, str(src)).split() == ["True", "rejected", "extra_forbidden"]


@pytest.mark.parametrize("value", ["0"])
def test_the_cache_can_be_switched_off(tmp_path, value):
    src = tmp_path / "src"
    src.mkdir()
    (src / "unijob_cachetest_mod.py").write_text(MODULE.format(extra=""))
    env = {**os.environ, "UNIJOB_HOME": str(tmp_path), "UNIJOB_MODEL_CACHE": value}
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", PROBE, str(src)], capture_output=True, text=True, env=env)
        assert r.stdout.split() == ["False", "rejected", "extra_forbidden"], r.stderr
    assert not (tmp_path / "cache" / "models").exists()
