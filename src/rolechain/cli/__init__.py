"""The ``rolechain`` command line: thin wrappers over the library.

The CLI is the only place that prints or chooses exit codes. Command modules are imported
only when their command runs, so ``rolechain --help`` starts without pydantic or boto3.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "validate": "rolechain.cli.planning:validate",
    "plan": "rolechain.cli.planning:plan",
    "graph": "rolechain.cli.planning:graph",
    "schema": "rolechain.cli.planning:schema",
    "run": "rolechain.cli.running:run",
    "history": "rolechain.cli.running:history",
    "schedule": "rolechain.cli.scheduling:schedule",
    "sandbox": "rolechain.cli.sandboxing:sandbox",
    "credentials": "rolechain.cli.creds:credentials",
    "cache": "rolechain.cli.creds:cache",
    "exec": "rolechain.cli.creds:exec_",
    "console": "rolechain.cli.creds:console",
    "env": "rolechain.cli.creds:env",
    "import-aws-config": "rolechain.cli.creds:import_aws_config",
    "export-aws-config": "rolechain.cli.creds:export_aws_config",
    "verify": "rolechain.cli.live:verify",
    "discover": "rolechain.cli.live:discover",
    "reach": "rolechain.cli.live:reach",
    "render": "rolechain.cli.ascode:render",
    "review": "rolechain.cli.ascode:review",
    "results": "rolechain.cli.inventory:results",
    "diff": "rolechain.cli.inventory:diff",
    "sql": "rolechain.cli.inventory:sql",
    "export": "rolechain.cli.inventory:export",
    "report": "rolechain.cli.inventory:report",
}

SUMMARIES: dict[str, str] = {
    "validate": "Check chain files and plan every job; report all problems.",
    "plan": "Show the hops a job takes to every target.",
    "graph": "Draw the trust graph (mermaid or dot), highlighting a job's paths.",
    "schema": "Print the JSON Schema of chain files.",
    "run": "Run a job: assume every hop, run tasks in every target and region.",
    "history": "List runs recorded in a --store database.",
    "schedule": "Run scheduled jobs until stopped, or export them to cron/systemd/k8s/GitHub.",
    "sandbox": "Serve a local AWS that enforces the role rules, provisioned from a chain file.",
    "credentials": "Print credential_process JSON for a target.",
    "cache": "List or clear the credential cache.",
    "exec": "Run a command with a target's credentials (or serve them to it).",
    "console": "Print (or open) an AWS console sign-in URL for a target's session.",
    "env": "Print shell export lines for a target's credentials.",
    "import-aws-config": "Turn AWS config profiles into a chain file.",
    "export-aws-config": "Write AWS config profiles that use rolechain as credential_process.",
    "verify": "Check every hop of a chain file against IAM: drift, hop by hop.",
    "discover": "Write a chain file from the roles and trust policies IAM has.",
    "reach": "Who can reach a role: every path through the trust graph, offline.",
    "render": "Write the roles a chain file declares as Terraform, CloudFormation or IAM JSON.",
    "review": "What a change to chain files does to access: who gains reach to which role.",
    "results": "The rows (or records) of a stored run, flattened: table, CSV, JSON, Parquet.",
    "diff": "What changed between two runs, by key; failed targets are unknown, not removed.",
    "sql": "SQL over a run store with DuckDB (views runs, records, rows, latest_rows).",
    "export": "Write a run store as Hive-partitioned Parquet (job=/task=/run_date=).",
    "report": "One run as a self-contained HTML report: targets, failures, changes, plan.",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Summaries come from a table so that --help imports no command module.
        rows = [(name, SUMMARIES.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="rolechain")
def cli() -> None:
    """Declare cross-account AWS role paths as code, plan them, and run jobs through them.

    \b
    Example:
      rolechain validate chains/demo.yaml chains/platform/
      rolechain plan chains/org-inventory.yaml --job inventory
      rolechain run chains/org-inventory.yaml --job inventory --format jsonl
    """


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``rolechain`` command."""
    return cli.main(args=argv, prog_name="rolechain")
