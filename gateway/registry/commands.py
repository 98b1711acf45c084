"""``gateway keys``: the gateway's own signing keys (list, rotate, retire), and departments'
keys on an administrator's behalf (``gateway keys department ...``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import sys
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa

from gateway.cli.support import audit_log, database, settings_or_exit

__all__ = ["keys"]


def _default_operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment
        return "cli"


_operator_option = click.option(
    "--operator", default=None, help="Who does this, for the audit log [cli:<login name>]."
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _initialised(engine: sa.Engine) -> None:
    if not sa.inspect(engine).has_table("gateway_keys"):
        raise click.ClickException("the database has no gateway key set yet: run `gateway init`")


def _record(engine: sa.Engine, entries: list[dict[str, Any]]) -> None:
    """Make the entries durable (the command exits only once they are)."""
    from gateway.audit import AuditEntry, Outcome

    async def append_all() -> None:
        for fields in entries:
            await audit.append(AuditEntry(decision=Outcome.ALLOWED, **fields))

    with audit_log(engine) as audit:
        asyncio.run(append_all())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def keys() -> None:
    """The gateway's signing keys: list, rotate (publish the next key, then switch), retire;
    departments' keys (``keys department``)."""


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
def list_keys(as_json: bool) -> None:
    """Every gateway key: kid, alg, status (next / active / retired) and its dates; whether
    this host holds its private half."""
    from gateway.registry.gateway_keys import load_gateway_keys, load_private_keys

    settings = settings_or_exit()
    with database(settings) as engine:
        _initialised(engine)
        found = load_gateway_keys(engine)
    here = load_private_keys(Path(settings.keys_dir))
    rows = [
        {
            "kid": k.kid,
            "alg": k.alg,
            "status": str(k.status),
            "published_at": _when(k.published_at),
            "active_from": _when(k.active_from),
            "retired_at": _when(k.retired_at),
            "retire_by": _when(k.retire_by),
            "private_key_here": k.kid in here,
        }
        for k in found
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['kid']}  {row['alg']}  {row['status']:<7}  published {row['published_at']}"
            f"  active {row['active_from']}  retired {row['retired_at']}"
            f"  retire by {row['retire_by']}"
            + ("" if row["private_key_here"] else "  (private key not on this host)")
        )


