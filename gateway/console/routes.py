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
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

import jinja2
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie, UploadFile
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.response import Redirect

from gateway.accounts import LoginRefused, Role, Session, session_cookie
from gateway.accounts.sessions import cookie_name
from gateway.console.services import ConsoleServices
from gateway.console.text import CHECKS, OUTCOMES, TEXT, VERDICTS, language
from gateway.core.masks import parse_mask
from gateway.core.wire import text_problem
from gateway.errors import InvalidInput

__all__ = ["ROUTES"]

LANG_COOKIE = "yiwang-lang"
LOGIN_CSRF_COOKIE = "yiwang-login-csrf"
LICENCE_FILE_MAX_BYTES = 64 * 1024
_FIELD_MAX = 8192
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")
_NAME_MASK = parse_mask("name")

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
    html = _TEMPLATES.get_template(template).render(t=TEXT[lang], session=session, **context)
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


@get("/console/verify", include_in_schema=False)
async def verify_form(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """The clerk's verification form."""
    clerk = await _clerk(request, console)
    if isinstance(clerk, Response):
        return clerk
    session, _ = clerk
    return _page(
        request, console, "verify.html", session=session, form=_EMPTY_FORM, result=None, error=None
    )


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


@post("/console/verify", include_in_schema=False, status_code=200)
async def verify(request: AnyRequest, console: NamedDependency[ConsoleServices]) -> Response[Any]:
    """Verify what the clerk gave; the verdict and checks in words and the signed receipt."""
    clerk = await _clerk(request, console)
    if isinstance(clerk, Response):
        return clerk
    session, department = clerk
    form = await request.form()
    if not console.accounts.csrf_ok(session, _text(form, "csrf_token")):
        return await _csrf_refused(request, console, session, "/console/verify")
    lang = _lang(request)
    t = TEXT[lang]
    values = {name: _text(form, name) for name in _EMPTY_FORM}

    def again(error: str) -> Response[str]:
        return _page(
            request, console, "verify.html", status=400, session=session, form=values,
            result=None, error=error,
        )  # fmt: skip

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
    try:
        verification, receipt, index = await console.licensing.verify_for_console(
            department=department,
            operator=session.username,
            purpose_item=values["service_item"],
            purpose_case=values["case_number"],
            reason=values["reason"],
            kind=kind,
            value=value,
            now=_now(),
        )
    except InvalidInput as exc:
        return again(f"{t['bad_input']}: {exc}")
    content = verification.content
    verdict = str(verification.verdict)
    result = {
        "verdict": verdict,
        "verdict_words": VERDICTS[lang].get(verdict, verdict),
        "licence_id": verification.licence_id,
        "licence": None
        if content is None
        else {
            "type_name": content.type_name,
            "issuer_name": content.issuer_name,
            "holder_name": _NAME_MASK.apply(content.holder_name),
        },
        "checks": [
            {
                "name": CHECKS[lang].get(check.name, check.name),
                "outcome": OUTCOMES[lang].get(str(check.outcome), str(check.outcome)),
                "detail": check.detail,
            }
            for check in verification.checks
        ],
        "receipt": receipt,
        "audit_index": index,
        "filename": "receipt-"
        + _SAFE_FILENAME.sub("_", verification.licence_id or f"audit-{index}")
        + ".jwt",
    }
    return _page(
        request, console, "verify.html", session=session, form=values, result=result, error=None
    )


ROUTES = [console_home, login_form, login, logout, verify_form, verify]
