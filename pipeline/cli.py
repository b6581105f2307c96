"""The `supamigrate` command line: a thin layer over the library functions, nothing more.

Exit codes (a contract scripts rely on): 0 success, 1 failed check or blocking finding, 2 usage or
config error, 3 source or target unreachable, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline import backup as backup_mod
from pipeline import migrations as migrations_mod
from pipeline import runner
from pipeline.console import Console
from pipeline.errors import SupamigrateError
from pipeline.logs import configure_console
from pipeline.report import load_report, open_report, render, summary_lines

F = TypeVar("F", bound=Callable[..., Any])


def _common_run_options(f: F) -> F:
    f = click.option("--runs-dir", help="folder of run folders (overrides run.runs_dir)")(f)
    f = click.option("--target", help="SQLite file to produce (overrides target.path)")(f)
    f = click.option("--source", help="source URI: postgresql://..., a dump file, or https://... (REST)")(f)
    f = click.option("--config", "config_path", type=click.Path(), default=None,
                     help="config file (default ./config.yaml)")(f)
    return f


class _Ctx:
    def __init__(self, verbose: int, quiet: bool, log_format: str) -> None:
        self.verbosity = -1 if quiet else verbose
        self.log_format = log_format

    def console(self) -> Console:
        return Console(sys.stderr, verbosity=self.verbosity)


def _fail(exc: SupamigrateError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _finish(outcome: runner.RunOutcome, ctx: _Ctx) -> None:
    for line in summary_lines(outcome.report):
        click.echo(line)
    click.echo(f"run folder: {outcome.run_dir}")
    if outcome.report.get("error"):
        click.echo(f"error: {outcome.report['error']}", err=True)
    sys.exit(outcome.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="more output (-vv for debug logs on the console)")
@click.option("-q", "--quiet", is_flag=True, help="only the summary and errors")
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console",
              help="how log lines look on the console (the run folder's log.jsonl is always JSON)")
@click.version_option(package_name="supamigrate")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool, log_format: str) -> None:
    """Move a Supabase project (public tables and auth.users) into a verified SQLite database."""
    level = "error" if quiet else {0: "warning", 1: "info"}.get(verbose, "debug")
    configure_console(level=level, log_format="json" if log_format == "json" else "console")
    ctx.obj = _Ctx(verbose, quiet, log_format)


@main.command("run")
@_common_run_options
@click.option("--dry-run", is_flag=True, help="validate into a scratch file; the target is not touched")
@click.pass_obj
def run_cmd(obj: _Ctx, config_path: str | None, source: str | None, target: str | None, runs_dir: str | None,
            dry_run: bool) -> None:
    """Run the migration (continues an unfinished run of the same fingerprint)."""
    try:
        fn = runner.dry_run if dry_run else runner.run
        outcome = fn(config_path, source=source, target=target, runs_dir=runs_dir, console=obj.console())
    except SupamigrateError as exc:
        _fail(exc)
    _finish(outcome, obj)


@main.command("dry-run")
@_common_run_options
@click.pass_obj
def dry_run_cmd(obj: _Ctx, config_path: str | None, source: str | None, target: str | None,
                runs_dir: str | None) -> None:
    """Validate the whole migration into a scratch file and write the report (exit 1 on blocking findings)."""
    try:
        outcome = runner.dry_run(config_path, source=source, target=target, runs_dir=runs_dir,
                                 console=obj.console())
    except SupamigrateError as exc:
        _fail(exc)
    _finish(outcome, obj)


@main.command("resume")
@click.argument("run_id", required=False)
@_common_run_options
@click.option("--fresh", is_flag=True, help="start over instead of resuming")
@click.pass_obj
def resume_cmd(obj: _Ctx, run_id: str | None, config_path: str | None, source: str | None, target: str | None,
               runs_dir: str | None, fresh: bool) -> None:
    """Continue a run from its last committed batch (the newest unfinished one by default)."""
    try:
        outcome = runner.resume(run_id, config_path=config_path, source=source, target=target,
                                runs_dir=runs_dir, fresh=fresh, console=obj.console())
    except SupamigrateError as exc:
        _fail(exc)
    _finish(outcome, obj)


@main.command("status")
@click.argument("run_id", required=False)
@click.option("--runs-dir", default="runs", show_default=True)
def status_cmd(run_id: str | None, runs_dir: str) -> None:
    """Show the state of one run or of all runs."""
    try:
        click.echo(json.dumps(runner.status(run_id, runs_dir=runs_dir), indent=2))
    except SupamigrateError as exc:
        _fail(exc)


@main.command("report")
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["md", "json", "html"]), default="md", show_default=True)
@click.option("--runs-dir", default="runs", show_default=True)
@click.option("--open", "open_html", is_flag=True, help="open the run's report.html in the system browser")
def report_cmd(run_id: str, fmt: str, runs_dir: str, open_html: bool) -> None:
    """Print a run's report (or open its HTML page with --open)."""
    try:
        if open_html:
            click.echo(f"opened {open_report(Path(runs_dir) / run_id)}")
            return
        click.echo(render(load_report(Path(runs_dir) / run_id), fmt))
    except SupamigrateError as exc:
        _fail(exc)
    except FileNotFoundError:
        click.echo(f"error: no report for run {run_id} in {runs_dir}", err=True)
        sys.exit(2)


