"""submit / status / logs / cancel against the fake, over the real REST paths."""

from __future__ import annotations

import itertools
import threading

import pytest

from unijob.contract import JobHandle, JobState
from unijob.errors import NotFound


@pytest.fixture(autouse=True)
def _fake_saw_only_valid_requests(fake):
    yield
    assert fake.errors == [], f"the fake rejected requests: {fake.errors}"


def _submit(adapter, spec, sid="sub-1"):
    plan = adapter.plan(spec, sid)
    return plan, adapter.submit(plan)


def test_submit_creates_the_planned_job(adapter, make_spec, fake):
    plan, h = _submit(adapter, make_spec(resources={"accelerator": "A100:8", "nodes": 2}))
    (create,) = fake.calls("POST", r"/v1/projects/demo-project/locations/us-central1/customJobs")
    sent = create.json()
    assert sent["displayName"] == plan.name and len(sent["jobSpec"]["workerPoolSpecs"]) == 2
    assert h.native_id in fake.jobs and h.name == plan.name
    # the GAPIC client sends enums as integers; the fake normalised them: same job as planned
    stored = fake.jobs[h.native_id]
    assert stored["jobSpec"]["workerPoolSpecs"] == plan.request("customJobs").body["jobSpec"]["workerPoolSpecs"]


@pytest.mark.parametrize("status", [429, 503])
def test_submit_survives_transient_errors_with_one_job(adapter, make_spec, fake, status):
    plan = adapter.plan(make_spec(), "sub-flaky")
    fake.fail_next(status, 2, path=r"/v1/projects/[^/]+/locations/[^/]+/customJobs",
                   headers={"Retry-After": "0"})
    h = adapter.submit(plan)
    assert fake.created_jobs == 1 and h.native_id in fake.jobs
    assert len(fake.calls("GET", r".*/customJobs")) >= 3  # the lookup was retried too


def test_lost_create_answer_does_not_duplicate(adapter, make_spec, fake):
    """The create reached Vertex but its answer was lost (503 after the fact): the retried submit
    finds the job by display name + submission label instead of creating a second one."""
    plan = adapter.plan(make_spec(), "sub-lost")
    original = fake.create_job
    calls = itertools.count()

    def create_then_fail(req):
        resp = original(req)
        if next(calls) == 0:
            from unijob.testing.httpfake import Response

            return Response(503, {"error": {"code": 503, "message": "backend timeout"}})
        return resp

    fake._routes = [(m, rx, create_then_fail if h == original else h) for m, rx, h in fake._routes]
    try:
        h = adapter.submit(plan)
    finally:
        fake._routes = [(m, rx, original if h2 == create_then_fail else h2) for m, rx, h2 in fake._routes]
    assert fake.created_jobs == 1 and h.native_id in fake.jobs


def test_status_follows_job_state(adapter, make_spec, fake):
    _, h = _submit(adapter, make_spec())
    assert adapter.status(h).state is JobState.QUEUED
    fake.set_state(h.native_id, "JOB_STATE_PENDING")
    assert adapter.status(h).state is JobState.STARTING
    fake.set_state(h.native_id, "JOB_STATE_RUNNING")
    st = adapter.status(h)
    assert st.state is JobState.RUNNING and st.native_state == "JOB_STATE_RUNNING" and st.started_at
    fake.set_state(h.native_id, "JOB_STATE_SUCCEEDED")
    st = adapter.status(h)
    assert st.state is JobState.SUCCEEDED and st.ended_at


def test_failed_job_reports_the_error(adapter, make_spec, fake):
    _, h = _submit(adapter, make_spec())
    fake.set_state(h.native_id, "JOB_STATE_RUNNING")
    fake.set_state(h.native_id, "JOB_STATE_FAILED", error=(3, "The replica workerpool0-0 exited with a non-zero status of 1"))
    st = adapter.status(h)
    assert st.state is JobState.FAILED and "non-zero status of 1" in st.message


def test_unknown_job_is_not_found(adapter, make_spec):
    _, h = _submit(adapter, make_spec())
    gone = JobHandle.from_dict({**h.to_dict(), "native_id": h.native_id.rsplit("/", 1)[0] + "/99999999"})
    with pytest.raises(NotFound):
        adapter.status(gone)


def _fallback_spec(make_spec):
    return make_spec(spot={"policy": "spot_with_fallback", "max_wait": "3h"}, max_run="2h",
                     checkpoint={"uri": "gs://bucket/ckpt"})


