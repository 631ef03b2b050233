"""The conformance suite every adapter's tests run against that adapter's own fake cloud.

Use it by subclassing in the adapter's test module and providing fixtures::

    from unijob.testing.conformance import AdapterConformance

    class TestSageMakerConformance(AdapterConformance):
        @pytest.fixture
        def adapter(self, moto_server): ...        # an Adapter wired to the local fake
        @pytest.fixture
        def job_spec(self): ...                    # a JobSpec valid for this target, with at least
                                                   # one secret reference the target accepts
        @pytest.fixture
        def created_jobs(self): ...                # () -> int: jobs the fake has created so far

    Optional fixtures: ``endpoint_spec`` (a JobSpec with an endpoint of two variants, enabling
    the endpoint tests), ``invoke_payload`` (a JSON request the deployed endpoint answers, enabling
    the ``invoke`` step), ``leftover_endpoint_resources`` (() -> int: what is still deployed) and
    ``stored_objects`` (() -> int: files or objects the fake holds: uploads a dry run must not make).

Every test here can fail: each asserts a property of the adapter's behaviour.
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys

import pytest
from pydantic import BaseModel, ValidationError

from unijob import registry
from unijob.contract import Adapter, EndpointHandle, EndpointStatus, JobHandle, JobState, JobStatus, Plan
from unijob.errors import Readiness, SpecError

HEAVY_ROOTS = ("boto3", "botocore", "google", "databricks", "kubernetes", "sagemaker", "torch", "pandas", "grpc",
               "ray")
SECRET_ENV = "UNIJOB_CONFORMANCE_SECRET"
SECRET_VALUE = "s3cr3t-value-that-must-never-leak-7f1c"


@pytest.fixture
def no_network(monkeypatch):
    """Module-level twin of :meth:`AdapterConformance.no_network` for tests outside the class."""

    def refuse(self, *a, **k):
        raise AssertionError("a network connection was opened")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


class AdapterConformance:
    """Mix-in test class; see the module docstring for the fixtures it needs."""

    @pytest.fixture
    def no_network(self, monkeypatch):
        """Make any outbound socket connection raise during the test."""

        def refuse(self, *a, **k):
            raise AssertionError("plan() opened a network connection")

        monkeypatch.setattr(socket.socket, "connect", refuse)
        monkeypatch.setattr(socket.socket, "connect_ex", refuse)

    # ---- identity and packaging -------------------------------------------------------------

    def test_registered_under_entry_point(self, adapter: Adapter) -> None:
        assert isinstance(adapter, Adapter)
        assert registry.adapter_class(adapter.name) is type(adapter)

    def test_options_entry_point_is_the_adapters_options_model(self, adapter: Adapter) -> None:
        """``unijob.options`` (optional) must name the very class the adapter validates with."""
        assert registry.options_model(adapter.name) is adapter.options_model

    def test_options_model_rejects_unknown_keys(self, adapter: Adapter) -> None:
        assert issubclass(adapter.options_model, BaseModel)
        with pytest.raises(ValidationError):
            adapter.options_model.model_validate({"surely_not_an_option": 1})

    def test_unsupported_features_have_reasons(self, adapter: Adapter) -> None:
        for feature, reason in adapter.unsupported.items():
            assert isinstance(feature, str) and feature
            assert isinstance(reason, str) and len(reason) > 10, f"{feature}: give the reason"

    def test_importing_the_adapter_pulls_no_sdk(self, adapter: Adapter) -> None:
        module = type(adapter).__module__
        # Some SDKs install *-nspkg.pth files that put e.g. `google` into sys.modules at start-up:
        # compare against what a bare interpreter already has.
        # Compare full module names, so `google.cloud.aiplatform` is still caught when `google` was preloaded.
        code = ("import sys, importlib; base = set(sys.modules); importlib.import_module(%r); "
                "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - base} & set(%r))))") % (module, HEAVY_ROOTS)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        assert out == "", f"importing {module} imported {out}"

    def test_check_never_raises(self, adapter: Adapter) -> None:
        r = adapter.check()
        assert isinstance(r, Readiness)
        assert all(isinstance(p, str) and "\n" not in p for p in r.problems)

    # ---- plan -------------------------------------------------------------------------------

    def test_plan_is_pure_deterministic_json(self, adapter: Adapter, job_spec, no_network) -> None:
        p1 = adapter.plan(job_spec, "sub-1")
        p2 = adapter.plan(job_spec, "sub-1")
        assert isinstance(p1, Plan) and p1.target == adapter.name
        assert p1.model_dump() == p2.model_dump(), "plan() must be deterministic"
        json.dumps(p1.model_dump(mode="json"))  # plain JSON data
        assert p1.requests, "a plan holds at least one native request"
        assert p1.resources.instance_count >= job_spec.resources.nodes

    def test_native_name_follows_submission_id(self, adapter: Adapter, job_spec) -> None:
        assert adapter.plan(job_spec, "sub-a").name != adapter.plan(job_spec, "sub-b").name

    def test_secret_values_never_in_plan(self, adapter: Adapter, job_spec, monkeypatch) -> None:
        monkeypatch.setenv(SECRET_ENV, SECRET_VALUE)
        assert job_spec.secrets, "job_spec fixture must carry a secret reference"
        text = json.dumps(adapter.plan(job_spec, "sub-1").model_dump(mode="json"))
        assert SECRET_VALUE not in text

    def test_bad_target_options_are_spec_errors(self, adapter: Adapter, job_spec) -> None:
        bad = job_spec.model_copy(update={"targets": {**job_spec.targets, adapter.name: {"surely_not_an_option": 1}}})
        with pytest.raises(SpecError) as ei:
            adapter.plan(bad, "sub-1")
        assert ei.value.issues[0].loc[:2] == ("targets", adapter.name)

    # ---- jobs -------------------------------------------------------------------------------

    def test_submit_is_idempotent(self, adapter: Adapter, job_spec, created_jobs) -> None:
        plan = adapter.plan(job_spec, "sub-idem")
        before = created_jobs()
        h1 = adapter.submit(plan)
        h2 = adapter.submit(plan)
        assert isinstance(h1, JobHandle) and h1.target == adapter.name
        assert h1.native_id == h2.native_id
        assert created_jobs() - before == 1, "a retried submission created a second job"
        assert json.loads(json.dumps(h1.to_dict())) == h1.to_dict()

    def test_dry_run_sends_and_starts_nothing(self, adapter: Adapter, job_spec, created_jobs, request,
                                              monkeypatch) -> None:
        """``submit`` of a plan with ``extra["dry_run"]`` (what ``unijob submit --dry-run`` sends)
        creates no job and no object on the platform and starts no local process."""
        import os

        monkeypatch.setenv(SECRET_ENV, SECRET_VALUE)  # what a launch needs is there: the dry run passes
        plan = adapter.plan(job_spec, "sub-dry")
        plan.extra["dry_run"] = True
        stored = _fixture(request, "stored_objects")
        jobs_before, objects_before = created_jobs(), stored() if stored else 0
        started: list[str] = []

        def refuse(name):
            def spawn(*a, **k):
                started.append(f"{name}{a[:1]!r}")
                raise AssertionError(f"a dry run started a process ({name})")
            return spawn

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(subprocess.Popen, "__init__", refuse("subprocess.Popen"))
            for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve", "system"):
                if hasattr(os, name):
                    mp.setattr(os, name, refuse(f"os.{name}"))
            handle = adapter.submit(plan)
        assert not started, f"a dry run started {started}"
        assert created_jobs() == jobs_before, "a dry run created a job"
        if stored:
            assert stored() == objects_before, "a dry run uploaded or stored something"
        assert isinstance(handle, JobHandle) and handle.extra.get("dry_run") is True, \
            "a dry run's handle says so (extra['dry_run'])"
        # The same submission key then really submits: the dry run left nothing to be mistaken for it.
        real = adapter.submit(adapter.plan(job_spec, "sub-dry"))
        assert created_jobs() - jobs_before == 1, "a real submit after a dry run with its key started no job"
        adapter.cancel(real)

    def test_status_logs_cancel(self, adapter: Adapter, job_spec, monkeypatch) -> None:
        monkeypatch.setenv(SECRET_ENV, SECRET_VALUE)
        h = adapter.submit(adapter.plan(job_spec, "sub-life"))
        st = adapter.status(h)
        assert isinstance(st, JobStatus) and isinstance(st.state, JobState)
        lines = list(itertools.islice(adapter.logs(h, follow=False), 200))
        assert all(isinstance(line, str) for line in lines)
        assert not any(SECRET_VALUE in line for line in lines)
        adapter.cancel(h)
        adapter.cancel(h)  # cancelling twice is not an error
        after = adapter.status(h)
        assert after.state in (JobState.STOPPING, JobState.CANCELLED, JobState.SUCCEEDED, JobState.FAILED)

    # ---- endpoints (when the adapter's tests provide endpoint_spec) -------------------------

    def test_endpoint_deploy_traffic_undeploy(self, adapter: Adapter, request) -> None:
        spec = _fixture(request, "endpoint_spec")
        if spec is None:
            pytest.skip("this adapter's tests provide no endpoint_spec")
        variants = [v.name for v in spec.endpoint.resolved_variants()]
        assert len(variants) >= 2, "endpoint_spec needs two variants"
        plan = adapter.plan_endpoint(spec)
        assert plan.kind == "endpoint" and plan.requests
        h = adapter.deploy(plan)
        assert isinstance(h, EndpointHandle)
        st = adapter.endpoint_status(h)
        assert isinstance(st, EndpointStatus)
        split = {variants[0]: 30, variants[1]: 70, **{v: 0 for v in variants[2:]}}
        adapter.set_traffic(h, split)
        assert {k: v for k, v in adapter.endpoint_status(h).traffic.items() if v} == {k: v for k, v in split.items() if v}
        payload = _fixture(request, "invoke_payload")
        if payload is not None:
            from unijob.contract import InvokeResult

            answer = adapter.invoke(h, payload)
            assert isinstance(answer, InvokeResult) and answer.body is not None
            assert answer.variant is None or answer.variant in variants
            assert answer.latency_seconds >= 0
        adapter.undeploy(h)
        leftover = _fixture(request, "leftover_endpoint_resources")
        if leftover is not None:
            assert leftover() == 0, "undeploy left resources behind"


def _fixture(request, name: str):
    """The value of an optional fixture, or None when the adapter's tests do not define it."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return None
