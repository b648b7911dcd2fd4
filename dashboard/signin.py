"""Sign-in, sign-out and idle expiry on streamlit-authenticator 0.4.2, with accounts in the database.

What this module guarantees (each point is a trap verified on this stack, see docs/dashboard.md):
- streamlit-authenticator's ``AuthenticationController`` (the password check and the session
  keys) is built from a deep copy of a plain dict of the accounts that may sign in now (active and
  not locked), only when a run needs it: a signed-out run (the cookie sign-in), the "Sign in" and
  "Sign out" callbacks, and a sign-out that a run decides on. A signed-in run that signs nobody
  in or out does not build it (the session is checked against the database all the same). Its
  ``Authenticate`` wrapper is not used: that one draws a cookie component on every run whose value
  reports rerun the script on their own (below).
- Locked or disabled accounts never sign in, even with the right password: the database is asked
  before the password is checked and again after it matched.
- Failed attempts are counted in the database (``core.staff.sign_in``, ``core.lockout``) by
  username and by the connection's address, so the lockout is shared by every session and replica.
- This module never opens a database session: each step is one call into ``core.staff`` or
  ``core.staff_sessions`` that owns its transaction.
- The sign-in cookie expires after ``session_idle_minutes`` without activity (it is re-issued
  while the person keeps working), and an open session idle that long is signed out.
- The cookie is written and deleted by one line of JavaScript in ``st.html`` (in the page, no
  iframe, nothing sent back), never by a component that reports a value: such a report is a rerun
  the person did not ask for, and with ``runner.fastReruns`` a rerun request stops the run in
  progress and starts a new one from the browser's widget state, in which a form's submit (or a
  button's click) is already reset. A form submitted just before such a report was silently
  dropped (and emptied, with ``clear_on_submit``). docs/dashboard.md has the evidence.
- After a sign-out the cookie delete keeps rendering on every signed-out run until the next
  sign-in, so a quick click cannot leave the cookie behind.
- Sessions end on the server: every sign-in opens a row in ``staff_sessions`` (``core.staff_sessions``)
  and the cookie carries its random token. A cookie signs in, and an open session keeps running,
  only while that row is live; sign-out and idle expiry revoke it, and disabling an account,
  changing its roles or resetting its password revoke all of the person's sessions. A copy of the
  cookie taken before any of these signs nobody in afterwards, on any replica.
- The cookie is as tight as a cookie written by JavaScript can be: SameSite=Strict, path /, the
  idle expiry, and Secure whenever the browser reached the app over HTTPS. It cannot be HttpOnly
  (the browser-side component writes it; docs/security.md says what that leaves open).
- Sign-ins, failures, lockouts, sign-outs, idle expiries and refused cookies go to the audit log.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import jwt
import streamlit as st
from streamlit_authenticator.controllers import AuthenticationController
from streamlit_authenticator.utilities import LoginError

from core import lockout, staff, staff_sessions
from core.settings import Settings, SettingsError
from core.timeutil import utc_now
from dashboard import reads
from dashboard.auth import StaffContext
from dashboard.db import engine, settings
from dashboard.text import md

log = logging.getLogger(__name__)

_LAST_SEEN = "_md_last_seen"
_COOKIE = "_md_cookie"  # (token, expiry in epoch seconds) this session wrote into the browser
_COOKIE_ISSUED = "_md_cookie_issued"  # epoch seconds the current token was issued
_DELETE_PENDING = "_md_cookie_delete_pending"  # a fresh mark per sign-out: the browser drops the cookie
_NOTICE = "_md_signin_notice"
_CHECKED = "_md_account_checked"
_SESSION = "_md_session"  # the token of this sign-in's row in staff_sessions
_TOUCHED = "_md_session_touched"  # epoch seconds the server-side expiry was last slid
_REFUSED = "_md_cookie_refused"  # the last refused cookie, so a refusal is audited once


def clear_account_cache() -> None:
    """Call after changing staff accounts so sign-in sees the change at once in this process."""
    reads.clear_signable_accounts()


_run = threading.local()  # the settings read once by run_authentication, for the rest of it


def _settings() -> Settings:
    """The deployment settings: read once per run_authentication (it needs them a dozen times),
    read afresh everywhere else, so a changed secrets file still applies on the next run."""
    return getattr(_run, "settings", None) or settings()


def _idle_seconds() -> int:
    return _settings().session_idle_minutes * 60


def _cookie_key() -> str:
    """The key that signs the sign-in cookie; without one, the page stops with the sentence."""
    try:
        return _settings().require_cookie_key()
    except SettingsError as exc:
        st.error(md(exc))
        st.stop()
        raise  # unreachable: st.stop() raises


def _authenticator() -> AuthenticationController:
    credentials = {"usernames": copy.deepcopy(reads.signable_accounts())}
    return AuthenticationController(credentials, auto_hash=False, secret_key=_cookie_key())


_TOUCH_EVERY = 60  # seconds between two slides of the server-side expiry (one write a minute at most)


def _lifetime() -> timedelta:
    # The open tab signs out at exactly the idle time (_LAST_SEEN); the server's expiry, slid at
    # most once a minute, is the backstop for a copied cookie, so it gets that minute and one more.
    return timedelta(seconds=_idle_seconds() + 2 * _TOUCH_EVERY)


def _touch_session(now: float) -> None:
    """Slide this session's expiry on the server while the person keeps working."""
    state = st.session_state
    if now - float(state.get(_TOUCHED) or 0) < _TOUCH_EVERY or not state.get(_SESSION):
        return
    staff_sessions.keep_alive(engine(), str(state[_SESSION]), lifetime=_lifetime())
    state[_TOUCHED] = now


