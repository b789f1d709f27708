"""Pages for people, served by the same process: a VLO's inbox, an area's caseload, a return.

Server-rendered HTML with a little inline CSS, readable on a phone and without JavaScript.
Signing in is pasting a token into a form; the token then travels in an HttpOnly,
SameSite=Strict cookie (no script can read it, no other site can make the browser send it),
and a form POST whose ``Origin`` is another site's is refused as well. Every value shown is
escaped. The pages call the same services as the JSON API, so they are allowed, refused and
audited exactly as it is.
"""

# No `from __future__ import annotations`: FastAPI reads these routes' annotations at
# run time, and they name a dependency alias local to the router's factory.
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Annotated, Any, Final, Literal
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from infra.http.access import AREA_PATTERN, Principal, Role
from infra.http.api import (
    PRINTABLE,
    AreaCode,
    Layout,
    Year,
    client_address,
    data_quality_installed,
)
from infra.http.services import Forbidden, Services, Unauthenticated, parse_day

COOKIE: Final = "mappa_session"
COOKIE_MAX_AGE: Final = 8 * 3600  # a working day


class LoginRequired(Exception):
    """No valid session: send the browser to the login page."""


def _page_caller(services: Services) -> Callable[..., Principal]:
    def caller(request: Request) -> Principal:
        session = request.cookies.get(COOKIE)
        header = request.headers.get("authorization", "")
        try:
            if not session and header.lower().startswith("bearer "):
                found = services.authenticate(header[7:].strip(), client_address(request))
            else:
                found = services.session_holder(session, client_address(request))
        except Unauthenticated:
            raise LoginRequired from None
        request.state.token_id = found.token_id
        return found

    return caller


