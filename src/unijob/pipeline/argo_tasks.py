"""The small programs an Argo Workflow compiled from a pipeline runs in its own pods (standard library
only: they run in a stock ``python`` image, and :mod:`unijob.pipeline.argo` embeds this file's text
as the ``source`` of Argo ``script`` templates). The task and its inputs come from the environment;
outputs are files under ``UNIJOB_OUTPUTS`` (``/tmp/outputs``), one per output parameter, which Argo
reads with ``valueFrom.path``.

- ``UNIJOB_TASK=metrics``: the metrics a job step reported with ``unijob.runtime.log_metrics``: the
  ``[unijob.metrics] {json}`` lines of rank 0's pod log (the pod labelled
  ``UNIJOB_POD_SELECTOR`` with completion index 0; the succeeded one when it was retried), read
  through the in-cluster API (``GET /api/v1/namespaces/NS/pods?labelSelector=...`` and
  ``.../pods/NAME/log?container=...``, https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/)
  with the pod's service-account token. Each of ``UNIJOB_METRICS`` (a JSON list) becomes a file.
- ``UNIJOB_TASK=register``: a model version on the MLflow server ``MLFLOW_TRACKING_URI``, as
  ``unijob models register`` does on the kubernetes target (:mod:`unijob.models.mlflow_rest`):
  ``registered-models/create`` (already existing is fine), ``model-versions/create`` tagged
  ``unijob.approval`` and ``unijob.meta.*``, then ``registered-models/alias`` and the approval tag.
  Outputs ``version``, ``uri`` (``models:/NAME/VERSION``), ``name``.
- ``UNIJOB_TASK=resolve``: the artifact of each ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` in
  ``UNIJOB_MODELS`` (JSON: output name -> URI) on that MLflow server, as an endpoint deploy resolves
  them; other URIs pass through.

MLflow REST API 2.0: https://mlflow.org/docs/latest/rest-api.html (read 2026-11-29).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

METRICS_PREFIX = "[unijob.metrics] "
APPROVAL_TAG = "unijob.approval"
#: The approval statuses of :mod:`unijob.models.types` (repeated: this file runs without unijob).
PENDING, APPROVED = "PendingManualApproval", "Approved"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _out(name: str, value: object) -> None:
    root = os.environ.get("UNIJOB_OUTPUTS", "/tmp/outputs")
    os.makedirs(root, exist_ok=True)
    text = value if isinstance(value, str) else json.dumps(value)
    with open(os.path.join(root, name), "w") as f:
        f.write(text)


def _http(method: str, url: str, body: object = None, headers: dict | None = None,
          context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json",
                                                                         **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60, context=context) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ---- metrics ---------------------------------------------------------------------------------

def _k8s() -> tuple[str, dict, ssl.SSLContext | None]:
    base = os.environ.get("UNIJOB_K8S_API") or "https://%s:%s" % (
        os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443"))
    headers, ctx = {}, None
    token = os.path.join(SA_DIR, "token")
    if os.path.exists(token):
        headers["Authorization"] = "Bearer " + open(token).read().strip()
    if base.startswith("https://"):
        ctx = ssl.create_default_context(cafile=os.path.join(SA_DIR, "ca.crt"))
    return base.rstrip("/"), headers, ctx


def metrics() -> None:
    base, headers, ctx = _k8s()
    ns = os.environ.get("UNIJOB_NAMESPACE") or open(os.path.join(SA_DIR, "namespace")).read().strip()
    selector = os.environ["UNIJOB_POD_SELECTOR"]
    status, body = _http("GET", f"{base}/api/v1/namespaces/{ns}/pods?labelSelector={urllib.parse.quote(selector)}",
                         headers=headers, context=ctx)
    if status != 200:
        sys.exit(f"listing pods {selector} in {ns}: HTTP {status} {body[:300]!r}")
    pods = json.loads(body).get("items", [])
    if not pods:
        sys.exit(f"no pod matches {selector} in {ns}: the job's rank 0 pod is gone (ttlSecondsAfterFinished?)")
    # the succeeded rank-0 pod (a retried index leaves failed ones behind), else the newest
    pods.sort(key=lambda p: (p.get("status", {}).get("phase") == "Succeeded", p["metadata"].get("creationTimestamp", "")))
    pod = pods[-1]["metadata"]["name"]
    container = os.environ.get("UNIJOB_CONTAINER", "trainer")
    status, log = _http("GET", f"{base}/api/v1/namespaces/{ns}/pods/{pod}/log?container={container}",
                        headers=headers, context=ctx)
    if status != 200:
        sys.exit(f"reading the log of {pod}: HTTP {status} {log[:300]!r}")
    found: dict = {}
    for line in log.decode("utf-8", "replace").splitlines():
        at = line.find(METRICS_PREFIX)
        if at >= 0:
            try:
                found.update(json.loads(line[at + len(METRICS_PREFIX):]))
            except ValueError:
                pass
    wanted = json.loads(os.environ["UNIJOB_METRICS"])
    missing = [m for m in wanted if m not in found]
    if missing:
        sys.exit(f"pod {pod} reported no metric {', '.join(missing)} (it reported: {', '.join(sorted(found)) or 'none'})")
    for m in wanted:
        v = found[m]
        _out(m, "true" if v is True else "false" if v is False else str(v))
    print(json.dumps({m: found[m] for m in wanted}, sort_keys=True))


# ---- MLflow ------------------------------------------------------------------------------------

def _mlflow(method: str, path: str, body: object = None, params: dict | None = None) -> dict:
    base = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    url = f"{base}/api/2.0/mlflow/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    headers = {}
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]
    status, data = _http(method, url, body, headers)
    out = json.loads(data or b"{}") if data.strip().startswith(b"{") else {"message": data[:300].decode("utf-8", "replace")}
    if status != 200:
        raise RuntimeError(f"MLflow {method} {path}: HTTP {status} {out.get('error_code', '')}: {out.get('message', '')}")
    return out


def register() -> None:
    name, source = os.environ["UNIJOB_MODEL_NAME"], os.environ["UNIJOB_MODEL_SOURCE"]
    try:
        _mlflow("POST", "registered-models/create", {"name": name})
    except RuntimeError as e:
        if "RESOURCE_ALREADY_EXISTS" not in str(e):
            raise
    meta = json.loads(os.environ.get("UNIJOB_METADATA") or "{}")
    tags = [{"key": APPROVAL_TAG, "value": PENDING}]
    tags += [{"key": f"unijob.meta.{k}", "value": str(v)} for k, v in sorted(meta.items())]
    mv = _mlflow("POST", "model-versions/create", {"name": name, "source": source, "tags": tags})["model_version"]
    version = str(mv["version"])
    if os.environ.get("UNIJOB_ALIAS"):
        _mlflow("POST", "registered-models/alias", {"name": name, "alias": os.environ["UNIJOB_ALIAS"], "version": version})
    if os.environ.get("UNIJOB_APPROVE") == "true":
        _mlflow("POST", "model-versions/set-tag", {"name": name, "version": version, "key": APPROVAL_TAG,
                                                    "value": APPROVED})
    _out("version", version)
    _out("uri", f"models:/{name}/{version}")
    _out("name", name)
    print(f"registered {source} as version {version} of {name}")


def resolve() -> None:
    for key, uri in json.loads(os.environ["UNIJOB_MODELS"]).items():
        src = uri
        if uri.startswith("models:/"):
            rest = uri[len("models:/"):]
            if "@" in rest:
                name, alias = rest.split("@", 1)
                mv = _mlflow("GET", "registered-models/alias", params={"name": name, "alias": alias})["model_version"]
            else:
                name, version = rest.rsplit("/", 1)
                mv = _mlflow("GET", "model-versions/get", params={"name": name, "version": version})["model_version"]
            src = mv["source"]
            print(f"{uri}: version {mv['version']} of {name}: {src}")
        _out(key, src)


def main() -> None:
    task = os.environ.get("UNIJOB_TASK")
    tasks = {"metrics": metrics, "register": register, "resolve": resolve}
    if task not in tasks:
        sys.exit(f"UNIJOB_TASK must be one of {', '.join(tasks)}; got {task!r}")
    try:
        tasks[task]()
    except RuntimeError as e:
        sys.exit(str(e))


if __name__ == "__main__":
    main()
