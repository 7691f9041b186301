#!/usr/bin/env python3
"""An independent OpenID Connect relying party, driven by Kopa's integration tests.

    oidc_rp.py full|client-credentials|negative --issuer URL --ca PEMFILE
        --client-id ID --client-secret SECRET --rp-port N --username U --password P
    oidc_rp.py session ... --cookie-jar FILE --ready-file FILE [--wait-logout SECS]
        [--backchannel-status N]

It talks to Kopa the way a real deployment would: Authlib's ``OAuth2Session`` for the
OAuth 2.0 requests, joserfc (Authlib's JOSE library; ``authlib.jose`` is deprecated in
Authlib 1.9) with ``authlib.oidc.core.CodeIDToken`` to verify tokens against the
published key set, a plain ``requests.Session`` as the user's browser (``browser.py``,
shared with the SAML peer: it follows redirects by hand and fills in the sign-in form),
and a small HTTP server on ``127.0.0.1:<rp-port>`` that receives back-channel logout
tokens.

It prints ONE JSON object with what it observed and exits 0 when the scenario ran to
its end, whatever the observations; the Rust test asserts on them. An unexpected error
(a step the scenario cannot go on without) exits 1 with a message and the observations
so far on stderr.
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode

from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet, import_key

from browser import TIMEOUT, Browser, Incomplete

SCOPE = "openid profile email roles offline_access"
SIGNING_ALGS = ["ES256", "RS256"]
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LEEWAY = 5
USER_AGENT = "kopa-tests-authlib-rp/1.0"


# --- small JOSE helpers ------------------------------------------------------------------


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unverified_parts(token):
    """Header and claims of a compact JWS, without checking anything."""
    header, payload, _ = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


def half_hash(value, alg):
    """OIDC Core 3.1.3.6: left half of the hash named by ``alg``, base64url."""
    digest = hashlib.new("sha" + alg[2:], value.encode()).digest()
    return b64url(digest[: len(digest) // 2])


def verify_signature(token, jwks):
    """Checks the JWS signature against the key set (ES256/RS256 only; the key is picked
    by ``kid``). Returns joserfc's token (header and claims); raises when invalid."""
    return jwt.decode(token, KeySet.import_key_set(jwks), algorithms=SIGNING_ALGS)


def kid_in(header, jwks):
    return any(k.get("kid") == header.get("kid") for k in jwks.get("keys", []))


def aud_contains(aud, client_id):
    return aud == client_id or (isinstance(aud, list) and client_id in aud)


# --- the relying party's own endpoint ------------------------------------------------------


class RpServer:
    """``http://127.0.0.1:<port>``: records back-channel logout POSTs on /backchannel and
    answers 200; the callback and post-logout pages are never fetched by the browser."""

    def __init__(self, port, backchannel_status=200):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace")
                if self.path == "/backchannel":
                    form = parse_qs(body, keep_blank_values=True)
                    received.append(
                        {
                            "content_type": self.headers.get("Content-Type", ""),
                            "logout_token": form.get("logout_token", [None])[0],
                            "fields": sorted(form),
                        }
                    )
                    self.send_response(backchannel_status)
                    self.send_header("Cache-Control", "no-store")
                else:
                    self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for_logout(self, seconds):
        deadline = time.monotonic() + seconds
        while not self.received and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the relying party ---------------------------------------------------------------------


