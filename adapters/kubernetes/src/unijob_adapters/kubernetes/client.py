"""The Kubernetes API, through the official ``kubernetes`` client (imported inside functions).

:class:`Cluster` creates, reads, replaces and deletes the manifests a plan holds, whatever their
kind: built-in kinds through their typed APIs (``BatchV1Api``, ``CoreV1Api``, ``AppsV1Api``,
``AutoscalingV2Api``), CRDs (JobSet, PodGroup, HTTPRoute) through ``CustomObjectsApi``. Request
bodies are the plan's dicts, sent unchanged.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from unijob.errors import NotFound, NotReady, TargetError

INSTALL_HINT = "pip install 'unijob[kubernetes]'"

#: (apiVersion, kind) -> (typed API class, snake-case kind) for built-in kinds.
BUILTIN: dict[tuple[str, str], tuple[str, str]] = {
    ("v1", "Service"): ("CoreV1Api", "service"),
    ("v1", "ConfigMap"): ("CoreV1Api", "config_map"),
    ("batch/v1", "Job"): ("BatchV1Api", "job"),
    ("apps/v1", "Deployment"): ("AppsV1Api", "deployment"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("AutoscalingV2Api", "horizontal_pod_autoscaler"),
}

#: (apiVersion, kind) -> plural for the CRDs this adapter creates.
CUSTOM: dict[tuple[str, str], str] = {
    ("jobset.x-k8s.io/v1alpha2", "JobSet"): "jobsets",
    ("scheduling.volcano.sh/v1beta1", "PodGroup"): "podgroups",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
}


def sdk():
    """The ``kubernetes`` package.

    Raises:
        NotReady: it is not installed (with the pip line).
    """
    try:
        import kubernetes  # noqa: F401
        import kubernetes.client  # noqa: F401
        import kubernetes.config  # noqa: F401
    except ImportError:
        raise NotReady("the kubernetes client is not installed", hint=INSTALL_HINT) from None
    return kubernetes


def kubeconfig_path(explicit: Optional[str]) -> str:
    """The kubeconfig file used: the option, else ``$KUBECONFIG`` (first entry), else ``~/.kube/config``."""
    if explicit:
        return os.path.expanduser(explicit)
    env = os.environ.get("KUBECONFIG")
    if env:
        return os.path.expanduser(env.split(os.pathsep)[0])
    return os.path.expanduser("~/.kube/config")


def context_namespace(kubeconfig: Optional[str], context: Optional[str]) -> Optional[str]:
    """The namespace the kubeconfig's (current or named) context sets, if any. Never raises."""
    try:
        k = sdk()
        contexts, active = k.config.list_kube_config_contexts(config_file=kubeconfig_path(kubeconfig))
        ctx = next((c for c in contexts if c["name"] == context), None) if context else active
        return (ctx or {}).get("context", {}).get("namespace")
    except Exception:
        return None


