#!/usr/bin/env python3
"""A distribution token endpoint for the end-to-end tests (test use only).

GET /token?service=S&scope=repository:NAME:ACTIONS answers
{"token": JWT, "access_token": JWT, "expires_in": 300} to a client that
sends the Basic credentials given here (anything else: 401). The JWT is
ES256, signed with openssl by --sign-key, its certificate in the `x5c`
header: a registry whose `auth.token.rootcertbundle` holds that
certificate accepts it (iss --issuer, aud the service asked for, the
access asked for granted). Served over TLS with --cert/--key on
127.0.0.1 only.

Usage: token-server.py --port P --cert C --key K --sign-cert SC --sign-key SK
                       --issuer I --user U --password PW
"""
import argparse
import base64
import binascii
import http.server
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.parse


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_to_raw(sig: bytes) -> bytes:
    """An ECDSA signature as DER (SEQUENCE of two INTEGERs) to r || s."""
    assert sig[0] == 0x30
    i = 2 if sig[1] < 0x80 else 2 + (sig[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert sig[i] == 0x02
        n = sig[i + 1]
        v = sig[i + 2 : i + 2 + n].lstrip(b"\x00")
        out += v.rjust(32, b"\x00")
        i += 2 + n
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    for a in ("port", "cert", "key", "sign-cert", "sign-key", "issuer", "user", "password"):
        p.add_argument("--" + a, required=True)
    args = p.parse_args()
    pem = open(args.sign_cert).read()
    der = base64.b64decode("".join(l for l in pem.splitlines() if l and not l.startswith("-----")))
    x5c = base64.b64encode(der).decode()
    expected = "Basic " + base64.b64encode(f"{args.user}:{args.password}".encode()).decode()

    def sign(claims: dict) -> str:
        header = {"alg": "ES256", "typ": "JWT", "x5c": [x5c]}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        der_sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", args.sign_key],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
        ).stdout
        return f"{signing_input}.{b64url(der_to_raw(der_sig))}"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            url = urllib.parse.urlparse(self.path)
            if url.path != "/token":
                self.send_error(404)
                return
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            q = urllib.parse.parse_qs(url.query)
            access = []
            for scope in q.get("scope", []):
                for s in scope.split(" "):
                    kind, _, rest = s.partition(":")
                    name, _, actions = rest.rpartition(":")
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
            now = int(time.time())
            token = sign(
                {
                    "iss": args.issuer,
                    "sub": args.user,
                    "aud": q.get("service", [""])[0],
                    "exp": now + 300,
                    "nbf": now - 10,
                    "iat": now,
                    "jti": binascii.hexlify(os.urandom(8)).decode(),
                    "access": access,
                }
            )
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *a):
            sys.stderr.write("token-server: " + (fmt % a) + "\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(args.port)), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
