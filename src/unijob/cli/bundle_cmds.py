"""``unijob runtime-wheel``: write the runtime wheel that script jobs carry, for image jobs."""

from __future__ import annotations


import click


@click.command("runtime-wheel")
@click.option("-o", "--output-dir", "out", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Directory to write the wheel into.")
@click.option("-t", "--target", "targets", multiple=True,
              help="Include only this target's runtime env (repeatable; default: every installed target).")
def runtime_wheel(out: str, targets: tuple[str, ...]) -> None:
    """Write unijob's runtime wheel (unijob.runtime, stdlib only) for a job image.

    Add it to an image with two Dockerfile lines:

    \b
        COPY unijob-*.whl /tmp/
        RUN python -m pip install --no-deps --no-index /tmp/unijob-*.whl
    """
    from unijob.bundle import runtime_wheel as build

    wheel = build(list(targets) if targets else None)
    path = wheel.write(out)
    click.echo(f"{path}  ({len(wheel.data) / 1024:.1f} KiB, sha256 {wheel.sha256[:16]}..., "
               f"runtime envs: {', '.join(wheel.targets) or 'none'})")
