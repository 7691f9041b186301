"""Where the monitor's alerts go in the tests: a real SMTP server (aiosmtpd) and an HTTP
webhook receiver that checks the HMAC-SHA256 signature itself.

Usage: alert_sink.py OUT_DIR WEBHOOK_SECRET
Prints "ready SMTP_PORT HTTP_PORT" once both listen; runs until stdin closes.
Each e-mail becomes a line of OUT_DIR/mail.jsonl (envelope, decoded subject and body, as
Python's email package parses them); each webhook call a line of OUT_DIR/hooks.jsonl.
"""

import email
import email.header
import email.policy
import hashlib
import hmac
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller

out_dir = Path(sys.argv[1])
secret = sys.argv[2].encode()
lock = threading.Lock()


def append(name, record):
    with lock, open(out_dir / name, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


class Mail:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        append(
            "mail.jsonl",
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "subject": str(msg["subject"]),
                "date": str(msg["date"]),
                "message_id": str(msg["message-id"]),
                "body": msg.get_content(),
                "defects": [type(d).__name__ for d in msg.defects],
            },
        )
        return "250 OK"


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        header = self.headers.get("kopa-signature", "")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        t = parts.get("t", "")
        want = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        fresh = t.isdigit() and abs(time.time() - int(t)) < 300
        valid = hmac.compare_digest(want, parts.get("v1", "")) and fresh
        append("hooks.jsonl", {"valid": valid, "body": json.loads(body or b"null")})
        self.send_response(204 if valid else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


smtp_port = free_port()
controller = Controller(Mail(), hostname="127.0.0.1", port=smtp_port)
controller.start()
http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=http.serve_forever, daemon=True).start()
print(f"ready {smtp_port} {http.server_address[1]}", flush=True)
sys.stdin.read()
controller.stop()
http.shutdown()