class RelyingParty:
    """The client: discovery, key set, Authlib's OAuth2Session for the token endpoint,
    introspection and revocation, plus raw requests for the malformed ones."""

    def __init__(self, args):
        self.args = args
        self.issuer = args.issuer.rstrip("/")
        self.redirect_uri = f"http://127.0.0.1:{args.rp_port}/callback"
        self.post_logout_uri = f"http://127.0.0.1:{args.rp_port}/bye"
        self.oauth = self.session()
        meta = self.oauth.get(
            self.issuer + "/.well-known/openid-configuration", withhold_token=True
        )
        meta.raise_for_status()
        self.meta = meta.json()
        keys = self.oauth.get(self.meta["jwks_uri"], withhold_token=True)
        keys.raise_for_status()
        self.jwks = keys.json()

    def session(self, secret=None, auth_method="client_secret_basic"):
        s = OAuth2Session(
            client_id=self.args.client_id,
            client_secret=secret if secret is not None else self.args.client_secret,
            token_endpoint_auth_method=auth_method,
            revocation_endpoint_auth_method=auth_method,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            default_timeout=TIMEOUT,
        )
        s.verify = self.args.ca
        s.trust_env = False
        return s

    def authorization_url(self, redirect_uri=None, **params):
        """A fresh request (state, nonce, S256 PKCE unless ``params`` override it)."""
        verifier = generate_token(48)
        state = generate_token(32)
        nonce = generate_token(32)
        pkce = {} if "code_challenge_method" in params else {"code_verifier": verifier}
        url, _ = self.oauth.create_authorization_url(
            self.meta["authorization_endpoint"],
            state=state,
            nonce=nonce,
            scope=params.pop("scope", SCOPE),
            redirect_uri=redirect_uri or self.redirect_uri,
            **pkce,
            **params,
        )
        return url, {"state": state, "nonce": nonce, "verifier": verifier}

    def authorize(self, browser, sign_in=True, **params):
        """Runs the front channel to the callback; returns (navigation, request facts,
        callback parameters). Raises when the browser did not reach the callback."""
        url, req = self.authorization_url(**params)
        creds = (self.args.username, self.args.password) if sign_in else (None, None)
        nav = browser.navigate(url, *creds)
        if not (nav.left_to or "").startswith(self.redirect_uri + "?"):
            raise Incomplete(
                f"authorization did not reach the callback: left to {nav.left_to!r}, "
                f"stopped with {nav.status} after {nav.hops}: {nav.page[:2000]}"
            )
        return nav, req, nav.params()

    def exchange(self, code, verifier):
        """The code for tokens through Authlib (client_secret_basic)."""
        return self.oauth.fetch_token(
            self.meta["token_endpoint"],
            grant_type="authorization_code",
            code=code,
            code_verifier=verifier,
            redirect_uri=self.redirect_uri,
        )

    def token_raw(self, data, auth_method="client_secret_basic", secret=None):
        """A token request whose refusal is what we look at: (status, JSON body)."""
        s = self.session(secret=secret, auth_method=auth_method)
        resp = s.post(
            self.meta["token_endpoint"],
            data=data,
            auth=s.client_auth(auth_method),
            withhold_token=True,
            headers={"Accept": "application/json"},
        )
        return resp.status_code, json_or_empty(resp), resp.headers

    def userinfo(self, access_token):
        """GET with the bearer header; returns (status, JSON body, headers)."""
        self.oauth.token = {"access_token": access_token, "token_type": "Bearer"}
        resp = self.oauth.get(self.meta["userinfo_endpoint"])
        return resp.status_code, json_or_empty(resp), resp.headers

    def userinfo_post(self, access_token):
        """POST with the token as the ``access_token`` form field (RFC 6750 2.2)."""
        resp = self.oauth.post(
            self.meta["userinfo_endpoint"],
            data={"access_token": access_token},
            withhold_token=True,
        )
        return resp.status_code, json_or_empty(resp)

    def introspect(self, token, hint="access_token"):
        resp = self.oauth.introspect_token(
            self.meta["introspection_endpoint"], token=token, token_type_hint=hint
        )
        body = json_or_empty(resp)
        return resp.status_code, body

    def active(self, token, hint="access_token"):
        status, body = self.introspect(token, hint)
        return body.get("active") if status == 200 else None

    def revoke(self, token, hint="access_token"):
        resp = self.oauth.revoke_token(
            self.meta["revocation_endpoint"], token=token, token_type_hint=hint
        )
        return resp.status_code

    def check_id_token(self, id_token, nonce, access_token):
        """Signature (JWKS), iss, aud, exp, iat, nonce and at_hash. Returns a dict of
        observations."""
        header, claims = unverified_parts(id_token)
        out = {
            "alg": header.get("alg"),
            "kid": header.get("kid"),
            "kid_in_jwks": kid_in(header, self.jwks),
            "claims": claims,
            "at_hash_ok": "at_hash" in claims
            and header.get("alg") in SIGNING_ALGS
            and hmac.compare_digest(
                str(claims["at_hash"]), half_hash(access_token, header["alg"])
            ),
        }
        try:
            token = verify_signature(id_token, self.jwks)
            checked = CodeIDToken(
                token.claims,
                token.header,
                {
                    "iss": {"essential": True, "value": self.issuer},
                    "aud": {"essential": True, "value": self.args.client_id},
                },
                {
                    "nonce": nonce,
                    "client_id": self.args.client_id,
                    "access_token": access_token,
                },
            )
            checked.validate(leeway=LEEWAY)
            out["valid"], out["error"] = True, None
        except Exception as e:  # noqa: BLE001 - any failure is the observation
            out["valid"], out["error"] = False, f"{type(e).__name__}: {e}"
        return out

    def check_logout_token(self, token, sid):
        """OIDC Back-Channel Logout 1.0 section 2.6 checks, one by one."""
        header, claims = unverified_parts(token)
        try:
            verify_signature(token, self.jwks)
            signature = True
        except Exception:  # noqa: BLE001
            signature = False
        now = time.time()
        events = claims.get("events")
        checks = {
            "signature": signature,
            "typ": header.get("typ") == "logout+jwt",
            "iss": claims.get("iss") == self.issuer,
            "aud": aud_contains(claims.get("aud"), self.args.client_id),
            "iat": isinstance(claims.get("iat"), int) and claims["iat"] <= now + LEEWAY,
            "exp": isinstance(claims.get("exp"), int) and claims["exp"] > now - LEEWAY,
            "jti": isinstance(claims.get("jti"), str) and bool(claims["jti"]),
            "events": isinstance(events, dict)
            and isinstance(events.get(BACKCHANNEL_EVENT), dict),
            "sub_or_sid": bool(claims.get("sub") or claims.get("sid")),
            "no_nonce": "nonce" not in claims,
        }
        return {
            "header": header,
            "claims": claims,
            "checks": checks,
            "valid": all(checks.values()),
            "sid_matches": sid is not None and claims.get("sid") == sid,
        }