@main.group("schema")
def schema_group() -> None:
    """Target schema migrations on any SQLite file."""


def _migrations_opts(f: F) -> F:
    f = click.option("--migrations", default="target_schema", show_default=True, type=click.Path())(f)
    f = click.option("--db", required=True, type=click.Path(dir_okay=False), help="the SQLite file")(f)
    return f


@schema_group.command("status")
@_migrations_opts
def schema_status(db: str, migrations: str) -> None:
    """List migrations and whether each is applied, pending, changed or missing."""
    try:
        for st in migrations_mod.status(Path(db), Path(migrations)):
            click.echo(f"{st.version:03d} {st.name:40} {st.state}")
    except SupamigrateError as exc:
        _fail(exc)


@schema_group.command("up")
@_migrations_opts
@click.option("--to", "to_version", type=int, default=None, help="stop at this version")
def schema_up(db: str, migrations: str, to_version: int | None) -> None:
    """Apply pending migrations."""
    try:
        done = migrations_mod.migrate_up(Path(db), Path(migrations), to_version=to_version)
        click.echo("applied: " + (", ".join(f"{v:03d}" for v in done) or "nothing (up to date)"))
    except SupamigrateError as exc:
        _fail(exc)


@schema_group.command("down")
@_migrations_opts
@click.option("--steps", type=int, default=1, show_default=True)
@click.option("--to", "to_version", type=int, default=None, help="roll back to this version")
def schema_down(db: str, migrations: str, steps: int, to_version: int | None) -> None:
    """Roll back applied migrations."""
    try:
        done = migrations_mod.migrate_down(Path(db), Path(migrations), steps=steps, to_version=to_version)
        click.echo("rolled back: " + (", ".join(f"{v:03d}" for v in done) or "nothing"))
    except SupamigrateError as exc:
        _fail(exc)


@schema_group.command("generate")
@click.option("--source", "source_uri", required=True, help="postgresql://... or a dump file")
@click.option("--migrations", default="target_schema", show_default=True, type=click.Path(file_okay=False))
@click.option("--table", "tables", multiple=True, help="a public table (repeatable); default: every unmigrated one")
@click.option("--strict", is_flag=True, help="declare the generated tables STRICT")
def schema_generate(source_uri: str, migrations: str, tables: tuple[str, ...], strict: bool) -> None:
    """Write NNN_auto_<table>.sql migrations for source tables no migration covers."""
    from pipeline.autoschema import generate_schema

    try:
        written = generate_schema(source_uri, migrations, tables=list(tables) or None, strict=strict)
    except SupamigrateError as exc:
        _fail(exc)
    for p in written:
        click.echo(f"wrote {p}")
    if not written:
        click.echo("nothing to generate: every table already has a target migration")


@main.group("backup")
def backup_group() -> None:
    """Backups of a target SQLite file (online backup API, the app's naming)."""


