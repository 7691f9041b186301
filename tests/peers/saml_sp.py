#!/usr/bin/env python3
"""An independent SAML 2.0 service provider, driven by Kopa's integration tests.

    saml_sp.py --lib pysaml2|onelogin COMMAND ...   (--lib may also follow COMMAND)

Service-provider options (every command but ``metadata`` also takes
``--idp-metadata FILE``, the IdP's metadata, which gives its endpoints and signing key):
    --entity-id E --acs URL --sls URL --cert PEMFILE --key PEMFILE

    metadata [--authn-requests-signed] [--want-assertions-signed] [--valid-until T]
            [--cache-duration D] [--extra-acs URL]
            [--sign-metadata-key PEM --sign-metadata-cert PEM]
        The SP's metadata as the library generates it, as XML (not JSON). ACS:
        HTTP-POST; SLS: HTTP-Redirect (and HTTP-POST with pysaml2, which lists both).
        The other options add what a federation's publisher would: validUntil,
        cacheDuration, a second ACS, and its signature (python3-saml's signer).
    request --binding redirect|post [--sign-request|--no-sign-request]
            [--relay-state S] [--force-authn] [--is-passive] [--nameid-format URN]
        Only builds an AuthnRequest: {"request_id", "binding", "url" (redirect: the
        whole URL with SAMLRequest, RelayState, SigAlg, Signature), "action" and
        "fields" (post: the form), "xml" (the AuthnRequest as sent, decoded)}.
    login --ca PEMFILE --binding redirect|post [--sign-request|--no-sign-request]
            --username U --password P [--nameid-format URN] [--relay-state S]
            [--force-authn] [--is-passive] [--cookie-jar FILE] [validation options]
        SP-initiated single sign-on through the real sign-in form, the SAML response
        validated by the library (strict). Prints the observations below.
    idp-initiated --ca PEMFILE --url URL --username U --password P
            [--cookie-jar FILE] [validation options]
        Opens an IdP-initiated SSO URL and validates the unsolicited response.
    logout --ca PEMFILE --cookie-jar FILE --binding redirect|post --name-id N
            --name-id-format F [--session-index S] [--name-qualifier Q]
            [--sp-name-qualifier Q] [--relay-state S]
        SP-initiated single logout (the request signed) with the browser's cookies;
        the LogoutResponse, back by redirect or by an auto-post form to the SLS, is
        validated by the library: {"ok", "error", "status_code", "sub_status_code",
        "in_response_to", "request_id", "response_b64", "response_binding", ...}.

    logout and idp-logout also take --peer JSON (repeated): another SP of the session,
        {"lib", "entity_id", "acs", "sls", "cert", "key", "answer"}. When the IdP's
        logout page sends a frame to that SP's logout endpoint, the SP checks the
        LogoutRequest with its library and answers with a signed LogoutResponse
        (Success, or Responder when "answer" is "fail"; never, when it is "stall");
        "peers" lists what each saw: {"entity_id", "binding", "ok", "error", "name_id",
        "session_index", "request_xml", "step" (what the IdP's frame showed then)}.
    idp-logout --ca PEMFILE --cookie-jar FILE --url BASE [--peer JSON ...]
        The user signs out at the IdP's /logout page; prints {"ok" (ended on a page,
        HTTP 200), "final_status", "final_url", "final_body", "peers"}.
    browser-logout --ca PEMFILE --url BASE --username U --password P --screenshots DIR
            --peer JSON ... (each with a "port")
        The same in headless Chromium, with each peer a real HTTP server on its port:
        sign in at each, sign out at the IdP, and time the logout page (see
        cmd_browser_logout).

    Validation options: --want-assertions-signed, --want-response-signed (what the SP
    demands; either way one of the two must be signed), --no-want-attribute-statement
    (python3-saml demands an AttributeStatement unless told otherwise).

The libraries are real ones: pysaml2 (``saml2``, which signs and verifies by running
xmlsec1) and python3-saml (``onelogin.saml2``, on the xmlsec module); every signature is
RSA-SHA256 with SHA-256 digests, with the certificate and key given. The user's browser
is ``browser.Browser`` (a ``requests.Session`` checking Kopa's TLS certificate with
``--ca``, following redirects by hand and filling in the sign-in form); ``--cookie-jar``
loads its cookies from FILE first and saves them back, so that a later run rides the
IdP's SSO session ("form_shown": false).

login and idp-initiated print: {"ok" (the library accepted the response), "error" (the
library's complaint), "form_shown", "request_id", "status_code" (top-level StatusCode
Value, from the XML whatever the library said), "sub_status_code", "status_message",
"issuer", "in_response_to", "destination", "name_id", "name_id_format",
"session_index", "attributes" ({name: [values]} as the library reports them; null
unless accepted), "xml_attributes" ({Name: [values]} from the accepted assertion's XML),
"relay_state" (as in the form), "acs_action" (the form's action), "form_method",
"response_b64" (the SAMLResponse field as posted), "response_xml" (decoded)}. When the
browser did not end on a form carrying a SAMLResponse: ok false, the error saying where
it ended, "final_status", "final_body" (its first 2000 characters) and
"final_location" (when it was redirected away).

It prints ONE JSON object (the metadata command: the XML) and exits 0 when the command
ran to its end, whatever the observations; the Rust test asserts on them. An unexpected
error exits 1 with a message and the observations so far on stderr.
"""

import argparse
import base64
import json
import sys
import threading
import time
import traceback
import zlib
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from lxml import etree

from browser import CHROMIUM_ARGS, Browser, Incomplete, origin_of, page_forms, spki_sha256

USER_AGENT = "kopa-tests-saml-sp/1.0"
BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
BINDINGS = {"redirect": BINDING_REDIRECT, "post": BINDING_POST}
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}
BODY_CHARS = 2000


# --- SAML messages as they travel -------------------------------------------------------


def decode_message(value, binding):
    """The XML text of a SAMLRequest/SAMLResponse value: base64 for HTTP-POST, base64 of
    raw DEFLATE for HTTP-Redirect."""
    raw = base64.b64decode(value)
    if binding == BINDING_REDIRECT:
        raw = zlib.decompress(raw, -15)
    return raw.decode("utf-8")


