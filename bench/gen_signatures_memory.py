#!/usr/bin/env python3
"""A root where many small images share one large sigstore bundle.

    gen_signatures_memory.py ROOT --images N [--bundle-mib 1] [--layers 32]

One application `app` with N images (tags 1..N). Each image has a bundle
referrer whose manifest lists the same bundle blob LAYERS times: the shape
a root writer uses to make a judgement read and hold one blob over and
over (1.2 MiB on disk whatever N is). The bundle's signature verifies with
no key (it is padding), so every image is refused; what is measured is
what judging them costs.
"""
import argparse
import base64
import hashlib
import json
import os


def blob(root, data):
    d = hashlib.sha256(data).hexdigest()
    path = os.path.join(root, "blobs", "sha256", d)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
    return "sha256:" + d, len(data)


def desc(media_type, digest_size, **extra):
    d, size = digest_size
    out = {"mediaType": media_type, "digest": d, "size": size}
    out.update(extra)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--images", type=int, required=True)
    ap.add_argument("--bundle-mib", type=float, default=1.0)
    ap.add_argument("--layers", type=int, default=32)
    a = ap.parse_args()
    app = os.path.join(a.root, "app")
    os.makedirs(os.path.join(app, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(app, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    empty = blob(app, b"{}")
    bundle_type = "application/vnd.dev.sigstore.bundle.v0.3+json"
    # Just under the bundle limit (1 MiB) once encoded.
    pad = "x" * int(a.bundle_mib * (1 << 20) * 3 / 4 - 4096)
    statement = json.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "bench.local/app", "digest": {"sha256": "00" * 32}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {"padding": pad},
    }).encode()
    bundle = json.dumps({
        "mediaType": bundle_type,
        "verificationMaterial": {"publicKey": {"hint": "bench"}},
        "dsseEnvelope": {
            "payload": base64.b64encode(statement).decode(),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode(), "keyid": ""}],
        },
    }).encode()
    bundle_desc = desc(bundle_type, blob(app, bundle))
    manifests = []
    mt = "application/vnd.oci.image.manifest.v1+json"
    for n in range(1, a.images + 1):
        config = blob(app, json.dumps({"architecture": "arm64", "os": "linux", "n": n}).encode())
        layer = blob(app, f"layer {n}".encode())
        m = json.dumps({
            "schemaVersion": 2, "mediaType": mt,
            "config": desc("application/vnd.oci.image.config.v1+json", config),
            "layers": [desc("application/vnd.oci.image.layer.v1.tar", layer)],
        }).encode()
        image = desc(mt, blob(app, m))
        manifests.append(dict(image, annotations={"org.opencontainers.image.ref.name": str(n)}))
        art = json.dumps({
            "schemaVersion": 2, "mediaType": mt, "artifactType": bundle_type,
            "config": desc("application/vnd.oci.empty.v1+json", empty),
            "layers": [bundle_desc] * a.layers,
            "subject": image,
        }).encode()
        manifests.append(desc(mt, blob(app, art), artifactType=bundle_type))
    with open(os.path.join(app, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": manifests}, f)
    print(len(bundle))


if __name__ == "__main__":
    main()