def _issue_cookie(username: str) -> None:
    """A fresh sign-in cookie naming this session (streamlit-authenticator's JWT shape plus
    ``sid``), written into the browser from this run on."""
    now = time.time()
    sid = str(st.session_state.get(_SESSION) or "")
    token = jwt.encode({"username": username, "exp_date": now + _idle_seconds(), "sid": sid},
                       _cookie_key(), algorithm="HS256")
    st.session_state[_COOKIE] = (token, now + _idle_seconds())
    st.session_state[_COOKIE_ISSUED] = now


def cookie_line(value: str, expires: float) -> str:
    """The ``document.cookie`` assignment for the sign-in cookie: as tight as a cookie written from
    JavaScript allows. Secure only when the browser reached us over HTTPS (a browser drops a Secure
    cookie set on plain HTTP, which would make signing in impossible on a local run)."""
    when = format_datetime(datetime.fromtimestamp(expires, UTC), usegmt=True)
    parts = [f"{_settings().cookie_name}={value}", f"expires={when}", "path=/", "SameSite=Strict"]
    if served_over_https():
        parts.append("Secure")
    return "; ".join(parts)


def _run_in_browser(line: str, mark: str = "") -> None:
    """Set ``document.cookie`` to ``line`` in the page. ``st.html`` runs the script in the page
    itself when its element first appears (or its text changes) and sends nothing back, so this
    never reruns the script (the module doc says why that matters). ``mark`` makes the text new,
    so the line runs again. The JSON string cannot close the script tag (``<`` is escaped)."""
    literal = json.dumps(line).replace("<", "\\u003c")
    note = f"/* {mark} */" if mark else ""  # our own "md_cookie_delete_<time>"
    st.html(f"<script>document.cookie = {literal};{note}</script>", unsafe_allow_javascript=True)


def _audit(actor: str, action: str, *, outcome: str = "ok", comment: str | None = None) -> None:
    try:
        staff.record_auth_event(engine(), actor, action, outcome=outcome, comment=comment)
    except Exception:
        log.exception("could not record %s for %s", action, actor)


