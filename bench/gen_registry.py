#!/usr/bin/env python3
"""Generates a registry root of OCI image layouts for benchmarks, or evicts
one from the page cache.

    gen_registry.py generate ROOT [--apps 8] [--image-mib 256] [--layers 4]
    gen_registry.py evict ROOT

`generate` writes APPS applications (`bench-00`, `bench-01`, ...), each an
OCI image layout with one image tagged `latest`: a small config and LAYERS
layers that add up to IMAGE_MIB MiB. Layer bytes come from a PRNG seeded by
the application and layer number, so the content is the same on every run
and machine (for one Python version family: `random.Random.randbytes`,
Python 3.9+) and incompressible, like real gzip layers. It prints the total
number of blob bytes written.

`evict` asks the kernel to drop every file under ROOT from the page cache
(posix_fadvise DONTNEED, after fsync), the per-file alternative to
/proc/sys/vm/drop_caches where that cannot be written (containers).
"""

import argparse
import hashlib
import json
import os
import random
import sys

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CHUNK = 16 << 20


def put_blob(app_dir, chunks):
    """Streams `chunks` into blobs/sha256/<hex>; returns (digest, size)."""
    tmp = os.path.join(app_dir, "blobs", ".incoming")
    h = hashlib.sha256()
    size = 0
    with open(tmp, "wb") as f:
        for chunk in chunks:
            h.update(chunk)
            f.write(chunk)
            size += len(chunk)
    hexd = h.hexdigest()
    os.replace(tmp, os.path.join(app_dir, "blobs", "sha256", hexd))
    return "sha256:" + hexd, size


def put_json(app_dir, media_type, doc):
    digest, size = put_blob(app_dir, [json.dumps(doc, separators=(",", ":")).encode()])
    return {"mediaType": media_type, "digest": digest, "size": size}


def random_chunks(seed, size):
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n


def generate(root, apps, image_mib, layers):
    total = 0
    layer_size = (image_mib << 20) // layers
    for a in range(apps):
        name = f"bench-{a:02d}"
        app_dir = os.path.join(root, name)
        os.makedirs(os.path.join(app_dir, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(app_dir, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        descs = []
        for i in range(layers):
            digest, size = put_blob(app_dir, random_chunks(f"ir-bench/{name}/{i}", layer_size))
            descs.append({"mediaType": LAYER, "digest": digest, "size": size})
        config = put_json(app_dir, CONFIG, {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]},
        })
        manifest = put_json(app_dir, MANIFEST, {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config,
            "layers": descs,
        })
        manifest["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
        with open(os.path.join(app_dir, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "mediaType": INDEX, "manifests": [manifest]}, f)
        total += sum(d["size"] for d in descs) + config["size"] + manifest["size"]
    print(total)


def evict(root):
    files = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            fd = os.open(os.path.join(dirpath, n), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                files += 1
            finally:
                os.close(fd)
    print(files)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("root")
    g.add_argument("--apps", type=int, default=8)
    g.add_argument("--image-mib", type=int, default=256)
    g.add_argument("--layers", type=int, default=4)
    e = sub.add_parser("evict")
    e.add_argument("root")
    args = p.parse_args()
    if args.cmd == "generate":
        generate(args.root, args.apps, args.image_mib, args.layers)
    else:
        evict(args.root)


if __name__ == "__main__":
    sys.exit(main())