def parse_xml(text):
    """lxml element of a message, no entities resolved, nothing fetched."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    return etree.fromstring(text.encode("utf-8"), parser=parser)


def first_text(root, path):
    nodes = root.xpath(path, namespaces=NS)
    return nodes[0].text.strip() if nodes and nodes[0].text else None


def describe_status_response(xml):
    """What can be read from a Response/LogoutResponse without trusting it: the status,
    issuer, InResponseTo and Destination. Never raises."""
    out = {
        "status_code": None,
        "sub_status_code": None,
        "status_message": None,
        "issuer": None,
        "in_response_to": None,
        "destination": None,
    }
    try:
        root = parse_xml(xml)
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        out["xml_error"] = f"{type(e).__name__}: {e}"
        return out
    top = root.xpath("samlp:Status/samlp:StatusCode", namespaces=NS)
    if top:
        out["status_code"] = top[0].get("Value")
        sub = top[0].xpath("samlp:StatusCode", namespaces=NS)
        if sub:
            out["sub_status_code"] = sub[0].get("Value")
    out["status_message"] = first_text(root, "samlp:Status/samlp:StatusMessage")
    out["issuer"] = first_text(root, "saml:Issuer") or first_text(
        root, "saml:Assertion/saml:Issuer"
    )
    out["in_response_to"] = root.get("InResponseTo")
    out["destination"] = root.get("Destination")
    return out


def xml_attributes(xml):
    """{Name: [values]} of the assertion's AttributeStatement, from the XML."""
    root = parse_xml(xml)
    attrs = {}
    path = "saml:Assertion/saml:AttributeStatement/saml:Attribute"
    for attr in root.xpath(path, namespaces=NS):
        values = attr.xpath("saml:AttributeValue", namespaces=NS)
        attrs.setdefault(attr.get("Name"), []).extend(v.text or "" for v in values)
    return attrs


def onelogin_request_data(url, get_data=None, post_data=None, query_string=None):
    """python3-saml's view of the HTTP request that reached ``url`` (the SP's endpoint)."""
    parts = urlsplit(url)
    data = {
        "https": "on" if parts.scheme == "https" else "off",
        "http_host": parts.netloc,
        "script_name": parts.path,
        "get_data": get_data or {},
        "post_data": post_data or {},
    }
    if query_string is not None:
        # Signatures of the Redirect binding are checked over the query as received.
        data["query_string"] = query_string
        data["validate_signature_from_qs"] = True
    return data


class Outgoing:
    """A request the SP hands the browser: a URL to open (HTTP-Redirect) or a form to
    post (HTTP-POST)."""

    def __init__(self, request_id, binding, xml, url=None, action=None, fields=None):
        self.request_id = request_id
        self.binding = binding
        self.xml = xml
        self.url = url
        self.action = action
        self.fields = fields

    @property
    def target(self):
        return self.url if self.binding == BINDING_REDIRECT else self.action

    def as_json(self):
        return {
            "request_id": self.request_id,
            "binding": "redirect" if self.binding == BINDING_REDIRECT else "post",
            "url": self.url,
            "action": self.action,
            "fields": self.fields,
            "xml": self.xml,
        }


def redirect_outgoing(request_id, url):
    query = parse_qs(urlsplit(url).query)
    xml = decode_message(query["SAMLRequest"][0], BINDING_REDIRECT)
    return Outgoing(request_id, BINDING_REDIRECT, xml, url=url)


def post_outgoing(request_id, action, fields):
    xml = decode_message(fields["SAMLRequest"], BINDING_POST)
    return Outgoing(request_id, BINDING_POST, xml, action=action, fields=fields)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# --- pysaml2 ------------------------------------------------------------------------------


