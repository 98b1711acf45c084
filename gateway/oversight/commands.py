"""``gateway audit alerts``: the security officers' alerts, read straight from the database;
``gateway refusals``: a department's own refused requests, asked of a running gateway.

``alerts`` is meant for the ``gateway audit`` group (:mod:`gateway.audit.commands`). It needs
no running gateway: like ``gateway audit verify`` it opens the database the settings name, and
reads the grants (quotas) from the policy files in force. ``refusals`` is what a department's
integrator runs: a signed request with the department's key, the verified answer printed.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click

from gateway.cli.support import database, department_client, settings_or_exit

__all__ = ["alerts", "refusals"]


@click.command()
@click.option("--from", "since", default=None, help="Window start, RFC 3339 [24 h before --until].")
@click.option("--until", default=None, help="Window end, RFC 3339 [now].")
@click.option("--json", "as_json", is_flag=True, help="Print the answer of GET /v1/audit/alerts.")
@click.option(
    "--fail-on-alert", is_flag=True, help="Exit with status 3 when there is any alert (for cron)."
)
def alerts(since: str | None, until: str | None, as_json: bool, fail_on_alert: bool) -> None:
    """Anomalies in the audit log: departments reading far more subjects than usual or than
    their grant allows, reads outside office or working hours, lookups for closed cases,
    repeated token failures."""
    from gateway.core.policy import load_policy_set
    from gateway.errors import Error
    from gateway.oversight.service import alert_rules, alert_window, compute_alerts

    settings = settings_or_exit()
    try:
        start, end = alert_window(since, until, now=dt.datetime.now(dt.UTC))
        rules = alert_rules(settings.alerts)
        policy = load_policy_set(Path(settings.policies_dir))
    except Error as exc:
        raise click.ClickException(str(exc)) from None
    with database(settings) as engine:
        report = compute_alerts(
            engine,
            policy,
            rules,
            since=start,
            until=end,
            baseline_days=settings.alerts.baseline_days,
        )
    found = report["alerts"]
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        window = report["window"]
        click.echo(f"alerts from {window['from']} until {window['until']}: {len(found)}")
        for a in found:
            who = a["department"] or "(unattributed)"
            if a["department_name"]:
                who += f" {a['department_name']}"
            click.echo(f"[{a['kind']}] {who}  {a['window']['from']} .. {a['window']['until']}")
            click.echo(f"    {a['why']}")
    sys.exit(3 if fail_on_alert and found else 0)


@click.command()
@click.option("--as", "department", required=True, help="The department (signs with its key).")
@click.option("--operator", required=True, help="Who asks (an operator id of the department).")
@click.option(
    "--hours", type=click.IntRange(1, 168), default=None, help="How far back [24, at most 168]."
)
@click.option("--limit", type=click.IntRange(1, 100), default=None, help="At most [50].")
@click.option("--before", type=click.IntRange(min=1), default=None, help="A previous `next`.")
@click.option("--json", "as_json", is_flag=True, help="Print the verified answer's claims.")
@click.option("--url", default=None, help="Gateway base URL [http://HOST:PORT from settings].")
def refusals(  # noqa: PLR0917 - click passes every option positionally by name
    department: str,
    operator: str,
    hours: int | None,
    limit: int | None,
    before: int | None,
    as_json: bool,
    url: str | None,
) -> None:
    """DEPARTMENT's recently refused requests with their precise reasons (a 401 answer says
    nothing of why; the audit log does)."""
    import time

    since = None if hours is None else int(time.time()) - hours * 3600
    with department_client(department, url) as client:
        answer = client.refusals(operator=operator, since=since, limit=limit, before=before)
    claims = answer.claims
    if as_json:
        click.echo(json.dumps(claims, ensure_ascii=False, indent=2))
        return
    found = claims["refusals"]
    click.echo(f"{department}: {len(found)} refusals since {claims['since']} (epoch seconds)")
    for r in found:
        click.echo(f"[{r['audit_index']}] {r['at']}  {r['event']}  {r['reason_code']}")
        click.echo(f"    {r['reason'] or r['detail']}")
        click.echo(f"    request_sha256 {r['request_sha256']}")
    if claims["next"] is not None:
        click.echo(f"more: --before {claims['next']}")
