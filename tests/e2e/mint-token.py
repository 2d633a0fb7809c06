#!/usr/bin/env python3
"""Mints an ES256 registry token for the auth end-to-end test, signed with
a PEM P-256 key, its kid the key's RFC 7638 thumbprint (as ir-server's).

Usage: mint-token.py KEY.pem ISS AUD SUB REPOSITORY IAT_OFFSET_SECONDS TTL
(IAT_OFFSET < 0 with a short TTL makes an expired token.)"""
import base64, hashlib, json, sys, time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


key_file, iss, aud, sub, repo, offset, ttl = sys.argv[1:8]
key = serialization.load_pem_private_key(open(key_file, "rb").read(), None)
nums = key.public_key().public_numbers()
x, y = b64(nums.x.to_bytes(32, "big")), b64(nums.y.to_bytes(32, "big"))
canonical = '{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}' % (x, y)
kid = b64(hashlib.sha256(canonical.encode()).digest())
iat = int(time.time()) + int(offset)
claims = {
    "iss": iss, "sub": sub, "aud": aud, "iat": iat, "nbf": iat, "exp": iat + int(ttl),
    "access": [{"type": "repository", "name": repo, "actions": ["pull"]}],
}
head = b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": kid}).encode())
body = b64(json.dumps(claims).encode())
der = key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
r, s = decode_dss_signature(der)
print(f"{head}.{body}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}")
