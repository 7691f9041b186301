"""The user's browser for Kopa's test peers (``oidc_rp.py``, ``saml_sp.py``).

A plain ``requests.Session`` with a cookie jar, checking Kopa's TLS certificate against
the CA file it is given. It follows redirects by hand while they stay on Kopa and stops
at the first one that leaves (to a relying party's callback, a service provider's
endpoint), fills in Kopa's sign-in form when it is shown, and otherwise stops on the
page it reached, whose forms the peers read (a SAML auto-post form, for instance).
"""

import base64
import hashlib
import http.cookiejar
import os
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

TIMEOUT = 30
MAX_HOPS = 20
# Headless Chromium on a machine without network: no background connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def spki_sha256(pem_file):
    """Base64 SHA-256 of the first certificate's SubjectPublicKeyInfo in ``pem_file``
    (Chromium trusts Kopa's test certificate by this pin)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    with open(pem_file, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def launch_chromium(pw, args, width, height):
    """Debian's Chromium through Playwright with a fresh profile (``args.profile``),
    trusting Kopa's certificate (``args.ca``) by its key pin, and ignoring the page's CSP
    so that axe-core can be injected. Returns the context, its page, and the list the
    page's script errors are collected in."""
    pin = f"--ignore-certificate-errors-spki-list={spki_sha256(args.ca)}"
    context = pw.chromium.launch_persistent_context(
        args.profile,
        executable_path=args.chromium,
        args=[*CHROMIUM_ARGS, pin],
        bypass_csp=True,
        viewport={"width": width, "height": height},
    )
    page = context.pages[0] if context.pages else context.new_page()
    page.set_default_timeout(30_000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return context, page, errors


class Incomplete(Exception):
    """A step the scenario cannot go on without did not happen."""


def origin_of(url):
    """``scheme://host[:port]`` of a URL, what a browser sends as ``Origin``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class FormParser(HTMLParser):
    """The forms of a page: action, method, every named input, and the fields a browser
    would submit without the user typing (hidden inputs, selected options)."""

    def __init__(self):
        super().__init__()
        self.forms = []
        self._form = None
        self._select = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._form = {
                "action": a.get("action") or "",
                "method": (a.get("method") or "get").lower(),
                "fields": {},
                "inputs": set(),
            }
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input" and a.get("name"):
            self._form["inputs"].add(a["name"])
            if (a.get("type") or "text").lower() == "hidden":
                self._form["fields"][a["name"]] = a.get("value") or ""
        elif tag == "select" and a.get("name"):
            self._select = a["name"]
        elif tag == "option" and self._select:
            fields = self._form["fields"]
            if self._select not in fields or "selected" in a:
                fields[self._select] = a.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None


def page_forms(html):
    """The forms of an HTML page (see ``FormParser``)."""
    parser = FormParser()
    parser.feed(html)
    parser.close()
    return parser.forms


def is_html(resp):
    return "html" in resp.headers.get("Content-Type", "")


def login_form(resp):
    """Kopa's sign-in form on this page (posting to ``/login``, with a ``password``
    input), or None."""
    if not is_html(resp):
        return None
    for form in page_forms(resp.text):
        if urlsplit(form["action"]).path == "/login" and "password" in form["inputs"]:
            return form
    return None


class Navigation:
    """Where one navigation went: the hops on the issuer, whether the sign-in form was
    shown (and submitted), and either the URL it left the issuer for (with the status of
    that redirect) or the page it stopped on (its URL, status and text)."""

    def __init__(self):
        self.hops = []
        self.login_form_shown = False
        self.form_submitted = False
        self.left_to = None
        self.left_status = None
        self.url = None
        self.status = None
        self.content_type = ""
        self.page = ""

    def params(self):
        """Query parameters of the URL it left for, one value each."""
        query = parse_qs(urlsplit(self.left_to or "").query, keep_blank_values=True)
        return {k: v[0] if len(v) == 1 else v for k, v in query.items()}


class Browser:
    """A user agent with a cookie jar that never leaves the issuer on its own: it
    follows redirects on the issuer by hand and stops at the first one elsewhere."""

    def __init__(self, issuer, ca, user_agent="kopa-tests-browser/1.0"):
        self.issuer = issuer.rstrip("/")
        self.session = requests.Session()
        self.session.verify = ca
        # No CA bundle or proxy from the environment: REQUESTS_CA_BUNDLE would override
        # the session's ``verify``.
        self.session.trust_env = False
        self.session.headers["User-Agent"] = user_agent

    def on_issuer(self, url):
        return url == self.issuer or url.startswith(self.issuer + "/")

    def get(self, url):
        return self.session.get(url, allow_redirects=False, timeout=TIMEOUT)

    def post(self, url, data, origin):
        """A form submission from a page of ``origin``, as a browser sends it."""
        return self.session.post(
            url,
            data=data,
            headers={"Origin": origin},
            allow_redirects=False,
            timeout=TIMEOUT,
        )

    def submit_login(self, url, form, username, password):
        fields = dict(form["fields"])
        fields.update(username=username, password=password)
        return self.post(urljoin(url, form["action"]), fields, origin_of(url))

    def navigate(self, url, username=None, password=None, data=None, origin=None):
        """Opens ``url`` (a GET, or with ``data`` the POST of a form on a page of
        ``origin``); signs in once with the form if it is shown and credentials are
        given."""
        nav = Navigation()
        resp = self.get(url) if data is None else self.post(url, data, origin)
        for _ in range(MAX_HOPS):
            if resp.is_redirect:
                target = urljoin(resp.url, resp.headers["Location"])
                nav.hops.append(target)
                if not self.on_issuer(target):
                    nav.left_to = target
                    nav.left_status = resp.status_code
                    return nav
                resp = self.get(target)
                continue
            form = login_form(resp)
            if form is not None:
                nav.login_form_shown = True
                if username is not None and not nav.form_submitted:
                    nav.form_submitted = True
                    resp = self.submit_login(resp.url, form, username, password)
                    continue
            nav.url = resp.url
            nav.status = resp.status_code
            nav.content_type = resp.headers.get("Content-Type", "")
            nav.page = resp.text
            return nav
        raise Incomplete(f"more than {MAX_HOPS} redirects from {url}")

    # --- the cookie jar on disk, for a later run to reuse the SSO session ---------------

    def load_cookies(self, path):
        """Adds the cookies saved in ``path`` (an LWP cookie file), if it exists."""
        if not os.path.exists(path):
            return
        jar = http.cookiejar.LWPCookieJar(path)
        jar.load(ignore_discard=True, ignore_expires=True)
        for cookie in jar:
            self.session.cookies.set_cookie(cookie)

    def save_cookies(self, path):
        """Writes every cookie, session cookies included, to ``path``."""
        jar = http.cookiejar.LWPCookieJar(path)
        for cookie in self.session.cookies:
            jar.set_cookie(cookie)
        jar.save(ignore_discard=True, ignore_expires=True)
