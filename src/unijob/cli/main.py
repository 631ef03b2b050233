"""The top-level command group: lazy command loading and error handling.

Each command lives in a module imported only when that command runs (the pattern of Metaflow's
``LazyGroup``), so ``unijob --help`` costs a click import and nothing more. Errors that a person
can act on (:class:`unijob.errors.UnijobError`) print one clear message and exit with the error's
code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from unijob import __version__

#: command name -> ("module:attribute", one-line help shown by ``unijob --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("unijob.cli.jobs:validate", "Check spec files; exit 2 with file:line on errors."),
    "plan": ("unijob.cli.jobs:plan", "Print the exact native request(s) for a target; sends nothing."),
    "submit": ("unijob.cli.jobs:submit", "Submit a job to a target (default: local)."),
    "batch": ("unijob.cli.jobs:batch", "Run a spec's batch prediction (handler over JSON Lines) on a target."),
    "status": ("unijob.cli.jobs:status", "Show a job's state."),
    "logs": ("unijob.cli.jobs:logs", "Print a job's logs from every rank (-f follows)."),
    "cancel": ("unijob.cli.jobs:cancel", "Cancel a job (the whole gang)."),
    "list": ("unijob.cli.jobs:list_jobs", "List submitted jobs."),
    "targets": ("unijob.cli.jobs:targets", "List installed targets and whether each is ready."),
    "deploy": ("unijob.cli.endpoints:deploy", "Deploy a spec's endpoint to a target."),
    "endpoints": ("unijob.cli.endpoints:endpoints", "List deployed endpoints."),
    "traffic": ("unijob.cli.endpoints:traffic", "Change an endpoint's traffic split."),
    "undeploy": ("unijob.cli.endpoints:undeploy", "Delete an endpoint and everything it created."),
    "invoke": ("unijob.cli.endpoints:invoke", "Send a JSON request to a deployed endpoint."),
    "serve": ("unijob.cli.serve_cmds:serve", "Serve a handler here on the SageMaker, Vertex and Kubernetes routes."),
    "serve-image": ("unijob.cli.serve_cmds:serve_image", "Write the Dockerfile of a serving image for a handler."),
    "cost": ("unijob.cli.cost_cmds:cost", "What a spec costs on every target."),
    "breakeven": ("unijob.cli.cost_cmds:breakeven", "Build-vs-buy break-even in accelerator-hours per year."),
    "catalog": ("unijob.cli.cost_cmds:catalog", "The price catalog: GPUs offered where, and at what price."),
    "schema": ("unijob.cli.jobs:schema", "Print the JobSpec JSON Schema."),
    "pipelines": ("unijob.cli.pipelines_cmds:pipelines", "Pipeline runs: run, status, list, cancel, resume."),
    "models": ("unijob.cli.models_cmds:models", "The model registry: register, approve, alias (models:/NAME@ALIAS)."),
    "runtime-wheel": ("unijob.cli.bundle_cmds:runtime_wheel", "Write the runtime wheel that jobs carry (for image jobs)."),
}


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in COMMANDS.items()])

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in COMMANDS:
            import difflib

            close = difflib.get_close_matches(name, list(COMMANDS), n=1)
            raise click.UsageError(f"no such command '{name}'" + (f"; did you mean '{close[0]}'?" if close else ""))
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unijob")
def cli() -> None:
    """unijob: one job spec for SageMaker, Vertex AI, Databricks, Kubernetes and this machine,
    and what each costs.

    \b
    Exit codes: 0 ok; 1 the job failed or was cancelled (--wait), or a bug;
    2 bad input (spec, options, usage); 3 target not ready (not installed, no credentials);
    4 the platform returned an error; 5 no such job or endpoint; 130 interrupted.
    """


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and exits with) the process exit code."""
    from unijob.errors import UnijobError

    try:
        rv = cli.main(args=argv, prog_name="unijob", standalone_mode=False)
        # standalone_mode=False: click returns a click.Exit's code (ctx.exit(n)) instead of raising it
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        code = e.exit_code
    except click.ClickException as e:
        e.show()
        code = 2 if isinstance(e, click.UsageError) else e.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        code = 130
    except UnijobError as e:
        _print_error(e)
        code = e.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = 130
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    if argv is None:
        sys.exit(code)
    return code


def _print_error(err: Exception) -> None:
    text = str(err)
    prefix = "error: "
    if sys.stderr.isatty():
        prefix = click.style("error: ", fg="red", bold=True)
    click.echo(prefix + text, err=True)
