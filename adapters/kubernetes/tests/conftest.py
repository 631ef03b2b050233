"""A local fake kube-apiserver speaking the REST paths the official client calls, validating every
body: built-in kinds with kubernetes-validate (strict, Kubernetes 1.31 and 1.33), CRDs with jsonschema
against the published openAPIV3Schema kept in ``schemas/`` (see schemas/SOURCES.md).

The service proxy (``/api/v1/namespaces/NS/services/NAME[:PORT]/proxy/PATH``) forwards to the
process a test attached to a stored Deployment (:meth:`FakeApiServer.attach`), as the API server
forwards to a ready pod behind the Service: port and selector must match the manifests, and the
container's readinessProbe (if any) is asked first, as the kubelet would."""

from __future__ import annotations

import copy
import itertools
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import unquote
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from unijob.spec import JobSpec
from unijob.testing.conformance import no_network  # noqa: F401  (fixture the conformance suite uses)
from unijob.testing.jobs import stop_process
from unijob.testing.httpfake import FakeServer, Request, Response

K8S_VERSIONS = ("1.31.0", "1.33.0")
SCHEMAS = Path(__file__).parent / "schemas"
CRD_FILES = {
    ("scheduling.volcano.sh/v1beta1", "PodGroup"): "scheduling.volcano.sh_podgroups.yaml",
    ("jobset.x-k8s.io/v1alpha2", "JobSet"): "jobset.x-k8s.io_jobsets.excerpt.yaml",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "gateway.networking.k8s.io_httproutes.excerpt.yaml",
}
#: (api prefix, plural) -> (apiVersion, kind)
KINDS = {
    ("api/v1", "services"): ("v1", "Service"),
    ("api/v1", "configmaps"): ("v1", "ConfigMap"),
    ("apis/batch/v1", "jobs"): ("batch/v1", "Job"),
    ("apis/apps/v1", "deployments"): ("apps/v1", "Deployment"),
    ("apis/autoscaling/v2", "horizontalpodautoscalers"): ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("apis/jobset.x-k8s.io/v1alpha2", "jobsets"): ("jobset.x-k8s.io/v1alpha2", "JobSet"),
    ("apis/scheduling.volcano.sh/v1beta1", "podgroups"): ("scheduling.volcano.sh/v1beta1", "PodGroup"),
    ("apis/gateway.networking.k8s.io/v1", "httproutes"): ("gateway.networking.k8s.io/v1", "HTTPRoute"),
}
TS = "2026-11-21T06:00:00Z"


from unijob.testing.vendor import strict_crd_schema as _strict  # noqa: E402


_validators: dict[tuple[str, str], Any] = {}


def crd_validator(api_version: str, kind: str):
    key = (api_version, kind)
    if key not in _validators:
        crd = yaml.safe_load((SCHEMAS / CRD_FILES[key]).read_text())
        version = api_version.split("/")[1]
        schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]
        _validators[key] = jsonschema.Draft7Validator(_strict(schema))
    return _validators[key]