def _sign_out(*, reason: str, notice: str | None = None) -> None:
    username = st.session_state.get("username") or "?"
    try:  # end it on the server first (with its audit entry): the cookie copy in any other browser dies with it
        staff.sign_out(engine(), st.session_state.get(_SESSION), str(username), reason)
    except Exception:  # the sign-out in this browser must still happen
        log.exception("could not revoke the session of %s", username)
    _authenticator().logout()
    for key in (_LAST_SEEN, _COOKIE, _COOKIE_ISSUED, _CHECKED, _SESSION, _TOUCHED):
        st.session_state.pop(key, None)
    st.session_state[_DELETE_PENDING] = f"md_cookie_delete_{time.time():.6f}"
    if notice:
        st.session_state[_NOTICE] = notice
    log.info("sign-out user=%s reason=%s", username, reason)


def _read_cookie() -> tuple[str, dict[str, Any] | None]:
    """The raw sign-in cookie this browser sent, and its claims when the signature, the expiry
    and the shape are right (None otherwise)."""
    name = _settings().cookie_name
    raw = st.context.cookies.get(name) if name in st.context.cookies else None
    if not raw:
        return "", None
    try:
        claims = jwt.decode(raw, _cookie_key(), algorithms=["HS256"])
    except jwt.PyJWTError:
        return str(raw), None
    ok = (isinstance(claims, dict) and isinstance(claims.get("username"), str)
          and isinstance(claims.get("sid"), str) and isinstance(claims.get("exp_date"), int | float)
          and claims["exp_date"] > time.time())
    return str(raw), claims if ok else None


def _refuse_cookie(raw: str, username: str, why: str) -> None:
    """Delete a cookie that no longer signs in; audit the refusal once per cookie."""
    state = st.session_state
    state[_DELETE_PENDING] = state.get(_DELETE_PENDING) or f"md_cookie_delete_{time.time():.6f}"
    fingerprint = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    if state.get(_REFUSED) != fingerprint:
        state[_REFUSED] = fingerprint
        _audit(username or "?", "auth.cookie_refused", outcome="refused", comment=why)
        log.info("sign-in cookie refused user=%s reason=%s", username or "?", why)


def _try_cookie_login(auth: AuthenticationController) -> None:
    raw, token = _read_cookie()
    if not raw:
        return
    if token is None:  # forged, expired, or from before sessions were kept on the server
        _refuse_cookie(raw, "", "invalid or expired cookie")
        return
    username = str(token["username"])
    live = staff_sessions.is_live(engine(), token["sid"], username)
    if not live.live:  # signed out, revoked by an admin, or idle: the copy is worthless
        _refuse_cookie(raw, username, f"session ended: {live.reason}")
        return
    try:
        auth.login(token=token)
    except LoginError:  # the account is disabled, locked or gone: the cookie no longer signs in
        _refuse_cookie(raw, username, "account cannot sign in")
        return
    st.session_state[_SESSION] = token["sid"]
    st.session_state[_LAST_SEEN] = time.time()
    st.session_state[_COOKIE_ISSUED] = float(token["exp_date"]) - _idle_seconds()
    log.info("sign-in from cookie user=%s", username)


def run_authentication() -> None:
    """Restore a signed-in session from its cookie, expire idle sessions and sign out disabled
    accounts. Call once at the top of every run."""
    _run.settings = settings()
    try:
        _cookie_key()  # every run stops with the sentence while the key is missing
        _authenticate()
    finally:
        _run.settings = None


def _authenticate() -> None:
    state = st.session_state
    now = time.time()
    if not state.get("authentication_status"):
        auth = _authenticator()  # also sets streamlit-authenticator's session keys to their defaults
        if not state.get("logout"):
            _try_cookie_login(auth)
    if state.get("authentication_status"):
        last = state.get(_LAST_SEEN)
        if last is not None and now - last > _idle_seconds():
            _sign_out(reason="idle", notice=(
                f"You were signed out after {_settings().session_idle_minutes} minutes without activity."))
        else:
            state[_LAST_SEEN] = now
            _recheck_account()
            if state.get("authentication_status"):
                _touch_session(now)
    if state.get("authentication_status"):
        issued = state.get(_COOKIE_ISSUED)
        if issued is None or now - issued > _idle_seconds() / 2:  # keep the cookie sliding
            _issue_cookie(str(state["username"]))
        cookie = state.get(_COOKIE)
        if cookie:  # drawn on every run, the same text: the browser writes it once per token
            token, expires = cookie
            _run_in_browser(cookie_line(str(token), float(expires)))
    elif state.get(_DELETE_PENDING):  # every signed-out run until the next sign-in
        _run_in_browser(cookie_line("", 0), mark=str(state[_DELETE_PENDING]))


