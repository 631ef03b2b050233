"""registry.entry_points reads entry_points.txt itself (fast); it must agree with importlib.metadata."""

import sys
import zipfile
from importlib import metadata

import pytest

from unijob import registry


@pytest.fixture
def fresh(monkeypatch):
    """Forget what this process has read, before and after the test."""
    def clear():
        registry.entry_points.cache_clear()
        registry._all_entry_points.cache_clear()
        registry._entry_points.cache_clear()
    clear()
    yield monkeypatch
    clear()


def _importlib(group):
    return tuple((ep.name, ep.value) for ep in metadata.entry_points(group=group))


SAME_AS_IMPORTLIB = """
import sys
from importlib import metadata
from unijob import registry

groups = {ep.group for dist in metadata.distributions() for ep in dist.entry_points}
assert {"unijob.adapters", "console_scripts"} <= groups, groups
assert registry._fast_scan_applies()
for group in sorted(groups) + ["no.such.group"]:
    mine = registry.entry_points(group)
    theirs = tuple((ep.name, ep.value) for ep in metadata.entry_points(group=group))
    assert mine == theirs, (group, mine, theirs)
assert "local" in registry.names()
print("checked", len(groups), "groups")
"""


def test_every_installed_group_matches_importlib_metadata():
    """In a fresh interpreter: in this one another test may have imported mlflow, whose
    importlib_metadata backport takes distribution finding over from the stdlib (and so turns the
    fast scan off, which the next test covers)."""
    import subprocess

    r = subprocess.run([sys.executable, "-c", SAME_AS_IMPORTLIB], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "checked" in r.stdout


def test_with_the_importlib_metadata_backport_loaded_the_scan_defers_to_it():
    """After ``import importlib_metadata`` (as mlflow does) the fast scan is off and the answers
    still match (in a fresh interpreter: the backport patches the stdlib for the whole process)."""
    pytest.importorskip("importlib_metadata")
    import subprocess

    code = ("import importlib_metadata\n"
            + SAME_AS_IMPORTLIB.replace("assert registry._fast_scan_applies()", "assert not registry._fast_scan_applies()"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "checked" in r.stdout


def _dist(site, dirname, text):
    d = site / dirname
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dirname.split('-')[0]}\nVersion: 1\n")
    if text is not None:
        (d / "entry_points.txt").write_text(text)


def test_first_distribution_of_a_name_on_sys_path_wins_comments_and_blank_lines_skipped(fresh, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _dist(first, "My_Plugin-2.0.dist-info", "# a comment\n[unijob.adapters]\n\n  mycloud = my_plugin.adapter:Cloud  \n"
                                            "[other]\nx=y\n")
    _dist(second, "my.plugin-1.0.dist-info", "[unijob.adapters]\nmycloud = old_plugin:Cloud\n")  # same name, later: ignored
    _dist(second, "another-1.0.dist-info", "[unijob.adapters]\nmycloud = another:Cloud\nsecond = another:Two\n")
    _dist(second, "plain-1.0.dist-info", None)  # no entry points at all
    (second / "legacy.egg-info").write_text("Metadata-Version: 1.0\nName: legacy\n")  # an egg-info *file*
    fresh.setattr(sys, "path", [str(first), str(second)])
    for group in ("unijob.adapters", "other", "none"):
        assert registry.entry_points(group) == _importlib(group)
    assert registry.entry_points("unijob.adapters")[0] == ("mycloud", "my_plugin.adapter:Cloud")
    assert ("mycloud", "old_plugin:Cloud") not in registry.entry_points("unijob.adapters")
    assert registry.describe()["second"] == "another:Two"


def test_a_zip_on_sys_path_falls_back_to_importlib_metadata(fresh, tmp_path):
    z = tmp_path / "bundle.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("zipped-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: zipped\nVersion: 1.0\n")
        zf.writestr("zipped-1.0.dist-info/entry_points.txt", "[unijob.adapters]\nzipcloud = zipped:Cloud\n")
    fresh.setattr(sys, "path", [str(z)])
    assert not registry._fast_scan_applies()
    assert registry.entry_points("unijob.adapters") == (("zipcloud", "zipped:Cloud"),)


PLUGIN_PROBE = """
import sys
from pydantic.plugin import _loader
scans = []
real = _loader.entry_points
_loader.entry_points = lambda **kw: (scans.append(kw), real(**kw))[1]  # count pydantic's own scans
from unijob.cli import main
code = main(["validate", sys.argv[1]])
print("PLUGINS", sorted(_loader._plugins), "SCANS", len(scans))
"""


def test_without_pydantic_plugins_pydantic_is_told_so_before_its_first_model():
    import subprocess
    from pathlib import Path

    assert not _importlib("pydantic")  # this environment has none (else the next line proves nothing)
    spec = Path(__file__).parents[1] / "examples" / "quickstart" / "job.yaml"
    r = subprocess.run([sys.executable, "-c", PLUGIN_PROBE, str(spec)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "PLUGINS [] SCANS 0" in r.stdout  # pydantic did not scan the distributions itself


def test_an_installed_pydantic_plugin_is_still_loaded_and_sees_unijob_models(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    _dist(tmp_path, "probe_plugin-1.0.dist-info", "[pydantic]\nprobe = probe_plugin:plugin\n")
    (tmp_path / "probe_plugin.py").write_text(
        "CALLS = []\n"
        "class _Plugin:\n"
        "    def new_schema_validator(self, schema, schema_type, schema_type_path, schema_kind, config, plugin_settings):\n"
        "        CALLS.append(schema_type_path.name)\n"
        "        return None, None, None\n"
        "plugin = _Plugin()\n")
    spec = Path(__file__).parents[1] / "examples" / "quickstart" / "job.yaml"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", PLUGIN_PROBE, str(spec)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "PLUGINS ['probe_plugin:plugin'] SCANS 1" in r.stdout
    calls = subprocess.run([sys.executable, "-c", PLUGIN_PROBE + "import probe_plugin; print(probe_plugin.CALLS)", str(spec)],
                           capture_output=True, text=True, env=env).stdout
    assert "'JobSpec'" in calls  # the plugin saw unijob's models being built


def test_pydantic_still_has_the_plugin_cache_this_relies_on():
    from pydantic.plugin import _loader

    assert hasattr(_loader, "_plugins") and hasattr(_loader, "_loading_plugins")
