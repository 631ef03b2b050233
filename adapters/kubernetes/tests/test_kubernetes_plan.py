"""plan(): manifests validate against the official / CRD schemas, gang wiring, bad input."""

from __future__ import annotations

import re

import pytest

from unijob.errors import SpecError
from unijob_adapters.kubernetes.adapter import KubernetesAdapter
from unijob_adapters.kubernetes.runtime_env import KubernetesEnv

A = KubernetesAdapter()
VARIANTS = [
    {},
    {"k8s": {"gang": "kueue", "queue": "team-a"}},
    {"k8s": {"gang": "volcano", "provider": "gke"}},
    {"k8s": {"api": "jobset", "gang": "kueue", "queue": "team-a", "provider": "aks"}},
    {"k8s": {"api": "jobset", "gang": "volcano"}},
    {"spot": {"policy": "spot"}, "resources": {"accelerator": "L4", "nodes": 2}},
    {"spot": {"policy": "on_demand"}, "resources": {"accelerator": None, "nodes": 1}, "command": None, "args": ["--x"]},
]


@pytest.mark.parametrize("over", VARIANTS)
def test_every_manifest_validates(over, spec_of, validate):
    plan = A.plan(spec_of(**over), "sub-1")
    for r in plan.requests:
        body = r.body
        assert {"apiVersion", "kind", "metadata"} <= set(body)
        assert r.api == f"{body['apiVersion']} {body['kind']}"
        validate(body)