@keys.command()
@click.option(
    "--now",
    "early",
    is_flag=True,
    help="Switch even though the next key has been published for less than 2 × the JWKS "
    "cache lifetime: verifiers with a cached JWKS refuse answers until they refetch it.",
)
@click.option(
    "--alg",
    type=click.Choice(["ES256", "SM2"]),
    default="ES256",
    show_default=True,
    help="Which of the gateway's keys: the ES256 one or the SM2 one (国密, docs/sm2.md).",
)
@_operator_option
def rotate(early: bool, alg: str, operator: str | None) -> None:
    """Rotate the gateway's signing key of one algorithm, one step per run.

    \b
    First run: create the next key and publish it in the JWKS (it signs nothing yet).
    Second run, at least 2 × GATEWAY_JWKS_MAX_AGE_SECONDS later: the switch — the next key
    signs from then on in every gateway process (within a second), the old key is retired
    and stays in the JWKS, verify-only, so everything it signed still verifies.
    Copy keys/gateway/<kid>.private.pem (an SM2 key: <kid>.private.jwk.json) to every
    gateway host between the two runs. A gateway without an SM2 key gets its first one the
    same way, in two runs of `--alg SM2`.
    """
    from gateway.core.protocol import AuditEvent
    from gateway.registry.gateway_keys import RotationRefused, rotate_gateway_key

    settings = settings_or_exit()
    key_settings = settings.keys
    now = _now()
    by = operator or _default_operator()
    if early:
        click.echo(
            "WARNING: --now switches without waiting for verifiers' cached JWKS to expire; "
            "they may refuse new answers until they fetch it again.",
            err=True,
        )
    with database(settings) as engine:
        _initialised(engine)
        try:
            done = rotate_gateway_key(
                engine,
                Path(settings.keys_dir),
                now=now,
                jwks_max_age=key_settings.jwks_max_age_seconds,
                lifetime=dt.timedelta(days=key_settings.signing_key_lifetime_days),
                early=early,
                alg=alg,
            )
        except RotationRefused as exc:
            click.echo(f"refused: {exc}", err=True)
            sys.exit(1)
        base = {"at": now, "operator": by}
        if done.published is not None:
            _record(
                engine,
                [{**base, "event": AuditEvent.GATEWAY_KEY_PUBLISHED, "detail": done.published}],
            )
            ready = now + dt.timedelta(seconds=2 * key_settings.jwks_max_age_seconds)
            suffix = ".private.jwk.json" if alg == "SM2" else ".private.pem"
            again = "gateway keys rotate" + (" --alg SM2" if alg == "SM2" else "")
            click.echo(
                f"published the next {alg} key {done.published}; it may become active from "
                f"{_when(ready)} (run `{again}` again then). Copy "
                f"{Path(settings.keys_dir) / 'gateway' / (done.published + suffix)} "
                "to every gateway host before that."
            )
            return
        replaces = f" replaces {done.retired}" if done.retired else f" (the first {alg} key)"
        detail = f"{done.activated}{replaces}" + (" (early, --now)" if done.early else "")
        entries = [{**base, "event": AuditEvent.GATEWAY_KEY_ACTIVATED, "detail": detail}]
        if done.retired is not None:
            entries.append(
                {**base, "event": AuditEvent.GATEWAY_KEY_RETIRED, "detail": str(done.retired)}
            )
        _record(engine, entries)
    if done.retired is None:
        click.echo(f"switched: {done.activated} signs {alg} from now on (the first {alg} key)")
        return
    click.echo(
        f"switched: {done.activated} signs {alg} from now on; {done.retired} is retired "
        "(verify-only, still in the JWKS)"
    )


@keys.command()
@click.argument("kid")
@_operator_option
def retire(kid: str, operator: str | None) -> None:
    """Retire gateway key KID: a next key is withdrawn (it leaves the JWKS, never having
    signed); the active key cannot be retired (rotate instead). A kid that begins with "-"
    goes after "--" (``gateway keys retire -- -zK2…``)."""
    from gateway.core.protocol import AuditEvent
    from gateway.registry.gateway_keys import RotationRefused, retire_gateway_key

    settings = settings_or_exit()
    now = _now()
    with database(settings) as engine:
        _initialised(engine)
        try:
            previous = retire_gateway_key(engine, Path(settings.keys_dir), kid, now=now)
        except LookupError:
            click.echo(f"refused: no gateway key {kid}", err=True)
            sys.exit(1)
        except RotationRefused as exc:
            click.echo(f"refused: {exc}", err=True)
            sys.exit(1)
        _record(
            engine,
            [
                {
                    "at": now,
                    "operator": operator or _default_operator(),
                    "event": AuditEvent.GATEWAY_KEY_RETIRED,
                    "detail": f"{kid} ({previous} -> withdrawn)",
                }
            ],
        )
    click.echo(f"withdrawn: {kid} (it was {previous}; it never signed anything)")


# --- departments' keys, by an administrator ----------------------------------------------


@keys.group()
def department() -> None:
    """A department's keys, on an administrator's behalf: register its next key (with the
    department's proof of possession), retire an old one."""


def _administration(engine: sa.Engine, audit: Any, settings: Any) -> Any:
    from gateway.core.keyring import GatewaySigner, KeyRing
    from gateway.core.tokens import RequestTokenVerifier
    from gateway.registry import keystore
    from gateway.registry.keys import KeyAdministration

    keys_dir = Path(settings.keys_dir)
    return KeyAdministration(
        engine=engine,
        verifier=RequestTokenVerifier(keyring=KeyRing([]), audience=settings.gateway_id),
        audit=audit,
        signer=GatewaySigner(
            private_key=keystore.ensure_gateway_key(keys_dir), issuer=settings.gateway_id
        ),
        keys_dir=keys_dir,
        gateway_id=settings.gateway_id,
    )