def served_over_https() -> bool:
    """True when the page in the browser is an https:// URL (behind a TLS proxy as well)."""
    url = st.context.url or ""
    return url.lower().startswith("https://")


# What a person reads when the server ended the session they were using.
_ENDED = {
    staff_sessions.SIGN_OUT: "You were signed out.",
    staff_sessions.DISABLED: "Your account is disabled; ask an admin.",
    staff_sessions.ROLES_CHANGED: "Your roles were changed; sign in again to use the new ones.",
    staff_sessions.PASSWORD_RESET: "Your password was reset; sign in with the new one.",
    staff_sessions.PASSWORD_CHANGED: "Your password was changed in another session; sign in with the new one.",
}


def _recheck_account() -> None:
    """Every run: the session must still be live on the server (not signed out elsewhere, not
    revoked by an admin), and the account active; otherwise the person is signed out here too."""
    state = st.session_state
    s = _settings()
    username = str(state["username"])
    current = staff.session_account(engine(), state.get(_SESSION), username)  # not cached: a revocation
    live = current.session                                                    # applies on the very next run
    if not live.live:
        idle = f"You were signed out after {s.session_idle_minutes} minutes without activity."
        notice = idle if live.reason == staff_sessions.IDLE else _ENDED.get(str(live.reason), "You were signed out.")
        _sign_out(reason=f"session ended: {live.reason}", notice=notice)
        return
    if not current.active:  # gone or disabled
        _sign_out(reason="account disabled", notice="Your account is disabled; ask an admin.")
        return
    state["roles"] = list(current.roles)


def _attempt_login() -> None:
    """Form callback (runs before the script, so the page the URL names renders right after). The
    authenticator is built here, from the accounts as they are at the press."""
    state = st.session_state
    username = str(state.get("login_username") or "").strip().lower()
    password = str(state.get("login_password") or "").strip()
    state["login_password"] = ""
    if not username or not password:
        state[_NOTICE] = "Enter your username and password."
        return

    # The accounts as they are at the press: the brief cache (kept for the cookie's reruns) could
    # miss an account made or unlocked seconds ago by another process, such as the command line.
    reads.clear_signable_accounts()
    auth = _authenticator()

    def password_matches() -> bool:  # asked by core between its two reads of the account
        if username not in reads.signable_accounts():
            return staff.check_against_nobody(password)  # as slow as a real check: the time tells nothing
        try:
            return bool(auth.login(username, password))
        except (LoginError, ValueError):  # bcrypt 5 raises on passwords over 72 bytes
            return False

    result = staff.sign_in(engine(), username, password_matches, lifetime=_lifetime(), now=utc_now(),
                           address=_address())
    if result.outcome == staff.SIGNED_IN:
        state[_SESSION] = result.token
        state["roles"] = list(result.roles)
        state["name"] = result.name
        state[_LAST_SEEN] = time.time()
        state.pop(_DELETE_PENDING, None)
        state.pop(_NOTICE, None)
        state.pop(_REFUSED, None)
        state["logout"] = None
        state[_TOUCHED] = time.time()  # sign_in has just set the expiry
        _issue_cookie(username)
        log.info("sign-in user=%s", username)
        return
    if result.outcome == staff.LOCKED:  # locked before the attempt: the password was not looked at
        state[_NOTICE] = _locked_sentence(result.locked_until, result.scope)
        return
    if result.password_matched:  # the account was disabled or locked while the password was checked
        auth.logout()
    if result.outcome == staff.LOCKED_NOW:
        state[_NOTICE] = _locked_sentence(result.locked_until, result.scope)
        log.warning("lockout user=%s scope=%s", username, result.scope)
    else:
        state[_NOTICE] = "The username or password is incorrect."
    state["authentication_status"] = False


