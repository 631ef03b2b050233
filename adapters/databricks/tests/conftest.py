"""A local Databricks workspace fake speaking the REST paths databricks-sdk 0.156 really calls.

Every request body is checked with the SDK's own dataclasses (``X.from_dict(body).as_dict() ==
body``: nothing unknown or mistyped is accepted) and against the SDK method's parameters; a
violation is answered 400 and recorded in ``fake.errors``. Runs honour ``idempotency_token`` as
Databricks does (same token -> same run_id, no new run) and move through states as a test directs.

Invocations (``POST /serving-endpoints/NAME/invocations`` and, pinned to one served entity,
``.../served-models/ENTITY/invocations``) pick the served entity by the endpoint's
``traffic_config.routes`` (weighted, ``fake.rng``), run the model a test registered in
``fake.models`` for that entity's ``entity_name/entity_version`` on the request's rows, and answer
``{"predictions": [...]}`` with the ``served-model-name`` header, as Model Serving does.
"""

from __future__ import annotations

import inspect
import itertools
import os
import sys
from urllib.parse import unquote
import random
import textwrap
from email.parser import BytesParser
from email.policy import default as email_default
from pathlib import Path
from typing import Any

import pytest

from unijob.testing.httpfake import FakeServer, Request, Response

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib

from databricks_uc_fake import UnityCatalogModelsFake  # noqa: E402


def _roundtrip(cls, d, what):
    back = cls.from_dict(d).as_dict()
    if back != d:
        raise AssertionError(f"{what} does not round-trip through {cls.__name__}: sent {d!r}, kept {back!r}")


def _params(fn) -> set:
    return set(inspect.signature(fn).parameters) - {"self"}


def _err(status: int, code: str, message: str) -> Response:
    return Response(status, {"error_code": code, "message": message})