def json_or_empty(resp):
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def refresh_raw(rp, refresh_token):
    return rp.token_raw({"grant_type": "refresh_token", "refresh_token": refresh_token})


# --- scenarios -----------------------------------------------------------------------------


def scenario_full(args, out):
    """The whole life of a sign-in: discovery; authorization code with S256 PKCE, state
    and nonce through the real sign-in form; ID token verified (signature, iss, aud, exp,
    nonce, at_hash); userinfo by header and by form body; refresh-token rotation, with
    reuse of a replaced token revoking the whole family; a second authorization riding the
    SSO session without a form; introspection, revocation and a revoked token refused;
    RP-initiated logout back to the registered URI with the state; a back-channel logout
    token verified against the ID token's sid; and the session gone afterwards."""
    rp = RelyingParty(args)
    out["discovery"] = rp.meta
    out["discovery_issuer_matches"] = rp.meta.get("issuer") == rp.issuer
    rp_server = RpServer(args.rp_port)
    try:
        browser = Browser(rp.issuer, args.ca, USER_AGENT)

        # First authorization: the sign-in form is shown and filled in.
        nav, req, cb = rp.authorize(browser)
        out["first_login_form_shown"] = nav.login_form_shown
        out["state_ok"] = cb.get("state") == req["state"]
        out["callback_iss"] = cb.get("iss")
        if "code" not in cb:
            raise Incomplete(f"no code in the callback: {nav.left_to}")
        token = rp.exchange(cb["code"], req["verifier"])
        out["token_type"] = token.get("token_type")
        out["expires_in"] = token.get("expires_in")
        out["scope"] = token.get("scope")
        id1 = rp.check_id_token(token["id_token"], req["nonce"], token["access_token"])
        out["id_token_valid"] = id1["valid"]
        out["id_token_error"] = id1["error"]
        out["id_token_alg"] = id1["alg"]
        out["id_token_kid"] = id1["kid"]
        out["kid_in_jwks"] = id1["kid_in_jwks"]
        out["at_hash_ok"] = id1["at_hash_ok"]
        out["claims"] = id1["claims"]

        # Userinfo: bearer header, then the token in a form body.
        status, info, _ = rp.userinfo(token["access_token"])
        out["userinfo_status"] = status
        out["userinfo"] = info
        status, posted = rp.userinfo_post(token["access_token"])
        out["userinfo_post_status"] = status
        out["userinfo_post_ok"] = status == 200 and posted.get("sub") == info.get("sub")

        # Refresh: rotation, then reuse of the replaced token revokes the family.
        old_refresh = token.get("refresh_token")
        out["refresh_token_issued"] = bool(old_refresh)
        if not old_refresh:
            raise Incomplete("no refresh token was issued")
        refreshed = rp.oauth.refresh_token(
            rp.meta["token_endpoint"], refresh_token=old_refresh
        )
        new_refresh = refreshed.get("refresh_token")
        out["refresh_rotated"] = bool(new_refresh) and new_refresh != old_refresh
        out["refresh_new_access_token"] = (
            refreshed.get("access_token") != token["access_token"]
        )
        status, _, _ = rp.userinfo(refreshed["access_token"])
        out["refreshed_access_token_userinfo_status"] = status
        status, body, _ = refresh_raw(rp, old_refresh)
        out["old_refresh_reuse_status"] = status
        out["old_refresh_reuse_error"] = body.get("error")
        status, body, _ = refresh_raw(rp, new_refresh)
        out["family_revoked_status"] = status
        out["family_revoked_error"] = body.get("error")

        # Second authorization: the SSO session answers, no form.
        nav, req, cb = rp.authorize(browser)
        out["second_login_form_shown"] = nav.login_form_shown
        out["second_state_ok"] = cb.get("state") == req["state"]
        second = rp.exchange(cb["code"], req["verifier"])
        id2 = rp.check_id_token(second["id_token"], req["nonce"], second["access_token"])
        out["second_id_token_valid"] = id2["valid"]
        out["second_claims"] = id2["claims"]
        out["sub_stable"] = (
            id1["claims"].get("sub") == id2["claims"].get("sub") == info.get("sub")
        )
        out["sid_stable"] = id1["claims"].get("sid") == id2["claims"].get("sid")

        # Introspection and revocation of the second access token.
        access = second["access_token"]
        status, intro = rp.introspect(access)
        out["introspect_status"] = status
        out["introspection"] = intro
        out["introspect_active"] = intro.get("active")
        out["introspect_client_id"] = intro.get("client_id")
        out["introspect_sub"] = intro.get("sub")
        out["introspect_scope"] = intro.get("scope")
        out["revoke_status"] = rp.revoke(access)
        out["introspect_after_revoke_active"] = rp.active(access)
        status, _, headers = rp.userinfo(access)
        out["userinfo_after_revoke_status"] = status
        out["userinfo_after_revoke_www_authenticate"] = headers.get("WWW-Authenticate")

        # RP-initiated logout with the second ID token; the back-channel token follows.
        logout_state = generate_token(32)
        logout_url = (
            rp.meta["end_session_endpoint"]
            + "?"
            + urlencode(
                {
                    "id_token_hint": second["id_token"],
                    "post_logout_redirect_uri": rp.post_logout_uri,
                    "state": logout_state,
                }
            )
        )
        nav = browser.navigate(logout_url)
        out["logout_redirect"] = nav.left_to
        out["logout_redirect_expected"] = (
            f"{rp.post_logout_uri}?{urlencode({'state': logout_state})}"
        )
        out["logout_redirect_ok"] = nav.left_to == out["logout_redirect_expected"]
        out["logout_page_status"] = nav.status
        received = rp_server.wait_for_logout(5.0)
        out["backchannel_received"] = bool(received)
        out["backchannel_count"] = len(received)
        out["backchannel_content_types"] = [r["content_type"] for r in received]
        sid = id2["claims"].get("sid")
        out["id_token_sid_present"] = sid is not None
        tokens = [r["logout_token"] for r in received if r["logout_token"]]
        checked = [rp.check_logout_token(t, sid) for t in tokens]
        out["logout_token_valid"] = bool(checked) and all(c["valid"] for c in checked)
        out["logout_token_sid_matches"] = bool(checked) and all(
            c["sid_matches"] for c in checked
        )
        out["logout_token_checks"] = checked[-1]["checks"] if checked else {}
        out["logout_token_header"] = checked[-1]["header"] if checked else {}
        out["logout_token_claims"] = checked[-1]["claims"] if checked else {}

        # The session is over: authorizing again shows the form.
        url, _ = rp.authorization_url()
        nav = browser.navigate(url)
        out["login_form_after_logout"] = nav.login_form_shown
        out["after_logout_left_to"] = nav.left_to
    finally:
        rp_server.close()