def test_spot_stockout_falls_back_to_on_demand(adapter, make_spec, fake):
    _, h = _submit(adapter, _fallback_spec(make_spec))
    assert fake.created_jobs == 1
    fake.set_state(h.native_id, "JOB_STATE_FAILED",
                   error=(8, "Resources are insufficient in region: us-central1 (stockout of SPOT capacity)"))
    st = adapter.status(h)
    assert fake.created_jobs == 2 and "fallback" in st.message
    fb_name = st.handle_update["fallback_job"]
    fb = fake.jobs[fb_name]
    assert fb["jobSpec"]["scheduling"]["strategy"] == "ON_DEMAND" and fb["displayName"].endswith("-od")
    env = {e["name"]: e["value"] for e in fb["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]}
    assert env["UNIJOB_CHECKPOINT_URI"] == "gs://bucket/ckpt"
    # a second status() before the handle was updated does not submit a third job
    adapter.status(h)
    assert fake.created_jobs == 2
    h.extra.update(st.handle_update)
    fake.set_state(fb_name, "JOB_STATE_RUNNING")
    assert adapter.status(h).state is JobState.RUNNING


def test_failure_after_training_started_does_not_fall_back(adapter, make_spec, fake):
    _, h = _submit(adapter, _fallback_spec(make_spec))
    fake.set_state(h.native_id, "JOB_STATE_RUNNING")
    fake.set_state(h.native_id, "JOB_STATE_FAILED", error=(13, "loss is NaN"))
    st = adapter.status(h)
    assert st.state is JobState.FAILED and not st.handle_update and fake.created_jobs == 1


def test_logs_prefix_every_replica_and_page(adapter, make_spec, fake):
    _, h = _submit(adapter, make_spec(resources={"nodes": 3}))
    for i in range(1200):  # more than one page of 1000
        fake.add_log(h.native_id, f"workerpool{0 if i % 3 == 0 else 1}-{0 if i % 3 < 2 else 1}", f"step {i}")
    lines = list(adapter.logs(h))
    assert len(lines) == 1200
    assert lines[0] == "[workerpool0-0] step 0" and lines[1] == "[workerpool1-0] step 1" and lines[2] == "[workerpool1-1] step 2"
    assert len(fake.calls("POST", r"/v2/entries:list")) == 2


def test_logs_follow_until_final(adapter, make_spec, fake):
    _, h = _submit(adapter, make_spec())
    fake.set_state(h.native_id, "JOB_STATE_RUNNING")
    fake.add_log(h.native_id, "workerpool0-0", "epoch 1", ts="2026-11-21T10:00:00.000000Z")
    got: list[str] = []

    def later():
        fake.add_log(h.native_id, "workerpool0-0", "epoch 2", ts="2026-11-21T10:00:01.000000Z")
        fake.set_state(h.native_id, "JOB_STATE_SUCCEEDED")

    it = adapter.logs(h, follow=True)
    got.append(next(it))
    t = threading.Timer(0.05, later)
    t.start()
    got.extend(it)  # returns once the job is final
    t.join()
    assert got == ["[workerpool0-0] epoch 1", "[workerpool0-0] epoch 2"]


def test_cancel_running_then_finished(adapter, make_spec, fake):
    _, h = _submit(adapter, make_spec())
    fake.set_state(h.native_id, "JOB_STATE_RUNNING")
    adapter.cancel(h)
    assert len(fake.calls("POST", r".*/customJobs/\d+:cancel")) == 1
    assert adapter.status(h).state is JobState.CANCELLED
    adapter.cancel(h)  # finished: no second cancel call, no error
    assert len(fake.calls("POST", r".*/customJobs/\d+:cancel")) == 1


def test_script_job_uploads_once(adapter, make_spec, fake, tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    plan = adapter.plan(make_spec(image=None, command=None, script="train.py"), "s")
    adapter.submit(plan)
    adapter.submit(plan)
    up, wheel = plan.uploads
    assert wheel.kind == "runtime-wheel" and wheel.destination == f"{up.destination}#{wheel.source}"
    assert list(fake.objects) == [up.destination]  # the wheel travels inside the tarball
    import hashlib

    assert hashlib.sha256(fake.objects[up.destination]).hexdigest() == up.sha256
    assert len(fake.calls("POST", r"/upload/storage/v1/b/bucket/o")) == 1 and fake.created_jobs == 1


def test_logs_follow_moves_to_the_fallback_job(adapter, make_spec, fake):
    _, h = _submit(adapter, _fallback_spec(make_spec))
    fake.add_log(h.native_id, "workerpool0-0", "waiting for spot", ts="2026-11-21T10:00:00.000000Z")
    fake.set_state(h.native_id, "JOB_STATE_FAILED", error=(8, "stockout"))
    it = adapter.logs(h, follow=True)
    assert next(it) == "[workerpool0-0] waiting for spot"
    (fb_name,) = [n for n in fake.jobs if n != h.native_id]
    fake.add_log(fb_name, "workerpool0-0", "resumed from checkpoint", ts="2026-11-21T10:05:00.000000Z")
    fake.set_state(fb_name, "JOB_STATE_SUCCEEDED")
    assert list(it) == ["[workerpool0-0] resumed from checkpoint"] and fake.created_jobs == 2