@backup_group.command("create")
@click.option("--db", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--dir", "backup_dir", type=click.Path(file_okay=False), default=None)
@click.option("--prefix", default=None)
@click.option("--keep", type=int, default=10, show_default=True)
def backup_create(db: str, backup_dir: str | None, prefix: str | None, keep: int) -> None:
    """Take a verified backup and keep the newest N."""
    try:
        p = backup_mod.create_backup(Path(db), backup_dir=Path(backup_dir) if backup_dir else None,
                                     prefix=prefix, keep=keep)
        click.echo(str(p))
    except SupamigrateError as exc:
        _fail(exc)


@backup_group.command("list")
@click.option("--dir", "backup_dir", required=True, type=click.Path(file_okay=False))
@click.option("--prefix", default="xrozen", show_default=True)
def backup_list(backup_dir: str, prefix: str) -> None:
    """List backups, newest first."""
    for b in backup_mod.list_backups(Path(backup_dir), prefix):
        click.echo(f"{b.taken_at.isoformat()}  {b.size:>12}  {b.path}")


@backup_group.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def backup_verify(path: str) -> None:
    """Check a backup's integrity and show its tables and row counts."""
    res = backup_mod.verify_backup(Path(path))
    click.echo(json.dumps({"ok": res.ok, "integrity": res.integrity, "tables": res.tables,
                           "migrations": res.migrations}, indent=2, default=str))
    sys.exit(0 if res.ok else 1)


@backup_group.command("restore")
@click.argument("backup_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--db", required=True, type=click.Path(dir_okay=False), help="the target to restore into")
def backup_restore(backup_path: str, db: str) -> None:
    """Restore a chosen backup over the target (the current target is backed up first)."""
    try:
        click.echo(str(backup_mod.restore_backup(Path(backup_path), Path(db))))
    except SupamigrateError as exc:
        _fail(exc)


@main.group("config")
def config_group() -> None:
    """Configuration helpers."""


@config_group.command("check")
@click.option("--config", "config_path", type=click.Path(), default=None)
def config_check(config_path: str | None) -> None:
    """Validate config.yaml (keys, types, ${ENV} references) without touching the source."""
    try:
        runner.check_config(config_path)
    except SupamigrateError as exc:
        _fail(exc)
    click.echo(f"{config_path or 'config.yaml'}: ok")


@config_group.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of config.yaml (the committed config.schema.json is generated from it)."""
    from pipeline.config import config_json_schema

    click.echo(json.dumps(config_json_schema(), indent=2, sort_keys=True))


@main.command("init")
@click.option("--source", "source_uri", required=True, help="postgresql://..., a dump file, or https://... (REST)")
@click.option("--output", default="config.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="the config file to write")
@click.option("--migrations", default="target_schema", show_default=True, type=click.Path(file_okay=False),
              help="the target schema migrations to plan against (empty or missing: auto schema)")
@click.option("--force", is_flag=True, help="overwrite an existing output file")
@click.option("--no-probe", is_flag=True, help="decide from the catalog only; skip the dry run over the rows")
@click.pass_obj
def init_cmd(obj: _Ctx, source_uri: str, output: str, migrations: str, force: bool, no_probe: bool) -> None:
    """Write a starter config.yaml for a source: every table, and each decision left as a comment."""
    from pipeline.init import init_config, summarize

    try:
        path = init_config(source_uri, output=output, migrations_dir=migrations, force=force,
                           probe=not no_probe, console=obj.console())
    except SupamigrateError as exc:
        _fail(exc)
    for line in summarize(path):
        click.echo(line)


@main.command("verify-logins")
@click.option("--config", "config_path", type=click.Path(), default=None, help="config file (default ./config.yaml)")
@click.option("--target", default=None, help="SQLite file to check (default: target.path, or the newest run's)")
def verify_logins_cmd(config_path: str | None, target: str | None) -> None:
    """Sign in as the accounts in logins.accounts: bcrypt against the target, then the app's JWT."""
    from pipeline.logins import verify_logins

    def ask(label: str) -> str:
        return str(click.prompt(label, hide_input=True, default="", show_default=False))

    try:
        results = verify_logins(config_path, target=target, prompt=ask if sys.stdin.isatty() else None)
    except SupamigrateError as exc:
        _fail(exc)
    for r in results:
        click.echo(r.line())
    sys.exit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