class PySaml2Sp:
    """pysaml2's ``Saml2Client`` with a configuration built here."""

    name = "pysaml2"

    def __init__(self, args):
        self.args = args

    def config(self, with_idp=True, allow_unsolicited=False):
        from saml2.config import SPConfig
        from saml2.sigver import get_xmlsec_binary

        a = self.args
        sp = {
            "endpoints": {
                "assertion_consumer_service": [(a.acs, BINDING_POST)],
                "single_logout_service": [(a.sls, BINDING_REDIRECT), (a.sls, BINDING_POST)],
            },
            "authn_requests_signed": getattr(a, "sign_request", None)
            or getattr(a, "authn_requests_signed", False),
            "logout_requests_signed": True,
            "want_assertions_signed": getattr(a, "want_assertions_signed", False),
            "want_response_signed": getattr(a, "want_response_signed", False),
            # A response with neither signed is refused whatever the two above say.
            "want_assertions_or_response_signed": True,
            "allow_unsolicited": allow_unsolicited,
        }
        if getattr(a, "nameid_format", None):
            sp["name_id_format"] = [a.nameid_format]
        cfg = {
            "entityid": a.entity_id,
            "service": {"sp": sp},
            "key_file": a.key,
            "cert_file": a.cert,
            "xmlsec_binary": get_xmlsec_binary(["/usr/bin", "/usr/local/bin"]),
            "signing_algorithm": RSA_SHA256,
            "digest_algorithm": SHA256,
            # Attributes pysaml2 has no map for are kept (under their Name).
            "allow_unknown_attributes": True,
        }
        if with_idp:
            cfg["metadata"] = {"local": [a.idp_metadata]}
        conf = SPConfig()
        conf.load(cfg)
        return conf

    def client(self, allow_unsolicited=False):
        from saml2.client import Saml2Client

        client = Saml2Client(self.config(allow_unsolicited=allow_unsolicited))
        idps = list(client.metadata.identity_providers())
        if len(idps) != 1:
            raise Incomplete(f"the IdP metadata names {len(idps)} identity providers")
        return client, idps[0]

    def metadata(self):
        from saml2.metadata import create_metadata_string

        xml = create_metadata_string(None, config=self.config(with_idp=False), sign=False)
        return xml.decode() if isinstance(xml, bytes) else xml

    @staticmethod
    def outgoing(request_id, binding, info):
        """The browser's side of ``apply_binding``'s result."""
        if binding == BINDING_REDIRECT:
            return redirect_outgoing(request_id, dict(info["headers"])["Location"])
        form = next(f for f in page_forms(info["data"]) if "SAMLRequest" in f["fields"])
        return post_outgoing(request_id, form["action"], form["fields"])

    def authn_request(self, binding, sign, relay_state, force_authn, is_passive):
        client, idp = self.client()
        extra = {}
        if force_authn:
            extra["force_authn"] = "true"
        if is_passive:
            extra["is_passive"] = "true"
        request_id, info = client.prepare_for_authenticate(
            entityid=idp,
            relay_state=relay_state or "",
            binding=binding,
            nameid_format=self.args.nameid_format,
            sign=sign,
            sigalg=RSA_SHA256,
            digest_alg=SHA256,
            **extra,
        )
        return self.outgoing(request_id, binding, info)

    def check_response(self, saml_response, relay_state, request_id):
        from saml2 import BINDING_HTTP_POST

        client, _ = self.client(allow_unsolicited=request_id is None)
        outstanding = {request_id: "/"} if request_id else {}
        try:
            resp = client.parse_authn_request_response(
                saml_response,
                BINDING_HTTP_POST,
                outstanding=outstanding,
                # With conv_info pysaml2 also checks SubjectConfirmationData Recipient.
                conv_info={"entity_id": self.args.entity_id},
            )
        except Exception as e:  # noqa: BLE001 - the library's refusal is the observation
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
        if resp is None:
            return {"ok": False, "error": "pysaml2 returned no response"}
        if resp.assertion is None:
            # parse_authn_request_response ignores a failed Response.verify() (wrong
            # Destination, IssueInstant out of range): the assertion is then never parsed.
            return {
                "ok": False,
                "error": "pysaml2 did not verify the response (its Destination or "
                "IssueInstant was refused): no assertion",
            }
        info = resp.session_info()
        return {
            "ok": True,
            "error": None,
            "name_id": resp.name_id.text if resp.name_id is not None else None,
            "name_id_format": resp.name_id.format if resp.name_id is not None else None,
            "session_index": info.get("session_index"),
            "attributes": {k: list(v) for k, v in (resp.ava or {}).items()},
        }

    def logout_request(self, binding, relay_state, name_id, session_index):
        from saml2.mdstore import locations
        from saml2.saml import NameID

        client, idp = self.client()
        services = client.metadata.single_logout_service(idp, binding, "idpsso")
        destination = next(locations(services), None)
        if destination is None:
            raise Incomplete(f"the IdP metadata has no SingleLogoutService for {binding}")
        a = self.args
        request_id, request = client.create_logout_request(
            destination,
            idp,
            name_id=NameID(
                text=name_id,
                format=a.name_id_format,
                name_qualifier=a.name_qualifier,
                sp_name_qualifier=a.sp_name_qualifier,
            ),
            session_indexes=[session_index] if session_index else None,
            # HTTP-POST: an enveloped signature; HTTP-Redirect: over the query string.
            sign=binding == BINDING_POST,
            sign_alg=RSA_SHA256,
            digest_alg=SHA256,
        )
        info = client.apply_binding(
            binding,
            str(request),
            destination,
            relay_state or "",
            sign=binding == BINDING_REDIRECT,
            sigalg=RSA_SHA256,
        )
        return self.outgoing(request_id, binding, info)

    def check_logout_response(self, binding, saml_response, query, request_id):
        """``query``: the Redirect binding's query string as received (else None)."""
        from saml2.sigver import verify_redirect_signature

        client, idp = self.client()
        try:
            resp = client.parse_logout_request_response(saml_response, binding)
            if resp is None:
                return {"ok": False, "error": "pysaml2 returned no response"}
            # _parse_response ignores verify()'s verdict (Destination, IssueInstant,
            # status): asked again here.
            if resp.verify() is None:
                return {"ok": False, "error": "pysaml2 refused the LogoutResponse "
                        "(Destination or IssueInstant)"}
            if binding == BINDING_REDIRECT:
                # pysaml2 does not check a Redirect-bound response's signature itself;
                # its own helper does, over the parameters re-encoded.
                params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
                if "Signature" not in params:
                    return {"ok": False, "error": "the LogoutResponse is not signed"}
                certs = client.metadata.certs(idp, "idpsso", "signing")
                if not any(
                    verify_redirect_signature(params, client.sec.sec_backend, cert)
                    for _, cert in certs
                ):
                    return {"ok": False, "error": "the LogoutResponse's signature is wrong"}
            else:
                # An enveloped signature, when present, was verified while parsing.
                root = parse_xml(decode_message(saml_response, BINDING_POST))
                if not root.xpath("ds:Signature", namespaces=NS):
                    return {"ok": False, "error": "the LogoutResponse is not signed"}
        except Exception as e:  # noqa: BLE001
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
        return {"ok": True, "error": None}


    def answer_logout(self, binding, saml_request, query, relay_state, fail):
        """This SP receiving the IdP's LogoutRequest: the signature (over the query for
        HTTP-Redirect, enveloped for HTTP-POST) and the request checked by the library,
        then a signed LogoutResponse by redirect, Success or (``fail``) Responder.
        Returns (observations, the URL the browser is sent to, or None)."""
        from saml2 import samlp
        from saml2.s_utils import status_message_factory, success_status_factory
        from saml2.sigver import verify_redirect_signature

        client, idp = self.client()
        try:
            if binding == BINDING_REDIRECT:
                params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
                if "Signature" not in params:
                    return {"ok": False, "error": "the LogoutRequest is not signed"}, None
                certs = client.metadata.certs(idp, "idpsso", "signing")
                if not any(
                    verify_redirect_signature(params, client.sec.sec_backend, cert)
                    for _, cert in certs
                ):
                    return {"ok": False, "error": "the LogoutRequest's signature is wrong"}, None
            else:
                root = parse_xml(decode_message(saml_request, BINDING_POST))
                if not root.xpath("ds:Signature", namespaces=NS):
                    return {"ok": False, "error": "the LogoutRequest is not signed"}, None
            req = client.parse_logout_request(saml_request, binding, relay_state=relay_state)
            if req is None:
                return {"ok": False, "error": "pysaml2 refused the LogoutRequest"}, None
        except Exception as e:  # noqa: BLE001
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}, None
        message = req.message
        status = (
            status_message_factory("The session could not be ended", samlp.STATUS_RESPONDER)
            if fail
            else success_status_factory()
        )
        response = client.create_logout_response(message, [BINDING_REDIRECT], status, sign=False)
        info = client.apply_binding(
            BINDING_REDIRECT,
            str(response),
            response.destination,
            relay_state,
            response=True,
            sign=True,
            sigalg=RSA_SHA256,
        )
        seen = {
            "ok": True,
            "error": None,
            "name_id": message.name_id.text if message.name_id is not None else None,
            "session_index": [i.text for i in message.session_index],
        }
        return seen, dict(info["headers"])["Location"]


# --- python3-saml -------------------------------------------------------------------------