def scenario_client_credentials(args, out):
    """Machine-to-machine: client_credentials for scope "api" with client_secret_basic,
    the access token verified as an RFC 9068 JWT (typ at+jwt, signature from the JWKS);
    client_secret_post for a basic-registered client and a wrong secret, both refused."""
    rp = RelyingParty(args)
    token = rp.oauth.fetch_token(
        rp.meta["token_endpoint"], grant_type="client_credentials", scope="api"
    )
    access = token["access_token"]
    out["token_type"] = token.get("token_type")
    out["expires_in"] = token.get("expires_in")
    out["scope"] = token.get("scope")
    out["refresh_token_issued"] = "refresh_token" in token
    out["id_token_issued"] = "id_token" in token
    header, claims = unverified_parts(access)
    out["at_typ"] = header.get("typ")
    out["at_alg"] = header.get("alg")
    out["at_kid"] = header.get("kid")
    out["at_kid_in_jwks"] = kid_in(header, rp.jwks)
    out["at_claims"] = claims
    try:
        verify_signature(access, rp.jwks)
        out["at_signature_valid"] = True
    except Exception as e:  # noqa: BLE001
        out["at_signature_valid"] = False
        out["at_signature_error"] = f"{type(e).__name__}: {e}"
    now = time.time()
    out["at_claims_ok"] = {
        "iss": claims.get("iss") == rp.issuer,
        "aud": bool(claims.get("aud")),
        "client_id": claims.get("client_id") == args.client_id,
        "sub": claims.get("sub") == args.client_id,
        "exp": isinstance(claims.get("exp"), int) and claims["exp"] > now,
        "iat": isinstance(claims.get("iat"), int) and claims["iat"] <= now + LEEWAY,
        "jti": bool(claims.get("jti")),
        "scope": claims.get("scope") == "api",
    }
    out["introspect_active"] = rp.active(access)
    status, _, _ = rp.userinfo(access)
    out["userinfo_status"] = status

    cc = {"grant_type": "client_credentials", "scope": "api"}
    status, body, _ = rp.token_raw(cc, auth_method="client_secret_post")
    out["post_auth_status"] = status
    out["post_auth_error"] = body.get("error")
    status, body, headers = rp.token_raw(cc, secret="wrong-" + args.client_secret)
    out["wrong_secret_status"] = status
    out["wrong_secret_error"] = body.get("error")
    out["wrong_secret_www_authenticate"] = headers.get("WWW-Authenticate")


