"""``gateway backup DIR`` and ``gateway restore DIR``.

Two commands, not a ``backup`` group with sub-commands: the issue and the operators' habit
spell them ``gateway backup DIR`` and ``gateway restore DIR``, and a group would have to
guess whether ``gateway backup inspect`` means a sub-command or a directory named so.
Checking a backup without restoring it is ``gateway restore --check DIR``.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from gateway.cli.support import settings_or_exit
from gateway.errors import Error

__all__ = ["backup", "restore"]

SECRETS_WARNING = (
    "WARNING: this backup holds SECRETS: the gateway's signing key, the audit HMAC key, the"
    " departments' and e-seals' private keys and the operators' tokens. Anyone who reads it"
    " can sign as the gateway and resolve the log's keyed subjects: keep it encrypted and"
    " offline, readable by the operator alone."
)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--with-secrets",
    is_flag=True,
    help="Also copy the key store (signing, HMAC, department and seal keys, operator tokens).",
)
def backup(directory: Path, with_secrets: bool) -> None:
    """Back up the gateway into DIRECTORY (new or empty) while it serves: a consistent copy of
    the database (SQLite's online backup, or pg_dump), the policy set and the public keys,
    with a manifest of what it holds. Secrets only with --with-secrets."""
    from gateway.backup.service import BackupFailed, create_backup

    settings = settings_or_exit()
    try:
        report = create_backup(
            settings, directory, with_secrets=with_secrets, now=dt.datetime.now(dt.UTC)
        )
    except (BackupFailed, Error, OSError) as exc:
        raise click.ClickException(f"no backup made: {exc}") from None
    manifest = report.manifest
    database = next(f for f in manifest.files if f.kind == "database")
    click.echo(f"backup written to {report.directory} ({manifest.setup} setup)")
    click.echo(f"  database: {database.path}, {database.size} bytes, {manifest.made_with}")
    click.echo(
        f"  audit log: {manifest.audit.tree_size} entries, root {manifest.audit.root};"
        f" latest checkpoint {manifest.audit.checkpoint_size}"
    )
    click.echo(f"  files: {len(manifest.files)}, each with its SHA-256 in backup.json")
    if with_secrets:
        click.echo(SECRETS_WARNING, err=True)
    if manifest.not_included:
        click.echo("NOT in this backup: keep these yourself, apart from it:", err=True)
        for what in manifest.not_included:
            click.echo(f"  - {what}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--check", "check_only", is_flag=True, help="Check the backup against its manifest only."
)
@click.option(
    "--replace-database",
    is_flag=True,
    help="Restore over a database that is not empty (SQLite: moved aside; PostgreSQL: the"
    " backup's objects dropped first).",
)
@click.option(
    "--keep-keys",
    is_flag=True,
    help="With a backup that holds keys: restore the database, keep the key store as it is.",
)
def restore(directory: Path, check_only: bool, replace_database: bool, keep_keys: bool) -> None:
    """Restore the backup in DIRECTORY into this gateway's database (which must be empty)
    and, if the backup holds them, its keys into an empty key store. Every file is checked
    against the manifest before anything is written. Stop the gateway first."""
    from gateway.backup.manifest import BackupInvalid, check_backup
    from gateway.backup.service import BackupFailed, RestoreRefused, restore_backup

    settings = settings_or_exit()
    try:
        if check_only:
            manifest = check_backup(directory)
        else:
            report = restore_backup(
                settings,
                directory,
                replace_database=replace_database,
                keep_keys=keep_keys,
                now=dt.datetime.now(dt.UTC),
            )
            manifest = report.manifest
    except BackupInvalid as exc:
        click.echo(f"REFUSED: {directory} is not a backup that can be restored:", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(1)
    except RestoreRefused as exc:
        raise click.ClickException(f"not restored, nothing was written: {exc}") from None
    except (BackupFailed, Error, OSError) as exc:
        raise click.ClickException(f"the restore failed: {exc}") from None
    secrets = "with secrets" if manifest.holds_secrets else "without secrets"
    click.echo(
        f"backup of {manifest.created_at.isoformat()} ({manifest.setup}, gateway"
        f" {manifest.gateway_version}, {secrets}): {len(manifest.files)} files match the"
        f" manifest; audit log {manifest.audit.tree_size} entries, root {manifest.audit.root}"
    )
    if check_only:
        return
    click.echo(f"restored the database into {report.database}: its audit tree is the backup's")
    for aside in report.moved_aside:
        click.echo(f"  the database that was there is now {aside}")
    if report.keys_placed:
        click.echo(f"  keys placed: {report.keys_placed} files in {settings.keys_dir}")
    if report.policies_placed:
        click.echo(f"  policy files placed: {report.policies_placed} in {settings.policies_dir}")
    for note in report.notes:
        click.echo(f"  note: {note}")
    for warning in report.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    click.echo("next: `gateway audit verify`, then `gateway serve`")