class OneLoginSp:
    """python3-saml's ``OneLogin_Saml2_Auth`` in strict mode, with settings built here
    and the IdP's part read from its metadata by ``OneLogin_Saml2_IdPMetadataParser``."""

    name = "onelogin"

    def __init__(self, args):
        self.args = args

    def settings(self, with_idp=True, sso_binding=BINDING_REDIRECT,
                 slo_binding=BINDING_REDIRECT, want_messages_signed=None):
        from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
        from onelogin.saml2.settings import OneLogin_Saml2_Settings

        a = self.args
        sp = {
            "entityId": a.entity_id,
            "assertionConsumerService": {"url": a.acs, "binding": BINDING_POST},
            "singleLogoutService": {"url": a.sls, "binding": BINDING_REDIRECT},
            "x509cert": read(a.cert),
            "privateKey": read(a.key),
        }
        if getattr(a, "nameid_format", None):
            sp["NameIDFormat"] = a.nameid_format
        if want_messages_signed is None:
            want_messages_signed = getattr(a, "want_response_signed", False)
        requests_signed = bool(
            getattr(a, "sign_request", None) or getattr(a, "authn_requests_signed", False)
        )
        security = {
            "authnRequestsSigned": requests_signed,
            "logoutRequestSigned": True,
            "logoutResponseSigned": True,
            "wantAssertionsSigned": getattr(a, "want_assertions_signed", False),
            "wantMessagesSigned": want_messages_signed,
            "wantNameId": True,
            "wantAttributeStatement": getattr(a, "want_attribute_statement", True),
            "requestedAuthnContext": False,
            "rejectDeprecatedAlgorithm": True,
            "signatureAlgorithm": RSA_SHA256,
            "digestAlgorithm": SHA256,
        }
        settings = {"strict": True, "debug": False, "sp": sp, "security": security}
        if with_idp:
            idp = OneLogin_Saml2_IdPMetadataParser.parse(
                read(a.idp_metadata),
                required_sso_binding=sso_binding,
                required_slo_binding=slo_binding,
            )
            settings = OneLogin_Saml2_IdPMetadataParser.merge_settings(settings, idp)
            # The IdP's metadata would override these two (its WantAuthnRequestsSigned,
            # its first NameIDFormat): what the command line says stands.
            settings["security"]["authnRequestsSigned"] = requests_signed
            if getattr(a, "nameid_format", None):
                settings["sp"]["NameIDFormat"] = a.nameid_format
        return OneLogin_Saml2_Settings(settings, sp_validation_only=not with_idp)

    def metadata(self):
        xml = self.settings(with_idp=False).get_sp_metadata()
        return xml.decode() if isinstance(xml, bytes) else xml

    def sign_post(self, settings, xml):
        """python3-saml sends requests by HTTP-Redirect only; for HTTP-POST its own
        signer adds the enveloped signature (after the Issuer)."""
        from onelogin.saml2.utils import OneLogin_Saml2_Utils

        signed = OneLogin_Saml2_Utils.add_sign(
            xml,
            settings.get_sp_key(),
            settings.get_sp_cert(),
            sign_algorithm=RSA_SHA256,
            digest_algorithm=SHA256,
        )
        return signed.decode() if isinstance(signed, bytes) else signed

    def authn_request(self, binding, sign, relay_state, force_authn, is_passive):
        from onelogin.saml2.auth import OneLogin_Saml2_Auth
        from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
        from onelogin.saml2.utils import OneLogin_Saml2_Utils

        settings = self.settings(sso_binding=binding)
        here = onelogin_request_data(self.args.acs)
        if binding == BINDING_REDIRECT:
            auth = OneLogin_Saml2_Auth(here, old_settings=settings)
            # Without a RelayState python3-saml sends the current URL (here the ACS).
            url = auth.login(return_to=relay_state, force_authn=force_authn, is_passive=is_passive)
            return redirect_outgoing(auth.get_last_request_id(), url)
        request = OneLogin_Saml2_Authn_Request(settings, force_authn, is_passive)
        xml = request.get_xml()
        if sign:
            xml = self.sign_post(settings, xml)
        fields = {
            "SAMLRequest": base64.b64encode(xml.encode()).decode(),
            "RelayState": relay_state
            if relay_state is not None
            else OneLogin_Saml2_Utils.get_self_url_no_query(here),
        }
        return post_outgoing(request.get_id(), settings.get_idp_sso_url(), fields)

    def check_response(self, saml_response, relay_state, request_id):
        from onelogin.saml2.auth import OneLogin_Saml2_Auth

        post = {"SAMLResponse": saml_response}
        if relay_state is not None:
            post["RelayState"] = relay_state
        auth = OneLogin_Saml2_Auth(
            onelogin_request_data(self.args.acs, post_data=post), old_settings=self.settings()
        )
        try:
            auth.process_response(request_id=request_id)
        except Exception as e:  # noqa: BLE001
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
        errors = auth.get_errors()
        if errors or not auth.is_authenticated():
            return {
                "ok": False,
                "error": f"{', '.join(errors)}: {auth.get_last_error_reason()}",
            }
        return {
            "ok": True,
            "error": None,
            "name_id": auth.get_nameid(),
            "name_id_format": auth.get_nameid_format(),
            "session_index": auth.get_session_index(),
            "attributes": auth.get_attributes(),
        }

    def logout_request(self, binding, relay_state, name_id, session_index):
        from onelogin.saml2.auth import OneLogin_Saml2_Auth
        from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
        from onelogin.saml2.utils import OneLogin_Saml2_Utils

        a = self.args
        settings = self.settings(slo_binding=binding)
        here = onelogin_request_data(a.sls)
        names = {
            "name_id": name_id,
            "session_index": session_index,
            "nq": a.name_qualifier,
            "name_id_format": a.name_id_format,
            "spnq": a.sp_name_qualifier,
        }
        if binding == BINDING_REDIRECT:
            auth = OneLogin_Saml2_Auth(here, old_settings=settings)
            url = auth.logout(return_to=relay_state, **names)
            return redirect_outgoing(auth.get_last_request_id(), url)
        request = OneLogin_Saml2_Logout_Request(settings, **names)
        xml = self.sign_post(settings, request.get_xml())
        fields = {
            "SAMLRequest": base64.b64encode(xml.encode()).decode(),
            "RelayState": relay_state
            if relay_state is not None
            else OneLogin_Saml2_Utils.get_self_url_no_query(here),
        }
        return post_outgoing(request.id, settings.get_idp_slo_url(), fields)

    def check_logout_response(self, binding, saml_response, query, request_id):
        from onelogin.saml2.auth import OneLogin_Saml2_Auth
        from onelogin.saml2.constants import OneLogin_Saml2_Constants
        from onelogin.saml2.logout_response import OneLogin_Saml2_Logout_Response
        from onelogin.saml2.utils import OneLogin_Saml2_Utils

        sls = self.args.sls
        try:
            if binding == BINDING_REDIRECT:
                # The library's own path: signature over the query as received, then
                # Destination, Issuer, InResponseTo, status.
                get_data = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
                here = onelogin_request_data(sls, get_data=get_data, query_string=query)
                auth = OneLogin_Saml2_Auth(
                    here, old_settings=self.settings(want_messages_signed=True)
                )
                auth.process_slo(keep_local_session=True, request_id=request_id)
                errors = auth.get_errors()
                if not errors:
                    return {"ok": True, "error": None}
                reason = auth.get_last_error_reason()
                if "invalid_logout_response" in errors:
                    # process_slo keeps no reason for this one: the same check again.
                    response = OneLogin_Saml2_Logout_Response(auth.get_settings(), saml_response)
                    response.is_valid(here, request_id)
                    reason = response.get_error()
                return {"ok": False, "error": ", ".join(errors) + (f": {reason}" if reason else "")}
            # HTTP-POST, which process_slo does not take: the enveloped signature with
            # the library's verifier, then the LogoutResponse's own checks.
            settings = self.settings(slo_binding=BINDING_POST, want_messages_signed=False)
            response = OneLogin_Saml2_Logout_Response(settings, saml_response)
            idp = settings.get_idp_data()
            multicerts = (idp.get("x509certMulti") or {}).get("signing")
            OneLogin_Saml2_Utils.validate_sign(
                response.document,
                settings.get_idp_cert(),
                xpath="/samlp:LogoutResponse/ds:Signature",
                multicerts=multicerts,
                raise_exceptions=True,
            )
            if not response.is_valid(onelogin_request_data(sls), request_id):
                return {"ok": False, "error": response.get_error()}
            if response.get_status() != OneLogin_Saml2_Constants.STATUS_SUCCESS:
                return {"ok": False, "error": f"logout_not_success: {response.get_status()}"}
        except Exception as e:  # noqa: BLE001
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
        return {"ok": True, "error": None}


    def answer_logout(self, binding, saml_request, query, relay_state, fail):
        """As ``PySaml2Sp.answer_logout``, with the library's own ``process_slo`` (strict:
        signature, Destination, NotOnOrAfter), which takes HTTP-Redirect only and always
        answers Success."""
        from onelogin.saml2.auth import OneLogin_Saml2_Auth
        from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request

        if binding != BINDING_REDIRECT or fail:
            raise Incomplete("python3-saml answers only HTTP-Redirect LogoutRequests, with Success")
        get_data = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        here = onelogin_request_data(self.args.sls, get_data=get_data, query_string=query)
        auth = OneLogin_Saml2_Auth(here, old_settings=self.settings(want_messages_signed=True))
        try:
            url = auth.process_slo(keep_local_session=True)
        except Exception as e:  # noqa: BLE001
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}, None
        errors = auth.get_errors()
        if errors:
            return {
                "ok": False,
                "error": f"{', '.join(errors)}: {auth.get_last_error_reason()}",
            }, None
        xml = auth.get_last_request_xml()
        seen = {
            "ok": True,
            "error": None,
            "name_id": OneLogin_Saml2_Logout_Request.get_nameid(xml),
            "session_index": OneLogin_Saml2_Logout_Request.get_session_indexes(xml),
        }
        return seen, url