def forge(header, claims, key=None):
    """A compact JWS with this header and these claims, HMAC-SHA256 with ``key`` (bytes)
    or, without one, an empty signature."""
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode())
        for part in (header, claims)
    )
    signature = b""
    if key is not None:
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def scenario_negative(args, out):
    """What a careful provider refuses: an unregistered (or merely prefixed) redirect URI
    is never redirected to; PKCE "plain" is refused; a wrong or missing code_verifier and
    a reused code get invalid_grant, the reuse also revoking what the code had issued;
    duplicated parameters are invalid_request; prompt=none without a session is
    login_required; forged access tokens (alg "none", HS256 keyed with the public key's
    PEM, a changed payload) are refused at userinfo and inactive at introspection."""
    rp = RelyingParty(args)
    browser = Browser(rp.issuer, args.ca, USER_AGENT)

    # (e) sign in, exchange a code, then exchange it again.
    nav, req, cb = rp.authorize(browser)
    out["login_form_shown"] = nav.login_form_shown
    token = rp.exchange(cb["code"], req["verifier"])
    out["code_reuse_token_active_before"] = rp.active(token["access_token"])
    status, body, _ = rp.token_raw(
        {
            "grant_type": "authorization_code",
            "code": cb["code"],
            "code_verifier": req["verifier"],
            "redirect_uri": rp.redirect_uri,
        }
    )
    out["code_reuse_status"] = status
    out["code_reuse_error"] = body.get("error")
    out["code_reuse_token_active_after"] = rp.active(token["access_token"])
    if token.get("refresh_token"):
        status, body, _ = refresh_raw(rp, token["refresh_token"])
        out["code_reuse_refresh_status"] = status
        out["code_reuse_refresh_error"] = body.get("error")

    # (a) redirect URIs that are not registered: another host, and a longer path.
    for key, uri in [
        ("unregistered_redirect", "https://evil.example.lv/callback"),
        ("prefix_redirect", rp.redirect_uri + "/evil"),
    ]:
        url, _ = rp.authorization_url(redirect_uri=uri)
        nav = browser.navigate(url)
        out[f"{key}_status"] = nav.status
        out[f"{key}_location"] = nav.left_to
        out[f"{key}_followed"] = any(h.startswith(uri) for h in nav.hops)

    # (b) PKCE with the plain method.
    verifier = generate_token(48)
    url, req = rp.authorization_url(code_challenge=verifier, code_challenge_method="plain")
    nav = browser.navigate(url)
    params = nav.params()
    out["plain_pkce_location_ok"] = (nav.left_to or "").startswith(rp.redirect_uri + "?")
    out["plain_pkce_error"] = params.get("error")
    out["plain_pkce_state_ok"] = params.get("state") == req["state"]
    out["plain_pkce_code_issued"] = "code" in params

    # (c) a wrong code_verifier, (d) none at all.
    for key, verifier in [
        ("wrong_verifier", generate_token(48)),
        ("missing_verifier", None),
    ]:
        _, _, cb = rp.authorize(browser)
        data = {
            "grant_type": "authorization_code",
            "code": cb["code"],
            "redirect_uri": rp.redirect_uri,
        }
        if verifier is not None:
            data["code_verifier"] = verifier
        status, body, _ = rp.token_raw(data)
        out[f"{key}_status"] = status
        out[f"{key}_error"] = body.get("error")

    # (f) a parameter given twice, in a raw form body.
    s = rp.session()
    resp = s.post(
        rp.meta["token_endpoint"],
        data=urlencode(
            [
                ("grant_type", "authorization_code"),
                ("grant_type", "authorization_code"),
                ("code", "not-a-code"),
                ("redirect_uri", rp.redirect_uri),
            ]
        ),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=s.client_auth("client_secret_basic"),
        withhold_token=True,
    )
    out["duplicate_param_status"] = resp.status_code
    out["duplicate_param_error"] = json_or_empty(resp).get("error")

    # (g) prompt=none in a browser without a session.
    url, req = rp.authorization_url(prompt="none")
    nav = Browser(rp.issuer, args.ca, USER_AGENT).navigate(url)
    params = nav.params()
    out["prompt_none_location_ok"] = (nav.left_to or "").startswith(rp.redirect_uri + "?")
    out["prompt_none_error"] = params.get("error")
    out["prompt_none_state_ok"] = params.get("state") == req["state"]
    out["prompt_none_login_form_shown"] = nav.login_form_shown

    # (h, i) forged access tokens modelled on a real one, which works (the control).
    _, req, cb = rp.authorize(browser)
    real = rp.exchange(cb["code"], req["verifier"])["access_token"]
    status, _, _ = rp.userinfo(real)
    out["control_userinfo_status"] = status
    out["control_introspect_active"] = rp.active(real)
    header, claims = unverified_parts(real)

    forged = forge({**header, "alg": "none"}, claims)
    status, _, _ = rp.userinfo(forged)
    out["alg_none_userinfo_status"] = status
    out["alg_none_introspect_active"] = rp.active(forged)

    out["hs256_keys_tried"] = []
    out["hs256_userinfo_status"] = []
    out["hs256_introspect_active"] = []
    for jwk in rp.jwks.get("keys", []):
        pem = import_key(jwk).as_pem(private=False)
        forged = forge({**header, "alg": "HS256", "kid": jwk.get("kid")}, claims, pem)
        status, _, _ = rp.userinfo(forged)
        out["hs256_keys_tried"].append(jwk.get("kty"))
        out["hs256_userinfo_status"].append(status)
        out["hs256_introspect_active"].append(rp.active(forged))

    # The real signature over a changed payload.
    head, _, signature = real.split(".")
    changed = b64url(json.dumps({**claims, "sub": "ventspils:someone-else"}).encode())
    tampered = f"{head}.{changed}.{signature}"
    status, _, _ = rp.userinfo(tampered)
    out["tampered_userinfo_status"] = status
    out["tampered_introspect_active"] = rp.active(tampered)