def _same_origin(request: Request) -> None:
    """Refuse a form POST sent from another site's page (defence in depth beside SameSite)."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden


def home_of(principal: Principal) -> str:
    if principal.role is Role.VLO:
        return "/pages/inbox"
    if principal.role is Role.UNIT:
        return f"/pages/areas/{quote(principal.scope)}/caseload"
    if principal.role is Role.ANALYST:
        return "/pages/returns"
    if principal.role is Role.ADMIN:
        return "/pages/audit"
    return "/pages/home"


def pages_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["pages"])
    Caller = Annotated[Principal, Depends(_page_caller(services))]

    @router.get("/", summary="Where to start: your pages, or the login page")
    def root(request: Request) -> Response:
        return RedirectResponse("/login", status_code=303)

    @router.get("/login", response_class=HTMLResponse, summary="The login form")
    def login_form() -> HTMLResponse:
        return HTMLResponse(_login_page())

    @router.post("/login", summary="Sign in with a token (sets an HttpOnly cookie)")
    def login(
        request: Request, token: Annotated[str, Form(max_length=200, pattern=PRINTABLE)]
    ) -> Response:
        _same_origin(request)
        try:
            principal = services.authenticate(token.strip(), client_address(request))
        except Unauthenticated:
            return HTMLResponse(
                _login_page("That token is not valid, or it has been revoked."), status_code=401
            )
        services.record(principal, "login", "pages")
        response = RedirectResponse(home_of(principal), status_code=303)
        session = services.tokens.start_session(principal, timedelta(seconds=COOKIE_MAX_AGE))
        response.set_cookie(
            COOKIE,
            session,
            max_age=COOKIE_MAX_AGE,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @router.post("/logout", summary="Sign out (ends the session and clears the cookie)")
    def logout(request: Request) -> Response:
        _same_origin(request)
        session = request.cookies.get(COOKIE)
        if session:
            holder = services.tokens.session_holder(session)
            # Ended on the server: a copy of the cookie kept elsewhere opens nothing after.
            services.tokens.end_session(session)
            if holder is not None:
                services.record(holder, "logout", "pages")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @router.get("/pages", summary="Your first page, by your role")
    def pages_home(caller: Caller) -> Response:
        return RedirectResponse(home_of(caller), status_code=303)

    @router.get("/pages/home", response_class=HTMLResponse, summary="A sender's page")
    def sender_home(caller: Caller) -> HTMLResponse:
        body = (
            "<h1>Sending events</h1><p>Your token sends interchange documents to "
            "<code>POST /events</code> for <strong>"
            f"{escape(caller.scope)}</strong>. There is nothing to read here.</p>"
        )
        return HTMLResponse(_page("Sending events", body, caller))

    @router.get("/pages/inbox", response_class=HTMLResponse, summary="A VLO's open alerts")
    def inbox(
        caller: Caller,
        done: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9a-fA-F-]+$")] = None,
    ) -> HTMLResponse:
        alerts = services.alerts(caller, caller.scope, include_done=False)
        return HTMLResponse(_page("Inbox", _inbox(caller.scope, alerts, done), caller))

    @router.post("/pages/alerts/{alert_id}/done", summary="Mark an alert done, from the inbox")
    def inbox_done(
        request: Request,
        alert_id: Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{1,64}$")],
        caller: Caller,
    ) -> Response:
        _same_origin(request)
        services.mark_done(caller, alert_id)
        return RedirectResponse(f"/pages/inbox?{urlencode({'done': alert_id})}", status_code=303)

    @router.get(
        "/pages/areas/{area}/caseload",
        response_class=HTMLResponse,
        summary="An area's caseload and its lists",
    )
    def caseload_page(
        area: AreaCode,
        caller: Caller,
        on: Annotated[str | None, Query(max_length=10)] = None,
    ) -> HTMLResponse:
        day = parse_day(on) if on else datetime.now(UTC).date()
        summary = services.caseload(caller, area, day, 90)
        queries = services.queries(caller, area, False) if data_quality_installed() else None
        name = services.tracker.areas.get(area)
        title = f"Caseload of {name.name if name else area}"
        return HTMLResponse(_page(title, _caseload(title, summary, queries), caller))

    @router.get("/pages/returns", response_class=HTMLResponse, summary="Choose a return")
    def returns_form(
        caller: Caller,
        area: Annotated[str | None, Query(pattern=f"^{AREA_PATTERN}$")] = None,
        year: Annotated[int | None, Query(ge=1900, le=2999)] = None,
        # The form's "by year" choice sends an empty layout.
        layout: Annotated[Literal["", "2004", "2008"] | None, Query()] = None,
    ) -> Response:
        services.require(caller, caller.role is Role.ANALYST, "return.read", "returns")
        if area and year:
            query = f"?{urlencode({'layout': layout})}" if layout else ""
            return RedirectResponse(
                f"/pages/areas/{quote(area)}/returns/{year}{query}", status_code=303
            )
        codes = [a.code for a in services.tracker.areas.areas if caller.is_analyst_of(a.code)]
        return HTMLResponse(_page("Statistical returns", _returns_form(codes), caller))

    @router.get(
        "/pages/areas/{area}/returns/{year}",
        response_class=HTMLResponse,
        summary="A return with its two charts",
    )
    def return_page(area: AreaCode, year: Year, caller: Caller, layout: Layout = None) -> Response:
        from projections.statistical_return.formats import format_html

        result, name = services.statistical_return(caller, area, year, layout, None)
        html = format_html(result, name)
        # The return's own page, with the site's bar above it.
        html = html.replace("</head>", f"<style>{_BAR_CSS}</style></head>", 1)
        html = html.replace("<body>", f"<body>{_bar(caller)}", 1)
        return HTMLResponse(html)

    @router.get("/pages/audit", response_class=HTMLResponse, summary="The audit trail (admin)")
    def audit_page(caller: Caller) -> HTMLResponse:
        services.require_admin(caller, "audit.read", "audit")
        entries = services.audit.latest(200)
        services.record(caller, "audit.read", "audit", {"latest": 200})
        return HTMLResponse(_page("Audit trail", _audit(entries), caller))

    return router


# --- rendering ------------------------------------------------------------------------

_CSS: Final = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;margin:0;"
    "color:#1b1b1b;background:#fff;line-height:1.45}"
    "main{max-width:52rem;margin:0 auto;padding:1rem}"
    "h1{font-size:1.5rem;margin:.5rem 0}h2{font-size:1.15rem;margin:1.5rem 0 .4rem}"
    ".meta{color:#555;font-size:.9rem}"
    "table{border-collapse:collapse;margin:.3rem 0 1rem;min-width:16rem}"
    "th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}thead th{background:#eef3f8}"
    ".scroll{overflow-x:auto}"
    "ol.alerts{list-style:none;padding:0;margin:0}"
    ".alert{border:1px solid #ccc;border-left:.4rem solid #D55E00;border-radius:.3rem;"
    "padding:.6rem .8rem;margin:0 0 1rem}"
    ".alert h2{margin:0 0 .2rem}.tell{white-space:pre-line;margin:.4rem 0}"
    ".notice{background:#e8f5e9;border:1px solid #009E73;padding:.5rem .8rem;border-radius:.3rem}"
    ".error{background:#fdecea;border:1px solid #D55E00;padding:.5rem .8rem;border-radius:.3rem}"
    "button,input,select,textarea{font:inherit;padding:.45rem .7rem}"
    "button{background:#0072B2;color:#fff;border:0;border-radius:.3rem;cursor:pointer}"
    "label{display:block;margin:.6rem 0 .2rem;font-weight:600}"
    "textarea,input[type=text],input[type=password]{width:100%;box-sizing:border-box}"
    "@media (max-width:30rem){main{padding:.5rem}th,td{padding:.25rem .35rem}}"
)
_BAR_CSS: Final = (
    ".bar{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;"
    "justify-content:space-between;background:#0b3d62;color:#fff;padding:.5rem 1rem;"
    "font-family:system-ui,Arial,sans-serif}"
    ".bar a{color:#fff}.bar form{margin:0}"
    ".bar button{background:#fff;color:#0b3d62;border:0;border-radius:.3rem;"
    "padding:.3rem .7rem;font:inherit;cursor:pointer}"
)


def _bar(principal: Principal | None) -> str:
    if principal is None:
        return '<div class="bar"><strong>MAPPA tracker</strong></div>'
    who = f"{principal.name} ({principal.role.value} {principal.scope})"
    return (
        '<div class="bar"><a href="/pages"><strong>MAPPA tracker</strong></a>'
        f"<span>{escape(who)}</span>"
        '<form method="post" action="/logout"><button type="submit">Sign out</button></form>'
        "</div>"
    )


def _page(title: str, body: str, principal: Principal | None) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en-GB"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · MAPPA tracker</title>"
        f"<style>{_CSS}{_BAR_CSS}</style></head><body>{_bar(principal)}"
        f"<main>{body}</main></body></html>\n"
    )


def _login_page(error: str | None = None) -> str:
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (
        "<h1>Sign in</h1>"
        f"{problem}"
        '<form method="post" action="/login">'
        '<label for="token">Your access token</label>'
        '<input type="password" id="token" name="token" required autocomplete="off" '
        'spellcheck="false" placeholder="mappa_…">'
        '<p class="meta">Paste the token you were given. It is kept in a cookie that no '
        "script can read, for a working day.</p>"
        '<button type="submit">Sign in</button></form>'
    )
    return _page("Sign in", body, None)


def error_page(status: int, title: str, text: str) -> HTMLResponse:
    body = f"<h1>{escape(title)}</h1><p>{escape(text)}</p><p><a href='/pages'>Your pages</a></p>"
    return HTMLResponse(_page(title, body, None), status_code=status)


def _when(text: str | None) -> str:
    if not text:
        return "-"
    try:
        return datetime.fromisoformat(text).strftime("%d %b %Y %H:%M")
    except ValueError:
        return text


def _inbox(vlo: str, alerts: list[Any], done: str | None) -> str:
    parts = [f"<h1>Inbox of {escape(vlo)}</h1>"]
    if done:
        parts.append(f'<p class="notice" role="status">Alert {escape(done)} marked done.</p>')
    count = len(alerts)
    parts.append(
        f'<p class="meta" id="count">{count} open alert{"" if count == 1 else "s"}, '
        "oldest first.</p>"
    )
    if not alerts:
        parts.append("<p>Nothing to do.</p>")
        return "".join(parts)
    parts.append('<ol class="alerts">')
    for raised in alerts:
        alert = raised.alert
        late = (
            f"; reached us {alert.late_by_seconds // 86400} day(s) late"
            if alert.late_by_seconds >= 86400
            else ""
        )
        parts.append(
            f'<li class="alert" id="alert-{escape(alert.alert_id)}">'
            f"<h2>{escape(alert.kind.replace('-', ' ').capitalize())}: "
            f"{escape(alert.offender_ref)}</h2>"
            f'<p class="meta">Happened {escape(_when(alert.occurred_at))}; raised '
            f"{escape(_when(raised.raised_at))}{escape(late)}</p>"
            '<p class="tell"><strong>Tell the victim:</strong> '
            f"{escape(alert.message)}</p>"
            f'<form method="post" action="/pages/alerts/{quote(alert.alert_id)}/done">'
            f'<button type="submit" aria-label="Mark alert {escape(alert.alert_id)} done">'
            "Mark done</button></form></li>"
        )
    parts.append("</ol>")
    return "".join(parts)


# The caseload's other lists, where the caseload has them: shown as they come.
_LISTS: Final = (
    ("release_date_passed", "Still in custody after the expected release date"),
    ("recalled", "Recalled recently"),
    ("orders", "Civil orders in force"),
    ("levels_2_and_3", "Managed at levels 2 and 3"),
)


def _caseload(title: str, summary: dict[str, Any], queries: list[Any] | None) -> str:
    parts = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">On {escape(summary["on"])}: <strong>{summary["managed"]}</strong> '
        "offenders managed under MAPPA.</p>",
        "<h2>By basic command unit</h2>",
        '<div class="scroll"><table><thead><tr><th>BCU</th><th class=n>Cat 1</th>'
        "<th class=n>Cat 2</th><th class=n>Cat 3</th><th class=n>Level 1</th>"
        "<th class=n>Level 2</th><th class=n>Level 3</th><th class=n>In custody</th>"
        "<th class=n>In community</th><th class=n>On licence</th></tr></thead><tbody>",
    ]
    for bcu, counts in summary["by_bcu"].items():
        c, lv = counts["category"], counts["level"]
        cells = (
            c["cat1"], c["cat2"], c["cat3"], lv["level1"], lv["level2"], lv["level3"],
            counts["custody"]["in_custody"], counts["custody"]["in_community"],
            counts["licence"]["on_licence"],
        )  # fmt: skip
        parts.append(
            f"<tr><th>{escape(bcu)}</th>"
            + "".join(f"<td class=n>{n}</td>" for n in cells)
            + "</tr>"
        )
    parts.append("</tbody></table></div>")
    due = summary["due_for_release"]
    parts.append(f"<h2>Due for release in the next 90 days ({len(due)})</h2>")
    if not due:
        parts.append("<p>No one.</p>")
    else:
        parts.append(
            '<div class="scroll"><table id="due"><thead><tr><th>Expected</th><th>MAPPA ref</th>'
            "<th class=n>Level</th><th class=n>Category</th><th>BCU</th><th>Release</th>"
            "</tr></thead><tbody>"
        )
        for d in due:
            parts.append(
                f"<tr><td>{escape(d['expected_release_date'])}</td>"
                f"<td>{escape(d['mappa_ref'])}</td><td class=n>{d['level'] or '-'}</td>"
                f"<td class=n>{d['category'] or '-'}</td><td>{escape(d['bcu'] or 'unknown')}</td>"
                f"<td>{escape(d['release_type'] or '-')}</td></tr>"
            )
        parts.append("</tbody></table></div>")
    for key, heading in _LISTS:
        if key in summary:
            parts.append(_listing(key, heading, summary[key]))
    if queries is not None:
        parts.append(_queries(queries))
    return "".join(parts)


def _listing(key: str, heading: str, rows: list[dict[str, Any]]) -> str:
    parts = [f"<h2>{escape(heading)} ({len(rows)})</h2>"]
    if not rows:
        return "".join([*parts, "<p>None.</p>"])
    columns = list(rows[0])
    header = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in columns)
    parts.append(f'<div class="scroll"><table id="{escape(key)}"><thead><tr>{header}</tr></thead>')
    for row in rows:
        cells = "".join(f"<td>{escape(_cell(row.get(c)))}</td>" for c in columns)
        parts.append(f"<tr>{cells}</tr>")
    parts.append("</table></div>")
    return "".join(parts)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


def _queries(queries: list[Any]) -> str:
    parts = [f"<h2>Open data-quality queries ({len(queries)})</h2>"]
    if not queries:
        return "".join([*parts, "<p>None.</p>"])
    parts.append(
        '<div class="scroll"><table id="queries"><thead><tr><th>Raised</th><th>MAPPA ref</th>'
        "<th>Kind</th><th>Reason</th></tr></thead><tbody>"
    )
    for q in queries:
        parts.append(
            f"<tr><td>{escape(_when(q.raised_at))}</td><td>{escape(q.mappa_ref)}</td>"
            f"<td>{escape(q.kind)}</td><td>{escape(q.reason)}</td></tr>"
        )
    parts.append("</tbody></table></div>")
    return "".join(parts)


def _returns_form(codes: list[str]) -> str:
    options = "".join(f'<option value="{escape(c)}">{escape(c)}</option>' for c in codes)
    area_input = (
        f'<select id="area" name="area">{options}</select>'
        if options
        else '<input type="text" id="area" name="area" required>'
    )
    return (
        "<h1>Statistical returns</h1>"
        '<form method="get" action="/pages/returns">'
        f'<label for="area">Area</label>{area_input}'
        '<label for="year">Reporting year (2004 is 2004/05)</label>'
        '<input type="number" id="year" name="year" min="1900" max="2999" value="2004" required>'
        '<label for="layout">Layout</label><select id="layout" name="layout">'
        '<option value="">by year</option><option value="2004">2004</option>'
        '<option value="2008">2008</option></select>'
        '<p><button type="submit">Open the return</button></p></form>'
    )


def _audit(entries: list[Any]) -> str:
    rows = "".join(
        f"<tr><td class=n>{e.sequence}</td><td>{escape(_when(e.at))}</td>"
        f"<td>{escape(e.actor_name)} ({escape(e.actor)})</td><td>{escape(e.role)}</td>"
        f"<td>{escape(e.action)}</td><td>{escape(e.target)}</td><td>{escape(e.outcome)}</td></tr>"
        for e in reversed(entries)
    )
    return (
        "<h1>Audit trail</h1><p class=meta>The latest 200 entries, newest first.</p>"
        '<div class="scroll"><table><thead><tr><th class=n>#</th><th>When</th><th>Who</th>'
        "<th>Role</th><th>What</th><th>Of</th><th>Outcome</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )
