"""``unijob catalog refresh``: fresh prices from the vendors' public price APIs (stdlib only).

- AWS Price List Bulk API, one offer file per service and region:
  ``https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/{AmazonEC2|AmazonSageMaker}/current/{region}/index.json``
  (format: https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/reading-an-offer.html):
  ``products[sku].attributes`` (``instanceType``/``instanceName``, ``regionCode``, ``operatingSystem``,
  ``tenancy``, ``preInstalledSw``, ``capacitystatus``, SageMaker ``component``) and
  ``terms.OnDemand[sku][term].priceDimensions[rate].pricePerUnit.USD`` per ``Hrs``.
- Google Cloud Billing Catalog API (https://cloud.google.com/billing/docs/reference/rest/v1/services.skus/list):
  ``GET https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus?key=KEY`` (Compute Engine),
  each SKU with ``description``, ``category.{resourceFamily,resourceGroup,usageType}``, ``serviceRegions``
  and ``pricingInfo[].pricingExpression.tieredRates[].unitPrice.{units,nanos}``. The key comes from
  ``UNIJOB_GCP_API_KEY``; without it the GCP part is skipped with a note.

Rows are written to :func:`unijob.cost.prices.user_prices_path`, which overlays the shipped catalog.
Offline, or an API error: :class:`unijob.errors.TargetError` (exit 4).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import re
from typing import Iterable, Optional

from unijob.errors import TargetError

AWS_URL = "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/{offer}/current/{region}/index.json"
GCP_URL = "https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus?key={key}&pageSize=5000{page}"


def parse_aws_offer(data: dict, wanted: Optional[set[str]] = None) -> list[dict]:
    """Price rows (service, region, instance_type, on_demand_usd_hour) from an AWS offer file.

    EC2: Linux, shared tenancy, no pre-installed software, ``capacitystatus`` Used. SageMaker:
    ``component`` Training -> ``sagemaker-training``, Hosting -> ``sagemaker-hosting``.
    """
    offer = data.get("offerCode")
    on_demand = data.get("terms", {}).get("OnDemand", {})
    out = []
    for sku, prod in data.get("products", {}).items():
        a = prod.get("attributes", {})
        if offer == "AmazonEC2":
            if (a.get("operatingSystem") != "Linux" or a.get("tenancy") != "Shared"
                    or a.get("preInstalledSw") != "NA" or a.get("capacitystatus", "Used") != "Used"):
                continue
            service, it = "ec2", a.get("instanceType")
        elif offer == "AmazonSageMaker":
            comp = (a.get("component") or "").lower()
            service = {"training": "sagemaker-training", "hosting": "sagemaker-hosting"}.get(comp)
            it = a.get("instanceName") or a.get("instanceType")
            if service is None or not it:
                continue
        else:
            continue
        if not it or (wanted and it not in wanted):
            continue
        for term in on_demand.get(sku, {}).values():
            for dim in term.get("priceDimensions", {}).values():
                if dim.get("unit") != "Hrs":
                    continue
                usd = float(dim.get("pricePerUnit", {}).get("USD", "0"))
                if usd > 0:
                    out.append({"service": service, "region": a.get("regionCode", ""), "instance_type": it,
                                "on_demand_usd_hour": usd, "spot_usd_hour": "", "basis": "published",
                                "source": f"AWS Price List {offer} {data.get('publicationDate', '')}".strip(),
                                "as_of": (data.get("publicationDate") or "")[:10]})
    return out


_GPU_RE = re.compile(r"^(Spot Preemptible )?Nvidia (Tesla )?(?P<gpu>[A-Z0-9]+)( (?P<mem>\d+)GB)? GPU running in", re.I)
_N1_RE = re.compile(r"^(Spot Preemptible )?N1 Predefined Instance (?P<what>Core|Ram) running in", re.I)


def _unit_price(sku: dict) -> float:
    rates = sku["pricingInfo"][0]["pricingExpression"]["tieredRates"]
    p = rates[-1]["unitPrice"]
    return int(p.get("units") or 0) + int(p.get("nanos") or 0) / 1e9


def parse_gcp_skus(skus: Iterable[dict], regions: Iterable[str]) -> list[dict]:
    """``gce`` rows from Compute Engine SKUs: ``gpu:TYPE`` per attached GPU (T4, V100, ...) and
    ``n1-standard-N`` = N x core + 3.75 N x GiB RAM, on-demand (``OnDemand``) and spot (``Preemptible``)."""
    regions = list(regions)
    gpu: dict[tuple[str, str, str], float] = {}
    n1: dict[tuple[str, str, str], float] = {}
    dates: dict[str, str] = {}
    for sku in skus:
        cat = sku.get("category", {})
        kind = "spot" if cat.get("usageType") == "Preemptible" else "od" if cat.get("usageType") == "OnDemand" else None
        if kind is None:
            continue
        desc = sku.get("description", "")
        for reg in sku.get("serviceRegions", []):
            if reg not in regions:
                continue
            eff = sku["pricingInfo"][0].get("effectiveTime", "")[:10]
            m = _GPU_RE.match(desc)
            if m and cat.get("resourceGroup") == "GPU":
                name = m.group("gpu").upper()
                gpu[(reg, name, kind)] = _unit_price(sku)
                dates[reg] = max(dates.get(reg, ""), eff)
                continue
            m = _N1_RE.match(desc)
            if m:
                n1[(reg, m.group("what").lower(), kind)] = _unit_price(sku)
                dates[reg] = max(dates.get(reg, ""), eff)
    out = []
    src = "Cloud Billing Catalog API, Compute Engine (services/6F81-5844-456A)"
    for (reg, name, kind), v in sorted(gpu.items()):
        if kind == "od":
            out.append({"service": "gce", "region": reg, "instance_type": f"gpu:{name}", "on_demand_usd_hour": v,
                        "spot_usd_hour": gpu.get((reg, name, "spot"), ""), "source": src, "basis": "published",
                        "spot_basis": "published" if (reg, name, "spot") in gpu else "", "as_of": dates.get(reg, "")})
    for reg in regions:
        if (reg, "core", "od") in n1 and (reg, "ram", "od") in n1:
            for n in (4, 8, 16, 32, 64):
                od = n * n1[(reg, "core", "od")] + 3.75 * n * n1[(reg, "ram", "od")]
                sp = ""
                if (reg, "core", "spot") in n1 and (reg, "ram", "spot") in n1:
                    sp = n * n1[(reg, "core", "spot")] + 3.75 * n * n1[(reg, "ram", "spot")]
                out.append({"service": "gce", "region": reg, "instance_type": f"n1-standard-{n}",
                            "on_demand_usd_hour": round(od, 6), "spot_usd_hour": "" if sp == "" else round(sp, 6),
                            "basis": "derived", "spot_basis": "" if sp == "" else "derived",
                            "source": src + " (N x core + 3.75 N x RAM)", "as_of": dates.get(reg, "")})
    return out


def _get_json(url: str, timeout: float) -> dict:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - fixed https URLs
            return json.load(resp)
    except urllib.error.HTTPError as e:
        raise TargetError(f"price API answered HTTP {e.code} for {url.split('?')[0]}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise TargetError(f"cannot reach the price API ({url.split('?')[0]}): {getattr(e, 'reason', e)}; "
                          "`unijob catalog refresh` needs network access; the shipped catalog is still used") from None


def refresh(regions: Optional[list[str]] = None, timeout: float = 20.0) -> tuple[int, str, list[str]]:
    """Pull, parse and write the user's price file. Returns (rows written, path, notes).

    Raises:
        TargetError: offline or an API error (exit 4).
    """
    from unijob.cost import catalog, prices

    wanted = {s.instance_type.removeprefix("ml.") for s in catalog.shapes() if s.family in ("ec2", "sagemaker")}
    wanted |= {"ml." + w for w in wanted}
    aws_regions = [r for r in (regions or prices.regions("ec2")) if not r.startswith(("europe-", "us-central"))]
    rows: list[dict] = []
    notes: list[str] = []
    for region in aws_regions:
        for offer in ("AmazonEC2", "AmazonSageMaker"):
            rows += parse_aws_offer(_get_json(AWS_URL.format(offer=offer, region=region), timeout), wanted)
    key = os.environ.get("UNIJOB_GCP_API_KEY")
    if key:
        skus, page = [], ""
        while True:
            data = _get_json(GCP_URL.format(key=key, page=page), timeout)
            skus += data.get("skus", [])
            if not data.get("nextPageToken"):
                break
            page = "&pageToken=" + data["nextPageToken"]
        rows += parse_gcp_skus(skus, prices.regions("gce"))
    else:
        notes.append("GCP skipped: set UNIJOB_GCP_API_KEY (the Cloud Billing Catalog API needs an API key)")
    path = prices.user_prices_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    today = _dt.date.today().isoformat()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write(f"# written by `unijob catalog refresh` on {today}\n")
        w = csv.DictWriter(fh, fieldnames=list(prices.FIELDS))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "as_of": r["as_of"] or today})
    prices.prices.cache_clear()
    return len(rows), str(path), notes