def validate_manifest(doc: dict[str, Any]) -> None:
    """Raise ValueError unless ``doc`` validates: strict official schema or strict CRD schema.
    JobSet child-Job templates are also validated as batch/v1 Jobs."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_FILES:
        errs = sorted(crd_validator(*key).iter_errors(doc), key=lambda e: list(e.path))
        if errs:
            raise ValueError(f"{key[1]} invalid at {list(errs[0].path)}: {errs[0].message}")
        if key[1] == "JobSet":
            for rj in doc["spec"]["replicatedJobs"]:
                validate_manifest({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
                                   "spec": rj["template"]["spec"]})
        return
    for v in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, v, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise ValueError(f"{key[1]} invalid for Kubernetes {v}: {str(e).splitlines()[0]}") from None


class FakeApiServer(FakeServer):
    """Objects by (api prefix, namespace, plural, name). Jobs/JobSets get one pod per index.

    Attributes:
        created: kind -> objects really created (dry runs and 409s not counted).
        pod_logs: pod name -> log text.
    """

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.pod_logs: dict[str, str] = {}
        self.created: dict[str, int] = {}
        self.backends: dict[tuple[str, str], str] = {}
        #: False while a start-contract runner (unijob.testing.contracts.kubernetes) plays the
        #: kubelet: then pods, logs and Job status come from it (put_pod, put_job_status).
        self.spawn_pods = True
        self._rv = itertools.count(1)
        coll = r"/(?P<prefix>api/v1|apis/[^/]+/[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[a-z]+)"
        self.route("GET", r"/api/v1/namespaces/(?P<ns>[^/]+)/pods", self.list_pods)
        self.route("GET", r"/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log", self.read_log)
        self.route("POST", r"/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<svc>[^/]+)/proxy/(?P<path>.*)",
                   self.service_proxy)
        self.route("POST", coll, self.create)
        self.route("GET", coll + r"/(?P<name>[^/]+)", self.get)
        self.route("PUT", coll + r"/(?P<name>[^/]+)", self.replace)
        self.route("DELETE", coll + r"/(?P<name>[^/]+)", self.delete)

    def start(self) -> "FakeApiServer":
        """As the base, but the server loop polls for shutdown every 50 ms (not 0.5 s), so each
        test's teardown is quick."""
        import unijob.testing.httpfake as hf

        orig = hf.ThreadingHTTPServer

        class _Fast(orig):  # type: ignore[misc, valid-type]
            def serve_forever(self, poll_interval: float = 0.05) -> None:
                super().serve_forever(poll_interval)

        hf.ThreadingHTTPServer = _Fast
        try:
            super().start()
        finally:
            hf.ThreadingHTTPServer = orig
        return self

    # ---- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _status(code: int, reason: str, msg: str) -> Response:
        return Response(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "reason": reason, "message": msg, "code": code})

    def _kind(self, req: Request) -> tuple[str, str]:
        key = (req.params["prefix"], req.params["plural"])
        if key not in KINDS:
            raise ValueError(f"unknown resource {key}")
        return KINDS[key]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        for (prefix, ns, plural, n), obj in self.objects.items():
            if obj["kind"] == kind and n == name:
                return obj
        return None

    def count(self, *kinds: str) -> int:
        return sum(1 for o in self.objects.values() if o["kind"] in kinds)

    # ---- handlers ---------------------------------------------------------------------------

    def create(self, req: Request) -> Response:
        api_version, kind = self._kind(req)
        body = req.json()
        if (body.get("apiVersion"), body.get("kind")) != (api_version, kind):
            raise ValueError(f"{body.get('kind')} posted to the {kind} collection")
        if body["metadata"].get("namespace", req.params["ns"]) != req.params["ns"]:
            raise ValueError("metadata.namespace differs from the request path")
        validate_manifest(body)
        key = (req.params["prefix"], req.params["ns"], req.params["plural"], body["metadata"]["name"])
        if key in self.objects:
            return self._status(409, "AlreadyExists", f'{req.params["plural"]} "{key[3]}" already exists')
        obj = copy.deepcopy(body)
        obj["metadata"].update({"namespace": req.params["ns"], "uid": f"uid-{key[3]}",
                                "resourceVersion": str(next(self._rv)), "creationTimestamp": TS})
        if req.arg("dryRun") == "All":
            return Response(201, obj)
        self.objects[key] = obj
        self.created[kind] = self.created.get(kind, 0) + 1
        if not self.spawn_pods:
            obj["status"] = {}
        elif kind == "Job":
            self._spawn(obj, obj["spec"], {"batch.kubernetes.io/job-name": key[3], "job-name": key[3]})
        elif kind == "JobSet":
            rj = obj["spec"]["replicatedJobs"][0]
            self._spawn(obj, rj["template"]["spec"], {"jobset.sigs.k8s.io/jobset-name": key[3]},
                        host=f"{key[3]}-{rj['name']}-0")
        return Response(201, obj)

    def _spawn(self, obj: dict[str, Any], job_spec: dict[str, Any], labels: dict[str, str], host: str = "") -> None:
        name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
        suspended = bool(obj["spec"].get("suspend"))
        obj["status"] = {} if suspended else {"startTime": TS, "active": job_spec["parallelism"]}
        if suspended:
            obj["status"]["conditions"] = [{"type": "Suspended", "status": "True", "reason": "JobSuspended",
                                            "lastTransitionTime": TS}] if obj["kind"] == "Job" else []
            return
        for i in range(job_spec["parallelism"]):
            tmpl = job_spec["template"]
            pname = f"{host or name}-{i}-abcde"
            self.pods[(ns, pname)] = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pname, "namespace": ns, "creationTimestamp": TS,
                             "labels": {**tmpl["metadata"].get("labels", {}), **labels,
                                        "batch.kubernetes.io/job-completion-index": str(i)},
                             "annotations": {**tmpl["metadata"].get("annotations", {}),
                                             "batch.kubernetes.io/job-completion-index": str(i)}},
                "spec": {"containers": [{"name": c["name"], "image": c["image"]} for c in tmpl["spec"]["containers"]],
                         "hostname": f"{host or name}-{i}", "subdomain": tmpl["spec"].get("subdomain", name)},
                "status": {"phase": "Running", "containerStatuses": [
                    {"name": "trainer", "image": "x", "imageID": "x", "ready": True, "restartCount": 0,
                     "state": {"running": {"startedAt": TS}}}]}}
            self.pod_logs[pname] = f"hello from index {i}\nstep 1 loss 0.5\n"

    def get(self, req: Request) -> Response:
        self._kind(req)
        key = (req.params["prefix"], req.params["ns"], req.params["plural"], req.params["name"])
        if key not in self.objects:
            return self._status(404, "NotFound", f'"{key[3]}" not found')
        return Response(200, self.objects[key])

    def replace(self, req: Request) -> Response:
        self._kind(req)
        key = (req.params["prefix"], req.params["ns"], req.params["plural"], req.params["name"])
        body = req.json()
        validate_manifest({k: v for k, v in body.items() if k != "status"})
        if key not in self.objects:
            return self._status(404, "NotFound", "not found")
        if body["metadata"].get("resourceVersion") != self.objects[key]["metadata"]["resourceVersion"]:
            return self._status(409, "Conflict", "the object has been modified")
        body["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[key] = body
        return Response(200, body)

    def delete(self, req: Request) -> Response:
        _, kind = self._kind(req)
        key = (req.params["prefix"], req.params["ns"], req.params["plural"], req.params["name"])
        if key not in self.objects:
            return self._status(404, "NotFound", "not found")
        obj = self.objects[key]
        if kind in ("Job", "JobSet") and req.arg("propagationPolicy") == "Foreground":
            # foreground deletion: the owner stays (with deletionTimestamp) until its pods are gone
            obj["metadata"].setdefault("deletionTimestamp", TS)
            obj["metadata"]["finalizers"] = ["foregroundDeletion"]
            for pk, pod in list(self.pods.items()):
                if pk[0] == key[1] and key[3] in pod["metadata"]["name"]:
                    del self.pods[pk]
        else:
            del self.objects[key]
        if kind == "Service":  # the API answers a Service DELETE with the Service itself
            return Response(200, obj)
        return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})

    def reap(self) -> None:
        """Finish foreground deletions (the garbage collector's job)."""
        for key in [k for k, o in self.objects.items() if o["metadata"].get("deletionTimestamp")]:
            del self.objects[key]

    def list_pods(self, req: Request) -> Response:
        sel = dict(part.split("=", 1) for part in (req.arg("labelSelector") or "").split(",") if part)
        items = [p for (ns, _), p in sorted(self.pods.items()) if ns == req.params["ns"]
                 and all(p["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        return Response(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    def read_log(self, req: Request) -> Response:
        if (req.params["ns"], req.params["name"]) not in self.pods:
            return self._status(404, "NotFound", "pod not found")
        return Response(200, self.pod_logs.get(req.params["name"], ""))

    # ---- service proxy ----------------------------------------------------------------------

    def _probe_ok(self, base: str, container: dict[str, Any], probe: str) -> bool:
        p = container.get(probe)
        if not p:
            return True  # no probe: the kubelet counts the container ready once it runs
        try:
            with urllib.request.urlopen(base + p["httpGet"]["path"], timeout=5) as r:
                return 200 <= r.status < 400
        except (urllib.error.URLError, OSError):
            return False

    def service_proxy(self, req: Request) -> Response:
        """The API server's proxy: resolve ``NAME[:PORT]`` on the stored Service, find the
        Deployment whose pods it selects and whose container listens on the targetPort, ask the
        readinessProbe, forward the request to the attached process and pass its answer back."""
        ns = req.params["ns"]
        name, _, port = unquote(req.params["svc"]).partition(":")
        svc = self.objects.get(("api/v1", ns, "services", name))
        if svc is None:
            return self._status(404, "NotFound", f'services "{name}" not found')
        ports = svc["spec"]["ports"]
        sp = next((p for p in ports if not port or str(p["port"]) == port or p.get("name") == port), None)
        if sp is None:
            return self._status(503, "ServiceUnavailable", f'no endpoints available for service "{name}:{port}"')
        sel = svc["spec"].get("selector") or {}
        for (prefix, dns, plural, dname), dep in sorted(self.objects.items()):
            if (prefix, dns, plural) != ("apis/apps/v1", ns, "deployments"):
                continue
            tmpl = dep["spec"]["template"]
            if not sel or any(tmpl["metadata"].get("labels", {}).get(k) != v for k, v in sel.items()):
                continue
            for c in tmpl["spec"]["containers"]:
                if not any(cp["containerPort"] == sp["targetPort"] or cp.get("name") == sp["targetPort"]
                           for cp in c.get("ports", [])):
                    continue
                base = self.backends.get((ns, dname))
                if base and self._probe_ok(base, c, "readinessProbe"):
                    return self._forward(base, req)
        return self._status(503, "ServiceUnavailable", f'no endpoints available for service "{name}:{port}"')

    @staticmethod
    def _forward(base: str, req: Request) -> Response:
        fwd = urllib.request.Request(f"{base}/{req.params['path']}", data=req.body, method="POST",
                                     headers={"Content-Type": req.headers.get("content-type", "application/json")})
        try:
            with urllib.request.urlopen(fwd, timeout=30) as r:
                status, data, ctype = r.status, r.read(), r.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as e:
            status, data, ctype = e.code, e.read(), e.headers.get("Content-Type", "application/json")
        return Response(status, data, {"Content-Type": ctype})

    def attach(self, namespace: str, deployment: str, base_url: str) -> None:
        """Serve ``deployment``'s pods from the process at ``base_url``; its ``status`` then shows
        the ready replicas the kubelet would report (readinessProbe asked now)."""
        key = ("apis/apps/v1", namespace, "deployments", deployment)
        with self.lock:
            dep = self.objects[key]
            self.backends[(namespace, deployment)] = base_url
            c = dep["spec"]["template"]["spec"]["containers"][0]
            n = int(dep["spec"].get("replicas", 1))
            ready = n if self._probe_ok(base_url, c, "readinessProbe") else 0
            dep["status"] = {"replicas": n, "readyReplicas": ready, "availableReplicas": ready}

    # ---- the kubelet and Job controller of a start-contract runner ----------------------------

    def put_pod(self, namespace: str, pod: dict[str, Any], log: str) -> None:
        """Store a pod object and its container log as the kubelet reports them."""
        with self.lock:
            self.pods[(namespace, pod["metadata"]["name"])] = copy.deepcopy(pod)
            self.pod_logs[pod["metadata"]["name"]] = log

    def put_job_status(self, namespace: str, kind: str, name: str, status: dict[str, Any]) -> None:
        """Set a Job's (JobSet's) status as its controller does."""
        with self.lock:
            for (prefix, ns, plural, n), obj in self.objects.items():
                if ns == namespace and n == name and obj["kind"] == kind:
                    obj["status"] = copy.deepcopy(status)

    # ---- test controls ----------------------------------------------------------------------

    def finish(self, kind: str, name: str, *, ok: bool = True, exit_code: int = 1) -> None:
        obj = self.find(kind, name)
        assert obj is not None
        ctype = ("Complete" if kind == "Job" else "Completed") if ok else "Failed"
        obj["status"]["conditions"] = [{"type": ctype, "status": "True", "reason": "BackoffLimitExceeded" if not ok else "",
                                        "message": "" if ok else "Job has reached the specified backoff limit",
                                        "lastTransitionTime": TS}]
        for pod in self.pods.values():
            if name in pod["metadata"]["name"]:
                pod["status"]["phase"] = "Succeeded" if ok else "Failed"
                pod["status"]["containerStatuses"][0]["state"] = {"terminated": {
                    "exitCode": 0 if ok else exit_code, "startedAt": TS, "finishedAt": TS}}


@pytest.fixture
def fake():
    with FakeApiServer() as f:
        yield f


@pytest.fixture
def adapter(fake):
    import kubernetes.client

    from unijob_adapters.kubernetes.adapter import KubernetesAdapter

    return KubernetesAdapter(kubernetes.client.Configuration(host=fake.url), poll_interval=0.05)


def make_spec(**over: Any) -> JobSpec:
    base: dict[str, Any] = {
        "name": "gang", "image": "ghcr.io/acme/train:1", "command": ["python", "train.py"],
        "resources": {"accelerator": "A100-80GB:8", "nodes": 4, "cpus": 32, "memory_gib": 200},
        "spot": {"policy": "spot_with_fallback", "max_restarts": 2},
        "checkpoint": {"uri": "pvc://ckpt/run1"}, "inputs": {"train": "pvc://datasets/imagenet", "val": "s3://b/val"},
        "output": "s3://b/out", "hyperparameters": {"lr": 0.1, "epochs": 3},
        "secrets": {"HF_TOKEN": "k8s-secret://hf/token", "DB_PASSWORD": "aws-secretsmanager://prod/db"},
        "targets": {"kubernetes": {"namespace": "ml", "provider": "eks"}},
    }
    for k, v in over.items():
        if k == "k8s":
            base["targets"]["kubernetes"].update(v)
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return JobSpec.model_validate(base)


@pytest.fixture
def spec_of():
    """``spec_of(**overrides)`` -> a JobSpec (``k8s={...}`` updates targets.kubernetes)."""
    return make_spec


@pytest.fixture
def validate():
    return validate_manifest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve_pod(tmp_path):
    """``serve_pod(deployment_manifest, wait_for="/live") -> base URL``: run the Deployment's
    container as a real ``python -m unijob.serve`` process on 127.0.0.1 (a free port), with the
    container's env (``UNIJOB_HANDLER``, ``UNIJOB_MODEL_URI``, ``UNIJOB_VARIANT``...); returns once
    ``wait_for`` answers 200. Every process is stopped by its PID (SIGTERM, then SIGKILL) when the test ends."""
    procs: list[subprocess.Popen] = []

    def start(deployment: dict[str, Any], wait_for: str = "/live") -> str:
        c = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
        port = _free_port()
        env["PORT"] = str(port)
        log = open(tmp_path / f"{deployment['metadata']['name']}.log", "wb")
        p = subprocess.Popen([sys.executable, "-m", "unijob.serve", "--handler", env["UNIJOB_HANDLER"],
                              "--port", str(port), "--host", "127.0.0.1", "--log-level", "warning"],
                             env={**os.environ, **env}, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        procs.append(p)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise AssertionError(f"unijob.serve exited {p.returncode}: "
                                     + (tmp_path / f"{deployment['metadata']['name']}.log").read_text())
            try:
                with urllib.request.urlopen(base + wait_for, timeout=2):
                    return base
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise AssertionError(f"unijob.serve did not answer {wait_for} on {base}")

    yield start
    for p in procs:
        stop_process(p, 15)


@pytest.fixture(scope="session")
def image_python(tmp_path_factory):
    """The Python of a stock scikit-learn job image: pip and scikit-learn, no unijob (one venv for
    the whole session, shared with other adapters' contract tests through the base temp dir;
    ``UNIJOB_TEST_JOB_PYTHONS=DIR`` keeps them across sessions)."""
    from unijob.testing.contracts import job_python

    root = os.environ.get("UNIJOB_TEST_JOB_PYTHONS") or tmp_path_factory.getbasetemp() / "job-pythons"
    return job_python(root, ["scikit-learn"])


@pytest.fixture(scope="session")
def s3_image_python(tmp_path_factory):
    """The Python of a scikit-learn job image that also has s3fs (fsspec's S3 filesystem, which the
    batch runner reads and writes s3:// through), as the README asks of an s3:// batch image."""
    from unijob.testing.contracts import job_python

    root = os.environ.get("UNIJOB_TEST_JOB_PYTHONS") or tmp_path_factory.getbasetemp() / "job-pythons"
    return job_python(root, ["scikit-learn", "s3fs"])


@pytest.fixture
def s3(tmp_path):
    """moto's server on 127.0.0.1 (a child process, stopped by its PID): the pods' S3 endpoint."""
    from unijob.testing.objstore import moto_s3

    with moto_s3(tmp_path / "moto.log") as url:
        yield url


@pytest.fixture(scope="session")
def torch_python(tmp_path_factory):
    """The Python of a PyTorch image (a CPU torch, no unijob), or a skip saying why there is none."""
    from unijob.testing.contracts import job_python, torch_requirement

    torch = torch_requirement()
    if torch is None:
        pytest.skip("no CPU-only torch wheel (set UNIJOB_TEST_TORCH_REQUIREMENT); PyPI's default torch is ~2.4 GB")
    root = os.environ.get("UNIJOB_TEST_JOB_PYTHONS") or tmp_path_factory.getbasetemp() / "job-pythons"
    return job_python(root, [torch])
