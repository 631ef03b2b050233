"""Batch prediction on Kubernetes: an Indexed Job whose pods share the input files, each running
unijob's batch runner (:mod:`unijob.batch.shards`) with the same handler ``unijob.serve`` serves.

What a plan holds, in the order ``submit`` creates it:

1. ``v1 ConfigMap`` ``<name>-src``: unijob's runtime wheel built with the batch runner
   (:func:`unijob.bundle.runtime_wheel` ``batch=True``) and, for a ``handler`` batch, the handler's
   code (the spec's ``source_dir``, else the spec's directory), mounted at ``/opt/unijob/src``;
   the container installs the wheel with no package index, as script jobs do
   (:func:`unijob_adapters.kubernetes.plan.start_command`). A ConfigMap holds at most 1 MiB.
2. ``batch/v1 Job``: ``completionMode: Indexed``, ``completions = parallelism = batch.replicas``;
   pod ``i`` gets ``JOB_COMPLETION_INDEX = i`` (set by the Job controller, and in the manifest
   from the downward API annotation ``batch.kubernetes.io/job-completion-index``; Kubernetes docs,
   "Indexed Job for Parallel Processing with Static Work Assignment",
   kubernetes.io/docs/tasks/job/indexed-parallel-processing-static/).

Sharding, ordering and the error budget are :mod:`unijob.batch.shards`'s: the sorted input files
round-robin over the pods; one ``<file>.out`` per input file, written by one pod in input order;
the last pod to finish merges the shards' counts and errors into ``_SUMMARY.json`` and
``errors.jsonl`` and judges ``batch.max_error_fraction`` on the whole job.

The image: ``batch.image`` (a unijob serving image from ``unijob serve-image``: the runner takes its
handler from the image's ``UNIJOB_HANDLER`` and runs in the image's working directory), or for a
``handler`` batch ``targets.kubernetes.serving_image``, else ``targets.kubernetes.image`` (any image
with Python and the handler's dependencies). Input, output and model are ``pvc://CLAIM/PATH``
(mounted) or object-store URIs (the image then needs fsspec and s3fs/gcsfs; the endpoint comes
from the spec's ``env``, credentials from ``secrets`` as ``secretKeyRef`` or from the service
account); local paths are refused: pods cannot see this machine. On an object store every output
object is one PUT, whole or absent (:data:`unijob.batch.shards.OBJECT_STORES`).

Failures (``podFailurePolicy``, Kubernetes docs, "Pod failure policy",
kubernetes.io/docs/concepts/workloads/controllers/job/#pod-failure-policy): a pod preempted or
drained (``DisruptionTarget``) is recreated for free; exit :data:`unijob.batch.shards.EXIT_BUDGET`
(the job's errors exceed the budget) or :data:`unijob.batch.shards.EXIT_CONFIG` (no input, no
handler) fails the Job at once (``FailJob``: a rerun would fail alike); another non-zero exit is
retried within ``backoffLimit = spot.max_restarts x replicas`` (a rerun shard rewrites its files).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from unijob.contract import NativeRequest, Plan, PlanResources, Upload
from unijob.errors import SpecError

from . import pods
from .options import KubernetesOptions
from .plan import (JOB_NAME_LABEL, RUNTIME_WHEEL_KEY, _index_env, _instance,
                   _source_configmap, start_command)

#: The variable each pod reads its shard index from (set by the Job controller for Indexed Jobs).
INDEX_ENV = "JOB_COMPLETION_INDEX"


def build(spec: Any, submission_id: str, opts: KubernetesOptions, target: str = "kubernetes") -> Plan:
    """The plan of ``spec.batch``. Pure: reads only the handler's source files.

    Raises:
        SpecError: no batch section; input, output or model on this machine (``file://``, a path);
            a ``models:/`` or ``job:`` model not yet resolved; a handler batch with no image to run
            it (``batch.handler``); a GPU without a node-label mapping (``batch.accelerator``);
            handler code above the ConfigMap's 1 MiB; ``env`` naming a variable the target sets.
    """
    from unijob.batch.shards import EXIT_BUDGET, EXIT_CONFIG
    from unijob.bundle import runtime_wheel, sha256

    b = spec.batch
    if b is None:
        raise SpecError.at(("batch",), "this spec has no batch section")
    if b.model and b.model.startswith(("models:/", "job:")):
        raise SpecError.at(("batch", "model"), f"{b.model} is resolved by `unijob batch` (or unijob.batch_predict) "
                                               "before planning; plan with the artifact it names")
    if b.image:
        image = b.image
    else:
        image = opts.serving_image or opts.image
        if not image:
            raise SpecError.at(("batch", "handler"),
                               "the kubernetes target runs a container image: set targets.kubernetes.serving_image "
                               "(the unijob serving image, `unijob serve-image`) or targets.kubernetes.image (any image "
                               "with Python and the handler's dependencies), or give batch.image")
    storage = pods.Storage()
    in_path = pods.data_location(b.input, ("batch", "input"), storage, read_only=True)
    out_path = pods.data_location(b.output, ("batch", "output"), storage, read_only=False)
    model_path = pods.data_location(b.model, ("batch", "model"), storage, read_only=True) if b.model else None
    name = pods.native_name(spec.name, submission_id)
    ns = opts.namespace
    lbls = pods.labels(spec, name)
    notes: list[str] = []
    warnings: list[str] = []

    wheel = runtime_wheel(["kubernetes"], batch=True)
    if b.handler:
        root = spec.resolve_path(spec.source_dir) if spec.source_dir else spec.base_dir
        try:
            configmap, items = _source_configmap(spec, name, ns, lbls, wheel, root=Path(root))
        except SpecError as e:
            raise SpecError.at(("source_dir",) if spec.source_dir else ("batch", "handler"), e.issues[0].message) from None
        notes.append(f"handler {b.handler}: {Path(root).name}/ and the runtime wheel ship as ConfigMap "
                     f"{configmap['metadata']['name']} mounted at {pods.SRC_DIR}; image {image}")
    else:
        configmap, items = _wheel_configmap(name, ns, lbls, wheel)
        notes.append(f"image {image}: the runner takes the handler from the image's UNIJOB_HANDLER (a unijob "
                     "serving image, `unijob serve-image`) and runs in its working directory")
    config = {"handler": b.handler, "base_dir": pods.SRC_DIR if b.handler else None, "model": model_path,
              "input": in_path, "output": out_path, "replicas": 1, "instances_per_request": b.instances_per_request,
              "max_error_fraction": b.max_error_fraction, "parameters": b.parameters, "shards": b.replicas,
              "index_env": INDEX_ENV, "run_id": name}
    # the kubelet expands $(VAR) in command and args: escape every '$' of the user's values
    argv = ["python", "-u", "-m", "unijob.batch.shards", pods.dumps(config).replace("$", "$$")]

    env: list[dict[str, Any]] = [_index_env(INDEX_ENV),
                                 {"name": "UNIJOB_JOB_NAME", "value": name},
                                 {"name": "UNIJOB_TARGET", "value": target}, {"name": "HOME", "value": "/tmp"},
                                 {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]
    secret_env, refs = pods.secret_env(dict(spec.secrets))
    if refs:
        env.append({"name": "UNIJOB_SECRET_REFS", "value": pods.dumps(refs)})
    reserved = {e["name"] for e in env} | {"UNIJOB_HANDLER"}
    for k, v in sorted(spec.env.items()):
        if k in reserved:
            raise SpecError.at(("env", k), f"{k} is set by the kubernetes target (the batch runner's contract)")
        env.append({"name": k, "value": v})
    env += secret_env

    mounts = list(storage.mounts)
    volumes = list(storage.volumes)
    volumes += [{"name": "src", "configMap": {"name": configmap["metadata"]["name"], "items": items}},
                {"name": "tmp", "emptyDir": {}}]
    mounts += [{"name": "src", "mountPath": pods.SRC_DIR, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}]
    container: dict[str, Any] = {"name": pods.CONTAINER, "image": image,
                                 "command": start_command(wheel.filename, None, argv)}
    if b.handler:
        container["workingDir"] = pods.SRC_DIR
    container["env"] = env
    acc_type = b.accelerator.split(":")[0] if b.accelerator else None
    acc_count = int(b.accelerator.split(":")[1]) if b.accelerator else 0
    node_sel, limits, tols = pods.gpu_placement(acc_type, acc_count, opts, ("batch", "accelerator"))
    res = spec.resources
    req = pods.requests_for(res.cpus, res.memory_gib, res.disk_gib)
    container["resources"] = {}
    if req or limits:
        container["resources"]["requests"] = {**req, **limits}
    if "memory" in req or limits:
        container["resources"]["limits"] = {**({"memory": req["memory"]} if "memory" in req else {}), **limits}
    container["volumeMounts"] = mounts
    container["securityContext"] = pods.container_security()
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"

    pod_spec: dict[str, Any] = {"restartPolicy": "Never"}
    pod_spec.update(pods.pod_identity(opts))
    if node_sel:
        pod_spec["nodeSelector"] = node_sel
    if tols:
        pod_spec["tolerations"] = tols
    pod_spec["securityContext"] = pods.pod_security(opts)
    pod_spec["containers"] = [container]
    pod_spec["volumes"] = volumes
    rules = [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
             {"action": "FailJob", "onExitCodes": {"containerName": pods.CONTAINER, "operator": "In",
                                                   "values": sorted([EXIT_CONFIG, EXIT_BUDGET])}},
             {"action": "Count", "onExitCodes": {"containerName": pods.CONTAINER, "operator": "NotIn", "values": [0]}}]
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed", "completions": b.replicas, "parallelism": b.replicas,
        "backoffLimit": spec.spot.max_restarts * b.replicas, "podFailurePolicy": {"rules": rules},
        "podReplacementPolicy": "Failed", "activeDeadlineSeconds": int(spec.max_run),
        "ttlSecondsAfterFinished": opts.ttl_seconds_after_finished,
        "template": {"metadata": {"labels": dict(lbls)}, "spec": pod_spec}}
    top = dict(lbls)
    if opts.gang == "kueue":
        if not opts.queue:
            raise SpecError.at(("targets", target, "queue"), "gang: kueue needs queue: the name of a Kueue LocalQueue")
        top["kueue.x-k8s.io/queue-name"] = str(opts.queue)
        job_spec["suspend"] = True
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": pods.metadata(name, ns, top), "spec": job_spec}
    requests = [NativeRequest(api="v1 ConfigMap", body=configmap, note="the runtime wheel (batch runner)"
                              + (" and the handler's code" if b.handler else "")),
                NativeRequest(api="batch/v1 Job", body=job,
                              note=f"{b.replicas} pod(s), each one shard of the input files (index "
                                   f"${INDEX_ENV}), {b.instances_per_request} instances per predict call")]
    notes.append(f"sharding: the sorted input files round-robin over {b.replicas} pod(s) (pod i takes files i, i+"
                 f"{b.replicas}, ...); each <file>.out is written by one pod, in input order")
    notes.append("error budget: the last pod to finish merges the shards into _SUMMARY.json and errors.jsonl and "
                 f"fails the Job (exit {EXIT_BUDGET}, podFailurePolicy FailJob) past max_error_fraction "
                 f"{b.max_error_fraction:g} of all lines")
    if "://" in b.input + b.output + (b.model or "") and not all(
            u.startswith("pvc://") for u in (b.input, b.output, b.model) if u):
        notes.append("object-store input/output/model: the image needs fsspec and its filesystem (pip install s3fs "
                     "for s3://, gcsfs for gs://); endpoint and region from env (AWS_ENDPOINT_URL, "
                     "AWS_DEFAULT_REGION), keys from secrets (k8s-secret://) or the pod's service account")
    data = base64.b64decode(configmap["binaryData"][RUNTIME_WHEEL_KEY])
    uploads = [Upload(source=wheel.filename, kind="runtime-wheel", sha256=sha256(data),
                      destination=f"configmap://{ns or '<namespace>'}/{configmap['metadata']['name']}/{RUNTIME_WHEEL_KEY}")]
    family, instance_type, cost_note = _instance(_Shape(spec, b), opts)
    if cost_note:
        notes.append(cost_note)
    return Plan(
        target=target, kind="batch", name=name, submission_id=submission_id, requests=requests, uploads=uploads,
        resources=PlanResources(service="kubernetes", instance_type=instance_type, instance_count=b.replicas,
                                accelerator=acc_type, accelerators_per_node=acc_count,
                                hours=spec.expected_seconds / 3600.0),
        notes=notes, warnings=warnings,
        extra={"namespace": ns, "context": opts.context, "kubeconfig": opts.kubeconfig, "api": "job",
               "gang": opts.gang, "nodes": b.replicas, "processes_per_node": 1, "instance_family": family,
               "pod_selector": f"{JOB_NAME_LABEL}={name}", "log_tag": "shard"})


class _Shape:
    """A batch replica as :func:`unijob_adapters.kubernetes.plan._instance` prices it."""

    def __init__(self, spec: Any, b: Any) -> None:
        from types import SimpleNamespace

        acc = b.accelerator.split(":") if b.accelerator else None
        self.resources = SimpleNamespace(
            instance_type=b.instance_type, accelerator_type=acc[0] if acc else None,
            accelerator_count=int(acc[1]) if acc else 0, cpus=spec.resources.cpus,
            memory_gib=spec.resources.memory_gib, nodes=b.replicas)


def _wheel_configmap(name: str, ns: Any, lbls: dict[str, str], wheel: Any) -> tuple[dict[str, Any], list[dict[str, str]]]:
    from .plan import RUNTIME_WHEEL_DIR

    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": pods.metadata(f"{name}-src", ns, lbls),
            "binaryData": {RUNTIME_WHEEL_KEY: base64.b64encode(wheel.data).decode()}}
    return body, [{"key": RUNTIME_WHEEL_KEY, "path": f"{RUNTIME_WHEEL_DIR}/{wheel.filename}"}]
