"""The console's pages under ``/console``: log in and out, and the clerks' licence check.

Server-rendered HTML (Jinja2, autoescaped), no script at all, styles inline, so nothing comes
from another host. Sessions are :mod:`gateway.accounts` sessions in an HttpOnly, SameSite
cookie; every form posts back a CSRF token — the session's own once logged in, and before
that a random token also set in a short-lived cookie (double submit) for the login form. A
token that does not match answers a 403 page, changes nothing and is audited
(``console:csrf:refused``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

import jinja2
import msgspec
import segno
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie, FormMultiDict, UploadFile
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.response import Redirect
from markupsafe import Markup

from gateway.accounts import LoginRefused, Role, Session, session_cookie
from gateway.accounts.sessions import cookie_name
from gateway.console.officers_text import signed_in_words
from gateway.console.services import ConsoleServices
from gateway.console.text import (
    CHECKS,
    OUTCOMES,
    SEAL_TYPE_OTHER,
    SEAL_TYPES,
    STATUSES,
    TEXT,
    VERDICTS,
    check_detail,
    district_time,
    language,
)
from gateway.core.licences import HolderIdType, LicenceContent
from gateway.core.masks import parse_mask
from gateway.core.seals import Seal
from gateway.core.wire import text_problem
from gateway.errors import InvalidInput

__all__ = ["ROUTES", "console_error_pages", "receipt_qr_svg", "service_items"]

LANG_COOKIE = "yiwang-lang"
LOGIN_CSRF_COOKIE = "yiwang-login-csrf"
LICENCE_FILE_MAX_BYTES = 64 * 1024
_FIELD_MAX = 8192
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")
_ID_MASK = parse_mask("id-number")

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)

#: Sent with every console page: no framing, no caching, no script, nothing from elsewhere.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

AnyRequest = Request[Any, Any, Any]


def _now() -> float:
    return time.time()


def _lang(request: AnyRequest) -> str:
    return language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def _lang_cookies(request: AnyRequest, console: ConsoleServices) -> list[Cookie]:
    """Remember a language chosen with ``?lang=`` for the next pages."""
    chosen = request.query_params.get("lang")
    if chosen in TEXT:
        return [
            Cookie(
                key=LANG_COOKIE,
                value=str(chosen),
                path="/console",
                max_age=365 * 86400,
                httponly=True,
                samesite="lax",
                secure=console.accounts.sessions.policy.secure_cookie,
            )
        ]
    return []


def _page(
    request: AnyRequest,
    console: ConsoleServices,
    template: str,
    *,
    status: int = 200,
    session: Session | None = None,
    cookies: list[Cookie] | None = None,
    **context: Any,
) -> Response[str]:
    lang = _lang(request)
    signed_in = None
    if session is not None:
        department = console.policy.current.departments.get(session.department or "")
        signed_in = signed_in_words(
            display_name=session.display_name,
            role=str(session.role),
            department=None if department is None else department.name,
            lang=lang,
        )
    html = _TEMPLATES.get_template(template).render(
        t=TEXT[lang], session=session, signed_in=signed_in, **context
    )
    return Response(
        content=html,
        status_code=status,
        media_type=MediaType.HTML,
        headers=_HEADERS,
        cookies=[*_lang_cookies(request, console), *(cookies or [])],
    )


def _session_cookie(
    request: AnyRequest, console: ConsoleServices, session: Session | None
) -> Cookie:
    made = session_cookie(console.accounts.sessions.policy, session)
    return Cookie(
        key=made.key,
        value=made.value,
        max_age=made.max_age,
        path=made.path,
        httponly=made.httponly,
        samesite=cast(Literal["lax", "strict", "none"], made.samesite),
        secure=made.secure,
    )


def _login_csrf_cookie_name(request: AnyRequest, console: ConsoleServices) -> str:
    secure = console.accounts.sessions.policy.secure_cookie
    return ("__Host-" if secure else "") + LOGIN_CSRF_COOKIE


def _login_csrf_cookie(
    request: AnyRequest, console: ConsoleServices, value: str, max_age: int = 3600
) -> Cookie:
    return Cookie(
        key=_login_csrf_cookie_name(request, console),
        value=value,
        path="/",
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=console.accounts.sessions.policy.secure_cookie,
    )


async def _current_session(request: AnyRequest, console: ConsoleServices) -> Session | None:
    token = request.cookies.get(cookie_name(console.accounts.sessions.policy))
    return await console.accounts.session(token, _now_dt())


def _now_dt() -> dt.datetime:
    return dt.datetime.fromtimestamp(_now(), dt.UTC)


def _text(form: Mapping[str, Any], name: str) -> str:
    """A form field as text: trimmed, at most ``_FIELD_MAX`` characters; a field with control
    characters, lone surrogates or bidirectional overrides is refused (400, naming it) before
    it reaches a query, a log entry or a page."""
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    if problem := text_problem(value):
        raise InvalidInput(name, problem)
    return value.strip()[:_FIELD_MAX]


async def _csrf_refused(
    request: AnyRequest, console: ConsoleServices, session: Session | None, back: str
) -> Response[str]:
    """Audit the refused form, then the 403 page; nothing else happens."""
    await console.accounts.refuse_forged_form(
        session, method=request.method, path=request.url.path, now=_now_dt()
    )
    return _page(
        request,
        console,
        "error.html",
        status=403,
        session=session,
        message=TEXT[_lang(request)]["csrf_refused"],
        back=back,
    )


# --- logging in and out -------------------------------------------------------------------


#: Where each role starts: the page of its work.
HOME_OF_ROLE = {
    Role.CLERK: "/console/verify",
    Role.AUDITOR: "/console/audit",
    Role.ADMIN: "/console/admin/departments",
}


@get("/console", include_in_schema=False)
async def console_home(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """The page of the signed-in role's work, else the login page."""
    session = await _current_session(request, console)
    path = HOME_OF_ROLE[session.role] if session else "/console/login"
    return Redirect(path=path, status_code=303)


