"""``unijob models ...``: the model registry, printed. The logic is :mod:`unijob.models`."""

from __future__ import annotations

import json
import time
from typing import Any, Optional

import click

TARGET = click.option("-t", "--target", default="local", show_default=True,
                      help="Whose registry: local (an MLflow server here), sagemaker, vertex, databricks, kubernetes...")
SPEC = click.option("--spec", "spec_path", default=None, type=click.Path(dir_okay=False),
                    help="Read the target's options (region, project, workspace) from this spec's targets block.")
FMT = click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)


def _spec(path: Optional[str]) -> Any:
    if path is None:
        return None
    from unijob.loading import load_spec

    return load_spec(path).spec


def _print_versions(vs: list[Any], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([v.to_dict() for v in vs], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("MODEL", "VERSION", "STATUS", "ALIASES", "CREATED", "SOURCE"):
        table.add_column(col)
    for v in vs:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created_at)) if v.created_at else "-"
        state = v.status if v.registry_status in (None, "READY") else f"{v.status} ({v.registry_status})"
        table.add_row(v.name, v.version, state, ",".join(v.aliases) or "-", created, v.source)
    Console(soft_wrap=True).print(table)


@click.group("models")
def models() -> None:
    """The model registry: register, list, approve or reject, alias.

    An endpoint's model may then say models:/NAME@ALIAS or models:/NAME/VERSION.
    """


@models.command("register")
@click.argument("model")
@click.option("-n", "--name", required=True, help="Registered model name (created if new).")
@click.option("-a", "--alias", default=None, help="Point this alias at the new version.")
@click.option("-m", "--metadata", multiple=True, metavar="KEY=VALUE", help="Metadata to store with the version (repeatable).")
@TARGET
@SPEC
@FMT
def register(model: str, name: str, alias: Optional[str], metadata: tuple[str, ...], target: str,
             spec_path: Optional[str], fmt: str) -> None:
    """Register MODEL (an artifact URI, a local path, or job:<id>) as the next version of NAME."""
    from unijob import models as api
    from unijob.errors import UsageError

    meta = {}
    for item in metadata:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata takes KEY=VALUE, got {item!r}")
        meta[key] = value
    v = api.register(model, name, target=target, alias=alias, metadata=meta, spec=_spec(spec_path))
    if fmt == "json":
        click.echo(json.dumps(v.to_dict(), indent=2))
    else:
        click.echo(f"registered {v.uri} on {target} ({v.status})" + (f", alias {', '.join(v.aliases)}" if v.aliases else "")
                   + f": {v.source}")


@models.command("list")
@TARGET
@SPEC
@FMT
def list_(target: str, spec_path: Optional[str], fmt: str) -> None:
    """List registered models."""
    from unijob import models as api

    ms = api.list_models(target=target, spec=_spec(spec_path))
    if fmt == "json":
        click.echo(json.dumps([m.to_dict() for m in ms], indent=2))
        return
    for m in ms:
        aliases = ", ".join(f"{a}->{v}" for a, v in sorted(m.aliases.items()))
        click.echo(f"{m.name:<32} latest {m.latest_version or '-':<6} {aliases}")


@models.command("versions")
@click.argument("name")
@TARGET
@SPEC
@FMT
def versions(name: str, target: str, spec_path: Optional[str], fmt: str) -> None:
    """List the versions of NAME, oldest first."""
    from unijob import models as api

    _print_versions(api.versions(name, target=target, spec=_spec(spec_path)), fmt)


@models.command("show")
@click.argument("name")
@click.argument("version")
@TARGET
@SPEC
@FMT
def show(name: str, version: str, target: str, spec_path: Optional[str], fmt: str) -> None:
    """Show one version of NAME."""
    from unijob import models as api

    v = api.show(name, version, target=target, spec=_spec(spec_path))
    if fmt == "json":
        click.echo(json.dumps(v.to_dict(), indent=2))
        return
    _print_versions([v], fmt)
    for k, val in sorted(v.metadata.items()):
        click.echo(f"  {k}: {val}")


def _status_command(verb: str, fn_name: str):
    @models.command(verb)
    @click.argument("name")
    @click.argument("version")
    @TARGET
    @SPEC
    def cmd(name: str, version: str, target: str, spec_path: Optional[str]) -> None:
        from unijob import models as api

        v = getattr(api, fn_name)(name, version, target=target, spec=_spec(spec_path))
        click.echo(f"{v.uri} {v.status}")

    cmd.__doc__ = f"Mark VERSION of NAME {'Approved' if verb == 'approve' else 'Rejected'}."
    return cmd


approve = _status_command("approve", "approve")
reject = _status_command("reject", "reject")


@models.command("alias")
@click.argument("name")
@click.argument("version")
@click.argument("alias_name", metavar="ALIAS")
@TARGET
@SPEC
def alias(name: str, version: str, alias_name: str, target: str, spec_path: Optional[str]) -> None:
    """Point ALIAS at VERSION of NAME (models:/NAME@ALIAS then resolves to it)."""
    from unijob import models as api

    v = api.alias(name, version, alias_name, target=target, spec=_spec(spec_path))
    click.echo(f"models:/{v.name}@{alias_name} -> version {v.version}")


@models.command("server")
@click.option("--stop", is_flag=True, help="Stop the local MLflow server unijob started.")
def server(stop: bool) -> None:
    """Start (or show) the local registry's MLflow server; --stop stops it."""
    from unijob.local import registry as local_registry

    if stop:
        click.echo("stopped" if local_registry.stop_server() else "no local MLflow server was running")
        return
    click.echo(local_registry.ensure_server())
