"""``plan()`` for training gangs: the exact manifests, as plain dicts ready for ``kubectl apply -f``.

What a plan holds, in the order ``submit`` creates it:

1. ``v1 ConfigMap`` ``<name>-src`` (script jobs only): the ``source_dir`` files and unijob's runtime
   wheel (:func:`unijob.bundle.runtime_wheel`, under ``.unijob-runtime/``), mounted read-only at
   ``/opt/unijob/src``; the container command installs the wheel with no package index before the
   script (:func:`start_command`).
2. ``v1 Service`` ``<name>`` (``api: job``): headless (``clusterIP: None``), selecting the Job's pods
   by the controller-set label ``batch.kubernetes.io/job-name``. Every pod of an Indexed Job gets the
   hostname ``<name>-<index>``; with ``subdomain: <name>`` it resolves as ``<name>-<index>.<name>``,
   so rank 0 is ``MASTER_ADDR=<name>-0.<name>`` (same-namespace DNS search path).
   (Kubernetes docs, "Job with Pod-to-Pod Communication", kubernetes.io/docs/tasks/job/job-with-pod-to-pod-communication/.)
3. ``scheduling.volcano.sh/v1beta1 PodGroup`` (``gang: volcano``): ``minMember = nodes``.
4. ``batch/v1 Job`` (``completionMode: Indexed``, ``parallelism = completions = nodes``) or
   ``jobset.x-k8s.io/v1alpha2 JobSet`` (``api: jobset``, one replicated job ``node``).

Ranks: the node rank is the Job completion index, read through the downward API from the pod
annotation ``batch.kubernetes.io/job-completion-index`` into ``NODE_RANK``/``GROUP_RANK``. With one
process per node the container runs the command directly with ``RANK = NODE_RANK``; with more, it
runs ``torchrun --nnodes N --nproc-per-node P --node-rank $(NODE_RANK) --master-addr $(MASTER_ADDR)
--master-port $(MASTER_PORT)``, which gives process ``l`` of node ``i`` ``RANK = i*P + l``.

Restarts: ``podFailurePolicy`` ignores pods that failed with the ``DisruptionTarget`` condition
(preemption, spot reclaim, node drain): they are recreated without counting against
``backoffLimit``; a non-zero exit of the trainer counts. Because a failing rank usually takes its
peers down with it (collective timeout), one gang restart costs up to ``nodes`` pod failures:
``backoffLimit = max_restarts x nodes``. The JobSet variant restarts the whole gang instead
(``failurePolicy.maxRestarts = max_restarts``, preemptions ignored via
``RestartJobSetAndIgnoreMaxRestarts``).
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from pathlib import Path
from typing import Any, Optional

from unijob.contract import NativeRequest, Plan, PlanResources, Upload
from unijob.errors import SpecError

from . import pods
from .options import PROVIDER_FAMILY, PYTORCH_IMAGES, KubernetesOptions

COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
REPLICATED_JOB = "node"
#: Size limit of a ConfigMap, in bytes: "The data stored in a ConfigMap cannot exceed 1 MiB"
#: (kubernetes.io/docs/concepts/configuration/configmap/, read 2026-11-29; etcd's request limit).
CONFIGMAP_LIMIT = 1024 * 1024
#: Bytes kept free in the ConfigMap for its metadata, keys and items.
CONFIGMAP_OVERHEAD = 32 * 1024
CONFIGMAP_WHY = ("a script job's code ships to the pods in a ConfigMap, and a ConfigMap holds at most 1 MiB "
                 "(kubernetes.io/docs/concepts/configuration/configmap/); build an image with the code and set "
                 "image + command, or move data to inputs")
#: ConfigMap key of the runtime wheel (keys allow only [-._a-zA-Z0-9]; the wheel's file name has a '+').
RUNTIME_WHEEL_KEY = "unijob-runtime.whl"
#: Where the runtime wheel appears below the source mount (its PEP 427 file name kept: pip needs it).
RUNTIME_WHEEL_DIR = ".unijob-runtime"


def build(spec: Any, submission_id: str, opts: KubernetesOptions, target: str = "kubernetes") -> Plan:
    """The plan of one training gang. Pure: reads only the spec's own source files.

    Raises:
        SpecError: a GPU without a node-label mapping (``resources.accelerator``), a gang above the
            declared quota (``resources.nodes``), Kueue without a queue, local-path data, env://
            secrets, a source dir above 1 MiB, a multi-process image job without a command.
    """
    res = spec.resources
    nodes, nproc = res.nodes, int(res.processes_per_node or 1)
    _check_quota(spec, opts)
    if opts.gang == "kueue" and not opts.queue:
        raise SpecError.at(("targets", target, "queue"), "gang: kueue needs queue: the name of a Kueue LocalQueue "
                                                          "in the namespace")
    jobset = opts.api == "jobset"
    name = pods.native_name(spec.name, submission_id, max_len=44 if jobset else 48)
    ns = opts.namespace
    lbls = pods.labels(spec, name)
    master = f"{name}-{REPLICATED_JOB}-0-0.{name}" if jobset else f"{name}-0.{name}"
    notes: list[str] = []
    warnings: list[str] = []

    container, volumes, configmap = _container(spec, opts, name, master, notes)
    node_sel, limits, tols = pods.gpu_placement(res.accelerator_type, res.accelerator_count, opts,
                                                ("resources", "accelerator"))
    s_sel, affinity, s_tols, s_notes = pods.spot_placement(spec.spot.policy, opts)
    notes += s_notes
    if spec.spot.is_spot and not spec.checkpoint:
        warnings.append("spot without checkpoint: a preempted gang restarts from scratch")
    if limits:
        container["resources"].setdefault("limits", {}).update(limits)
        container["resources"].setdefault("requests", {}).update(limits)

    pod_md: dict[str, Any] = {"labels": dict(lbls)}
    pod_spec: dict[str, Any] = {"restartPolicy": "Never"}
    if not jobset:
        pod_spec["subdomain"] = name
    if opts.gang == "volcano":
        pod_md["annotations"] = {VOLCANO_GROUP_ANNOTATION: name}
        pod_spec["schedulerName"] = "volcano"
    pod_spec.update(pods.pod_identity(opts))
    if node_sel or s_sel:
        pod_spec["nodeSelector"] = {**node_sel, **s_sel}
    if affinity:
        pod_spec["affinity"] = affinity
    if tols or s_tols:
        pod_spec["tolerations"] = tols + s_tols
    pod_spec["securityContext"] = pods.pod_security(opts)
    pod_spec["containers"] = [container]
    if volumes:
        pod_spec["volumes"] = volumes
    template = {"metadata": pod_md, "spec": pod_spec}

    requests: list[NativeRequest] = []
    if configmap:
        requests.append(NativeRequest(api="v1 ConfigMap", body=configmap, note="the script's source_dir"))
    if not jobset:
        requests.append(NativeRequest(api="v1 Service", body=_service(name, ns, lbls, opts.master_port),
                                      note=f"headless Service: rank 0 is {master}"))
    if opts.gang == "volcano":
        requests.append(NativeRequest(api="scheduling.volcano.sh/v1beta1 PodGroup",
                                      body=_podgroup(name, ns, lbls, nodes, opts.queue, limits),
                                      note=f"Volcano gang: all {nodes} pods or none"))
    top_labels = dict(lbls)
    if opts.gang == "kueue":
        top_labels[KUEUE_QUEUE_LABEL] = str(opts.queue)
        notes.append(f"Kueue: created suspended in LocalQueue '{opts.queue}'; Kueue admits all {nodes} pods at once")
    if jobset:
        body = _jobset(spec, name, ns, top_labels, template, opts)
        requests.append(NativeRequest(api="jobset.x-k8s.io/v1alpha2 JobSet", body=body,
                                      note=f"{nodes} node(s) x {nproc} process(es)"))
    else:
        body = _job(spec, name, ns, top_labels, template, opts)
        requests.append(NativeRequest(api="batch/v1 Job", body=body, note=f"{nodes} node(s) x {nproc} process(es)"))

    uploads: list[Upload] = []
    if configmap:
        wheel_item = next(i for i in volumes_of(template) if i["key"] == RUNTIME_WHEEL_KEY)
        data = base64.b64decode(configmap["binaryData"][RUNTIME_WHEEL_KEY])
        from unijob.bundle import sha256

        uploads.append(Upload(source=Path(wheel_item["path"]).name, kind="runtime-wheel", sha256=sha256(data),
                              destination=f"configmap://{ns or '<namespace>'}/{configmap['metadata']['name']}/"
                                          f"{RUNTIME_WHEEL_KEY}"))
    image = container.get("image", "")
    if nproc > 1 and not _has_torchrun(image, opts):
        warnings.append(f"processes_per_node={nproc}: the ranks start under torchrun, which image {image} may not "
                        "have (it is not a PyTorch image); use a PyTorch image or run one process per node")

    family, instance_type, cost_note = _instance(spec, opts)
    if cost_note:
        notes.append(cost_note)
    resources = PlanResources(
        service="kubernetes", instance_type=instance_type, instance_count=nodes,
        accelerator=res.accelerator_type, accelerators_per_node=res.accelerator_count,
        hours=spec.expected_seconds / 3600.0, spot=spec.spot.policy)
    extra = {"namespace": ns, "context": opts.context, "kubeconfig": opts.kubeconfig, "api": opts.api,
             "gang": opts.gang, "nodes": nodes, "processes_per_node": nproc, "instance_family": family,
             "pod_selector": f"{JOBSET_NAME_LABEL if jobset else JOB_NAME_LABEL}={name}"}
    return Plan(target=target, kind="job", name=name, submission_id=submission_id, requests=requests,
                uploads=uploads, resources=resources, notes=notes, warnings=warnings, extra=extra)


# ---- pieces ---------------------------------------------------------------------------------

def _check_quota(spec: Any, opts: KubernetesOptions) -> None:
    q = opts.quota
    if not q:
        return
    res = spec.resources
    if q.nodes is not None and res.nodes > q.nodes:
        raise SpecError.at(("resources", "nodes"),
                           f"a gang of {res.nodes} nodes can never be admitted: targets.kubernetes.quota.nodes is "
                           f"{q.nodes}; use at most {q.nodes} nodes or raise the quota")
    gpus = res.nodes * res.accelerator_count
    if q.gpus is not None and gpus > q.gpus:
        raise SpecError.at(("resources", "nodes"),
                           f"the gang needs {gpus} GPUs ({res.nodes} nodes x {res.accelerator_count}) but "
                           f"targets.kubernetes.quota.gpus is {q.gpus}; use at most "
                           f"{q.gpus // max(res.accelerator_count, 1)} nodes or raise the quota")


def _env(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


def _index_env(name: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {
        "fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}}


def _container(spec: Any, opts: KubernetesOptions, name: str, master: str,
               notes: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]], Optional[dict[str, Any]]]:
    res = spec.resources
    nodes, nproc = res.nodes, int(res.processes_per_node or 1)
    storage = pods.Storage()
    env: list[dict[str, Any]] = [
        _index_env("NODE_RANK"), _index_env("GROUP_RANK"),
        _env("NNODES", str(nodes)), _env("WORLD_SIZE", str(nodes * nproc)),
        _env("LOCAL_WORLD_SIZE", str(nproc)),
        _env("MASTER_ADDR", master), _env("MASTER_PORT", str(opts.master_port)),
    ]
    if nproc == 1:
        env += [_index_env("RANK"), _env("LOCAL_RANK", "0")]
    env += [_env("UNIJOB_JOB_NAME", name), _env("UNIJOB_TARGET", "kubernetes"), _env("HOME", "/tmp")]
    if spec.checkpoint:
        uri = spec.checkpoint.uri
        loc = pods.data_location(uri, ("checkpoint", "uri"), storage, read_only=False)
        env.append(_env("UNIJOB_CHECKPOINT_URI", uri))
        if uri.startswith("pvc://"):
            env.append(_env("UNIJOB_CHECKPOINT_DIR", loc))
    if spec.output:
        env.append(_env("UNIJOB_OUTPUT_URI", pods.data_location(spec.output, ("output",), storage, read_only=False)))
    channels = {ch: pods.data_location(uri, ("inputs", ch), storage, read_only=True)
                for ch, uri in sorted(spec.inputs.items())}
    if channels:
        env.append(_env("UNIJOB_CHANNELS", pods.dumps(channels)))
    if spec.hyperparameters:
        env.append(_env("UNIJOB_HYPERPARAMETERS", pods.dumps(spec.hyperparameters)))
    secret_env, refs = pods.secret_env(dict(spec.secrets))
    if refs:
        env.append(_env("UNIJOB_SECRET_REFS", pods.dumps(refs)))
    reserved = {e["name"] for e in env}
    for k, v in sorted(spec.env.items()):
        if k in reserved:
            raise SpecError.at(("env", k), f"{k} is set by the kubernetes target (gang wiring or the unijob contract)")
        env.append(_env(k, v))
    env += secret_env

    mounts = list(storage.mounts)
    volumes = list(storage.volumes)
    for i, v in enumerate(opts.volumes):
        vname = f"extra-{i}"
        volumes.append({"name": vname, "persistentVolumeClaim": {"claimName": v.claim, "readOnly": v.read_only}})
        m = {"name": vname, "mountPath": v.mount_path, "readOnly": v.read_only}
        if v.sub_path:
            m["subPath"] = v.sub_path
        mounts.append(m)
    volumes.append({"name": "tmp", "emptyDir": {}})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    if nproc > 1:  # NCCL and DataLoader workers need more than the default 64 MiB /dev/shm
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})

    configmap = None
    container: dict[str, Any] = {"name": pods.CONTAINER}
    if spec.script:
        image = opts.image or PYTORCH_IMAGES.get(spec.framework.version)
        if not image:
            raise SpecError.at(("targets", "kubernetes", "image"),
                               f"no default PyTorch image for framework.version {spec.framework.version} (known: "
                               f"{', '.join(sorted(PYTORCH_IMAGES))}); set targets.kubernetes.image")
        from unijob.bundle import runtime_wheel

        wheel = runtime_wheel(["kubernetes"])
        configmap, items = _source_configmap(spec, name, opts.namespace, pods.labels(spec, name), wheel)
        volumes.append({"name": "src", "configMap": {"name": configmap["metadata"]["name"], "items": items}})
        mounts.append({"name": "src", "mountPath": pods.SRC_DIR, "readOnly": True})
        env.append(_env("PYTHONDONTWRITEBYTECODE", "1"))
        argv = _launch(["python", spec.script_relpath, *spec.args], nodes, nproc)
        req = None
        if spec.requirements:
            req = Path(spec.resolve_path(spec.requirements)).relative_to(spec.source_path).as_posix()
        container.update({"image": image, "command": start_command(wheel.filename, req, argv),
                          "workingDir": pods.SRC_DIR})
        notes.append(f"script job: {spec.source_path.name}/ and the runtime wheel ship as ConfigMap "
                     f"{configmap['metadata']['name']} mounted at {pods.SRC_DIR}; image {image}")
    else:
        container["image"] = spec.image
        if spec.command:
            container["command"] = _launch([*spec.command, *spec.args], nodes, nproc)
        elif nproc > 1:
            raise SpecError.at(("command",), f"processes_per_node={nproc}: the kubernetes target launches the ranks "
                                             "with torchrun, which needs the command (e.g. [python, train.py])")
        elif spec.args:
            container["args"] = list(spec.args)
    container["env"] = env
    container["resources"] = {}
    req = pods.requests_for(res.cpus, res.memory_gib, res.disk_gib)
    if req:
        container["resources"]["requests"] = req
        if "memory" in req:
            container["resources"]["limits"] = {"memory": req["memory"]}
    container["ports"] = [{"name": "rendezvous", "containerPort": opts.master_port, "protocol": "TCP"}]
    container["volumeMounts"] = mounts
    container["securityContext"] = pods.container_security()
    # A failed container's last log lines become its termination message (kubelet: the last 80 lines,
    # at most 2048 bytes; kubernetes.io/docs/tasks/debug/debug-application/determine-reason-pod-failure/),
    # which `unijob status` shows, as on the local target.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return container, volumes, configmap


def start_command(wheel_filename: str, requirements: Optional[str], argv: list[str]) -> list[str]:
    """A script job's container command: install the runtime wheel from the ConfigMap (``pip install
    --no-deps --no-index``: no package index), then the spec's requirements, then ``exec argv``
    (``python SCRIPT``, or torchrun for several processes per node).

    Both installs go to the user site (``--user``, under ``HOME=/tmp``, an emptyDir) when the image's
    Python has one (the PyTorch images' conda Python does): the pod runs as a non-root UID that
    cannot write the image's site-packages. A virtualenv Python has no user site; pip installs into
    the environment itself then.

    The kubelet expands ``$(VAR)`` in command and args; this script holds no ``$(``, and ``$U``,
    ``"$0"``, ``"$@"`` are left alone by that expansion (only ``$(`` and ``$$`` are special).
    """
    from unijob.bundle import install_argv

    pip = install_argv(f"{pods.SRC_DIR}/{RUNTIME_WHEEL_DIR}/{wheel_filename}")
    steps = [shlex.join(pip[:-1]) + " $U " + shlex.quote(pip[-1])]
    if requirements:
        steps.append(f"python -m pip install $U --no-cache-dir --disable-pip-version-check -r "
                     f"{shlex.quote(requirements)}")
    user = ("if python -c 'import site, sys; sys.exit(not site.ENABLE_USER_SITE)'; then U=--user; else U=; fi; ")
    return ["sh", "-c", user + " && ".join(steps) + ' && exec "$0" "$@"', *argv]


def volumes_of(template: dict[str, Any]) -> list[dict[str, str]]:
    """The items of the pod template's source ConfigMap volume."""
    for v in template["spec"].get("volumes", []):
        if v["name"] == "src" and "configMap" in v:
            return list(v["configMap"].get("items", []))
    return []


def _has_torchrun(image: str, opts: KubernetesOptions) -> bool:
    """Whether ``image`` is known to carry torchrun: the default PyTorch images (:data:`PYTORCH_IMAGES`)
    and images named like PyTorch's (``pytorch``/``torch`` in the repository name: the official
    ``pytorch/pytorch``, NVIDIA's ``nvcr.io/nvidia/pytorch``, AWS' and GCP's ``pytorch-training``)."""
    repo = image.rsplit(":", 1)[0].lower() if "@" not in image else image.split("@")[0].lower()
    return image in PYTORCH_IMAGES.values() or "torch" in repo


def _launch(argv: list[str], nodes: int, nproc: int) -> list[str]:
    """The container command: ``argv`` itself for one process per node, else under torchrun."""
    if nproc == 1:
        return list(argv)
    head = ["torchrun", f"--nnodes={nodes}", f"--nproc-per-node={nproc}", "--node-rank=$(NODE_RANK)",
            "--master-addr=$(MASTER_ADDR)", "--master-port=$(MASTER_PORT)"]
    if argv and re.fullmatch(r"python(3(\.\d+)?)?", Path(argv[0]).name):
        return head + argv[1:]
    return head + ["--no-python"] + argv


def _source_configmap(spec: Any, name: str, ns: Optional[str], lbls: dict[str, str],
                      wheel: Any, root: Optional[Path] = None) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The ConfigMap carrying ``root`` (default ``spec.source_path``; text files in ``data``, others
    base64 in ``binaryData``) less what a local run of ``spec`` left there
    (:func:`unijob.bundle.local_outputs`), and the runtime wheel (``binaryData[RUNTIME_WHEEL_KEY]``,
    mounted at ``RUNTIME_WHEEL_DIR/<file>``).

    Raises:
        SpecError: at ``source_dir`` when it cannot fit: checked first on the files' sizes
            (:func:`unijob.bundle.check_source_size`, with the largest files), then on the object as
            stored (base64 grows binary files by 4/3).
    """
    from unijob.bundle import check_source_size, iter_source_files, local_outputs

    root = root if root is not None else spec.source_path
    skip = local_outputs(spec, root)
    wheel_b64 = base64.b64encode(wheel.data).decode()
    check_source_size(root, limit=CONFIGMAP_LIMIT - len(wheel_b64) - CONFIGMAP_OVERHEAD, why=CONFIGMAP_WHY,
                      exclude=skip)
    data: dict[str, str] = {}
    binary: dict[str, str] = {RUNTIME_WHEEL_KEY: wheel_b64}
    items: list[dict[str, str]] = []
    for i, (rel, p) in enumerate(iter_source_files(root, skip)):
        key = f"f{i:04d}-" + re.sub(r"[^-._a-zA-Z0-9]", "_", rel)[-200:]
        raw = p.read_bytes()
        try:
            data[key] = raw.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(raw).decode()
        items.append({"key": key, "path": rel})
    items.append({"key": RUNTIME_WHEEL_KEY, "path": f"{RUNTIME_WHEEL_DIR}/{wheel.filename}"})
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": pods.metadata(f"{name}-src", ns, lbls), "data": data, "binaryData": binary}
    size = len(json.dumps(body, separators=(",", ":")))
    if size > CONFIGMAP_LIMIT:
        from unijob.bundle import source_size

        raise SpecError.at(("source_dir",), f"the source directory {root} ({source_size(root, skip).describe()}) makes a "
                                            f"ConfigMap of {size / 1048576:.2f} MiB with the runtime wheel and base64 "
                                            f"encoding; the limit is 1.0 MiB ({CONFIGMAP_WHY})")
    return body, items


def _service(name: str, ns: Optional[str], lbls: dict[str, str], port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": pods.metadata(name, ns, lbls),
            "spec": {"clusterIP": "None", "selector": {JOB_NAME_LABEL: name}, "publishNotReadyAddresses": True,
                     "ports": [{"name": "rendezvous", "port": port, "targetPort": port, "protocol": "TCP"}]}}


def _podgroup(name: str, ns: Optional[str], lbls: dict[str, str], nodes: int, queue: Optional[str],
              limits: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"minMember": nodes, "queue": queue or "default"}
    if limits:
        spec["minResources"] = {k: str(int(v) * nodes) for k, v in limits.items()}
    return {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
            "metadata": pods.metadata(name, ns, lbls), "spec": spec}


def _job_spec(spec: Any, opts: KubernetesOptions, template: dict[str, Any], *, in_jobset: bool) -> dict[str, Any]:
    nodes = spec.resources.nodes
    exit_rule = {"action": "Count", "onExitCodes": {"containerName": pods.CONTAINER, "operator": "NotIn", "values": [0]}}
    if in_jobset:  # the JobSet restarts the whole gang; a preempted pod fails the child Job with reason PodFailurePolicy
        rules = [{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}, exit_rule]
        backoff = 0
    else:
        rules = [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}, exit_rule]
        backoff = spec.spot.max_restarts * nodes
    js: dict[str, Any] = {
        "completionMode": "Indexed", "completions": nodes, "parallelism": nodes, "backoffLimit": backoff,
        "podFailurePolicy": {"rules": rules}, "podReplacementPolicy": "Failed",
        "activeDeadlineSeconds": int(spec.max_run), "template": template}
    if not in_jobset:
        js["ttlSecondsAfterFinished"] = opts.ttl_seconds_after_finished
        if opts.gang == "kueue":
            js["suspend"] = True
    return js


def _job(spec: Any, name: str, ns: Optional[str], lbls: dict[str, str], template: dict[str, Any],
         opts: KubernetesOptions) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": pods.metadata(name, ns, lbls),
            "spec": _job_spec(spec, opts, template, in_jobset=False)}


def _jobset(spec: Any, name: str, ns: Optional[str], lbls: dict[str, str], template: dict[str, Any],
            opts: KubernetesOptions) -> dict[str, Any]:
    body_spec: dict[str, Any] = {
        "network": {"enableDNSHostnames": True, "subdomain": name, "publishNotReadyAddresses": True},
        "failurePolicy": {"maxRestarts": spec.spot.max_restarts, "rules": [
            {"name": "PreemptionIsFree", "action": "RestartJobSetAndIgnoreMaxRestarts",
             "onJobFailureReasons": ["PodFailurePolicy"]}]},
        "replicatedJobs": [{"name": REPLICATED_JOB, "replicas": 1, "template": {
            "metadata": {"labels": {k: v for k, v in lbls.items() if k != KUEUE_QUEUE_LABEL}},
            "spec": _job_spec(spec, opts, template, in_jobset=True)}}],
        "ttlSecondsAfterFinished": opts.ttl_seconds_after_finished,
    }
    if opts.gang == "kueue":
        body_spec["suspend"] = True
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": pods.metadata(name, ns, lbls),
            "spec": body_spec}


def _instance(spec: Any, opts: KubernetesOptions) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(catalog family, node instance type, note) for costing; never raises (self-managed nodes may be
    anything, so a missing catalog row is a note, not an error)."""
    explicit = spec.resources.instance_type.get("kubernetes")
    family = PROVIDER_FAMILY[opts.provider]
    if explicit:
        return family, explicit, None
    if family is None:
        return None, None, ("cost: provider generic names no node type; set targets.kubernetes.provider or "
                            "resources.instance_type.kubernetes to price the gang")
    from unijob.cost.catalog import NoOffering, instance_for

    res = spec.resources
    try:
        shape = instance_for(family, res.accelerator_type, res.accelerator_count, cpus=res.cpus, memory_gib=res.memory_gib)
    except NoOffering as e:
        return family, None, f"cost: {e}"
    return family, shape.instance_type, f"cost: priced as {res.nodes} x {shape.instance_type} ({family})"
