"""Train, then serve what was trained: endpoint models that name a job (``job:<name-or-id>``).

The SageMaker SDK's ``estimator.fit(...)`` then ``estimator.deploy(...)``, in a spec::

    endpoint:
      handler: serve.py:Digits
      model: job:quickstart        # the newest job named quickstart, or job:<id>, job:<native id>

At deploy (and ``plan --endpoint``) time the reference becomes the model artifact that job wrote on
its target, as the job's adapter reports it (:meth:`unijob.contract.Adapter.model_artifact`):
SageMaker's ``ModelArtifacts.S3ModelArtifacts``, the Vertex CustomJob's base output directory +
``model/`` (its ``AIP_MODEL_DIR``), the Databricks run's output location, the local job's output
directory. A job that did not succeed, or wrote no model, is an error at the ``model`` field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from unijob.errors import NotFound, SpecError, UnijobError, UsageError

if TYPE_CHECKING:
    from unijob.api.jobs import Job
    from unijob.spec import JobSpec

PREFIX = "job:"


def is_job_ref(model: Optional[str]) -> bool:
    """Whether an endpoint ``model`` value names a job (``job:<name-or-id>``)."""
    return bool(model) and model.startswith(PREFIX)  # type: ignore[union-attr]


def find_job(ref: str, *, prefer_target: Optional[str] = None) -> "Job":
    """The job ``ref`` names: a unijob id, an id prefix, a native id, or else a spec name (then the
    newest job of that name, on ``prefer_target`` when there is one there).

    Raises:
        NotFound: no job has that id or name. UsageError: an id prefix matching several jobs.
    """
    from unijob.api.jobs import Job, job
    from unijob.records import Records

    try:
        return job(ref)
    except NotFound:
        pass
    with Records() as records:
        named = [r for r in records.list(limit=1_000_000) if r.name == ref]
    if not named:
        raise NotFound(f"no job with id or name '{ref}' in the records",
                       hint="unijob list shows the jobs submitted from here")
    there = [r for r in named if r.target == prefer_target]
    return Job((there or named)[0])


def artifact_of(job: "Job") -> str:
    """The model artifact ``job`` wrote on its target (refreshing its state first if unfinished).

    Raises:
        UsageError: the job did not succeed; it wrote no model; its target cannot locate models.
    """
    if not job.state.is_final:
        job.status()
    if job.state.value != "SUCCEEDED":
        raise UsageError(f"job {job.id} ({job.name} on {job.target}) is {job.state.value}"
                         + (f" ({job.message.splitlines()[0]})" if job.message else "")
                         + "; only a job that succeeded has a model to serve")
    from unijob import registry

    return registry.get(job.target).model_artifact(job.handle)


def resolve_job_models(spec: "JobSpec", target: str) -> tuple["JobSpec", list[str]]:
    """``spec`` with every ``job:`` endpoint model replaced by that job's model artifact, and one
    note per replacement (``variant blue: model from job 1a2b3c4d (quickstart on local): ...``).

    Args:
        target: the deploy target; a job name prefers the newest job of that name on it.

    Returns:
        ``(spec, notes)``: the spec itself when no model names a job, else a copy.

    Raises:
        SpecError: at ``endpoint.model`` or ``endpoint.variants[i].model`` (file:line for a loaded
            spec): no such job, a job that did not succeed, or one that wrote no model.
    """
    from unijob.api.specs import located

    ep = spec.endpoint
    if ep is None or not (is_job_ref(ep.model) or any(is_job_ref(v.model) for v in ep.variants)):
        return spec, []
    found: dict[str, str] = {}
    notes: list[str] = []

    def resolve(ref: str, loc: tuple, who: str) -> str:
        if ref not in found:
            name = ref[len(PREFIX):].strip()
            try:
                if not name:
                    raise UsageError("expected job:<name-or-id> (a job submitted from here)")
                j = find_job(name, prefer_target=target)
                found[ref] = artifact_of(j)
            except UnijobError as e:
                raise located(SpecError.at(loc, f"{ref}: {e.message}"), spec) from None
            notes.append(f"{who}: model from job {j.id} ({j.name} on {j.target}): {found[ref]}")
        return found[ref]

    update: dict = {}
    if is_job_ref(ep.model):
        update["model"] = resolve(ep.model, ("endpoint", "model"), "endpoint")  # type: ignore[arg-type]
    if ep.variants:
        variants = []
        for i, v in enumerate(ep.variants):
            if is_job_ref(v.model):
                v = v.model_copy(update={"model": resolve(v.model, ("endpoint", "variants", i, "model"),  # type: ignore[arg-type]
                                                          f"variant {v.name}")})
            variants.append(v)
        update["variants"] = variants
    return spec.model_copy(update={"endpoint": ep.model_copy(update=update)}), notes