LIBS = {"pysaml2": PySaml2Sp, "onelogin": OneLoginSp}


# --- the browser's part -------------------------------------------------------------------


def open_browser(args, idp_url):
    browser = Browser(origin_of(idp_url), args.ca, USER_AGENT)
    if getattr(args, "cookie_jar", None):
        browser.load_cookies(args.cookie_jar)
    return browser


def send(browser, outgoing, args, credentials=True):
    """The browser carries the request to the IdP: opens the Redirect URL, or posts the
    form as from a page of the SP."""
    creds = (args.username, args.password) if credentials else (None, None)
    if outgoing.binding == BINDING_REDIRECT:
        return browser.navigate(outgoing.url, *creds)
    return browser.navigate(
        outgoing.action, *creds, data=outgoing.fields, origin=origin_of(args.acs)
    )


def form_with(nav, field):
    """The form on the page the navigation stopped on that carries ``field``."""
    if nav.left_to is not None or "html" not in nav.content_type:
        return None
    for form in page_forms(nav.page):
        if field in form["fields"]:
            return form
    return None


def where_it_ended(nav, out, expected):
    out["ok"] = False
    out["final_status"] = nav.left_status if nav.left_to else nav.status
    out["final_body"] = nav.page[:BODY_CHARS]
    if nav.left_to:
        out["final_location"] = nav.left_to
        out["error"] = f"expected {expected}; redirected to {nav.left_to}"
    else:
        out["error"] = f"expected {expected}; the page (HTTP {nav.status}) has none"


def finish_sso(sp, nav, request_id, out):
    """Reads the SAMLResponse form the browser ended on and has the library judge it."""
    out["form_shown"] = nav.login_form_shown
    form = form_with(nav, "SAMLResponse")
    if form is None:
        where_it_ended(nav, out, "a form posting a SAMLResponse to the ACS")
        return
    saml_response = form["fields"]["SAMLResponse"]
    relay_state = form["fields"].get("RelayState")
    out["acs_action"] = urljoin(nav.url, form["action"])
    out["form_method"] = form["method"]
    out["relay_state"] = relay_state
    out["response_b64"] = saml_response
    try:
        xml = decode_message(saml_response, BINDING_POST)
    except Exception as e:  # noqa: BLE001
        xml = None
        out["xml_error"] = f"{type(e).__name__}: {e}"
    out["response_xml"] = xml
    if xml is not None:
        out.update(describe_status_response(xml))
    out.update(sp.check_response(saml_response, relay_state, request_id))
    if out["ok"] and xml is not None:
        out["xml_attributes"] = xml_attributes(xml)


def sso_output(request_id):
    return {
        "ok": False,
        "error": None,
        "form_shown": False,
        "request_id": request_id,
        "status_code": None,
        "sub_status_code": None,
        "status_message": None,
        "issuer": None,
        "in_response_to": None,
        "destination": None,
        "name_id": None,
        "name_id_format": None,
        "session_index": None,
        "attributes": None,
        "xml_attributes": None,
        "relay_state": None,
        "acs_action": None,
        "form_method": None,
        "response_b64": None,
        "response_xml": None,
    }


def peer_sp(spec, idp_metadata):
    """Another SP of the session, from a ``--peer`` JSON object."""
    ns = argparse.Namespace(
        entity_id=spec["entity_id"],
        acs=spec["acs"],
        sls=spec["sls"],
        cert=spec["cert"],
        key=spec["key"],
        idp_metadata=idp_metadata,
        nameid_format=spec.get("nameid_format"),
        want_assertions_signed=spec.get("want_assertions_signed", False),
        sign_request=True,
    )
    return LIBS[spec["lib"]](ns)


class LogoutPageParser(HTMLParser):
    """What the IdP's logout page holds: the frames that tell each SP (``src``), the link
    its script follows when they are done (``#slo-next``), and, on a frame's step page,
    the outcome it shows (``#slo-step``)."""

    def __init__(self):
        super().__init__()
        self.frames, self.next, self.step, self._in_step = [], None, None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "iframe" and a.get("src"):
            self.frames.append(a["src"])
        elif tag == "a" and a.get("id") == "slo-next":
            self.next = a.get("href")
        elif a.get("id") == "slo-step":
            self._in_step, self.step = True, ""

    def handle_endtag(self, _tag):
        self._in_step = False

    def handle_data(self, data):
        if self._in_step:
            self.step += data


def parse_logout_page(html):
    parser = LogoutPageParser()
    parser.feed(html)
    parser.close()
    return parser


