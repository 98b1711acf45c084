"""The ``gateway policy`` commands: check the policy files, explain a decision.

Registered on the main command by ``gateway.app.commands``. Neither command needs a running gateway
or a database: both read the policy files directly.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from gateway.core.policy import DISTRICT_TZ, POLICY_FILES, PolicySet, policy_set_from_texts
from gateway.core.policy_check import check_policy, explain_decision
from gateway.errors import ConfigurationError, InvalidInput, PolicySetInvalid

__all__ = ["policy"]

_DIR_HELP = "Policy directory [settings: GATEWAY_POLICIES_DIR, policies]."


def _fail(lines: list[str]) -> NoReturn:
    for line in lines:
        click.echo(line, err=True)
    sys.exit(2)


def _policy_dir(directory: Path | None) -> Path:
    if directory is not None:
        return directory
    # Only the policy directory is needed, but through the validated settings so that
    # GATEWAY_POLICIES_DIR and GATEWAY_CONFIG mean the same here as for `gateway serve`.
    from gateway.settings import load_settings

    try:
        return Path(load_settings().policies_dir)
    except ConfigurationError as exc:
        _fail(["The gateway's settings are not usable:", *(f"  - {p}" for p in exc.problems)])


def _read_texts(directory: Path) -> dict[str, str]:
    # Missing files are left out rather than refused: the check reports them as findings.
    return {
        name: (directory / name).read_text(encoding="utf-8")
        for name in POLICY_FILES
        if (directory / name).is_file()
    }


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def policy() -> None:
    """Check the sharing policy files and explain its decisions."""


@policy.command()
@click.option(
    "--dir", "directory", type=click.Path(path_type=Path, file_okay=False), help=_DIR_HELP
)
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Judge validity as of this district date [today].",
)
def check(directory: Path | None, today: dt.datetime | None) -> None:
    """Check the policy files: errors stop the set from loading, warnings do not.

    Prints one finding a line, `error|warning file:line message`, then a summary. Exits 1
    if there is any error.
    """
    directory = _policy_dir(directory)
    if not directory.is_dir():
        _fail([f"{directory}: not a directory"])
    day = today.date() if today is not None else dt.datetime.now(DISTRICT_TZ).date()
    report = check_policy(_read_texts(directory), today=day)
    for finding in report.findings:
        click.echo(str(finding))
    click.echo(f"{directory}: {report.summary()}")
    sys.exit(0 if report.ok else 1)


def _parse_at(_: click.Context, __: click.Parameter, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use an ISO 8601 date-time, e.g. 2026-11-27T10:00+08:00") from None
    # A time without zone is the district's, like the dates in the grants.
    return at if at.tzinfo is not None else at.replace(tzinfo=DISTRICT_TZ)


@policy.command()
@click.option("--consumer", required=True, help="Consumer department id.")
@click.option("--resource", required=True, help="Catalogued resource id.")
@click.option("--item", required=True, help="Service item code (事项编码).")
@click.option(
    "--fields",
    default=None,
    help="Comma-separated field names [none: may the consumer read any of them?].",
)
@click.option(
    "--at",
    "at",
    default=None,
    callback=_parse_at,
    help="When, ISO 8601 (district time if no zone) [now].",
)
@click.option(
    "--dir", "directory", type=click.Path(path_type=Path, file_okay=False), help=_DIR_HELP
)
def explain(  # noqa: PLR0917 - click passes every option by name
    consumer: str,
    resource: str,
    item: str,
    fields: str | None,
    at: dt.datetime | None,
    directory: Path | None,
) -> None:
    """Explain how the policy decides a request, and why: every grant tried, in order."""
    directory = _policy_dir(directory)
    try:
        policy_set = policy_set_from_texts(_read_texts(directory))
    except PolicySetInvalid as exc:
        _fail(
            [
                f"{directory}: the policy files do not load (see `gateway policy check`):",
                *(f"  - {p}" for p in exc.problems),
            ]
        )
    names = None if fields is None else [f.strip() for f in fields.split(",") if f.strip()]
    try:
        answer = explain_decision(
            policy_set,
            consumer=consumer,
            resource=resource,
            item=item,
            fields=names,
            now=at or dt.datetime.now(DISTRICT_TZ).replace(microsecond=0),
        )
    except InvalidInput as exc:
        _fail([f"--{exc.field}: {exc.reason}", *_known(policy_set, exc.field, resource)])
    for line in _render(answer):
        click.echo(line)


def _known(policy_set: PolicySet, option: str, resource: str) -> list[str]:
    """A line listing what the set does know, for an unknown name given to ``option``."""
    if option == "fields":
        known: list[str] = [f.name for f in policy_set.resources[resource].fields]
    else:
        known = list(
            {
                "consumer": policy_set.departments,
                "resource": policy_set.resources,
                "item": policy_set.items,
            }.get(option, ())
        )
    return [f"known: {', '.join(known)}"] if known else []


def _render(a: dict[str, Any]) -> list[str]:
    d, req, res, item = a["decision"], a["request"], a["resource"], a["item"]
    if d["allowed"]:
        head = f"ALLOWED by grant {d['grant']}: fields {', '.join(d['fields']) or '-'}"
        if d["masks"]:
            head += "; masked " + ", ".join(f"{k}={v}" for k, v in d["masks"].items())
        if d["max_subjects_per_day"] is not None:
            head += f"; at most {d['max_subjects_per_day']} subjects a day"
    else:
        head = f"REFUSED {d['reason_code']}: {d['detail']}"
    fields = "any granted" if req["fields"] is None else ", ".join(req["fields"]) or "-"
    lines = [
        head,
        "",
        f"request    {req['consumer']} reads {req['resource']} ({fields}) for item "
        f"{item['code']} {item['name']} at {a['at']}",
        f"resource   {res['id']} {res['name']}, provided by {res['provider']}",
        f"sharing    {res['sharing']}; legal basis: {res['legal_basis'] or '-'}",
        f"policy     {a['policy_version']}",
        "",
    ]
    if res["sharing"] == "not-shared":
        lines.append(f"{res['id']} is not-shared (不予共享): no grant can allow it")
        return lines
    if not a["candidates"]:
        lines.append(f"no grant names {req['consumer']} and {req['resource']}: default deny")
        return lines
    lines.append(f"grants for {req['consumer']} → {req['resource']}, in the order tried:")
    decided = False
    for n, c in enumerate(a["candidates"], 1):
        if c["allows"]:
            says = "allows" + ("" if decided else " ← decides")
            decided = True
        else:
            says = f"refuses {c['reason_code']}: {c['detail']}"
        lines.append(f"  {n}. {c['grant']}: {says}")
        lines.append(f"     fields {', '.join(c['fields'])}; items {', '.join(c['items'])}")
        conditions = _conditions(c)
        if conditions:
            lines.append(f"     {'; '.join(conditions)}")
    return lines


def _conditions(c: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if c["valid_from"] or c["valid_until"]:
        out.append(f"valid {c['valid_from'] or '…'} to {c['valid_until'] or '…'}")
    if c["approval"]:
        ap = c["approval"]
        out.append(f"approved by {ap['by']} on {ap['on']} ({ap['document']})")
    if c["office_hours"]:
        h = c["office_hours"]
        out.append(f"office hours {h['start']}-{h['end']} {','.join(h['days'])}")
    if c["max_subjects_per_day"] is not None:
        out.append(f"at most {c['max_subjects_per_day']} subjects a day")
    if c["masks"]:
        out.append("masks " + ", ".join(f"{k}={v}" for k, v in c["masks"].items()))
    return out


@policy.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Policy directory [GATEWAY_POLICIES_DIR, policies].",
)
def publish(directory: Path | None) -> None:
    """Validate the policy files and publish them to every gateway sharing this Redis.

    Gateways also publish a valid change of their own files by themselves; this is for
    deployments whose hosts do not share the files. Every gateway process applies the
    published set within 2 seconds; an invalid set is refused here and nothing changes.
    """
    import asyncio

    from gateway.cache.client import connect
    from gateway.core.policy import policy_set_from_texts, read_policy_texts
    from gateway.policy import RedisPolicyStore
    from gateway.settings import load_settings

    try:
        settings = load_settings()
    except ConfigurationError as exc:
        _fail(["The gateway's settings are not usable:", *(f"  - {p}" for p in exc.problems)])
    if not settings.redis_url:
        _fail(["publish needs GATEWAY_REDIS_URL: an embedded gateway watches its own files"])
    folder = directory or Path(settings.policies_dir)
    try:
        texts = read_policy_texts(folder)
        candidate = policy_set_from_texts(texts)
    except PolicySetInvalid as exc:
        _fail(["The policy set is invalid; nothing was published:", *exc.problems])

    async def run() -> None:
        client = connect(settings.redis_url)  # one server or a cluster, as a gateway connects
        try:
            store = RedisPolicyStore(client=client, prefix=settings.redis_key_prefix)
            await store.publish(candidate.version, texts)
        finally:
            await client.aclose()

    try:
        asyncio.run(run())
    except Exception as exc:  # the store is down: say so, change nothing
        _fail([f"could not publish: {exc}"])
    click.echo(f"published policy version {candidate.version}")
