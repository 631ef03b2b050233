"""The kubelet's part of :mod:`unijob.testing.contracts.kubernetes`: a container's volumes as local
folders, its environment (``$(VAR)`` expansion, the downward API, Secret and ConfigMap references)
and the one liberty the runner takes, mountPaths rewritten to local folders. Sources are cited in
that module's docstring."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any, Mapping


def expand(text: str, *mappings: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion (``third_party/forked/golang/expansion``): ``$(NAME)`` is
    the first mapping's value or stays as written; ``$$`` is ``$``; any other ``$`` is literal."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2:close]
                    for m in mappings:
                        if name in m:
                            out.append(m[name])
                            break
                    else:
                        out.append(f"$({name})")
                    i = close + 1
                    continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)



class Kubelet:
    """What the kubelet needs beyond the pod: the plan's ConfigMaps, the test's secrets
    (``{"secret-name/key": value}``), the folder holding one folder per claim, the API server address."""

    def __init__(self, configmaps: Mapping[str, Any], secrets: Mapping[str, str], claims: Path,
                 api_address: tuple[str, int]) -> None:
        self.configmaps = dict(configmaps)
        self.secrets = dict(secrets)
        self.claims = claims
        self.api_address = api_address

    def mounts(self, pod_dir: Path, spec: Mapping[str, Any], c: Mapping[str, Any]) -> dict[str, Path]:
        """mountPath -> local folder for the container ``c`` of a pod whose folder is ``pod_dir``.

        Raises:
            ValueError: a volume type not run here, or a ConfigMap not in the plan.
        """
        vols: dict[str, Path] = {}
        for v in spec.get("volumes", []):
            name = v["name"]
            if "configMap" in v:
                d = pod_dir / "volumes" / name
                self.write_configmap(v["configMap"], d)
            elif "emptyDir" in v:
                d = pod_dir / "volumes" / name
                d.mkdir(parents=True, exist_ok=True)
            elif "persistentVolumeClaim" in v:
                d = self.claims / v["persistentVolumeClaim"]["claimName"]
                d.mkdir(parents=True, exist_ok=True)
            elif "secret" in v:
                d = pod_dir / "volumes" / name
                d.mkdir(parents=True, exist_ok=True)
                sname = v["secret"]["secretName"]
                for k, val in self.secrets.items():
                    if k.startswith(sname + "/"):
                        (d / k.split("/", 1)[1]).write_text(val)
            else:
                raise ValueError(f"volume {name}: only configMap, emptyDir, persistentVolumeClaim and secret "
                                 "volumes are run here")
            vols[name] = d
        out: dict[str, Path] = {}
        for m in c.get("volumeMounts", []):
            local = vols[m["name"]] / m.get("subPath", "")
            local.mkdir(parents=True, exist_ok=True)
            out[m["mountPath"].rstrip("/") or "/"] = local
        return out

    def write_configmap(self, ref: Mapping[str, Any], d: Path) -> None:
        cm = self.configmaps.get(ref["name"])
        if cm is None:
            raise ValueError(f"ConfigMap {ref['name']} is not in the plan")
        files: dict[str, bytes] = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
        files.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
        items = ref.get("items") or [{"key": k, "path": k} for k in sorted(files)]
        for it in items:
            p = d / it["path"]
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(files[it["key"]])
        d.mkdir(parents=True, exist_ok=True)

    def env(self, pod: Mapping[str, Any], c: Mapping[str, Any], rewrite: Any) -> dict[str, str]:
        """The container's environment as the kubelet builds it (service variables, envFrom, env
        with ``$(VAR)`` expansion and valueFrom), each value passed through ``rewrite``.

        Raises:
            ValueError: a reference the kubelet could not resolve (CreateContainerConfigError).
        """
        host, port = self.api_address
        service = {"KUBERNETES_SERVICE_HOST": str(host), "KUBERNETES_SERVICE_PORT": str(port),
                   "KUBERNETES_SERVICE_PORT_HTTPS": str(port), "KUBERNETES_PORT": f"tcp://{host}:{port}",
                   f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
                   f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp", f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
                   f"KUBERNETES_PORT_{port}_TCP_ADDR": str(host)}
        defined: dict[str, str] = {}
        for ef in c.get("envFrom", []):
            prefix = ef.get("prefix", "")
            if "configMapRef" in ef:
                cm = self.configmaps.get(ef["configMapRef"]["name"]) or {}
                defined.update({prefix + k: v for k, v in (cm.get("data") or {}).items()})
            elif "secretRef" in ef:
                sname = ef["secretRef"]["name"] + "/"
                defined.update({prefix + k[len(sname):]: v for k, v in self.secrets.items() if k.startswith(sname)})
        for e in c.get("env", []):
            if "valueFrom" in e:
                defined[e["name"]] = self.value_from(pod, e["name"], e["valueFrom"])
            else:
                defined[e["name"]] = expand(e.get("value", ""), defined, service)
        return {**service, **{k: rewrite(v) for k, v in defined.items()}}

    def value_from(self, pod: Mapping[str, Any], name: str, vf: Mapping[str, Any]) -> str:
        """One ``env[].valueFrom`` of ``pod`` (downward API fieldRef, secretKeyRef, configMapKeyRef)."""
        if "fieldRef" in vf:
            path = vf["fieldRef"]["fieldPath"]
            md, spec, st = pod["metadata"], pod["spec"], pod["status"]
            m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
            if m:
                return str(md.get(m[1], {}).get(m[2], ""))
            simple = {"metadata.name": md["name"], "metadata.namespace": md["namespace"], "metadata.uid": md["uid"],
                      "spec.nodeName": spec["nodeName"],
                      "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
                      "status.podIP": st["podIP"], "status.podIPs": st["podIP"], "status.hostIP": st["hostIP"],
                      "status.hostIPs": st["hostIP"]}
            if path in simple:
                return str(simple[path])
            raise ValueError(f"env {name}: fieldRef {path} is not a downward API field")
        if "secretKeyRef" in vf:
            ref = vf["secretKeyRef"]
            key = f"{ref['name']}/{ref['key']}"
            if key not in self.secrets and not ref.get("optional"):
                raise ValueError(f"env {name}: CreateContainerConfigError: secret {ref['name']} key {ref['key']} "
                                 "not found (pass it in secrets)")
            return self.secrets.get(key, "")
        if "configMapKeyRef" in vf:
            ref = vf["configMapKeyRef"]
            data = (self.configmaps.get(ref["name"]) or {}).get("data") or {}
            if ref["key"] not in data and not ref.get("optional"):
                raise ValueError(f"env {name}: CreateContainerConfigError: configmap {ref['name']} key {ref['key']} "
                                 "not found")
            return data.get(ref["key"], "")
        raise ValueError(f"env {name}: valueFrom {sorted(vf)} is not run here")


def path_rewriter(mounts: Mapping[str, Path]):
    """``str -> str`` replacing each mountPath, where it stands as a path, with its local folder."""
    if not mounts:
        return lambda s: s
    alts = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
    rx = re.compile(rf"(?<![\w./:-])({alts})(?=/|$|[^\w.-])")
    return lambda s: rx.sub(lambda m: str(mounts[m.group(1)]), s)