def forged_logout_response(browser, peer, saml_request, binding, relay_state):
    """What Kopa answers to an unsigned LogoutResponse that claims to be ``peer``'s
    answer to the LogoutRequest it was just sent (right run, right InResponseTo), as
    anyone who saw the RelayState could send it: its HTTP status."""
    request = parse_xml(decode_message(saml_request, binding))
    slo = f"{browser.issuer}/saml/slo"
    xml = (
        f'<samlp:LogoutResponse xmlns:samlp="{NS["samlp"]}" xmlns:saml="{NS["saml"]}" '
        f'ID="_forged{request.get("ID")}" Version="2.0" IssueInstant='
        f'"{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}" Destination="{slo}" '
        f'InResponseTo="{request.get("ID")}"><saml:Issuer>{peer["entity_id"]}</saml:Issuer>'
        '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/>'
        "</samlp:Status></samlp:LogoutResponse>"
    )
    deflated = zlib.compress(xml.encode())[2:-4]
    query = urlencode(
        {"SAMLResponse": base64.b64encode(deflated).decode(), "RelayState": relay_state or ""}
    )
    return Browser(browser.issuer, browser.session.verify).get(f"{slo}?{query}").status_code


def tell_peers(browser, nav, args, out):
    """The IdP's logout page tells each other SP of the session in its own frame: the
    frame is sent on to the SP's logout endpoint (a redirect, or an auto-post form
    carrying a SAMLRequest), the SP answers as its library does, and the answer lands on
    the IdP's step page in the frame. Then the page goes on (``#slo-next``), as its
    script does once every frame reported or its wait ran out; an SP whose ``answer`` is
    "stall" never answers. Each SP's observations go to ``out["peers"]``. Returns where
    the browser ended."""
    peers = [json.loads(p) for p in args.peer or []]
    out["peers"] = []
    if nav.left_to is not None or "html" not in nav.content_type:
        return nav
    page = parse_logout_page(nav.page)
    if page.next is None:
        return nav
    out["logout_page_frames"] = len(page.frames)
    # Another browser (no cookie of this one, as an SP that learnt the run's id would be)
    # gets neither a frame nor the finish.
    stranger = Browser(browser.issuer, browser.session.verify)
    out["stranger_statuses"] = [
        stranger.get(urljoin(nav.url, u)).status_code for u in page.frames[:1] + [page.next]
    ]
    for src in page.frames:
        frame = browser.navigate(urljoin(nav.url, src))
        peer = binding = None
        form = form_with(frame, "SAMLRequest")
        if frame.left_to:
            base = frame.left_to.split("?", 1)[0]
            peer = next((p for p in peers if p["sls"] == base), None)
            binding = BINDING_REDIRECT
        elif form is not None:
            action = urljoin(frame.url, form["action"])
            peer = next((p for p in peers if p["sls"] == action), None)
            binding = BINDING_POST
        if peer is None:
            out["peers"].append({"ok": False, "error": f"frame {src} went to no known SP"})
            continue
        if binding == BINDING_REDIRECT:
            query = urlsplit(frame.left_to).query
            params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
            saml_request, relay_state = params.get("SAMLRequest"), params.get("RelayState")
        else:
            query = None
            saml_request = form["fields"]["SAMLRequest"]
            relay_state = form["fields"].get("RelayState")
        forged = forged_logout_response(browser, peer, saml_request, binding, relay_state)
        if peer.get("answer") == "stall":
            seen, url = {"ok": True, "error": None, "stalled": True}, None
        else:
            sp = peer_sp(peer, args.idp_metadata)
            seen, url = sp.answer_logout(
                binding, saml_request, query, relay_state, peer.get("answer") == "fail"
            )
        seen["entity_id"] = peer["entity_id"]
        seen["binding"] = "redirect" if binding == BINDING_REDIRECT else "post"
        seen["request_xml"] = decode_message(saml_request, binding)
        seen["forged_answer_status"] = forged
        if url is not None:
            step = browser.navigate(url)
            seen["step_status"] = step.status
            seen["step"] = parse_logout_page(step.page).step
        out["peers"].append(seen)
    return browser.navigate(urljoin(nav.url, page.next))


# --- commands -----------------------------------------------------------------------------


def cmd_request(sp, args, out):
    outgoing = sp.authn_request(
        BINDINGS[args.binding], args.sign_request, args.relay_state, args.force_authn,
        args.is_passive,
    )
    out.update(outgoing.as_json())


def cmd_login(sp, args, out):
    outgoing = sp.authn_request(
        BINDINGS[args.binding], args.sign_request, args.relay_state, args.force_authn,
        args.is_passive,
    )
    out.update(sso_output(outgoing.request_id))
    browser = open_browser(args, outgoing.target)
    try:
        nav = send(browser, outgoing, args)
        finish_sso(sp, nav, outgoing.request_id, out)
    finally:
        if args.cookie_jar:
            browser.save_cookies(args.cookie_jar)


def cmd_idp_initiated(sp, args, out):
    out.update(sso_output(None))
    browser = open_browser(args, args.url)
    try:
        nav = browser.navigate(args.url, args.username, args.password)
        finish_sso(sp, nav, None, out)
    finally:
        if args.cookie_jar:
            browser.save_cookies(args.cookie_jar)


def cmd_logout(sp, args, out):
    outgoing = sp.logout_request(
        BINDINGS[args.binding], args.relay_state, args.name_id, args.session_index
    )
    out.update(
        {
            "ok": False,
            "error": None,
            "request_id": outgoing.request_id,
            "request_xml": outgoing.xml,
            "form_shown": False,
            "status_code": None,
            "sub_status_code": None,
            "status_message": None,
            "issuer": None,
            "in_response_to": None,
            "destination": None,
            "response_binding": None,
            "response_location": None,
            "relay_state": None,
            "response_b64": None,
            "response_xml": None,
        }
    )
    browser = open_browser(args, outgoing.target)
    try:
        nav = send(browser, outgoing, args, credentials=False)
        nav = tell_peers(browser, nav, args, out)
    finally:
        browser.save_cookies(args.cookie_jar)
    out["form_shown"] = nav.login_form_shown
    query = urlsplit(nav.left_to or "").query
    params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    form = form_with(nav, "SAMLResponse")
    if nav.left_to and "SAMLResponse" in params:
        binding, saml_response = BINDING_REDIRECT, params["SAMLResponse"]
        out["response_binding"] = "redirect"
        out["response_location"] = nav.left_to
        out["relay_state"] = params.get("RelayState")
    elif form is not None:
        binding, saml_response, query = BINDING_POST, form["fields"]["SAMLResponse"], None
        out["response_binding"] = "post"
        out["response_location"] = urljoin(nav.url, form["action"])
        out["relay_state"] = form["fields"].get("RelayState")
    else:
        where_it_ended(nav, out, "a LogoutResponse (a redirect or a form to the SLS)")
        return
    out["response_b64"] = saml_response
    try:
        xml = decode_message(saml_response, binding)
        out["response_xml"] = xml
        out.update(describe_status_response(xml))
    except Exception as e:  # noqa: BLE001
        out["xml_error"] = f"{type(e).__name__}: {e}"
    out.update(sp.check_logout_response(binding, saml_response, query, outgoing.request_id))


