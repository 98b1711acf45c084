"""The ``gateway licence`` and ``gateway seal`` commands: issue, verify and seal e-licences.

Registered on the main command by ``gateway.app.commands``. Requests are signed with the
department's key from ``keys/departments/<dept>.private.jwk.json``, as ``gateway lookup``
does; seal keys are separate files (``keys/seals/<seal id>.private.jwk.json`` when this
command creates them).

``gateway licence verify`` exits 0 when the verdict is ``valid``, 1 for any other verdict (or
a refusal), 2 for usage errors, so scripts can branch on it.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import click
import httpx
import msgspec

from gateway.cli.support import base_url, department_client, settings_or_exit
from gateway.core.identifiers import LicenceId, ResidentId, Uscc
from gateway.core.keyring import SigningKey, jwk_thumbprint
from gateway.core.licences import (
    QR_PREFIX,
    Check,
    CheckOutcome,
    HolderIdType,
    LicenceContent,
    StatusAction,
    Verdict,
)
from gateway.errors import ConfigurationError, Error, InvalidIdentifier
from gateway.registry.keystore import write_secret
from gateway.sdk import (
    GatewayProblem,
    OfflineVerifier,
    PublicDocuments,
    http_client,
    load_private_jwk,
    sealed_status_list_id,
)

__all__ = ["content_problems", "licence", "seal"]

#: What each verification check establishes, in words for the clerk.
CHECK_WORDS = {
    "identifier-format": "the identifier is well-formed and its check character is right",
    "qr-format": "the QR payload is well-formed",
    "record": "the gateway holds a published licence for it",
    "structure": "the document is a sealed licence (compact JWS)",
    "seal-known": "it was sealed by a registered e-seal",
    "signature": "the seal's signature verifies",
    "content": "the sealed content is well-formed canonical JSON",
    "identifier": "the licence identifier matches its type and issuer",
    "holder-id": "the holder's identifier is valid",
    "seal-owner": "the seal belongs to the issuing department",
    "seal-validity": "the seal was valid on the issue date",
    "record-matches": "it is exactly the licence the issuer published",
    "qr-digest": "the QR code is of this licence's content",
    "status-entry": "its status list entry was found",
    "status": "it is not revoked, withdrawn or cancelled",
    "validity": "today is within its validity dates",
    "suspension": "it is not suspended",
}

_OUTCOME_WORDS = {
    CheckOutcome.PASSED: "passed ",
    CheckOutcome.FAILED: "FAILED ",
    CheckOutcome.SKIPPED: "skipped",
}


_url_option = click.option(
    "--url", default=None, help="Gateway base URL [http://HOST:PORT from settings]."
)
_operator_option = click.option("--operator", default=None, help="The clerk's id [login name].")


# --- gateway licence ----------------------------------------------------------------------


@click.group()
def licence() -> None:
    """Issue e-licences, change their status, verify them (online or offline)."""


def content_problems(raw: object) -> list[tuple[str, str]]:
    """Every problem of a licence content file, each as (the field's path, what is wrong):
    unknown and missing fields, each field's type and format, then — when every field has
    its type — the identifiers' check characters and the issuer they name, and the dates.
    All at once, so a file is fixed in one pass."""
    if not isinstance(raw, dict):
        return [("$", "must be a JSON object")]
    fields = {f.name: f for f in msgspec.structs.fields(LicenceContent)}
    problems = [
        (
            name,
            "is not a licence field"
            if name != "status"
            else "must not be set: the gateway allocates the status entry",
        )
        for name in raw
        if name not in fields or name == "status"
    ]
    problems += [
        (name, "is missing") for name, f in fields.items() if f.required and name not in raw
    ]
    for name, value in raw.items():
        if name in fields and name != "status":
            try:
                msgspec.convert(value, fields[name].type)
            except msgspec.ValidationError as exc:
                reason, _, at = str(exc).partition(" - at `$")
                problems.append((name + at.rstrip("`"), reason))
    if problems:
        return problems
    content = msgspec.convert(raw, LicenceContent)
    try:
        licence_id = LicenceId.parse(content.licence_id)
    except InvalidIdentifier as exc:
        problems.append(("licence_id", exc.reason))
    else:
        if licence_id.type_code != content.type_code:
            problems.append(
                ("type_code", f"differs from the identifier's ({licence_id.type_code})")
            )
        if licence_id.issuer.value != content.issuer_uscc:
            problems.append(
                ("issuer_uscc", f"differs from the identifier's issuer ({licence_id.issuer.value})")
            )
    holder = ResidentId if content.holder_id_type is HolderIdType.RESIDENT_ID else Uscc
    try:
        holder.parse(content.holder_id)
    except InvalidIdentifier as exc:
        problems.append(("holder_id", f"{exc.reason} (a {content.holder_id_type})"))
    try:
        Uscc.parse(content.issuer_uscc)
    except InvalidIdentifier as exc:
        problems.append(("issuer_uscc", exc.reason))
    if content.valid_until is not None and content.valid_until < content.valid_from:
        problems.append(("valid_until", "is before valid_from"))
    return problems


def _read_content(path: Path) -> LicenceContent:
    try:
        raw = msgspec.json.decode(path.read_bytes())
    except msgspec.DecodeError as exc:
        raise click.BadParameter(f"{path} is not JSON: {exc}", param_hint="--content") from None
    problems = content_problems(raw)
    if problems:
        listed = "".join(f"\n  {where}: {what}" for where, what in problems)
        raise click.BadParameter(
            f"{path} has {len(problems)} problem{'s' if len(problems) > 1 else ''}:{listed}"
            "\n(`gateway id` computes identifiers with their check character)",
            param_hint="--content",
        )
    return msgspec.convert(raw, LicenceContent)


@licence.command()
@click.option("--as", "department", required=True, help="Issuing department id (signs).")
@click.option(
    "--seal-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Private JWK of a registered seal of the department.",
)
@click.option(
    "--content",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file: the licence's fields (LicenceContent without 'status').",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the sealed licence (compact JWS) here.",
)
@_operator_option
@_url_option
def issue(  # noqa: PLR0917 - click passes every option positionally by name
    department: str,
    seal_key: Path,
    content: Path,
    out: Path | None,
    operator: str | None,
    url: str | None,
) -> None:
    """Seal a licence with a seal key and publish it, as its issuing department."""
    fields = _read_content(content)
    try:
        key = load_private_jwk(seal_key)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--seal-key") from None
    with department_client(department, url) as client:
        issued = client.issue_licence(
            content=fields, seal_key=key, operator=operator or getpass.getuser()
        )
    if out is not None:
        out.write_text(issued.sealed + "\n", encoding="ascii")
    claims = issued.claims
    click.echo(f"licence: {claims['licence_id']}")
    click.echo(f"status entry: {claims['status']['list_id']}#{claims['status']['index']}")
    click.echo(f"QR payload: {claims['qr']}")
    if claims.get("supersedes"):
        click.echo(f"supersedes: {claims['supersedes']} (now cancelled)")
    if out is not None:
        click.echo(f"sealed licence written to {out}")
    click.echo(f"audit index: {issued.audit_index}")


@licence.command()
@click.argument("licence_id")
@click.argument("action", type=click.Choice([a.value for a in StatusAction]))
@click.option("--reason", required=True, help="Why (kept in the licence's history).")
@click.option("--as", "department", required=True, help="Issuing department id (signs).")
@_operator_option
@_url_option
def status(  # noqa: PLR0917 - click passes every option positionally by name
    licence_id: str,
    action: str,
    reason: str,
    department: str,
    operator: str | None,
    url: str | None,
) -> None:
    """Suspend, reinstate, revoke, withdraw or cancel licence LICENCE_ID."""
    with department_client(department, url) as client:
        answer = client.change_licence_status(
            licence_id=licence_id,
            action=action,
            reason=reason,
            operator=operator or getpass.getuser(),
        )
    claims = answer.claims
    click.echo(f"licence {claims['licence_id']}: {claims['previous']} -> {claims['status']}")
    click.echo(f"at: {claims['at']}")
    click.echo(f"audit index: {answer.audit_index}")


def _echo_checks(verdict: Verdict, checks: tuple[Check, ...], licence_id: str | None) -> None:
    click.echo(f"verdict: {verdict}")
    if licence_id:
        click.echo(f"licence: {licence_id}")
    for check in checks:
        words = CHECK_WORDS.get(check.name, check.name)
        detail = f" ({check.detail})" if check.detail else ""
        click.echo(f"  {_OUTCOME_WORDS[check.outcome]}  {words}{detail}")


_JWKS_FILE = "jwks.json"
_REGISTRY_FILE = "seal-registry.jwt"


def _list_file(directory: Path, list_id: str) -> Path:
    # List ids are the gateway's data: quoted so that none can name a path elsewhere.
    return directory / f"status-list-{urllib.parse.quote(list_id, safe='')}.jwt"


def _saved_documents(directory: Path, list_ids: list[str]) -> PublicDocuments | None:
    """The documents saved in ``directory``, or None if any of them is missing."""
    paths = [directory / _JWKS_FILE, directory / _REGISTRY_FILE]
    paths += [_list_file(directory, i) for i in list_ids]
    if not all(p.is_file() for p in paths):
        return None
    return PublicDocuments(
        json.loads(paths[0].read_text()),
        paths[1].read_text().strip(),
        {i: _list_file(directory, i).read_text().strip() for i in list_ids},
    )


def _save_documents(directory: Path, documents: PublicDocuments) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / _JWKS_FILE).write_text(json.dumps(documents.jwks, indent=2) + "\n")
    (directory / _REGISTRY_FILE).write_text(documents.registry + "\n")
    for list_id, token in documents.status_lists.items():
        _list_file(directory, list_id).write_text(token + "\n")


def _public_documents(
    gateway_url: str, directory: Path | None, list_ids: list[str]
) -> PublicDocuments:
    """The saved documents if ``directory`` holds them all (no network), else fetched now
    (and saved there, if given). Every one is verified later, whichever way it came."""
    saved = _saved_documents(directory, list_ids) if directory is not None else None
    if saved is not None:
        return saved
    with http_client(gateway_url, timeout=10.0) as http:
        fetched = PublicDocuments.fetch(http, list_ids=list_ids)
    if directory is not None:
        _save_documents(directory, fetched)
    return fetched


def _verify_offline(file: Path, documents: Path | None, url: str | None) -> Verdict:
    settings = settings_or_exit()
    gateway_url = base_url(settings, url)
    sealed = file.read_text(encoding="ascii", errors="replace").strip()
    list_id = sealed_status_list_id(sealed)
    now = dt.datetime.now(dt.UTC)
    try:
        docs = _public_documents(gateway_url, documents, [list_id] if list_id else [])
        verifier: OfflineVerifier = docs.verifier(issuer=settings.gateway_id, now=now)
        verification = verifier.verify(sealed, now=now)
    except GatewayProblem as exc:
        click.echo(json.dumps(exc.problem, ensure_ascii=False, indent=2), err=True)
        sys.exit(1)
    except Error as exc:
        raise click.ClickException(
            f"the gateway's public documents are not usable: {exc}"
            + (f" (remove {documents} to fetch them again)" if documents else "")
        ) from None
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the gateway at {gateway_url}: {exc}") from None
    _echo_checks(verification.verdict, verification.checks, verification.licence_id)
    click.echo("checked offline against the gateway's signed registry and status list")
    return verification.verdict


@licence.command()
@click.argument("given", metavar="[LICENCE_ID | QR_PAYLOAD]", required=False)
@click.option(
    "--file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A sealed licence (compact JWS) to verify.",
)
@click.option("--as", "department", default=None, help="Department id (signs; online only).")
@click.option("--item", default=None, help="Service item code (事项编码; online only).")
@click.option("--case", "case", default=None, help="Case number (办件编号; online only).")
@click.option("--reason", default=None, help="Reason for use (用证事由; online only).")
@click.option(
    "--receipt",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Save the gateway's signed receipt (a JWT) here.",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Verify --file locally against the gateway's public documents; sends no request "
    "naming the licence, needs no department key.",
)
@click.option(
    "--documents",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With --offline: reuse the public documents saved here, or save them here.",
)
@_operator_option
@_url_option
def verify(  # noqa: PLR0917 - click passes every option positionally by name
    given: str | None,
    file: Path | None,
    department: str | None,
    item: str | None,
    case: str | None,
    reason: str | None,
    receipt: Path | None,
    offline: bool,
    documents: Path | None,
    operator: str | None,
    url: str | None,
) -> None:
    """Verify a licence by identifier, QR payload or sealed document (--file).

    Prints the verdict and every check. Exit code 0: valid; 1: any other verdict.
    """
    if (given is None) == (file is None):
        raise click.UsageError("give exactly one of LICENCE_ID, QR_PAYLOAD or --file")
    if offline:
        if file is None:
            raise click.UsageError("--offline verifies a sealed licence: give --file")
        if any(v is not None for v in (department, item, case, reason, receipt, operator)):
            raise click.UsageError("--offline takes only --file, --documents and --url")
        sys.exit(0 if _verify_offline(file, documents, url) is Verdict.VALID else 1)
    if documents is not None:
        raise click.UsageError("--documents goes with --offline")
    missing = [
        f"--{name}"
        for name, value in (("as", department), ("item", item), ("case", case), ("reason", reason))
        if value is None
    ]
    if missing:
        raise click.UsageError(f"online verification needs {', '.join(missing)}")
    assert department is not None
    assert item is not None
    assert case is not None
    assert reason is not None
    inputs: dict[str, Any] = {}
    if file is not None:
        inputs["licence"] = file.read_text(encoding="ascii", errors="replace").strip()
    elif given is not None and given.startswith(QR_PREFIX + ":"):
        inputs["qr"] = given
    else:
        inputs["licence_id"] = given
    with department_client(department, url) as client:
        answer = client.verify_licence(
            **inputs,
            item=item,
            case=case,
            reason=reason,
            operator=operator or getpass.getuser(),
        )
    if receipt is not None:
        receipt.write_text(answer.token + "\n", encoding="ascii")
    _echo_checks(answer.verdict, answer.checks, answer.licence_id)
    click.echo(f"audit index: {answer.audit_index}")
    if receipt is not None:
        click.echo(f"signed receipt saved to {receipt}")
    sys.exit(0 if answer.verdict is Verdict.VALID else 1)


# --- gateway seal -------------------------------------------------------------------------


@click.group()
def seal() -> None:
    """Register e-seals and list the registered ones."""


def _new_seal_key(keys_dir: Path, seal_id: str, alg: str) -> Path:
    """``keys/seals/<seal_id>.private.jwk.json``: created (``alg``, owner-only) if missing.

    An existing file is reused, never overwritten: it may be the only copy of a seal key.
    """
    if not seal_id or "/" in seal_id or seal_id.startswith("."):
        raise click.BadParameter("not usable as a file name", param_hint="--seal-id")
    path = keys_dir / "seals" / f"{seal_id}.private.jwk.json"
    if path.exists():
        return path
    # Owner-only, never over an existing file: the keystore's one writer of secrets.
    write_secret(
        path, (json.dumps(SigningKey.generate(alg).private_jwk(), indent=2) + "\n").encode()
    )
    return path


_DATE = click.DateTime(formats=["%Y-%m-%d"])


@seal.command()
@click.option("--as", "department", required=True, help="Issuing department id (signs).")
@click.option("--seal-id", required=True, help="The seal's id (letters, digits, _.:-).")
@click.option("--name", required=True, help="The seal's name, e.g. 某某局行政审批专用章.")
@click.option("--type", "seal_type", required=True, help="The seal's type, e.g. licence.")
@click.option("--valid-from", required=True, type=_DATE, help="First valid day (YYYY-MM-DD).")
@click.option("--valid-until", required=True, type=_DATE, help="Last valid day (YYYY-MM-DD).")
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The seal's private JWK [a new key in keys/seals/<seal id>.private.jwk.json].",
)
@click.option(
    "--alg",
    type=click.Choice(["ES256", "EdDSA", "SM2"]),
    default="ES256",
    show_default=True,
    help="The algorithm of a new seal key (SM2: 国密, docs/sm2.md); a --key file says its own.",
)
@_operator_option
@_url_option
def register(  # noqa: PLR0917 - click passes every option positionally by name
    department: str,
    seal_id: str,
    name: str,
    seal_type: str,
    valid_from: dt.datetime,
    valid_until: dt.datetime,
    key: Path | None,
    alg: str,
    operator: str | None,
    url: str | None,
) -> None:
    """Register a seal of the department, proving possession of its private key."""
    key_path = key or _new_seal_key(Path(settings_or_exit().keys_dir), seal_id, alg)
    try:
        seal_key = load_private_jwk(key_path)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--key") from None
    with department_client(department, url) as client:
        answer = client.register_seal(
            seal_id=seal_id,
            name=name,
            type=seal_type,
            seal_key=seal_key,
            valid_from=valid_from.date(),
            valid_until=valid_until.date(),
            operator=operator or getpass.getuser(),
        )
    click.echo(f"seal {answer.claims['seal_id']}: {answer.claims['status']}")
    click.echo(f"kid: {answer.claims['kid']}")
    click.echo(f"private key: {key_path}")
    click.echo(f"audit index: {answer.audit_index}")


@seal.command(name="list")
@_url_option
def list_seals(url: str | None) -> None:
    """List the registered seals: id, owner, status, validity and key id."""
    settings = settings_or_exit()
    gateway_url = base_url(settings, url)
    try:
        with http_client(gateway_url, timeout=10.0) as http:
            response = http.get("/v1/seals")
            response.raise_for_status()
            seals: list[dict[str, Any]] = response.json()
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot list the seals at {gateway_url}: {exc}") from None
    rows = [
        (
            s["seal_id"],
            s["owner"],
            s["status"],
            f"{s['valid_from']}..{s['valid_until']}",
            jwk_thumbprint(s["jwk"]),
        )
        for s in seals
    ]
    header = ("id", "owner", "status", "validity", "kid")
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