def _login_page(
    request: AnyRequest,
    console: ConsoleServices,
    *,
    error: str | None = None,
    username: str = "",
    status: int = 200,
) -> Response[str]:
    token = request.cookies.get(_login_csrf_cookie_name(request, console))
    if not token or len(token) > 128:
        token = secrets.token_urlsafe(32)
    return _page(
        request,
        console,
        "login.html",
        status=status,
        cookies=[_login_csrf_cookie(request, console, token)],
        login_csrf=token,
        error=error,
        username=username,
    )


@get("/console/login", include_in_schema=False)
async def login_form(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """The login form (or straight on, with a live session)."""
    session = await _current_session(request, console)
    if session is not None:
        return Redirect(
            path=HOME_OF_ROLE[session.role],
            status_code=303,
            cookies=_lang_cookies(request, console),
        )
    return _login_page(request, console)


@post("/console/login", include_in_schema=False, status_code=200)
async def login(request: AnyRequest, console: NamedDependency[ConsoleServices]) -> Response[Any]:
    """Check the form's token against its cookie, then the password; one message for every
    refusal (the cause is in the audit log only)."""
    form = await request.form()
    expected = request.cookies.get(_login_csrf_cookie_name(request, console)) or ""
    submitted = _text(form, "csrf_token")
    if not expected or not hmac.compare_digest(expected.encode(), submitted.encode()):
        return await _csrf_refused(request, console, None, "/console/login")
    username = _text(form, "username")
    password = form.get("password")
    try:
        session = await console.accounts.login(
            username, password if isinstance(password, str) else "", _now_dt()
        )
    except LoginRefused:
        message = TEXT[_lang(request)]["login_refused"]
        return _login_page(request, console, error=message, username=username[:64], status=401)
    return Redirect(
        path=HOME_OF_ROLE[session.role],
        status_code=303,
        cookies=[
            _session_cookie(request, console, session),
            _login_csrf_cookie(request, console, "", max_age=0),
        ],
    )


@post("/console/logout", include_in_schema=False, status_code=200)
async def logout(request: AnyRequest, console: NamedDependency[ConsoleServices]) -> Response[Any]:
    """End the session (its CSRF token required) and clear the cookie."""
    session = await _current_session(request, console)
    if session is None:
        return Redirect(path="/console/login", status_code=303)
    form = await request.form()
    if not console.accounts.csrf_ok(session, _text(form, "csrf_token")):
        return await _csrf_refused(request, console, session, "/console/verify")
    await console.accounts.logout(session.token, _now_dt())
    return Redirect(
        path="/console/login", status_code=303, cookies=[_session_cookie(request, console, None)]
    )


# --- clerks: verify a licence ---------------------------------------------------------------


_EMPTY_FORM = {
    "licence_id": "",
    "qr": "",
    "service_item": "",
    "case_number": "",
    "reason": "",
}
_PURPOSE_FIELDS = ("service_item", "case_number", "reason")
#: Above this many characters the printed QR code carries the receipt's digest, not the
#: receipt: a QR code of more is too dense to scan from paper (version 40 holds 2,953 bytes).
QR_RECEIPT_MAX = 1200


async def _clerk(
    request: AnyRequest, console: ConsoleServices
) -> tuple[Session, str] | Response[Any]:
    """The clerk's session and department, or the answer instead: to the login page, or a
    403 page for another role."""
    session = await _current_session(request, console)
    if session is None:
        return Redirect(path="/console/login", status_code=303)
    if session.role is not Role.CLERK or session.department is None:
        return _page(
            request,
            console,
            "error.html",
            status=403,
            session=session,
            message=TEXT[_lang(request)]["role_refused"],
            back="/console/login",
        )
    return session, session.department


async def _clerk_form(
    request: AnyRequest, console: ConsoleServices, back: str
) -> tuple[Session, str, FormMultiDict] | Response[Any]:
    """A clerk's posted form with its CSRF token checked: the session, the department and the
    form, or the answer instead (the login page, a 403 page for another role, or the refusal
    of a form whose token is not this session's, with a way ``back``)."""
    clerk = await _clerk(request, console)
    if isinstance(clerk, Response):
        return clerk
    session, department = clerk
    form = await request.form()
    if not console.accounts.csrf_ok(session, _text(form, "csrf_token")):
        return await _csrf_refused(request, console, session, back)
    return session, department, form


def service_items(console: ConsoleServices) -> list[dict[str, str]]:
    """The service items of the catalogue in force, by code, for a ``<select>``."""
    items = console.policy.current.items.values()
    return [{"code": i.code, "name": i.name} for i in sorted(items, key=lambda i: i.code)]


def _verify_page(
    request: AnyRequest,
    console: ConsoleServices,
    session: Session,
    form: Mapping[str, str],
    *,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response[str]:
    return _page(
        request,
        console,
        "verify.html",
        status=status,
        session=session,
        form=form,
        items=service_items(console),
        result=result,
        error=error,
    )


@get("/console/verify", include_in_schema=False)
async def verify_form(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """The clerk's verification form."""
    clerk = await _clerk(request, console)
    if isinstance(clerk, Response):
        return clerk
    session, _ = clerk
    return _verify_page(request, console, session, _EMPTY_FORM)


async def _licence_file(value: object) -> str | None:
    """The uploaded sealed licence as text; None if no file was chosen; InvalidInput if it
    is too large or not UTF-8 text."""
    if not isinstance(value, UploadFile) or not value.filename:
        return None
    data = await value.read(LICENCE_FILE_MAX_BYTES + 1)
    if not data:
        return None
    if len(data) > LICENCE_FILE_MAX_BYTES:
        raise InvalidInput("licence_file", "too large")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidInput("licence_file", "not a text file") from None


async def _names(console: ConsoleServices) -> tuple[dict[str, Seal], dict[str, str]]:
    """The registered seals by id and the departments' names by id."""
    seals = {seal.seal_id: seal for seal in await console.licensing.registry()}
    departments = {d.id: d.name for d in console.policy.current.departments.values()}
    return seals, departments


def _facts(
    content: LicenceContent, *, status: str | None, seal: Seal | None, lang: str
) -> dict[str, Any]:
    """What the clerk compares with the paper in front of them. A company's name and credit
    code are public register facts and shown in full; a person's ID number is masked (the
    clerk has the card in hand, the screen may be seen by others)."""
    t = TEXT[lang]
    person = content.holder_id_type is HolderIdType.RESIDENT_ID
    fields = [
        {
            "name": name,
            "value": (t["yes"] if value else t["no"]) if isinstance(value, bool) else str(value),
        }
        for name, value in content.type_fields.items()
    ]
    return {
        "licence_id": content.licence_id,
        "type_name": content.type_name,
        "holder_name": content.holder_name,
        "holder_kind": t["holder_" + str(content.holder_id_type)],
        "holder_id": _ID_MASK.apply(content.holder_id) if person else content.holder_id,
        "issuer_name": content.issuer_name,
        "issue_date": content.issue_date.isoformat(),
        "valid_from": content.valid_from.isoformat(),
        "valid_until": t["no_end"]
        if content.valid_until is None
        else content.valid_until.isoformat(),
        "status": None if status is None else STATUSES[lang].get(status),
        "seal": None
        if seal is None
        else {
            "name": seal.name,
            "type": SEAL_TYPES[lang].get(seal.type, SEAL_TYPE_OTHER[lang]),
        },
        "type_fields": fields,
    }


def _checks(
    checks: Any, lang: str, seals: Mapping[str, Seal], departments: Mapping[str, str]
) -> list[dict[str, str]]:
    """Each check (a :class:`~gateway.core.licences.Check` or its receipt form) in words."""
    seal_names = {seal_id: seal.name for seal_id, seal in seals.items()}
    rows = []
    for check in checks:
        name, outcome, detail = (
            (check["name"], check["outcome"], check.get("detail", ""))
            if isinstance(check, Mapping)
            else (check.name, str(check.outcome), check.detail)
        )
        rows.append(
            {
                "name": CHECKS[lang].get(name, CHECKS[lang]["content"] if lang == "zh" else name),
                "outcome": OUTCOMES[lang].get(str(outcome), ""),
                "detail": check_detail(
                    lang, str(name), str(detail), seals=seal_names, departments=departments
                ),
            }
        )
    return rows


def _seal_and_status(checks: Any, seals: Mapping[str, Seal]) -> tuple[Seal | None, str | None]:
    """The seal that sealed the licence (the ``seal-known`` check names it) and the stored
    status (the ``status`` check's detail), where those checks ran."""
    seal = status = None
    for check in checks:
        name, outcome, detail = (
            (check["name"], check["outcome"], check.get("detail", ""))
            if isinstance(check, Mapping)
            else (check.name, str(check.outcome), check.detail)
        )
        if name == "seal-known" and outcome == "passed":
            seal = seals.get(str(detail))
        if name == "status" and outcome in {"passed", "failed"}:
            status = str(detail)
    return seal, status


def _form_error(t: Mapping[str, str], exc: InvalidInput) -> str:
    field = t.get(f"field_{exc.field}", t["field_other"])
    return (
        f"{t['bad_input']}：{field}{t['input_reason']}"
        if t is TEXT["zh"]
        else (f"{t['bad_input']}: {field} {t['input_reason']}")
    )


@post("/console/verify", include_in_schema=False, status_code=200)
async def verify(request: AnyRequest, console: NamedDependency[ConsoleServices]) -> Response[Any]:
    """Verify what the clerk gave; the verdict, the licence's facts, the checks in words and
    the signed receipt (folded away, and printable on its own page)."""
    posted = await _clerk_form(request, console, "/console/verify")
    if isinstance(posted, Response):
        return posted
    session, department, form = posted
    lang = _lang(request)
    t = TEXT[lang]
    values = {name: _text(form, name) for name in _EMPTY_FORM}

    def again(error: str) -> Response[str]:
        return _verify_page(request, console, session, values, error=error, status=400)

    if not all(values[name] for name in _PURPOSE_FIELDS):
        return again(t["missing_purpose"])
    if values["service_item"] not in console.policy.current.items:
        return again(t["unknown_item"])
    try:
        sealed = await _licence_file(form.get("licence_file"))
    except InvalidInput:
        return again(t["bad_file"])
    given = [
        (kind, value)
        for kind, value in (
            ("licence_id", values["licence_id"]),
            ("qr", values["qr"]),
            ("licence", sealed or ""),
        )
        if value
    ]
    if len(given) != 1:
        return again(t["give_one"])
    kind, value = given[0]
    now = _now()
    try:
        verification, receipt, index = await console.licensing.verify_for_console(
            department=department,
            operator=session.username,
            purpose_item=values["service_item"],
            purpose_case=values["case_number"],
            reason=values["reason"],
            kind=kind,
            value=value,
            now=now,
        )
    except InvalidInput as exc:
        return again(_form_error(t, exc))
    seals, departments = await _names(console)
    seal, status = _seal_and_status(verification.checks, seals)
    content = verification.content
    verdict = str(verification.verdict)
    result = {
        "verdict": verdict,
        "verdict_words": VERDICTS[lang].get(verdict, ""),
        "licence_id": verification.licence_id,
        "facts": None if content is None else _facts(content, status=status, seal=seal, lang=lang),
        "checks": _checks(verification.checks, lang, seals, departments),
        "checked_at": district_time(dt.datetime.fromtimestamp(now, dt.UTC)),
        "receipt": receipt,
        "audit_index": index,
        "filename": "receipt-"
        + _SAFE_FILENAME.sub("_", verification.licence_id or f"audit-{index}")
        + ".jwt",
    }
    return _verify_page(request, console, session, values, result=result)


def receipt_qr_svg(receipt: str, audit_index: int) -> tuple[str, bool]:
    """The printed receipt's QR code as inline SVG, and whether it holds the whole receipt
    (else ``YWR1:<audit index>:<SHA-256 of the receipt, hex>``, which names it exactly)."""
    whole = len(receipt) <= QR_RECEIPT_MAX
    payload = (
        receipt
        if whole
        else f"YWR1:{audit_index}:{hashlib.sha256(receipt.encode('ascii')).hexdigest()}"
    )
    code = segno.make(payload, error="m", micro=False)
    svg = code.svg_inline(scale=3, border=2, title=None, svgclass="qr", lineclass=None)
    return str(svg), whole


@post("/console/verify/receipt", include_in_schema=False, status_code=200)
async def receipt_print(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """The print-ready receipt of one verification: the clerk's page posts the signed
    receipt back; only a receipt the gateway signed for the clerk's department is shown."""
    posted = await _clerk_form(request, console, "/console/verify")
    if isinstance(posted, Response):
        return posted
    session, department, form = posted
    lang = _lang(request)
    t = TEXT[lang]
    read = await console.licensing.console_receipt(
        _text(form, "receipt"), department=department, operator=session.username, now=_now()
    )
    audit = read[0].get("audit") if read else None
    if read is None or not isinstance(audit, dict) or not isinstance(audit.get("index"), int):
        return _page(
            request, console, "error.html", status=400, session=session,
            message=t["receipt_unreadable"], back="/console/verify",
        )  # fmt: skip
    claims, content = read
    seals, departments = await _names(console)
    checks = claims.get("checks")
    receipt_checks = [
        c
        for c in (checks if isinstance(checks, list) else [])
        if isinstance(c, dict) and "name" in c
    ]
    seal, status = _seal_and_status(receipt_checks, seals)
    verdict = str(claims.get("verdict"))
    qr, whole = receipt_qr_svg(_text(form, "receipt"), audit["index"])
    try:
        checked = district_time(dt.datetime.fromisoformat(str(claims.get("checked_at"))))
    except ValueError:
        checked = ""
    given_purpose = claims.get("purpose")
    purpose: dict[str, Any] = given_purpose if isinstance(given_purpose, dict) else {}
    item = console.policy.current.items.get(str(purpose.get("item")))
    return _page(
        request,
        console,
        "receipt.html",
        session=session,
        receipt={
            "verdict": verdict,
            "verdict_words": VERDICTS[lang].get(verdict, ""),
            "licence_id": claims.get("licence_id"),
            "facts": None
            if content is None
            else _facts(content, status=status, seal=seal, lang=lang),
            "checks": _checks(receipt_checks, lang, seals, departments),
            "checked_at": checked,
            "audit_index": audit["index"],
            "office": departments.get(department, department),
            # who verified: the receipt's operator (the one printing may be a colleague)
            "clerk": session.display_name
            if claims.get("operator") == session.username
            else str(claims.get("operator", "")),
            "item": None if item is None else {"code": item.code, "name": item.name},
            "case": str(purpose.get("case", "")),
            "reason": str(purpose.get("reason", "")),
            "qr": Markup(qr),  # noqa: S704 - segno's SVG: path data only, no input text
            "qr_whole": whole,
        },
    )


# --- the console's own 404 and 500 pages ----------------------------------------------------


def _is_console(request: AnyRequest) -> bool:
    path = request.url.path
    return path == "/console" or path.startswith("/console/")


def _error_page(
    request: AnyRequest, status: int, heading: str, message: str, note: str | None = None
) -> Response[str]:
    """A console page for a failure, without a session (it may be the session that failed)."""
    t = TEXT[_lang(request)]
    html = _TEMPLATES.get_template("error.html").render(
        t=t, session=None, heading=t[heading], message=t[message], note=note,
        back="/console", back_words=t["to_console"],
    )  # fmt: skip
    return Response(content=html, status_code=status, media_type=MediaType.HTML, headers=_HEADERS)


def _audit_index(problem: Response[Any]) -> int | None:
    """The audit entry a 500 problem names (``audit_index``), if it names one."""
    try:
        body = msgspec.json.decode(problem.content) if isinstance(problem.content, bytes) else {}
    except msgspec.DecodeError:
        return None
    index = body.get("audit_index") if isinstance(body, dict) else None
    return index if isinstance(index, int) else None


def _console_failure(request: AnyRequest, problem: Response[Any]) -> Response[str]:
    status = problem.status_code or 500
    if status == 404:
        page = _error_page(request, 404, "not_found_heading", "not_found")
    elif status == 503:
        page = _error_page(request, 503, "server_error_heading", "unavailable")
    elif status >= 500:
        index = _audit_index(problem)
        note = None if index is None else f"{TEXT[_lang(request)]['server_error_index']}{index}"
        page = _error_page(request, status, "server_error_heading", "server_error", note)
    elif status in {401, 403}:
        page = _error_page(request, status, "forbidden_heading", "forbidden")
    else:
        page = _error_page(request, status, "bad_request_heading", "bad_request")
    for name, value in problem.headers.items():
        if name.lower() == "retry-after":
            page.headers["Retry-After"] = value
    return page


def console_error_pages(handlers: Mapping[type[Exception], Any]) -> dict[type[Exception], Any]:
    """The app's exception handlers, each answering a console page for a request under
    ``/console`` (a 404 page, a 500 page naming the failure's audit entry, ...) and handing
    every other request's answer on unchanged (RFC 9457 problems for the API). The wrapped
    handler still runs first, so what it logs and decides stays as it is."""

    def wrap(handler: Any) -> Any:
        def answer(request: AnyRequest, exc: Exception) -> Response[Any]:
            problem = cast(Response[Any], handler(request, exc))
            return _console_failure(request, problem) if _is_console(request) else problem

        return answer

    return {kind: wrap(handler) for kind, handler in handlers.items()}


ROUTES = [console_home, login_form, login, logout, verify_form, verify, receipt_print]