def _administer(act: str, **kwargs: Any) -> dict[str, Any]:
    from gateway.errors import Error

    settings = settings_or_exit()
    with database(settings) as engine, audit_log(engine) as audit:
        administration = _administration(engine, audit, settings)
        try:
            done: dict[str, Any] = asyncio.run(getattr(administration, act)(**kwargs))
        except Error as exc:
            click.echo(f"refused: {exc}", err=True)
            sys.exit(1)
    return done


@department.command("register")
@click.argument("department_id", metavar="DEPARTMENT")
@click.option(
    "--jwk",
    "jwk_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The new public JWK (JSON file).",
)
@click.option(
    "--proof",
    "proof_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The department's proof of possession (a file holding the JWS; `keys department "
    "proof` makes one from the private key).",
)
@click.option("--expires-at", type=click.DateTime(), default=None, help="Planned expiry (UTC).")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@_operator_option
def register_department_key(  # noqa: PLR0917 - click passes every option by name
    department_id: str,
    jwk_file: Path,
    proof_file: Path,
    expires_at: dt.datetime | None,
    reason: str,
    operator: str | None,
) -> None:
    """Register a key for DEPARTMENT, active at once (audited)."""
    try:
        jwk = json.loads(jwk_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeError):
        raise click.ClickException(f"{jwk_file}: not a JSON file") from None
    done = _administer(
        "register_for",
        department=department_id,
        jwk=jwk,
        proof=proof_file.read_text(encoding="utf-8").strip(),
        expires_at=None
        if expires_at is None
        else int(expires_at.replace(tzinfo=dt.UTC).timestamp()),
        reason=reason,
        by=operator or _default_operator(),
        now=_now().timestamp(),
    )
    click.echo(f"registered {done['kid']} for {done['department']} (active)")


@department.command("retire")
@click.argument("department_id", metavar="DEPARTMENT")
@click.argument("kid")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@_operator_option
def retire_department_key(department_id: str, kid: str, reason: str, operator: str | None) -> None:
    """Retire the active key KID of DEPARTMENT (never its last one; audited).

    A kid is base64url and may begin with "-": put such a kid after "--", as in
    ``gateway keys department retire --reason … -- hrss -zK2…``."""
    done = _administer(
        "retire_for",
        department=department_id,
        kid=kid,
        reason=reason,
        by=operator or _default_operator(),
        now=_now().timestamp(),
    )
    click.echo(f"retired {done['kid']} of {done['department']} (was {done['previous']})")


@department.command("proof")
@click.argument("private_jwk", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--department", "department_id", required=True, help="The department's id.")
def proof(private_jwk: Path, department_id: str) -> None:
    """Print the department's proof of possession of the key in PRIVATE_JWK (run on the
    department's side, where the private key is; valid for five minutes) and its public
    JWK on the second line."""
    from gateway.core.keyring import load_private_jwk
    from gateway.sdk import key_proof

    settings = settings_or_exit()
    key = load_private_jwk(private_jwk)
    click.echo(key_proof(key, department=department_id, audience=settings.gateway_id))
    click.echo(json.dumps(key.public_jwk()))


@department.command("generate")
@click.argument("private_jwk", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--alg",
    type=click.Choice(["ES256", "EdDSA", "SM2"]),
    default="ES256",
    show_default=True,
    help="The key's algorithm (SM2: the 国密 profile of docs/sm2.md).",
)
def generate(private_jwk: Path, alg: str) -> None:
    """Make a new department key pair (on the department's side): the private JWK goes to
    PRIVATE_JWK (owner-only, never over an existing file), its public JWK is printed — to
    register with `gateway keys department register` or the SDK's register_next_key."""
    from gateway.core.keyring import SigningKey
    from gateway.registry.keystore import write_secret

    key = SigningKey.generate(alg)
    try:
        write_secret(private_jwk, json.dumps(key.private_jwk(), indent=2).encode())
    except FileExistsError:
        raise click.ClickException(f"{private_jwk} exists: choose another file") from None
    click.echo(json.dumps(key.public_jwk()))
