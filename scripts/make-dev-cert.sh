#!/usr/bin/env bash
# Makes a development CA and a server certificate for localhost,
# 127.0.0.1 and ::1, for `ir-server -t tls` (and RA-TLS's server side).
#
#   scripts/make-dev-cert.sh [DIR]     (default: certs/ at the repository root)
#
# Writes DIR/ca.crt, DIR/ca.key, DIR/server.crt (leaf, then the CA) and
# DIR/server.key (PKCS#8). Clients trust DIR/ca.crt: `curl --cacert`,
# `skopeo --src-cert-dir` (give it a directory holding only ca.crt, since
# skopeo reads *.key files there as client keys). Never use these in
# production; the private keys are not protected. Needs openssl.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-$ROOT/certs}
DAYS=${DAYS:-825}
mkdir -p "$DIR"
cd "$DIR"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout ca.key -out ca.crt -days "$DAYS" \
  -subj "/CN=ir-server development CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
cat >server.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
  -out server.leaf -days "$DAYS" -extfile server.ext 2>/dev/null
cat server.leaf ca.crt >server.crt
rm -f server.csr server.ext server.leaf ca.srl
chmod 644 ca.crt server.crt
echo "wrote $DIR/{ca.crt,ca.key,server.crt,server.key}"