class FakeDatabricks(UnityCatalogModelsFake, FakeServer):
    """Jobs 2.2 runs, workspace import/mkdirs, Files API, Model Serving, Unity Catalog models
    (:mod:`databricks_uc_fake`)."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[int, dict] = {}
        self.tokens: dict[str, int] = {}
        self.task_parent: dict[int, int] = {}
        self.outputs: dict[int, str] = {}
        self.task_errors: dict[int, dict] = {}
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = {"/", "/Workspace", "/Workspace/Shared"}
        self.endpoints: dict[str, dict] = {}
        self.models: dict[str, Any] = {}
        self.rng = random.Random(0)
        self._ids = itertools.count(1001)
        r = self.route
        r("POST", r"/api/2\.2/jobs/runs/submit", self.submit)
        r("GET", r"/api/2\.2/jobs/runs/get", self.get_run)
        r("GET", r"/api/2\.2/jobs/runs/get-output", self.get_output)
        r("POST", r"/api/2\.2/jobs/runs/cancel", self.cancel)
        r("POST", r"/api/2\.0/workspace/mkdirs", self.mkdirs)
        r("POST", r"/api/2\.0/workspace/import", self.ws_import)
        r("PUT", r"/api/2\.0/fs/files(?P<path>/.+)", self.fs_put)
        r("GET", r"/api/2\.0/fs/files(?P<path>/.+)", self.fs_get)
        r("PUT", r"/api/2\.0/fs/directories(?P<path>/.+)", self.fs_mkdir)
        r("POST", r"/api/2\.0/serving-endpoints", self.ep_create)
        r("GET", r"/api/2\.0/serving-endpoints/(?P<name>[^/]+)", self.ep_get)
        r("PUT", r"/api/2\.0/serving-endpoints/(?P<name>[^/]+)/config", self.ep_config)
        r("DELETE", r"/api/2\.0/serving-endpoints/(?P<name>[^/]+)", self.ep_delete)
        r("POST", r"/serving-endpoints/(?P<name>[^/]+)/invocations", self.ep_invoke)
        r("POST", r"/serving-endpoints/(?P<name>[^/]+)/served-models/(?P<entity>[^/]+)/invocations", self.ep_invoke)

    # ---- jobs ---------------------------------------------------------------------------------

    def submit(self, req: Request) -> Response:
        from databricks.sdk.service import jobs

        body = req.json()
        unknown = set(body) - _params(jobs.JobsAPI.submit)
        assert not unknown, f"runs/submit has no {unknown}"
        assert body.get("tasks"), "runs/submit without tasks"
        for t in body["tasks"]:
            _roundtrip(jobs.SubmitTask, t, "task")
            nc = t["new_cluster"]
            assert nc["spark_version"] and nc["node_type_id"]
            assert ("num_workers" in nc) != ("autoscale" in nc), "exactly one of num_workers / autoscale"
            for lib in t.get("libraries") or []:
                if "whl" in lib:  # a wheel library must be in the workspace before the run
                    assert self._exists(lib["whl"]), f"library {lib['whl']} was not uploaded"
            spt = t.get("spark_python_task")
            if spt:  # what the task runs must have been uploaded before the run was submitted
                assert self._exists(spt["python_file"]), f"python_file {spt['python_file']} was not uploaded"
                params = spt.get("parameters", [])
                if "--" in params and "--exec" not in params:
                    script = params[params.index("--") + 1]
                    assert self._exists(script), f"script {script} was not uploaded"
        tok = body.get("idempotency_token")
        if tok is not None:
            assert len(tok) <= 64, "idempotency_token longer than 64"
            if tok in self.tokens:
                return Response(200, {"run_id": self.tokens[tok]})
        run_id = next(self._ids)
        tasks = []
        for t in body["tasks"]:
            tid = next(self._ids)
            self.task_parent[tid] = run_id
            tasks.append({"run_id": tid, "task_key": t["task_key"], "attempt_number": 0,
                          "state": {"life_cycle_state": "PENDING"},
                          "cluster_instance": {"cluster_id": f"0101-{tid}-fake"}, "new_cluster": t["new_cluster"]})
        self.runs[run_id] = {"run_id": run_id, "run_name": body.get("run_name"), "tasks": tasks,
                             "state": {"life_cycle_state": "PENDING", "state_message": "Waiting for cluster"},
                             "start_time": 1763700000000, "submitted": body}
        if tok is not None:
            self.tokens[tok] = run_id
        return Response(200, {"run_id": run_id})

    def _exists(self, path: str) -> bool:
        return path in self.files or path.removeprefix("/Workspace") in self.files

    def _public(self, run: dict) -> dict:
        return {k: v for k, v in run.items() if k != "submitted"}

    def get_run(self, req: Request) -> Response:
        run = self.runs.get(int(req.arg("run_id") or 0))
        if not run:
            return _err(400, "INVALID_PARAMETER_VALUE", f"Run {req.arg('run_id')} does not exist.")
        return Response(200, self._public(run))

    def get_output(self, req: Request) -> Response:
        rid = int(req.arg("run_id") or 0)
        if rid in self.runs:
            return _err(400, "INVALID_PARAMETER_VALUE", "Retrieving the output of runs with multiple tasks is not "
                                                        "supported. Please retrieve the output of each individual task run instead.")
        if rid not in self.task_parent:
            return _err(400, "INVALID_PARAMETER_VALUE", f"Run {rid} does not exist.")
        parent = self.runs[self.task_parent[rid]]
        out = {"metadata": {"run_id": rid, "state": parent["state"]}, "logs": self.outputs.get(rid, "")}
        if rid in self.task_errors:  # what a start-contract runner reported
            out.update({k: v for k, v in self.task_errors[rid].items() if v})
        elif parent["state"].get("result_state") == "FAILED":
            out["error"] = parent["state"].get("state_message", "failed")
            out["error_trace"] = "Traceback (most recent call last):\n  boom"
        return Response(200, out)

    def cancel(self, req: Request) -> Response:
        body = req.json()
        assert set(body) == {"run_id"}, body
        run = self.runs.get(body["run_id"])
        if not run:
            return _err(400, "INVALID_PARAMETER_VALUE", f"Run {body['run_id']} does not exist.")
        if run["state"]["life_cycle_state"] not in ("TERMINATED", "INTERNAL_ERROR", "SKIPPED"):
            self.set_state(run["run_id"], "TERMINATED", "CANCELED", "Run cancelled.")
        return Response(200, {})

    def set_state(self, run_id: int, life: str, result: str | None = None, message: str = "") -> None:
        """Move a run (and its task) to ``life`` / ``result`` as a test directs."""
        st = {"life_cycle_state": life, "state_message": message}
        if result:
            st["result_state"] = result
        with self.lock:
            self.runs[run_id]["state"] = st
            for t in self.runs[run_id]["tasks"]:
                t["state"] = dict(st)
            if life == "TERMINATED":
                self.runs[run_id]["end_time"] = 1763700600000

    def put_run_state(self, task_run_id: int, life_cycle_state: str, result_state: str | None = None,
                      state_message: str = "", logs: str | None = None, error: str | None = None,
                      error_trace: str | None = None) -> None:
        """A start-contract runner (unijob.testing.contracts.databricks) reports its task's state
        and output, as the cluster reports to the Jobs service."""
        self.set_state(self.task_parent[task_run_id], life_cycle_state, result_state, state_message)
        with self.lock:
            if logs is not None:
                self.outputs[task_run_id] = logs
            if error or error_trace:
                self.task_errors[task_run_id] = {"error": error, "error_trace": error_trace}

    def task_run_ids(self, run_id: int) -> list[int]:
        return [t["run_id"] for t in self.runs[run_id]["tasks"]]

    # ---- uploads ------------------------------------------------------------------------------

    def mkdirs(self, req: Request) -> Response:
        body = req.json()
        assert set(body) == {"path"}, body
        p = body["path"].rstrip("/")
        while p:
            self.dirs.add(p)
            p = p.rsplit("/", 1)[0]
        return Response(200, {})

    def ws_import(self, req: Request) -> Response:
        from databricks.sdk.service.workspace import ImportFormat

        ctype = req.headers["content-type"]
        assert ctype.startswith("multipart/form-data"), ctype
        msg = BytesParser(policy=email_default).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + req.body)
        fields = {}
        for part in msg.iter_parts():
            fields[part.get_param("name", header="content-disposition")] = part.get_payload(decode=True)
        assert set(fields) <= {"path", "format", "language", "overwrite", "content"}, set(fields)
        path = fields["path"].decode()
        if "format" in fields:
            ImportFormat(fields["format"].decode())
        parent = path.rsplit("/", 1)[0]
        if parent not in self.dirs:
            return _err(404, "RESOURCE_DOES_NOT_EXIST", f"The parent folder ({parent}) does not exist.")
        if path in self.files and fields.get("overwrite", b"").decode() != "true":
            return _err(400, "RESOURCE_ALREADY_EXISTS", f"{path} already exists.")
        self.files[path] = fields["content"]
        return Response(200, {})

    def fs_put(self, req: Request) -> Response:
        p = unquote(req.params["path"])  # the SDK percent-encodes the path ('+' in wheel names)
        assert p.startswith("/Volumes/"), p
        self.files[p] = req.body
        return Response(204, b"")

    def fs_get(self, req: Request) -> Response:
        p = unquote(req.params["path"])
        if p not in self.files:
            return _err(404, "NOT_FOUND", f"{p} not found")
        return Response(200, self.files[p])

    def fs_mkdir(self, req: Request) -> Response:
        self.dirs.add(req.params["path"].rstrip("/"))
        return Response(204, b"")

    # ---- serving ------------------------------------------------------------------------------

    def _check_config(self, cfg: dict) -> None:
        from databricks.sdk.service import serving

        names = []
        for e in cfg.get("served_entities", []):
            _roundtrip(serving.ServedEntityInput, e, "served entity")
            assert e.get("entity_name") and e.get("entity_version"), "UC model name and version required"
            names.append(e["name"])
        tc = cfg.get("traffic_config")
        if tc:
            _roundtrip(serving.TrafficConfig, tc, "traffic_config")
            routes = tc["routes"]
            assert sum(r["traffic_percentage"] for r in routes) == 100, "routes must sum to 100"
            assert {r["served_entity_name"] for r in routes} <= set(names), "route to an unknown entity"

    def ep_create(self, req: Request) -> Response:
        from databricks.sdk.service import serving

        body = req.json()
        unknown = set(body) - _params(serving.ServingEndpointsAPI.create)
        assert not unknown, f"create has no {unknown}"
        _roundtrip(serving.EndpointCoreConfigInput, body["config"], "config")
        self._check_config(body["config"])
        name = body["name"]
        if name in self.endpoints:
            return _err(400, "RESOURCE_ALREADY_EXISTS", f"Endpoint with name '{name}' already exists.")
        self.endpoints[name] = {"name": name, "id": f"ep-{len(self.endpoints) + 1}",
                                "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
                                "config": {"served_entities": body["config"]["served_entities"],
                                           "traffic_config": body["config"]["traffic_config"]},
                                "tags": body.get("tags", [])}
        return Response(200, self.endpoints[name])

    def ep_get(self, req: Request) -> Response:
        ep = self.endpoints.get(req.params["name"])
        return Response(200, ep) if ep else _err(404, "RESOURCE_DOES_NOT_EXIST", "endpoint not found")

    def ep_config(self, req: Request) -> Response:
        from databricks.sdk.service import serving

        body = req.json()
        unknown = set(body) - (_params(serving.ServingEndpointsAPI.update_config) - {"name"})
        assert not unknown, f"update config has no {unknown}"
        self._check_config(body)
        ep = self.endpoints.get(req.params["name"])
        if not ep:
            return _err(404, "RESOURCE_DOES_NOT_EXIST", "endpoint not found")
        ep["config"] = {"served_entities": body["served_entities"], "traffic_config": body["traffic_config"]}
        return Response(200, ep)

    @staticmethod
    def _rows(body: dict) -> list:
        """The request's rows, whatever its input shape (what MLflow's scoring server makes of them)."""
        if "instances" in body:
            return body["instances"]
        if "dataframe_records" in body:
            return body["dataframe_records"]
        if "dataframe_split" in body:
            d = body["dataframe_split"]
            return [dict(zip(d["columns"], row)) for row in d["data"]] if "columns" in d else d["data"]
        inputs = body["inputs"]
        if isinstance(inputs, dict):  # columnar: {"col": [v0, v1], ...}
            cols = list(inputs)
            return [dict(zip(cols, vals)) for vals in zip(*(inputs[c] for c in cols))]
        return inputs

    def ep_invoke(self, req: Request) -> Response:
        from databricks.sdk.service import serving

        body = req.json()
        unknown = set(body) - (_params(serving.ServingEndpointsAPI.query) - {"name"})
        assert not unknown, f"invocations take no {unknown}"
        assert req.headers.get("content-type", "").startswith("application/json"), req.headers.get("content-type")
        if "dataframe_split" in body:
            _roundtrip(serving.DataframeSplitInput, body["dataframe_split"], "dataframe_split")
        for m in body.get("messages", []):
            _roundtrip(serving.ChatMessage, m, "message")
        ep = self.endpoints.get(req.params["name"])
        if not ep:
            return _err(404, "RESOURCE_DOES_NOT_EXIST", f"Endpoint '{req.params['name']}' does not exist.")
        entities = {e["name"]: e for e in ep["config"]["served_entities"]}
        shapes = [k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in body]
        if len(shapes) != 1:
            return _err(400, "BAD_REQUEST", "The request must contain exactly one of dataframe_split, "
                                            f"dataframe_records, instances, inputs; got {shapes or 'none'}.")
        if "entity" in req.params:  # pinned: the traffic split is ignored
            name = req.params["entity"]
            if name not in entities:
                return _err(404, "RESOURCE_DOES_NOT_EXIST", f"Served model '{name}' does not exist in endpoint "
                                                            f"'{req.params['name']}'.")
        else:
            routes = ep["config"]["traffic_config"]["routes"]
            name = self.rng.choices([r["served_entity_name"] for r in routes],
                                    weights=[r["traffic_percentage"] for r in routes])[0]
        e = entities[name]
        model = self.models.get(f"{e['entity_name']}/{e['entity_version']}")
        if model is None:
            raise AssertionError(f"no model registered in fake.models for {e['entity_name']}/{e['entity_version']}")
        try:
            predictions = model(self._rows(body))
        except Exception as x:  # the model's error, as Model Serving reports it
            return _err(400, "BAD_REQUEST", "Encountered an unexpected error while evaluating the model. Verify "
                                            f"that the input is compatible with the model for inference. Error '{x}'")
        return Response(200, {"predictions": predictions}, {"served-model-name": name})

    def ep_delete(self, req: Request) -> Response:
        if self.endpoints.pop(req.params["name"], None) is None:
            return _err(404, "RESOURCE_DOES_NOT_EXIST", "endpoint not found")
        return Response(200, {})


@pytest.fixture
def fake():
    with FakeDatabricks() as f:
        yield f


@pytest.fixture
def dbx_env(fake, monkeypatch, tmp_path):
    """Point the SDK's auth chain at the fake (host + fake token), isolated from any real config."""
    for k in ("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_AUTH_TYPE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", fake.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", "x")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))
    return fake


@pytest.fixture
def dbx_adapter(dbx_env):
    from unijob_adapters.databricks.adapter import DatabricksAdapter

    return DatabricksAdapter(retry_timeout_seconds=5, poll_seconds=0.01)


def write_spec(tmp_path: Path, yaml_text: str, files: dict[str, str] | None = None):
    """Write a spec and its files under ``tmp_path`` and load it like the CLI does."""
    from unijob.loading import load_spec

    for rel, text in (files or {"src/train.py": "print('training')\n"}).items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(yaml_text))
    return load_spec(spec).spec


