"""AWS Deep Learning Containers (DLC) for PyTorch training on SageMaker.

Source: aws/deep-learning-containers ``available_images.md`` ("SageMaker Framework Containers"
table, the "Prior" tables for older versions, and the region -> registry account table), read
2026-11-21 (https://github.com/aws/deep-learning-containers/blob/master/available_images.md).
URIs have the form::

    <account>.dkr.ecr.<region>.amazonaws.com[.cn]/pytorch-training:<version>-<cpu|gpu>-<py>[-<cuda>]-<os>-sagemaker

Only the versions listed here are offered; an unlisted version or Python is a SpecError at
``framework.version`` / ``framework.python`` naming the ones that exist. Give ``image`` in the
spec to use any other container.
"""

from __future__ import annotations

from dataclasses import dataclass

from unijob.errors import SpecError


@dataclass(frozen=True)
class DlcRelease:
    """One PyTorch training DLC release: full version, Python tag, CUDA tag (GPU), OS tag."""

    version: str
    python: str
    cuda: str
    os: str


#: PyTorch training DLCs for SageMaker (available_images.md, 2026-11-21).
PYTORCH_TRAINING: tuple[DlcRelease, ...] = (
    DlcRelease("2.0.1", "py310", "cu118", "ubuntu20.04"),
    DlcRelease("2.1.0", "py310", "cu121", "ubuntu20.04"),
    DlcRelease("2.2.0", "py310", "cu121", "ubuntu20.04"),
    DlcRelease("2.3.0", "py311", "cu121", "ubuntu20.04"),
    DlcRelease("2.4.0", "py311", "cu124", "ubuntu22.04"),
    DlcRelease("2.5.1", "py311", "cu124", "ubuntu22.04"),
    DlcRelease("2.6.0", "py312", "cu126", "ubuntu22.04"),
    DlcRelease("2.7.1", "py312", "cu128", "ubuntu22.04"),
)

_DEFAULT_ACCOUNT = "763104351884"
#: Regions whose DLC registry is not the default account 763104351884 (available_images.md).
_REGION_ACCOUNTS: dict[str, str] = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ap-southeast-5": "550225433462",
    "ap-southeast-7": "590183813437",
    "ap-northeast-3": "364406365360",
    "ca-west-1": "204538143572",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "mx-central-1": "637423239942",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
}
#: Regions served by the default account.
_DEFAULT_REGIONS = frozenset({
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ap-south-1", "ap-northeast-1", "ap-northeast-2",
    "ap-southeast-1", "ap-southeast-2", "ap-east-2", "ca-central-1", "eu-central-1", "eu-west-1", "eu-west-2",
    "eu-west-3", "eu-north-1", "sa-east-1",
})


def registry(region: str) -> str:
    """The ECR registry host serving DLCs in ``region``.

    Raises:
        SpecError: at ``targets.sagemaker.region`` for a region with no DLC registry.
    """
    if region in _REGION_ACCOUNTS:
        account = _REGION_ACCOUNTS[region]
    elif region in _DEFAULT_REGIONS:
        account = _DEFAULT_ACCOUNT
    else:
        import difflib

        known = sorted(_DEFAULT_REGIONS | set(_REGION_ACCOUNTS))
        close = difflib.get_close_matches(region, known, n=1)
        raise SpecError.at(("targets", "sagemaker", "region"),
                           f"no AWS Deep Learning Container registry in region '{region}'; give `image` "
                           f"or use one of: {', '.join(known)}", close[0] if close else None)
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    return f"{account}.dkr.ecr.{region}{suffix}"


def release(version: str, python: str) -> DlcRelease:
    """The DLC release for a framework version (``2.5`` picks the newest ``2.5.x``) and Python
    (``3.11``).

    Raises:
        SpecError: at ``framework.version`` or ``framework.python`` when no DLC matches.
    """
    matches = [r for r in PYTORCH_TRAINING if r.version == version or r.version.startswith(version + ".")]
    if not matches:
        have = ", ".join(r.version for r in PYTORCH_TRAINING)
        raise SpecError.at(("framework", "version"),
                           f"no AWS PyTorch training container for PyTorch {version}; available: {have} "
                           "(or give `image`)")
    rel = matches[-1]
    py = "py" + python.replace(".", "")
    if rel.python != py:
        raise SpecError.at(("framework", "python"),
                           f"the PyTorch {rel.version} training container ships Python "
                           f"{rel.python[2]}.{rel.python[3:]}, not {python}",
                           f"{rel.python[2]}.{rel.python[3:]}")
    return rel


def pytorch_training_image(version: str, python: str, region: str, gpu: bool) -> str:
    """The DLC image URI for PyTorch training.

    Args:
        version: ``"2.5"`` or ``"2.5.1"``. python: ``"3.11"``. region: AWS region.
        gpu: GPU image (with CUDA) or CPU image.

    Raises:
        SpecError: unknown version/Python/region (see :func:`release`, :func:`registry`).
    """
    rel = release(version, python)
    device = f"gpu-{rel.python}-{rel.cuda}" if gpu else f"cpu-{rel.python}"
    return f"{registry(region)}/pytorch-training:{rel.version}-{device}-{rel.os}-sagemaker"


#: scikit-learn training containers for SageMaker (CPU only, Python 3): scikit-learn version ->
#: image tag version. Source: the SageMaker Python SDK's ``image_uri_config/sklearn.json``
#: ("training" versions and registries), aws/sagemaker-python-sdk, read 2026-11-29.
SKLEARN_TRAINING: dict[str, str] = {"0.23": "0.23-1", "1.0": "1.0-1", "1.2": "1.2-1"}
#: Region -> registry account of the scikit-learn containers (same source).
SKLEARN_REGISTRIES: dict[str, str] = {
    "af-south-1": "510948584623", "ap-east-1": "651117190479", "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698", "ap-northeast-3": "867004704886", "ap-south-1": "720646828776",
    "ap-south-2": "628508329040", "ap-southeast-1": "121021644041", "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941", "ap-southeast-4": "106583098589", "ca-central-1": "341280168497",
    "eu-central-1": "492215442770", "eu-central-2": "680994064768", "eu-north-1": "662702820516",
    "eu-west-1": "141502667606", "eu-west-2": "764974769150", "eu-west-3": "659782779980",
    "eu-south-1": "978288397137", "eu-south-2": "104374241257", "me-south-1": "801668240914",
    "me-central-1": "272398656194", "sa-east-1": "737474898029", "us-east-1": "683313688378",
    "us-east-2": "257758044811", "us-west-1": "746614075791", "us-west-2": "246618743249",
}


def sklearn_training_image(version: str, region: str) -> str:
    """The scikit-learn training container URI, e.g.
    ``683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3``.

    Raises:
        SpecError: at ``framework.version`` (versions offered listed) or
            ``targets.sagemaker.region`` (no registry there).
    """
    mm = ".".join(version.split(".")[:2])
    if mm not in SKLEARN_TRAINING:
        raise SpecError.at(("framework", "version"),
                           f"no SageMaker scikit-learn training container for {version}; available: "
                           f"{', '.join(SKLEARN_TRAINING)} (or give `image`)")
    if region not in SKLEARN_REGISTRIES:
        raise SpecError.at(("targets", "sagemaker", "region"),
                           f"no SageMaker scikit-learn container registry in {region}")
    return (f"{SKLEARN_REGISTRIES[region]}.dkr.ecr.{region}.amazonaws.com/sagemaker-scikit-learn:"
            f"{SKLEARN_TRAINING[mm]}-cpu-py3")