class Cluster:
    """One cluster connection.

    Args:
        configuration: a ``kubernetes.client.Configuration`` (tests pass one whose ``host`` is a
            local fake); default: built from ``kubeconfig``/``context``.
        kubeconfig / context: where the cluster is (see :func:`kubeconfig_path`).

    Raises:
        NotReady: the client is missing, or no kubeconfig/context could be loaded.
    """

    def __init__(self, configuration: Any = None, *, kubeconfig: Optional[str] = None,
                 context: Optional[str] = None) -> None:
        k = sdk()
        self.k = k
        if configuration is not None:
            self.api_client = k.client.ApiClient(configuration)
        else:
            path = kubeconfig_path(kubeconfig)
            if not os.path.exists(path):
                raise NotReady(f"no kubeconfig at {path}", hint="set KUBECONFIG or targets.kubernetes.kubeconfig")
            try:
                self.api_client = k.config.new_client_from_config(config_file=path, context=context)
            except Exception as e:
                raise NotReady(f"cannot load kube context {context or '(current)'} from {path}: {e}") from None

    # ---- generic object operations ----------------------------------------------------------

    def _typed(self, body_or_key: Any) -> tuple[Any, str]:
        api, snake = BUILTIN[body_or_key]
        return getattr(self.k.client, api)(self.api_client), snake

    @staticmethod
    def _key(obj: dict[str, Any]) -> tuple[str, str]:
        return obj["apiVersion"], obj["kind"]

    def create(self, body: dict[str, Any], namespace: str, *, dry_run: bool = False) -> bool:
        """Create ``body`` in ``namespace``; True if created, False if it already existed (409).

        Raises:
            TargetError: any other API error.
        """
        key = self._key(body)
        kw = {"dry_run": "All"} if dry_run else {}
        try:
            if key in BUILTIN:
                api, snake = self._typed(key)
                getattr(api, f"create_namespaced_{snake}")(namespace, body, **kw)
            else:
                group, version = key[0].split("/")
                self.k.client.CustomObjectsApi(self.api_client).create_namespaced_custom_object(
                    group, version, namespace, CUSTOM[key], body, **kw)
            return True
        except self.k.client.exceptions.ApiException as e:
            if e.status == 409:
                return False
            raise self._error("create", body["kind"], body["metadata"]["name"], e) from None

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any]:
        """The object as a dict.

        Raises:
            NotFound: 404. TargetError: other errors.
        """
        key = (api_version, kind)
        try:
            if key in BUILTIN:
                api, snake = self._typed(key)
                obj = getattr(api, f"read_namespaced_{snake}")(name, namespace)
                return self.api_client.sanitize_for_serialization(obj)
            group, version = api_version.split("/")
            return self.k.client.CustomObjectsApi(self.api_client).get_namespaced_custom_object(
                group, version, namespace, CUSTOM[key], name)
        except self.k.client.exceptions.ApiException as e:
            if e.status == 404:
                raise NotFound(f"{kind} {namespace}/{name} does not exist") from None
            raise self._error("read", kind, name, e) from None

    def replace(self, body: dict[str, Any], namespace: str) -> None:
        """PUT ``body`` (with its ``metadata.resourceVersion``) over the stored object (CRDs only)."""
        key = self._key(body)
        group, version = key[0].split("/")
        try:
            self.k.client.CustomObjectsApi(self.api_client).replace_namespaced_custom_object(
                group, version, namespace, CUSTOM[key], body["metadata"]["name"], body)
        except self.k.client.exceptions.ApiException as e:
            raise self._error("replace", body["kind"], body["metadata"]["name"], e) from None

    def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        """Delete with ``propagationPolicy: Foreground`` (dependents first); False if it was gone."""
        key = (api_version, kind)
        try:
            if key in BUILTIN:
                api, snake = self._typed(key)
                getattr(api, f"delete_namespaced_{snake}")(name, namespace, propagation_policy="Foreground")
            else:
                group, version = api_version.split("/")
                self.k.client.CustomObjectsApi(self.api_client).delete_namespaced_custom_object(
                    group, version, namespace, CUSTOM[key], name, propagation_policy="Foreground")
            return True
        except self.k.client.exceptions.ApiException as e:
            if e.status == 404:
                return False
            raise self._error("delete", kind, name, e) from None

    # ---- pods -------------------------------------------------------------------------------

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods matching a label selector, as dicts."""
        try:
            out = self.k.client.CoreV1Api(self.api_client).list_namespaced_pod(namespace, label_selector=selector)
        except self.k.client.exceptions.ApiException as e:
            raise self._error("list", "Pod", selector, e) from None
        return self.api_client.sanitize_for_serialization(out).get("items") or []

    def pod_log(self, name: str, namespace: str, container: str, *, follow: bool = False):
        """The pod's log: a str, or with ``follow`` the raw urllib3 response to stream from."""
        api = self.k.client.CoreV1Api(self.api_client)
        try:
            if follow:
                return api.read_namespaced_pod_log(name, namespace, container=container, follow=True,
                                                   _preload_content=False)
            return api.read_namespaced_pod_log(name, namespace, container=container)
        except self.k.client.exceptions.ApiException as e:
            if e.status in (400, 404):  # container not started yet / pod gone
                return "" if not follow else None
            raise self._error("read log of", "Pod", name, e) from None

    # ---- services ---------------------------------------------------------------------------

    def service_post(self, service: str, port: int | str, namespace: str, path: str, payload: Any,
                     *, timeout: float) -> tuple[int, bytes]:
        """POST ``payload`` as JSON to ``path`` on a Service, through the API server's service proxy
        (``POST /api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH``; Kubernetes API reference,
        "Service v1 core", proxy operations).

        ``CoreV1Api.connect_post_namespaced_service_proxy_with_path`` sends no body in client 37.x,
        so the request is built with the ``ApiClient``'s own ``param_serialize`` (host, auth,
        path quoting) and sent with ``call_api``.

        Returns:
            ``(HTTP status, body bytes)``, whatever the status: the proxy passes the backend's
            answer through, and the API server answers its own errors (404 no such Service, 503 no
            ready endpoint) as ``Status`` objects.

        Raises:
            TargetError: no answer within ``timeout`` seconds, or the connection failed.
        """
        import urllib3

        req = self.api_client.param_serialize(
            method="POST", resource_path="/api/v1/namespaces/{namespace}/services/{name}/proxy/{path}",
            path_params={"namespace": namespace, "name": f"{service}:{port}", "path": path.lstrip("/")},
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=payload, auth_settings=["BearerToken"])
        try:
            resp = self.api_client.call_api(*req, _request_timeout=timeout)
            return resp.status, resp.read() or b""
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise TargetError(f"POST {path} on Service {namespace}/{service} through the API server failed: "
                              f"{type(e).__name__}: {str(e)[:200]}") from None

    @staticmethod
    def _error(verb: str, kind: str, name: str, e: Any) -> TargetError:
        reason = getattr(e, "reason", "") or ""
        body = (getattr(e, "body", "") or "")
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        return TargetError(f"cannot {verb} {kind} {name}: HTTP {e.status} {reason} {body[:300]}".strip())