def cmd_idp_logout(sp, args, out):
    """The user signs out at the IdP (``/logout``, the confirmation form posted); the
    session's SAML SPs are told through the browser."""
    out.update({"ok": False, "error": None, "final_status": None, "final_url": None})
    base = args.url.rstrip("/")
    browser = open_browser(args, base)
    try:
        nav = browser.navigate(f"{base}/logout")
        form = form_with(nav, "csrf")
        if form is None:
            where_it_ended(nav, out, "the sign-out confirmation form")
            return
        nav = browser.navigate(
            urljoin(nav.url, form["action"]), data=form["fields"], origin=origin_of(base)
        )
        nav = tell_peers(browser, nav, args, out)
    finally:
        browser.save_cookies(args.cookie_jar)
    out["final_status"] = nav.left_status if nav.left_to else nav.status
    out["final_url"] = nav.left_to or nav.url
    out["final_body"] = nav.page[:BODY_CHARS]
    out["ok"] = nav.left_to is None and nav.status == 200


class SpServer:
    """A service provider as a browser meets it, on ``http://127.0.0.1:<port>`` (the
    ``--peer`` JSON's "port"): ``/login`` sends the browser to the IdP with an
    AuthnRequest, ``/acs`` has the library judge the posted SAMLResponse, ``/sls``
    answers the IdP's LogoutRequest as the library does, or (``"answer": "stall"``)
    holds the request unanswered until the server stops."""

    def __init__(self, spec, idp_metadata):
        self.spec, self.sp = spec, peer_sp(spec, idp_metadata)
        self.outstanding, self.signed_in, self.told = None, None, []
        self.stop = threading.Event()
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path, _, query = self.path.partition("?")
                if path == "/login":
                    outgoing = me.sp.authn_request(BINDING_REDIRECT, True, None, False, False)
                    me.outstanding = outgoing.request_id
                    return self.answer(302, location=outgoing.url)
                if path == "/sls":
                    return me.logout(self, query)
                return self.answer(404)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                response = form.get("SAMLResponse", [""])[0]
                relay = form.get("RelayState", [None])[0]
                me.signed_in = me.sp.check_response(response, relay, me.outstanding)
                text = "signed in" if me.signed_in["ok"] else "refused"
                return self.answer(200, f"<!DOCTYPE html><title>SP</title><p id=sp>{text}</p>")

            def answer(self, status, body="", location=None):
                data = body.encode()
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        ThreadingHTTPServer.daemon_threads = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", spec["port"]), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def logout(self, handler, query):
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if self.spec.get("answer") == "stall":
            self.told.append({"stalled": True})
            self.stop.wait(120)
            return None
        seen, url = self.sp.answer_logout(
            BINDING_REDIRECT,
            params.get("SAMLRequest"),
            query,
            params.get("RelayState"),
            self.spec.get("answer") == "fail",
        )
        self.told.append(seen)
        if url is None:
            return handler.answer(400, "refused")
        return handler.answer(302, location=url)

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def cmd_browser_logout(_sp, args, out):
    """In headless Chromium (Debian's, driven by Playwright): sign in at each ``--peer``
    SP in turn (the form once, then single sign-on), sign out at the IdP's ``/logout``,
    and time how long the logout page takes to go on. Prints {"signed_in" (per SP),
    "told" (what each SP's /sls saw), "elapsed_secs" (logout page to the end),
    "final_url", "final_text", "partial_warning"}; screenshots go to --screenshots."""
    from playwright.sync_api import sync_playwright

    servers = [SpServer(json.loads(p), args.idp_metadata) for p in args.peer or []]
    base = args.url.rstrip("/")
    try:
        with sync_playwright() as pw:
            # Kopa's own certificate is trusted by its key, as a pinned one would be.
            pin = f"--ignore-certificate-errors-spki-list={spki_sha256(args.ca)}"
            browser = pw.chromium.launch(
                executable_path=args.chromium, args=[*CHROMIUM_ARGS, pin]
            )
            page = browser.new_page()
            # What the browser fetched, reported only when a step did not happen.
            seen = []
            page.on("response", lambda r: seen.append(f"{r.status} {r.request.method} {r.url}"))
            try:
                browse(page, servers, base, args, out)
            except Exception:
                out["responses"] = seen
                out["stuck_at"] = page.url
                out["cookies"] = [
                    (c["name"], c["domain"], c["path"], c["secure"], c["sameSite"])
                    for c in page.context.cookies()
                ]
                out["stuck_page"] = page.content()[:BODY_CHARS]
                page.screenshot(path=f"{args.screenshots}/stuck.png", full_page=True)
                raise
            browser.close()
    finally:
        out["told"] = [server.told for server in servers]
        for server in servers:
            server.close()
    out["ok"] = True


# Notes when the top-level logout page (``#slo-page``) began loading.
NOTE_PAGES_JS = """
if (window.top === window) {
  document.addEventListener('DOMContentLoaded', function () {
    if (document.getElementById('slo-page'))
      sessionStorage.setItem('kopa-test-slo-page', String(performance.timeOrigin));
  });
}
"""


def browse(page, servers, base, args, out):
    """The steps of ``browser-logout`` in ``page``."""
    if True:
        if True:
            out["signed_in"] = []
            for server in servers:
                page.goto(f"http://127.0.0.1:{server.spec['port']}/login")
                page.wait_for_selector("input[name=password], #sp", timeout=30_000)
                if page.locator("input[name=password]").count():
                    page.fill("input[name=username]", args.username)
                    page.fill("input[name=password]", args.password)
                    page.locator("form button[type=submit]").first.click()
                page.wait_for_selector("#sp", timeout=30_000)
                out["signed_in"].append(server.signed_in)
            page.goto(f"{base}/logout")
            # When every provider answers at once, the logout page may be gone before a
            # selector is polled: each top-level page notes, in the tab's sessionStorage,
            # when it began loading and whether it was the logout page.
            page.add_init_script(NOTE_PAGES_JS)
            page.locator("form[action='/logout'] button[type=submit]").first.click()
            page.wait_for_url("**/saml/slo/next**", timeout=120_000)
            page.wait_for_load_state()
            shown = page.evaluate("sessionStorage.getItem('kopa-test-slo-page')")
            if shown is None:
                raise RuntimeError("the logout page was never shown")
            left = page.evaluate("performance.timeOrigin")
            out["elapsed_secs"] = round((left - float(shown)) / 1000, 2)
            page.screenshot(path=f"{args.screenshots}/signed-out.png", full_page=True)
            out["final_url"] = page.url
            out["final_text"] = page.inner_text("main")
            out["partial_warning"] = page.locator("main [role=alert]").count() > 0


