"""Training jobs as a library: :func:`submit`, :func:`job`, :func:`jobs` and the :class:`Job` handle.

Usage::

    import unijob

    job = unijob.submit("examples/quickstart/job.yaml")        # target "local" by default
    for line in job.logs(follow=True):
        print(line)
    job.wait()                  # -> JobState.SUCCEEDED
    unijob.job(job.id).restarts

Every job is recorded in ``$UNIJOB_HOME/jobs.sqlite3`` (:mod:`unijob.records`) *before* anything is
sent, so a :class:`Job` can be found again from any process by its id, an id prefix or the
platform's native id. Like MLflow's ``SubmittedRun``, a Job answers ``status()``, ``wait()`` and
``cancel()``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Union

from unijob.api.specs import SpecLike, as_spec, make_plan, resolve_target
from unijob.errors import TargetError, UnijobError

if TYPE_CHECKING:
    from unijob.contract import Adapter, JobHandle, JobState, JobStatus, Plan
    from unijob.records import JobRecord


class Job:
    """A submitted job, as recorded here. Attributes reflect the last refresh.

    Attributes:
        id: the unijob id (8 hex digits). name: the spec's name. target: where it runs.
        native_id: the platform's id (None while SUBMITTING). state: a :class:`JobState`.
        message: the last status message (failure reason, preemption). restarts: relaunches so far.
        native_state: the platform's own word for the state at the last refresh ("" before one).
        submission_id: the idempotency key. created_at / started_at / ended_at: POSIX seconds.
        history: ``[(at, state, message), ...]`` oldest first.
        notes: lines for people from :func:`submit` (why ``auto`` chose the target, a resumed or
            already-made submission). warnings: the plan's warnings (e.g. spot without a checkpoint).
        already_submitted: :func:`submit` found this submission key already sent and sent nothing.
    """

    def __init__(self, record: "JobRecord", *, native_state: str = "") -> None:
        self.native_state = native_state
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.already_submitted = False
        self._set(record)

    def _set(self, rec: "JobRecord") -> None:
        from unijob.contract import JobState

        self._record = rec
        self.id, self.name, self.target, self.native_id = rec.id, rec.name, rec.target, rec.native_id
        self.state = JobState(rec.state)
        self.message, self.restarts = rec.message, rec.restarts
        self.submission_id, self.spec_hash, self.spec_path = rec.submission_id, rec.spec_hash, rec.spec_path
        self.created_at, self.started_at, self.ended_at = rec.created_at, rec.started_at, rec.ended_at
        self.history = list(rec.history)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, name={self.name!r}, target={self.target!r}, state={self.state.value})"

    @property
    def handle(self) -> Optional["JobHandle"]:
        """The adapter's handle, or None for a job that was never sent."""
        from unijob.contract import JobHandle

        return JobHandle.from_dict(self._record.handle) if self._record.handle else None

    def _adapter(self) -> "Adapter":
        from unijob import registry

        return registry.get(self.target)

    def _sent(self) -> "JobHandle":
        handle = self.handle
        if handle is None:
            raise TargetError(f"job {self.id} was never sent (state {self.state.value})")
        return handle

    def status(self, refresh: bool = True) -> "JobStatus":
        """The job's status; with ``refresh`` (default) asked of its target and stored in the record.

        Returns:
            :class:`unijob.contract.JobStatus` (state, native_state, message, restarts, times).

        Raises:
            NotFound: the target no longer knows the job. TargetError / NotReady: the target failed.
        """
        from unijob.contract import JobHandle, JobState, JobStatus
        from unijob.records import Records

        with Records() as records:
            rec = records.get(self.id)
            if not refresh or not rec.handle:
                self._set(rec)
                return JobStatus(state=self.state, native_state=self.native_state, message=rec.message,
                                 restarts=rec.restarts, started_at=rec.started_at, ended_at=rec.ended_at)
            handle = JobHandle.from_dict(rec.handle)
            st = registry_get(rec.target).status(handle)
            new_handle = None
            if st.handle_update:
                handle.extra.update(st.handle_update)
                new_handle = handle.to_dict()
            final = st.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
            rec = records.update(rec.id, state=st.state.value, message=st.message, restarts=st.restarts,
                                 handle=new_handle, started_at=st.started_at, ended_at=st.ended_at if final else None)
        self.native_state = st.native_state
        self._set(rec)
        return st

    def logs(self, follow: bool = False) -> Iterator[str]:
        """Log lines of every rank or host, each prefixed with where it came from (``[rank 0] ...``);
        with ``follow``, keeps yielding until the job ends.

        Raises:
            TargetError: the job was never sent. NotFound: the target no longer has its logs.
        """
        return self._adapter().logs(self._sent(), follow=follow)

    def wait(self, timeout: Optional[float] = None, *, interval: float = 1.0,
             on_change: Optional[Callable[["Job"], None]] = None) -> "JobState":
        """Refresh every ``interval`` seconds until the job is final; returns the final state.

        Args:
            timeout: seconds; None waits as long as the job runs.
            on_change: called with this Job after each refresh that changed its state or message.

        Raises:
            TimeoutError: still not final after ``timeout`` seconds (the job keeps running).
        """
        start = time.monotonic()
        seen = None
        while True:
            self.status()
            now = (self.state, self.message, self.restarts)
            if on_change is not None and now != seen:
                on_change(self)
            seen = now
            if self.state.is_final:
                return self.state
            if timeout is not None and time.monotonic() - start >= timeout:
                raise TimeoutError(f"job {self.id} is still {self.state.value} after {timeout:g} s")
            time.sleep(interval)

    def cancel(self) -> "JobState":
        """Stop the job (the whole gang) and return its state after asking the target.

        A finished job is left as it is; a job that was never sent is recorded CANCELLED.
        """
        from unijob.records import Records

        self.status(refresh=False)
        if self.state.is_final:
            return self.state
        if self.handle is None:
            with Records() as records:
                self._set(records.update(self.id, state="CANCELLED", message="cancelled before it was sent"))
            return self.state
        self._adapter().cancel(self._sent())
        self.status()
        return self.state

    def model_artifact(self) -> str:
        """Where this job's model is on its target (a URI or a local directory).

        Raises:
            UsageError: the job did not succeed, wrote no model, or its target cannot say where
                a job's model is (:meth:`unijob.contract.Adapter.model_artifact`).
        """
        from unijob.api.models import artifact_of

        return artifact_of(self)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data, plus ``native_state``."""
        d = self._record.to_dict()
        d["native_state"] = self.native_state or None
        return d


def registry_get(name: str) -> "Adapter":
    from unijob import registry

    return registry.get(name)


def submit(spec: SpecLike, target: str = "local", *, wait: bool = False, idempotency_key: Optional[str] = None,
           dry_run: bool = False, batch: bool = False) -> Union[Job, "Plan"]:
    """Submit ``spec`` to ``target`` and return its :class:`Job`.

    The record is written before anything is sent. Submitting again with the same
    ``idempotency_key`` never starts a second job: it returns the first one (``job.notes`` says so),
    or finishes sending it if the earlier call died before the platform answered.

    Args:
        spec: a JobSpec or the path of a spec file.
        target: an installed target, or ``"auto"`` (the cheapest ready one; reasons in ``job.notes``).
        wait: block until the job is final (the Job's ``state`` tells how it ended; nothing raises
            for a FAILED job).
        idempotency_key: the submission key (default: a fresh one per call).
        dry_run: ask the platform to validate without creating, where it can (the plan is sent
            with ``plan.extra["dry_run"] = True``); records nothing and returns that Plan.
        batch: run the spec's ``batch:`` section (batch prediction) instead of its training job;
            see :func:`batch_predict`.

    Raises:
        SpecError: the spec or the target's options are invalid (nothing recorded or sent).
        NotReady: the target is not installed or lacks credentials (nothing recorded or sent).
        TargetError: the platform refused (the record is kept, FAILED, with the reason).
    """
    from unijob.errors import NotReady
    from unijob.records import Records

    spec = as_spec(spec)
    target, reasons = resolve_target(spec, target)
    adapter = registry_get(target)
    model_notes: list[str] = []
    if batch:
        from unijob.api.specs import resolve_models

        spec, model_notes = resolve_models(spec, target, batch=True)
    # Validate first (pure): a bad spec leaves no record and sends nothing.
    probe = make_plan(adapter, spec, idempotency_key or "validate", batch=batch)
    readiness = adapter.check(spec)
    if not readiness.ready:
        raise NotReady(f"target '{target}' is not ready:\n  " + "\n  ".join(readiness.problems))
    if dry_run:
        probe.extra["dry_run"] = True
        adapter.submit(probe)
        return probe
    notes = list(reasons) + model_notes
    warnings: list[str] = []
    already = False
    source = spec.source_file
    with Records() as records:
        rec, resumed = records.begin_submission(
            name=spec.name, target=target, spec_hash=spec.spec_hash(),
            spec_path=str(source) if source else None, submission_id=idempotency_key)
        if resumed and rec.state != "SUBMITTING":
            notes.append(f"already submitted as {rec.id} ({rec.native_id}); state {rec.state}")
            already = True
        else:
            if resumed:
                notes.append(f"resuming unfinished submission {rec.id}")
            p = make_plan(adapter, spec, rec.submission_id, batch=batch)
            warnings = list(p.warnings)
            try:
                handle = adapter.submit(p)
            except TargetError as e:
                records.update(rec.id, state="FAILED", message=f"submit failed: {e.message}")
                raise
            except UnijobError:
                records.delete(rec.id)  # nothing was sent
                raise
            records.set_submitted(rec.id, handle.native_id, handle.to_dict())
            rec = records.get(rec.id)
    out = Job(rec)
    out.notes, out.warnings, out.already_submitted = notes, warnings, already
    if wait:
        out.wait()
    return out


def batch_predict(spec: SpecLike, target: str = "local", *, wait: bool = False,
                  idempotency_key: Optional[str] = None, dry_run: bool = False) -> Union[Job, "Plan"]:
    """Run ``spec``'s ``batch:`` section (the endpoint's handler mapped over JSON Lines files, see
    :mod:`unijob.batch`) on ``target``; returns its :class:`Job`, which answers ``status()``,
    ``logs()``, ``wait()`` and ``cancel()`` as a training job does. ``batch.model`` may name a job
    (``job:<id>``) or a registered version (``models:/NAME@ALIAS``), resolved first.

    Raises: as :func:`submit`.
    """
    return submit(spec, target, wait=wait, idempotency_key=idempotency_key, dry_run=dry_run, batch=True)


def job(ref: str) -> Job:
    """The job whose unijob id, id prefix, submission key or native id is ``ref`` (no refresh).

    Raises:
        NotFound: no such job in the records. UsageError: the prefix matches several jobs.
    """
    from unijob.records import Records

    with Records() as records:
        return Job(records.get(ref))


def jobs(target: Optional[str] = None, limit: int = 50, *, refresh: bool = False) -> list[Job]:
    """Jobs submitted from here, newest first (records only, unless ``refresh``).

    Args:
        target: only jobs on this target. limit: at most this many.
        refresh: ask the targets for the state of unfinished jobs; a target that fails leaves its
            jobs as recorded, with the error in ``job.warnings``.
    """
    from unijob.records import Records

    with Records() as records:
        out = [Job(r) for r in records.list(limit=limit, target=target)]
    if refresh:
        for j in out:
            if not j.state.is_final and j.native_id:
                try:
                    j.status()
                except UnijobError as e:
                    j.warnings.append(f"{j.id}: {e.message}")
    return out