def test_validator_rejects_a_malformed_manifest(spec_of, validate):
    plan = A.plan(spec_of(k8s={"gang": "volcano", "api": "jobset"}), "sub-1")
    job = plan.request("JobSet").body
    job["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0]["bogus"] = 1
    with pytest.raises(ValueError):
        validate(job)
    pg = plan.request("PodGroup").body
    pg["spec"]["minMembers"] = 4
    with pytest.raises(ValueError):
        validate(pg)


def _pod_env(template, index):
    """The env a pod of ``index`` sees: downward-API refs resolved as the kubelet does."""
    ann = {"batch.kubernetes.io/job-completion-index": str(index)}
    env = {}
    for e in template["spec"]["containers"][0]["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "fieldRef" in e.get("valueFrom", {}):
            m = re.fullmatch(r"metadata\.annotations\['(.+)'\]", e["valueFrom"]["fieldRef"]["fieldPath"])
            env[e["name"]] = ann[m.group(1)]
    return env


@pytest.mark.parametrize("api", ["job", "jobset"])
def test_four_node_gang_agrees_on_world_and_rank_zero(api, spec_of):
    spec = spec_of(resources={"nodes": 4, "accelerator": "A100-80GB:8"}, k8s={"api": api})
    plan = A.plan(spec, "sub-4")
    if api == "job":
        job = plan.request("batch/v1 Job").body["spec"]
        svc = plan.request("v1 Service").body
        tmpl = job["template"]
        assert svc["spec"]["clusterIP"] == "None"
        assert svc["spec"]["selector"] == {"batch.kubernetes.io/job-name": plan.name}
        assert tmpl["spec"]["subdomain"] == svc["metadata"]["name"]
        rank0_host = f"{plan.name}-0"  # Indexed Job pod hostname <job>-<index>
    else:
        js = plan.request("JobSet").body["spec"]
        job = js["replicatedJobs"][0]["template"]["spec"]
        tmpl = job["template"]
        assert js["network"]["enableDNSHostnames"] and js["network"]["subdomain"] == plan.name
        rank0_host = f"{plan.name}-{js['replicatedJobs'][0]['name']}-0-0"
    assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"] == 4
    ranks = []
    envs = [_pod_env(tmpl, i) for i in range(4)]
    assert {e["WORLD_SIZE"] for e in envs} == {"32"}
    for i, env in enumerate(envs):
        host, _, domain = env["MASTER_ADDR"].partition(".")
        assert host == rank0_host and domain.split(".")[0] == plan.name
        cmd = tmpl["spec"]["containers"][0]["command"]
        assert cmd[0] == "torchrun" and "--node-rank=$(NODE_RANK)" in cmd and "--nproc-per-node=8" in cmd
        for local in range(8):  # what torchrun gives each process, read through the runtime env
            ctx = KubernetesEnv().read({**env, "LOCAL_RANK": str(local)})
            assert ctx["world_size"] == 32 and ctx["node_rank"] == i
            ranks.append(ctx["rank"])
    assert sorted(ranks) == list(range(32))


def test_single_process_per_node_runs_directly(spec_of):
    plan = A.plan(spec_of(resources={"accelerator": None, "nodes": 3}), "s")
    tmpl = plan.request("Job").body["spec"]["template"]
    assert tmpl["spec"]["containers"][0]["command"] == ["python", "train.py"]
    assert sorted(int(_pod_env(tmpl, i)["RANK"]) for i in range(3)) == [0, 1, 2]


def test_gang_scheduling_fields(spec_of):
    k = A.plan(spec_of(k8s={"gang": "kueue", "queue": "team-a"}), "s").request("Job").body
    assert k["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a" and k["spec"]["suspend"] is True
    p = A.plan(spec_of(k8s={"gang": "volcano"}), "s")
    pg, job = p.request("PodGroup").body, p.request("Job").body
    assert pg["spec"]["minMember"] == 4
    pod = job["spec"]["template"]
    assert pod["spec"]["schedulerName"] == "volcano"
    assert pod["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == pg["metadata"]["name"]


def test_failure_policy_spot_gpu_security(spec_of):
    job = A.plan(spec_of(), "s").request("Job").body["spec"]
    rules = job["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert rules[1]["action"] == "Count" and job["backoffLimit"] == 2 * 4
    assert job["activeDeadlineSeconds"] == 86400
    pod = job["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    pref = pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert pref["preference"]["matchExpressions"] == [{"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": ["SPOT"]}]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    env = {e["name"]: e for e in c["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert "prod/db" in env["UNIJOB_SECRET_REFS"]["value"]
    assert env["UNIJOB_CHANNELS"]["value"] == '{"train":"/opt/unijob/data/datasets/imagenet","val":"s3://b/val"}'
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"ckpt", "datasets"}
    spot = A.plan(spec_of(spot={"policy": "spot"}, k8s={"provider": "aks"}), "s").request("Job").body
    ps = spot["spec"]["template"]["spec"]
    assert ps["nodeSelector"]["kubernetes.azure.com/scalesetpriority"] == "spot"
    assert {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot",
            "effect": "NoSchedule"} in ps["tolerations"]


def test_plan_resources_name_a_node_type(spec_of):
    p = A.plan(spec_of(), "s")
    assert (p.resources.service, p.resources.instance_type, p.resources.instance_count) == ("kubernetes", "p4de.24xlarge", 4)
    g = A.plan(spec_of(k8s={"provider": "gke"}), "s")
    assert g.resources.instance_type == "a2-ultragpu-8g"


def test_script_job_ships_source_as_configmap(tmp_path, validate):
    from unijob.spec import JobSpec

    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "requirements.txt").write_text("numpy\n")
    spec = JobSpec.model_validate({"name": "s", "script": "train.py", "requirements": "requirements.txt",
                                   "targets": {"kubernetes": {"namespace": "ml"}}}, context={"base_dir": str(tmp_path)})
    p = A.plan(spec, "x")
    cm = p.request("ConfigMap").body
    assert sorted(cm["data"].values()) == ["numpy\n", "print('hi')\n"]
    c = p.request("Job").body["spec"]["template"]["spec"]["containers"][0]
    assert c["image"].startswith("pytorch/pytorch:2.5") and c["workingDir"] == "/opt/unijob/src"
    assert c["command"][-2:] == ["python", "train.py"]
    for r in p.requests:
        validate(r.body)
    # the runtime wheel travels in the same ConfigMap, is listed among the uploads, and is installed
    # with no index before the script (then the requirements)
    import base64

    from unijob.bundle import runtime_wheel

    wheel = runtime_wheel(["kubernetes"])
    assert base64.b64decode(cm["binaryData"]["unijob-runtime.whl"]) == wheel.data
    [up] = p.uploads
    assert (up.kind, up.source, up.sha256) == ("runtime-wheel", wheel.filename, wheel.sha256)
    vol = next(v for v in p.request("Job").body["spec"]["template"]["spec"]["volumes"] if v["name"] == "src")
    assert {"key": "unijob-runtime.whl", "path": f".unijob-runtime/{wheel.filename}"} in vol["configMap"]["items"]
    script = c["command"][2]
    assert script.index("--no-index") < script.index(wheel.filename) < script.index("-r requirements.txt")
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_source_dir_over_the_configmap_limit_is_refused_with_its_largest_files(tmp_path):
    from unijob.errors import SpecError
    from unijob.spec import JobSpec

    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "weights.bin").write_bytes(b"\0" * 1_200_000)
    spec = JobSpec.model_validate({"name": "s", "script": "train.py", "targets": {"kubernetes": {"namespace": "ml"}}},
                                  context={"base_dir": str(tmp_path)})
    with pytest.raises(SpecError) as e:
        A.plan(spec, "x")
    msg = str(e.value)
    assert "source_dir" in msg and "largest: weights.bin 1.1 MiB" in msg and "ConfigMap holds at most 1 MiB" in msg
    # binary files grow by 4/3 in binaryData: caught on the object's real size
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)) * 3000)  # 0.73 MiB -> 0.98 MiB base64
    with pytest.raises(SpecError, match=r"makes a ConfigMap of 1\.0\d MiB"):
        A.plan(spec, "x")