def finish_metadata(xml, args):
    """The library's metadata with what a federation's publisher adds: validUntil,
    cacheDuration, another ACS, and an enveloped signature made by python3-saml's metadata
    signer (xmlsec) with the publisher's key."""
    if not any((args.valid_until, args.cache_duration, args.extra_acs, args.sign_metadata_key)):
        return xml
    md = "urn:oasis:names:tc:SAML:2.0:metadata"
    root = etree.fromstring(xml.encode())
    for name, value in (("validUntil", args.valid_until), ("cacheDuration", args.cache_duration)):
        if value:
            root.set(name, value)
    if args.extra_acs:
        spsso = root.find(f"{{{md}}}SPSSODescriptor")
        acs = spsso.findall(f"{{{md}}}AssertionConsumerService")
        index = max(int(a.get("index", "0")) for a in acs) + 1
        extra = etree.Element(f"{{{md}}}AssertionConsumerService")
        extra.set("Binding", BINDING_POST)
        extra.set("Location", args.extra_acs)
        extra.set("index", str(index))
        acs[-1].addnext(extra)
    out = etree.tostring(root).decode()
    if args.sign_metadata_key:
        from onelogin.saml2.metadata import OneLogin_Saml2_Metadata

        out = OneLogin_Saml2_Metadata.sign_metadata(
            out, read(args.sign_metadata_key), read(args.sign_metadata_cert), RSA_SHA256, SHA256
        )
        out = out.decode() if isinstance(out, bytes) else out
    return out


# --- command line -------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    lib_help = "the SAML library the SP runs on (before or after the command)"
    parser.add_argument("--lib", choices=sorted(LIBS), help=lib_help)
    commands = parser.add_subparsers(dest="command", required=True)

    def sp_options(p, idp=True):
        p.add_argument("--lib", choices=sorted(LIBS), default=argparse.SUPPRESS, help=lib_help)
        p.add_argument("--entity-id", required=True)
        p.add_argument("--acs", required=True, help="AssertionConsumerService URL (HTTP-POST)")
        p.add_argument("--sls", required=True, help="SingleLogoutService URL")
        p.add_argument("--cert", required=True, help="the SP's certificate (PEM)")
        p.add_argument("--key", required=True, help="the SP's private key (PEM)")
        if idp:
            p.add_argument("--idp-metadata", required=True, help="the IdP's metadata XML")

    def authn_options(p):
        p.add_argument("--binding", choices=sorted(BINDINGS), required=True)
        p.add_argument("--sign-request", action=argparse.BooleanOptionalAction, default=True)
        p.add_argument("--relay-state")
        p.add_argument("--force-authn", action="store_true")
        p.add_argument("--is-passive", action="store_true")
        p.add_argument("--nameid-format", help="the NameIDPolicy Format asked for")

    def browser_options(p, jar_required=False):
        p.add_argument("--ca", required=True, help="PEM file Kopa's TLS cert is checked with")
        p.add_argument("--cookie-jar", required=jar_required, help="cookies, loaded and saved")

    def user_options(p):
        p.add_argument("--username", required=True)
        p.add_argument("--password", required=True)

    def validation_options(p):
        p.add_argument("--want-assertions-signed", action="store_true")
        p.add_argument("--want-response-signed", action="store_true")
        p.add_argument(
            "--want-attribute-statement", action=argparse.BooleanOptionalAction, default=True
        )

    p = commands.add_parser("metadata", help="the SP's metadata (XML)")
    sp_options(p, idp=False)
    p.add_argument("--authn-requests-signed", action="store_true")
    p.add_argument("--want-assertions-signed", action="store_true")
    p.add_argument("--valid-until", help="validUntil of the EntityDescriptor")
    p.add_argument("--cache-duration", help="cacheDuration of the EntityDescriptor")
    p.add_argument("--extra-acs", help="a second HTTP-POST AssertionConsumerService URL")
    p.add_argument("--sign-metadata-key", help="sign the metadata with this key (PEM)...")
    p.add_argument("--sign-metadata-cert", help="...and this certificate (a federation's)")

    p = commands.add_parser("request", help="build an AuthnRequest only")
    sp_options(p)
    authn_options(p)

    p = commands.add_parser("login", help="SP-initiated SSO")
    sp_options(p)
    authn_options(p)
    browser_options(p)
    user_options(p)
    validation_options(p)

    p = commands.add_parser("idp-initiated", help="IdP-initiated SSO")
    sp_options(p)
    p.add_argument("--url", required=True, help="the IdP-initiated SSO URL")
    browser_options(p)
    user_options(p)
    validation_options(p)
    p.add_argument("--nameid-format", help=argparse.SUPPRESS)

    p = commands.add_parser("logout", help="SP-initiated single logout")
    sp_options(p)
    browser_options(p, jar_required=True)
    p.add_argument("--binding", choices=sorted(BINDINGS), required=True)
    p.add_argument("--name-id", required=True)
    p.add_argument("--name-id-format", required=True)
    p.add_argument("--session-index")
    p.add_argument("--name-qualifier")
    p.add_argument("--sp-name-qualifier")
    p.add_argument("--relay-state")
    peer_help = (
        'another SP of the session, as JSON: {"lib", "entity_id", "acs", "sls", "cert", '
        '"key", "answer": "success"|"fail"|"stall"}; it answers the IdP\'s LogoutRequest'
    )
    p.add_argument("--peer", action="append", help=peer_help)

    p = commands.add_parser("idp-logout", help="sign out at the IdP itself")
    sp_options(p)
    browser_options(p, jar_required=True)
    p.add_argument("--url", required=True, help="the IdP's base URL")
    p.add_argument("--peer", action="append", help=peer_help)

    p = commands.add_parser("browser-logout", help="sign in and out in headless Chromium")
    sp_options(p)
    p.add_argument("--url", required=True, help="the IdP's base URL")
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--peer", action="append", help=peer_help + ', plus "port"')
    p.add_argument("--ca", required=True, help="Kopa's TLS certificate (PEM), trusted by key")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--screenshots", required=True, help="a directory for the screenshots")

    args = parser.parse_args()
    if args.lib is None:
        parser.error("--lib pysaml2|onelogin is required")
    sp = LIBS[args.lib](args)

    if args.command == "metadata":
        try:
            sys.stdout.write(finish_metadata(sp.metadata(), args))
            sys.stdout.write("\n")
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            return 1
        return 0

    run = {
        "request": cmd_request,
        "login": cmd_login,
        "idp-initiated": cmd_idp_initiated,
        "logout": cmd_logout,
        "idp-logout": cmd_idp_logout,
        "browser-logout": cmd_browser_logout,
    }[args.command]
    out = {"lib": args.lib, "command": args.command}
    try:
        run(sp, args, out)
    except Exception:  # noqa: BLE001 - report, with what was seen so far
        traceback.print_exc()
        print("observed so far: " + json.dumps(out, sort_keys=True), file=sys.stderr)
        return 1
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