def scenario_session(args, out):
    """A sign-in that shares the browser's SSO session with other applications (the
    cookie jar in ``--cookie-jar``, signed in there already or through the form now),
    then waits up to ``--wait-logout`` seconds for the back-channel logout that another
    application's logout causes, its endpoint answering ``--backchannel-status``.
    ``--ready-file`` is written once the sign-in is done."""
    rp = RelyingParty(args)
    rp_server = RpServer(args.rp_port, args.backchannel_status)
    try:
        browser = Browser(rp.issuer, args.ca, USER_AGENT)
        browser.load_cookies(args.cookie_jar)
        nav, req, cb = rp.authorize(browser)
        out["login_form_shown"] = nav.login_form_shown
        if "code" not in cb:
            raise Incomplete(f"no code in the callback: {nav.left_to}")
        token = rp.exchange(cb["code"], req["verifier"])
        checked = rp.check_id_token(token["id_token"], req["nonce"], token["access_token"])
        out["id_token_valid"] = checked["valid"]
        sid = checked["claims"].get("sid")
        out["sid"] = sid
        browser.save_cookies(args.cookie_jar)
        with open(args.ready_file, "w", encoding="utf-8") as f:
            f.write("ready\n")
        received = rp_server.wait_for_logout(args.wait_logout)
        out["backchannel_count"] = len(received)
        tokens = [r["logout_token"] for r in received if r["logout_token"]]
        verdicts = [rp.check_logout_token(t, sid) for t in tokens]
        out["logout_token_valid"] = bool(verdicts) and all(v["valid"] for v in verdicts)
        out["logout_token_sid_matches"] = bool(verdicts) and all(
            v["sid_matches"] for v in verdicts
        )
    finally:
        rp_server.close()


SCENARIOS = {
    "full": scenario_full,
    "session": scenario_session,
    "client-credentials": scenario_client_credentials,
    "negative": scenario_negative,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--ca", required=True, help="PEM file the issuer's TLS cert is checked with")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--rp-port", type=int, required=True)
    parser.add_argument("--username", default="")
    parser.add_argument("--password", default="")
    parser.add_argument("--cookie-jar", help="session: the browser's cookies, shared")
    parser.add_argument("--ready-file", help="session: written once signed in")
    parser.add_argument("--wait-logout", type=float, default=30.0)
    parser.add_argument("--backchannel-status", type=int, default=200)
    args = parser.parse_args()

    out = {"scenario": args.scenario}
    try:
        SCENARIOS[args.scenario](args, out)
    except Exception:  # noqa: BLE001 - report, with what was seen so far
        traceback.print_exc()
        print("observed so far: " + json.dumps(out, sort_keys=True), file=sys.stderr)
        return 1
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