def _address() -> str | None:
    """The connection's address, for the lockout's count by place (None when local or unknown)."""
    try:
        address = st.context.ip_address
    except Exception:  # no connection (a script run without a browser): counted as an unknown place
        return None
    return address if isinstance(address, str) and address else None


def _locked_sentence(until: datetime | None, scope: str | None = None) -> str:
    when = f" until {until.astimezone(UTC):%H:%M} UTC" if until else ""
    if scope == lockout.PLACE:
        return (f"Sign-ins to this account from this address are paused{when} after too many failed "
                "attempts; try again later or ask an admin to unlock it.")
    if scope == lockout.ADDRESS:
        return f"Too many failed sign-ins from this address; sign-ins from it are refused{when}."
    return (f"This account is locked{when} after too many failed sign-ins; "
            "try again later or ask an admin to unlock it.")


def render_login() -> None:
    """The sign-in form, with the last attempt's sentence above it."""
    state = st.session_state
    left, mid, right = st.columns([1, 2, 1])
    with mid:
        st.title("🗂️ Memberdesk")
        notice = state.get(_NOTICE)
        if notice:
            st.warning(md(notice))
        with st.form("login_form"):
            st.subheader("Sign in")
            st.text_input("Username", key="login_username", max_chars=64, autocomplete="username")
            st.text_input("Password", type="password", key="login_password",
                          max_chars=staff.MAX_PASSWORD_BYTES, autocomplete="current-password")
            st.form_submit_button("Sign in", on_click=_attempt_login, type="primary")


def _logout_clicked() -> None:
    _sign_out(reason="sign-out", notice="You are signed out.")


def render_sidebar(ctx: StaffContext) -> None:
    """Who is signed in, the sign-out button, and a form to change one's own password."""
    with st.sidebar:
        st.caption(f"Signed in as **{md(ctx.name)}** ({md(ctx.username)}) · {md(', '.join(ctx.roles) or 'no role')}")
        st.button("Sign out", key="logout_button", on_click=_logout_clicked)
        _password_form(ctx)


_PW_DONE = "_md_password_changed"
_PW_GENERATION = "_md_password_form"


def _password_form(ctx: StaffContext) -> None:
    """An admin gives a new account its first password "to be changed": here is where."""
    state = st.session_state
    done = state.pop(_PW_DONE, False)
    # After a change the form is drawn under new keys, so it comes back empty (deleting a widget's
    # state leaves the browser showing the old value); after a refusal it keeps what was typed.
    g = int(state.get(_PW_GENERATION) or 0)
    with st.expander("Change your password", expanded=done):
        if done:
            st.success("Your password is changed; your other sessions are signed out.")
        with st.form(f"pw_form_{g}"):
            current = st.text_input("Current password", type="password", key=f"pw_current_{g}")
            new = st.text_input("New password", type="password", key=f"pw_new_{g}",
                                placeholder=f"At least {staff.MIN_PASSWORD} characters")
            repeat = st.text_input("New password again", type="password", key=f"pw_repeat_{g}")
            if not st.form_submit_button("Change password"):
                return
        if new != repeat:
            st.error("The two new passwords differ; nothing was changed.")
            return
        try:
            staff.change_own_password(engine(), username=ctx.username, token=state.get(_SESSION), current=current,
                                      new=new, now=utc_now(), address=_address())
        except staff.StaffError as exc:
            st.error(md(str(exc)))
            return
        reads.clear_signable_accounts()
        log.info("password changed user=%s", ctx.username)
        state[_PW_DONE] = True
        state[_PW_GENERATION] = g + 1
        st.rerun()