def test_several_processes_per_node_need_torchrun_in_the_image(tmp_path):
    from unijob.spec import JobSpec

    (tmp_path / "train.py").write_text("print('hi')\n")

    def plan(image):
        return A.plan(JobSpec.model_validate(
            {"name": "s", "script": "train.py", "resources": {"nodes": 2, "processes_per_node": 2},
             "targets": {"kubernetes": {"namespace": "ml", **({"image": image} if image else {})}}},
            context={"base_dir": str(tmp_path)}), "x")

    assert not [w for w in plan(None).warnings if "torchrun" in w]
    [w] = [w for w in plan("python:3.11-slim").warnings if "torchrun" in w]
    assert "python:3.11-slim" in w and "processes_per_node=2" in w
    c = plan(None).request("Job").body["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][3] == "torchrun"


@pytest.mark.parametrize("over,loc", [
    ({"resources": {"accelerator": "P100:1"}}, ("resources", "accelerator")),
    ({"k8s": {"quota": {"nodes": 2}}}, ("resources", "nodes")),
    ({"k8s": {"quota": {"gpus": 16}}}, ("resources", "nodes")),
    ({"k8s": {"namespace": "Not_A_Label"}}, ("targets", "kubernetes", "namespace")),
    ({"k8s": {"gang": "kueue"}}, ("targets", "kubernetes", "queue")),
    ({"secrets": {"X": "env://X"}}, ("secrets", "X")),
    ({"inputs": {"train": "/data/local"}}, ("inputs", "train")),
    ({"spot": {"policy": "spot"}, "k8s": {"provider": "generic"}}, ("targets", "kubernetes", "provider")),
])
def test_bad_input_is_a_spec_error(over, loc, spec_of):
    with pytest.raises(SpecError) as ei:
        A.plan(spec_of(**over), "s")
    assert ei.value.issues[0].loc[:len(loc)] == loc
    assert ei.value.exit_code == 2


def test_gpu_label_map_is_configurable(spec_of):
    p = A.plan(spec_of(resources={"accelerator": "P100:1"}, k8s={"gpu_product_labels": {"P100": "Tesla-P100-PCIE-16GB"}}), "s")
    assert p.request("Job").body["spec"]["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.product"] == "Tesla-P100-PCIE-16GB"


def test_example_spec_plans_and_validates(validate):
    from pathlib import Path

    from unijob.loading import load_spec

    loaded = load_spec(Path(__file__).parents[3] / "examples" / "kubernetes" / "gang.yaml")
    spec = getattr(loaded, "spec", loaded)
    plan = A.plan(spec, "example")
    assert [r.body["kind"] for r in plan.requests] == ["Service", "Job"]
    for r in plan.requests:
        validate(r.body)