@pytest.fixture
def spec_factory(tmp_path):
    return lambda text, files=None: write_spec(tmp_path, text, files)


@pytest.fixture(scope="session")
def image_python(tmp_path_factory):
    """The Python of a Databricks Runtime ML driver for these tests: pip and scikit-learn, no unijob
    (one venv for the session, shared with other adapters' contract tests through the base temp dir;
    ``UNIJOB_TEST_JOB_PYTHONS=DIR`` keeps them across sessions)."""
    from unijob.testing.contracts import job_python

    root = os.environ.get("UNIJOB_TEST_JOB_PYTHONS") or tmp_path_factory.getbasetemp() / "job-pythons"
    return job_python(root, ["scikit-learn"])


@pytest.fixture(scope="session")
def spark_python(tmp_path_factory):
    """A Databricks Runtime ML driver's Python with pyspark and a CPU torch (for TorchDistributor),
    or a skip saying why there is none."""
    import shutil

    from unijob.testing.contracts import job_python, torch_requirement

    torch = torch_requirement()
    if torch is None:
        pytest.skip("no CPU-only torch wheel (set UNIJOB_TEST_TORCH_REQUIREMENT); PyPI's default torch is ~2.4 GB")
    if shutil.which("java") is None:
        pytest.skip("pyspark needs a Java runtime (java 17+) on PATH")
    root = os.environ.get("UNIJOB_TEST_JOB_PYTHONS") or tmp_path_factory.getbasetemp() / "job-pythons"
    # pandas and pyarrow: TorchDistributor runs its barrier tasks through mapInArrow (the ML runtimes have both)
    return job_python(root, ["scikit-learn", "pyspark", "pandas", "pyarrow", torch])
