#!/usr/bin/env python3
"""Content for bench/compare.sh: OCI image layouts for ir-server, and the
same files laid out as static `/v2/...` paths for nginx.

    gen_compare.py content ROOT --big-mib 256 [--tags 4] [--extra-apps 4]
    gen_compare.py nginx-tree ROOT TREE
    gen_compare.py big ROOT [--apps 2] [--layers 4] [--layer-mib 256]
    gen_compare.py many ROOT [--apps 10000] [--tags 10]
    gen_compare.py evict ROOT

`content` writes `team/app` (tags t00.., all on one image manifest whose
layers are a BIG_MIB MiB layer and a 64 KiB layer) and EXTRA_APPS small
applications `extra/app-NN`, and prints a JSON summary (digests, sizes) on
stdout for the benchmark script.

`nginx-tree` mirrors a `content` root for nginx: TREE/v2/<name>/blobs/
<digest>, TREE/v2/<name>/manifests/<tag and digest> as symbolic links to
the layout's blob files (nginx follows them, so it serves the very same
files with sendfile), and generated TREE/v2/<name>/tags/list and
TREE/v2/_catalog JSON documents.

`big` writes APPS applications of LAYERS layers of LAYER_MIB MiB each (the
start-up registry with few big blobs). `many` writes APPS applications
with TAGS tags each: per tag an image manifest and its config, all sharing
one small layer per application (the registry of many small files). Both
print a JSON summary (entries, manifest bytes, blob bytes).

`evict` drops every file under ROOT from the page cache (fsync, then
posix_fadvise DONTNEED), where /proc/sys/vm/drop_caches cannot be written.

Bytes come from seeded PRNGs: the same on every run (Python 3.9+).
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
REF = "org.opencontainers.image.ref.name"
CHUNK = 16 << 20


class Layout:
    def __init__(self, root, name):
        self.dir = os.path.join(root, name)
        os.makedirs(os.path.join(self.dir, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(self.dir, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        self.manifest_bytes = 0
        self.blob_bytes = 0
        self.entries = 0

    def put(self, chunks, media_type):
        tmp = os.path.join(self.dir, "blobs", ".incoming")
        h = hashlib.sha256()
        size = 0
        with open(tmp, "wb") as f:
            for c in chunks:
                h.update(c)
                f.write(c)
                size += len(c)
        hexd = h.hexdigest()
        os.replace(tmp, os.path.join(self.dir, "blobs", "sha256", hexd))
        self.entries += 1
        if media_type in (MANIFEST, INDEX):
            self.manifest_bytes += size
        else:
            self.blob_bytes += size
        return {"mediaType": media_type, "digest": "sha256:" + hexd, "size": size}

    def put_json(self, media_type, doc):
        return self.put([json.dumps(doc, separators=(",", ":")).encode()], media_type)

    def image(self, layers, seed):
        config = self.put_json(CONFIG, {
            "architecture": "amd64", "os": "linux", "created": seed,
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layers]},
        })
        return self.put_json(MANIFEST, {
            "schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": layers,
        })

    def index(self, tagged):
        entries = [dict(m, annotations={REF: t}) for t, m in tagged]
        with open(os.path.join(self.dir, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}, f)


def random_chunks(seed, size):
    rng = random.Random(seed)
    while size > 0:
        n = min(CHUNK, size)
        yield rng.randbytes(n)
        size -= n


def content(root, big_mib, tags, extra_apps):
    app = Layout(root, "team/app")
    big = app.put(random_chunks("ir-compare/big", big_mib << 20), LAYER)
    small = app.put(random_chunks("ir-compare/small", 64 << 10), LAYER)
    manifest = app.image([big, small], "team/app")
    tag_names = [f"t{i:02d}" for i in range(tags)]
    app.index([(t, manifest) for t in tag_names])
    names = ["team/app"]
    for i in range(extra_apps):
        name = f"extra/app-{i:02d}"
        extra = Layout(root, name)
        layer = extra.put(random_chunks(f"ir-compare/{name}", 4 << 10), LAYER)
        extra.index([("latest", extra.image([layer], name))])
        names.append(name)
    with open(os.path.join(app.dir, "blobs", "sha256", manifest["digest"][7:]), "rb") as f:
        manifest_size = len(f.read())
    print(json.dumps({
        "name": "team/app", "tags": tag_names, "manifest": manifest["digest"],
        "manifest_size": manifest_size, "big": big["digest"], "big_size": big["size"],
        "small": small["digest"], "small_size": small["size"], "names": sorted(names),
    }))


def nginx_tree(root, tree):
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        if "oci-layout" not in filenames:
            continue
        dirnames[:] = []
        name = os.path.relpath(dirpath, root)
        names.append(name)
        base = os.path.join(tree, "v2", name)
        for sub in ("blobs", "manifests", "tags"):
            os.makedirs(os.path.join(base, sub), exist_ok=True)
        blobs = os.path.join(dirpath, "blobs", "sha256")
        for hexd in os.listdir(blobs):
            os.symlink(os.path.join(blobs, hexd), os.path.join(base, "blobs", "sha256:" + hexd))
        with open(os.path.join(dirpath, "index.json")) as f:
            index = json.load(f)
        tags = []
        for m in index["manifests"]:
            target = os.path.join(blobs, m["digest"][7:])
            link = os.path.join(base, "manifests", m["digest"])
            if not os.path.lexists(link):
                os.symlink(target, link)
            tag = m.get("annotations", {}).get(REF)
            if tag:
                os.symlink(target, os.path.join(base, "manifests", tag))
                tags.append(tag)
        with open(os.path.join(base, "tags", "list"), "w") as f:
            json.dump({"name": name, "tags": sorted(tags)}, f, separators=(",", ":"))
    with open(os.path.join(tree, "v2", "_catalog"), "w") as f:
        json.dump({"repositories": sorted(names)}, f, separators=(",", ":"))


def summary(layouts):
    print(json.dumps({
        "applications": len(layouts),
        "entries": sum(l.entries for l in layouts),
        "manifest_bytes": sum(l.manifest_bytes for l in layouts),
        "blob_bytes": sum(l.blob_bytes for l in layouts),
    }))


def big(root, apps, layers, layer_mib):
    out = []
    for a in range(apps):
        name = f"big-{a:02d}"
        app = Layout(root, name)
        descs = [app.put(random_chunks(f"ir-compare/{name}/{i}", layer_mib << 20), LAYER)
                 for i in range(layers)]
        app.index([("latest", app.image(descs, name))])
        out.append(app)
    summary(out)


def many(root, apps, tags):
    out = []
    for a in range(apps):
        name = f"ns-{a // 100:03d}/app-{a % 100:02d}"
        app = Layout(root, name)
        layer = app.put([f"layer of {name}\n".encode() * 16], LAYER)
        app.index([(f"v{t}.0", app.image([layer], f"{name}:{t}")) for t in range(tags)])
        out.append(app)
    summary(out)


def evict(root):
    for dirpath, _, names in os.walk(root):
        for n in names:
            fd = os.open(os.path.join(dirpath, n), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("content")
    c.add_argument("root")
    c.add_argument("--big-mib", type=int, default=256)
    c.add_argument("--tags", type=int, default=4)
    c.add_argument("--extra-apps", type=int, default=4)
    n = sub.add_parser("nginx-tree")
    n.add_argument("root")
    n.add_argument("tree")
    b = sub.add_parser("big")
    b.add_argument("root")
    b.add_argument("--apps", type=int, default=2)
    b.add_argument("--layers", type=int, default=4)
    b.add_argument("--layer-mib", type=int, default=256)
    m = sub.add_parser("many")
    m.add_argument("root")
    m.add_argument("--apps", type=int, default=10000)
    m.add_argument("--tags", type=int, default=10)
    e = sub.add_parser("evict")
    e.add_argument("root")
    a = p.parse_args()
    if a.cmd == "content":
        content(a.root, a.big_mib, a.tags, a.extra_apps)
    elif a.cmd == "nginx-tree":
        nginx_tree(a.root, a.tree)
    elif a.cmd == "big":
        big(a.root, a.apps, a.layers, a.layer_mib)
    elif a.cmd == "many":
        many(a.root, a.apps, a.tags)
    else:
        evict(a.root)


if __name__ == "__main__":
    sys.exit(main())
