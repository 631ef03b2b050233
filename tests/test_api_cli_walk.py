"""Every CLI command is argument parsing and printing over one library call.

The walk lists every command of ``unijob`` (and every subcommand of a group); each must have a row
here naming the library call it runs. Each row's command is run through the CLI with that call
replaced by a spy that raises, so the row passes only if the command really reaches the call. And
``cli/`` keeps no record or adapter logic: no module there imports the records or the registry.
"""

import ast
import importlib
from pathlib import Path

import click
import pytest

from unijob.cli import main
from unijob.cli.main import COMMANDS
from unijob.records import Records

CLI_DIR = Path(__file__).parents[1] / "src" / "unijob" / "cli"

#: command path -> (argv after `unijob`, the library call "module:attr" or "module:Class.method")
ROWS = {
    ("validate",): (["validate", "{job_spec}"], "unijob.api.specs:load"),
    ("plan",): (["plan", "{job_spec}"], "unijob.api.specs:plan"),
    ("submit",): (["submit", "{job_spec}"], "unijob.api.jobs:submit"),
    ("batch",): (["batch", "{job_spec}"], "unijob.api.jobs:batch_predict"),
    ("status",): (["status", "{job}"], "unijob.api.jobs:Job.status"),
    ("logs",): (["logs", "{job}"], "unijob.api.jobs:Job.logs"),
    ("cancel",): (["cancel", "{job}"], "unijob.api.jobs:Job.cancel"),
    ("list",): (["list"], "unijob.api.jobs:jobs"),
    ("targets",): (["targets"], "unijob.api.specs:targets"),
    ("deploy",): (["deploy", "{endpoint_spec}"], "unijob.api.endpoints:deploy"),
    ("endpoints",): (["endpoints"], "unijob.api.endpoints:endpoints"),
    ("traffic",): (["traffic", "digits", "blue=50", "green=50"], "unijob.api.endpoints:Endpoint.set_traffic"),
    ("undeploy",): (["undeploy", "digits"], "unijob.api.endpoints:Endpoint.undeploy"),
    ("invoke",): (["invoke", "digits", "--data", '{"instances": [1]}'], "unijob.api.endpoints:Endpoint.invoke"),
    ("serve",): (["serve", "--handler", "handler.py:Predictor", "--model-dir", "{tmp}"], "unijob.serve.runner:run"),
    ("serve-image",): (["serve-image", "handler:Predictor", "-o", "-"], "unijob.serve.image:dockerfile"),
    ("runtime-wheel",): (["runtime-wheel", "-o", "{tmp}"], "unijob.bundle:runtime_wheel"),
    ("schema",): (["schema"], "unijob.spec:json_schema"),
    ("cost",): (["cost", "{job_spec}"], "unijob.cost.report:cost"),
    ("breakeven",): (["breakeven"], "unijob.cost.report:breakeven"),
    ("catalog", "gpus"): (["catalog", "gpus"], "unijob.cost.report:gpu_offers"),
    ("catalog", "refresh"): (["catalog", "refresh"], "unijob.cost.refresh:refresh"),
    ("pipelines", "run"): (["pipelines", "run", "pipeline.yaml"], "unijob.pipeline.runs:run"),
    ("pipelines", "status"): (["pipelines", "status", "r1"], "unijob.pipeline.runs:run_of"),
    ("pipelines", "list"): (["pipelines", "list"], "unijob.pipeline.runs:runs"),
    ("pipelines", "cancel"): (["pipelines", "cancel", "r1"], "unijob.pipeline.runs:run_of"),
    ("pipelines", "resume"): (["pipelines", "resume", "r1"], "unijob.pipeline.runs:run_of"),
    ("models", "register"): (["models", "register", "./model", "-n", "digits"], "unijob.models:register"),
    ("models", "list"): (["models", "list"], "unijob.models:list_models"),
    ("models", "versions"): (["models", "versions", "digits"], "unijob.models:versions"),
    ("models", "show"): (["models", "show", "digits", "1"], "unijob.models:show"),
    ("models", "approve"): (["models", "approve", "digits", "1"], "unijob.models:approve"),
    ("models", "reject"): (["models", "reject", "digits", "1"], "unijob.models:reject"),
    ("models", "alias"): (["models", "alias", "digits", "1", "champion"], "unijob.models:alias"),
    ("models", "server"): (["models", "server"], "unijob.local.registry:ensure_server"),
}
SKIPS: dict = {}


class Called(Exception):
    """Raised by the spy: the command reached its library call."""


def _commands() -> set[tuple[str, ...]]:
    from unijob.cli.main import cli

    out = set()
    ctx = click.Context(cli)
    for name in COMMANDS:
        cmd = cli.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            out |= {(name, sub) for sub in cmd.list_commands(ctx)}
        else:
            out.add((name,))
    return out


def test_every_command_has_a_library_call():
    missing = _commands() - set(ROWS)
    assert not missing, f"CLI commands without a library call in ROWS: {sorted(missing)}"
    assert not set(ROWS) - _commands(), "ROWS names commands the CLI does not have"


@pytest.fixture
def world(tmp_path, endpoint_project):
    """A job spec, an endpoint spec, a recorded (fake) local job and a recorded endpoint."""
    (tmp_path / "train.py").write_text("print('hi')\n")
    job_spec = tmp_path / "job.yaml"
    job_spec.write_text("name: walk\nscript: train.py\n")
    endpoint_spec = endpoint_project(tmp_path)
    with Records() as r:
        rec, _ = r.begin_submission(name="walk", target="local", spec_hash="0" * 64, spec_path=str(job_spec))
        r.set_submitted(rec.id, "walk-00000000", {"target": "local", "native_id": "walk-00000000"})
        r.put_endpoint("digits", "local", "DEPLOYED", {"target": "local", "name": "digits"})
    return {"job_spec": str(job_spec), "endpoint_spec": str(endpoint_spec), "job": rec.id, "tmp": str(tmp_path)}


@pytest.mark.parametrize("path", [pytest.param(p, marks=SKIPS.get(p, ()), id=" ".join(p))
                                  for p in ROWS])
def test_the_command_runs_its_library_call(path, world, monkeypatch):
    argv, call = ROWS[path]
    module, _, attr = call.partition(":")
    owner = importlib.import_module(module)
    *outer, name = attr.split(".")
    for part in outer:
        owner = getattr(owner, part)
    assert callable(getattr(owner, name)), call

    def spy(*args, **kwargs):
        raise Called(call)

    monkeypatch.setattr(owner, name, spy)
    with pytest.raises(Called):
        main([world.get(a.strip("{}"), a) if a.startswith("{") and a.endswith("}") else a for a in argv])


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


@pytest.mark.parametrize("module", sorted(p.name for p in CLI_DIR.glob("*.py")))
def test_cli_keeps_no_record_or_adapter_logic(module):
    forbidden = {"unijob.records", "unijob.registry", "unijob.contract.JobHandle", "unijob.contract.EndpointHandle"}
    found = {m for m in _imports(CLI_DIR / module) if m in forbidden or m.startswith(("unijob.records.",
                                                                                      "unijob.registry."))}
    assert not found, f"cli/{module} imports {sorted(found)}; that logic belongs in unijob.api"
