"""The local DAG runner: ``python -m unijob.pipeline.runner RUN_DIR`` (started detached by
:func:`unijob.pipeline.runs.start`).

It walks the steps in dependency order, starts every step whose dependencies have ended (so
independent steps run in parallel), evaluates conditions, retries failed steps, and records each
step's state, job id, outputs and metrics in ``RUN_DIR/state.json`` after every change (atomic
writes), so a killed runner loses nothing: :func:`unijob.pipeline.runs.resume` starts a new one
that keeps finished steps, re-attaches to step jobs still running (job steps are submitted with
the idempotency key ``<run id>-<step>-<attempt>``, so a step submitted just before the kill is
found, not started twice) and runs the rest. SIGTERM cancels the running step jobs and ends the
run CANCELLED.

Step states: PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED (its condition was false, or a step it
depends on was skipped), UPSTREAM_FAILED (a step it depends on failed), CANCELLED.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

FINAL = {"SUCCEEDED", "FAILED", "SKIPPED", "UPSTREAM_FAILED", "CANCELLED"}
POLL_SECONDS = 0.5
_stop = False


def _on_term(signum: int, frame: Any) -> None:
    global _stop
    _stop = True


def _save(run_dir: Path, state: dict[str, Any]) -> None:
    from unijob.local.jobdir import write_json_atomic

    state["updated_at"] = time.time()
    write_json_atomic(run_dir / "state.json", state)


def _log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def run(run_dir: Path) -> int:
    """Drive the run in ``run_dir`` to its end; returns 0 when it SUCCEEDED, else 1."""
    import unijob
    from unijob.errors import UnijobError
    from unijob.pipeline import expr, steps as S
    from unijob.pipeline.loading import check
    from unijob.pipeline.spec import PipelineSpec

    doc = json.loads((run_dir / "pipeline.json").read_text())
    spec = PipelineSpec.model_validate(doc["spec"])
    pipe = check(spec, Path(doc["base_dir"]))
    params = {**spec.parameters, **doc.get("params", {})}
    state = json.loads((run_dir / "state.json").read_text())
    st = state["steps"]
    run_id = state["run_id"]
    state.update(state="RUNNING", runner_pid=os.getpid())
    _save(run_dir, state)
    jobs: dict[str, Any] = {}

    def finish(name: str, new: str, message: str = "") -> None:
        st[name].update(state=new, message=message, ended_at=time.time())
        _log(f"step {name}: {new}" + (f" ({message})" if message else ""))

    def start(name: str) -> None:
        step = pipe.step(name)
        target = step.target or doc.get("target") or spec.target
        s = st[name]
        s["attempts"] = s.get("attempts", 0) + 1
        s.update(state="RUNNING", started_at=time.time(), message="")
        lookup = S.lookup_in(params, st)
        _log(f"step {name}: {step.kind} on {target} (attempt {s['attempts']})")
        if step.kind in ("job", "batch"):
            job_spec = S.build_spec(step, pipe.base_dir, lookup, run_id, spec.targets)
            job = S.start_job(job_spec, target, f"{run_id}-{name}-{s['attempts']}", batch=step.kind == "batch")
            s["job_id"] = job.id
            jobs[name] = job
        elif step.kind == "register":
            s["outputs"] = S.register(step, lookup, target)
            finish(name, "SUCCEEDED")
        else:
            s["outputs"] = S.deploy(S.build_spec(step, pipe.base_dir, lookup, run_id, spec.targets), target)
            finish(name, "SUCCEEDED")

    def fail_or_retry(name: str, message: str) -> None:
        step = pipe.step(name)
        if st[name].get("attempts", 0) <= step.retries:
            _log(f"step {name}: failed ({message}); retrying ({st[name]['attempts']}/{step.retries} retries used)")
            st[name].update(state="PENDING", message=f"retrying after: {message}")
            return
        finish(name, "FAILED", message)

    # re-attach to step jobs a previous runner left running
    for name, s in st.items():
        if s["state"] == "RUNNING" and s.get("job_id"):
            try:
                jobs[name] = unijob.job(s["job_id"])
            except UnijobError:
                s["state"] = "PENDING"
        elif s["state"] == "RUNNING":
            s["state"] = "PENDING"  # register/deploy interrupted: run again (both are idempotent enough)
    while True:
        if _stop:
            for name, job in jobs.items():
                if st[name]["state"] == "RUNNING":
                    try:
                        job.cancel()
                    except UnijobError as e:
                        _log(f"step {name}: cancel failed: {e.message}")
                    finish(name, "CANCELLED", "the pipeline run was cancelled")
            for name, s in st.items():
                if s["state"] not in FINAL:
                    finish(name, "CANCELLED", "the pipeline run was cancelled")
            state["state"] = "CANCELLED"
            _save(run_dir, state)
            return 1
        changed = False
        for name in pipe.order:
            s = st[name]
            if s["state"] == "RUNNING" and name in jobs:
                job = jobs[name]
                try:
                    job.status()
                except UnijobError as e:
                    _log(f"step {name}: status failed: {e.message}")
                    continue
                if not job.state.is_final:
                    continue
                changed = True
                if job.state.value == "SUCCEEDED":
                    s["outputs"] = S.job_outputs(job) if pipe.step(name).kind == "job" else _batch_outputs(job)
                    if pipe.step(name).kind == "job":
                        s["metrics"] = S.job_metrics(job)
                    finish(name, "SUCCEEDED")
                else:
                    fail_or_retry(name, f"job {job.id} {job.state.value}" + (f": {job.message.splitlines()[0]}" if job.message else ""))
                del jobs[name]
            if s["state"] != "PENDING":
                continue
            dep_states = [st[d]["state"] for d in pipe.deps[name]]
            if any(d not in FINAL for d in dep_states):
                continue
            changed = True
            if any(d in ("FAILED", "UPSTREAM_FAILED", "CANCELLED") for d in dep_states):
                finish(name, "UPSTREAM_FAILED", "a step it depends on did not succeed")
                continue
            if any(d == "SKIPPED" for d in dep_states):
                finish(name, "SKIPPED", "a step it depends on was skipped")
                continue
            step = pipe.step(name)
            try:
                if step.when and not expr.evaluate(expr.parse(step.when), S.lookup_in(params, st)):
                    finish(name, "SKIPPED", f"condition false: {step.when}")
                    continue
                start(name)
            except (UnijobError, expr.ExprError) as e:
                fail_or_retry(name, getattr(e, "message", str(e)))
            except Exception as e:  # noqa: BLE001 - a bug or the user's code: fail the step, keep the trace in the log
                traceback.print_exc()
                fail_or_retry(name, f"{type(e).__name__}: {e}")
        if changed:
            _save(run_dir, state)
        if all(s["state"] in FINAL for s in st.values()):
            ok = all(s["state"] in ("SUCCEEDED", "SKIPPED") for s in st.values())
            state["state"] = "SUCCEEDED" if ok else "FAILED"
            _save(run_dir, state)
            _log(f"pipeline {state['name']}: {state['state']}")
            return 0 if ok else 1
        time.sleep(POLL_SECONDS)


def _batch_outputs(job: Any) -> dict[str, Any]:
    from unijob import registry
    from unijob.pipeline.steps import optional

    out: dict[str, Any] = {"job_id": job.id}
    loc = optional(lambda: registry.get(job.target).output_location(job.handle))
    if loc:
        out["output"] = loc
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m unijob.pipeline.runner RUN_DIR", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_term)
    return run(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
