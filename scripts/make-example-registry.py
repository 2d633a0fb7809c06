#!/usr/bin/env python3
"""Generate the bundled example registry in `registry/`.

Regenerate it (from anywhere in the repository):

    python3 scripts/make-example-registry.py

Check that the committed registry is what this script makes (exit 1 if not):

    python3 scripts/make-example-registry.py --check

Python 3 standard library only. The output is deterministic: JSON is
serialised compactly in a fixed key order, tar entries are sorted with
uid/gid 0, fixed modes and a fixed mtime (2024-01-01T00:00:00Z), and gzip
streams have mtime 0 and no file name. The script wipes and recreates the
output directory, so running it twice gives identical bytes.

The one input that is not Python is `/hello`, a static binary of a few
hundred bytes compiled from `scripts/hello.c` (raw syscalls, no libc), once
for x86-64 and once for AArch64. Each is compiled when its compiler is
present (`gcc` on an x86-64 host or `x86_64-linux-gnu-gcc`; Debian's
`gcc-aarch64-linux-gnu`, `aarch64-linux-gnu-gcc`, or `gcc` on an AArch64
host), with flags that leave no build id, compiler version or symbols in
it. When a compiler is absent, or with `--reuse-binary`, that binary is
taken from the committed `registry/hello` layers, so regeneration needs no
compiler. The binaries are not committed on their own: they live only
inside the gzip layers.

What the registry holds (every application is an OCI image layout; the
server serves `<dir relative to registry/>` as the repository name):

- `hello`: a runnable image for linux/amd64 and linux/arm64: tags `latest`
  and `1.0` name one OCI image index with both platforms. Each platform's
  image has one gzip layer holding its `/hello`, an OCI image config with
  `Entrypoint: ["/hello"]` and `rootfs.diff_ids` set to the sha256 of the
  uncompressed tar.
  Try: `podman run --rm oci:registry/hello:latest` or, once served,
  `podman run --rm --tls-verify=false localhost:1337/hello:latest`.

- `multi`: tags behind image indexes.
  - `latest`, `1.1`, `edge` -> a multi-platform OCI image index with
    - linux/amd64: the same image as `hello`'s linux/amd64 (same config and
      layer blobs);
    - linux/arm64: NOT runnable; its single layer holds only `/README.txt`
      explaining that it exists to show a multi-platform index (the
      runnable arm64 greeting is in `hello`). Its config has no entrypoint.
  - `1.0` -> an older index with the linux/amd64 entry only.
  - one untagged OCI artifact (listed in index.json without a tag): an
    SBOM-like JSON document with `artifactType`
    `application/vnd.example.sbom.v1+json`, the empty config
    `application/vnd.oci.empty.v1+json` (the 2-byte blob `{}`), and a
    `subject` pointing at the linux/amd64 image manifest, so that the
    referrers API has something to list for that manifest.

- `team/tools`: a namespaced application (served as `team/tools`), a
  two-layer linux/amd64 image: the `hello` layer plus a layer holding
  `/etc/motd`. Tags `latest` and `1.0`. Tag `zstd`: the same image with
  both layers zstd-compressed (`tar+zstd`), to show that the server serves
  layer types it never opens. The zstd frames use raw (stored) blocks, the
  one zstd encoding the standard library can write deterministically; any
  zstd reader decodes them. Encrypted layers (ocicrypt) are random by
  construction, so they are not in the example: tests/e2e/clients.sh
  encrypts an image with skopeo and serves it.

Everything is far under 1 MiB.
"""

import argparse
import filecmp
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "registry")
HELLO_C = os.path.join(REPO, "scripts", "hello.c")

EPOCH = 1704067200  # 2024-01-01T00:00:00Z
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
CREATED = "2024-01-01T00:00:00Z"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SBOM_TYPE = "application/vnd.example.sbom.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"

GCC_FLAGS = [
    "-static",
    "-nostdlib",
    "-Os",
    "-fno-ident",
    "-fno-asynchronous-unwind-tables",
    "-fno-stack-protector",
    "-Wl,--build-id=none",
    "-Wl,-z,noseparate-code",
    "-s",
]


def canonical_json(value):
    """Compact JSON, keys in the order written, UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Layout:
    """An OCI image layout being written at `path`."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"))
        self._write("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
        self.entries = []

    def _write(self, rel, data):
        with open(os.path.join(self.path, rel), "wb") as f:
            f.write(data)

    def blob(self, media_type, data, **extra):
        """Stores `data` and returns its descriptor."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = os.path.join(self.path, "blobs", "sha256", digest[len("sha256:"):])
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
        desc = {"mediaType": media_type, "digest": digest, "size": len(data)}
        desc.update(extra)
        return desc

    def json_blob(self, media_type, value, **extra):
        return self.blob(media_type, canonical_json(value), **extra)

    def list(self, desc, tag=None):
        """Lists a descriptor in index.json, with a tag if given."""
        entry = dict(desc)
        if tag is not None:
            entry["annotations"] = {REF_NAME: tag}
        self.entries.append(entry)

    def finish(self):
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries}
        self._write("index.json", json.dumps(index, indent=2).encode() + b"\n")


def tar_of(files):
    """An uncompressed tar of {path: (mode, bytes)}, sorted, owned by 0:0."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = set()
        for name in files:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for name in sorted(dirs | set(files)):
            info = tarfile.TarInfo(name)
            info.mtime = EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if name in files:
                mode, data = files[name]
                info.mode = mode
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
    return buf.getvalue()


def gzip_of(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def zstd_of(data):
    """A zstd frame of `data` in raw blocks (RFC 8878): single segment, the
    content size in the header, no checksum."""
    out = bytearray(b"\x28\xb5\x2f\xfd")  # magic 0xFD2FB528, little-endian
    out.append(0xA0)  # 4-byte Frame_Content_Size, Single_Segment
    out += len(data).to_bytes(4, "little")
    max_block = 128 * 1024
    chunks = [data[i : i + max_block] for i in range(0, len(data), max_block)] or [b""]
    for i, chunk in enumerate(chunks):
        last = 1 if i == len(chunks) - 1 else 0
        header = last | (0 << 1) | (len(chunk) << 3)  # Block_Type 0: Raw
        out += header.to_bytes(3, "little") + chunk
    return bytes(out)


def zstd_layer(layout, files):
    """Writes a zstd layer; returns (descriptor, diff_id)."""
    tar = tar_of(files)
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    return layout.blob(OCI_LAYER_ZSTD, zstd_of(tar)), diff_id


def layer(layout, files):
    """Writes a gzip layer; returns (descriptor, diff_id)."""
    tar = tar_of(files)
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    return layout.blob(OCI_LAYER_GZIP, gzip_of(tar)), diff_id


def image(layout, arch, layers, config_extra, annotations):
    """Config + manifest over `layers` [(descriptor, diff_id)]; returns the
    manifest descriptor with its platform."""
    config = {
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": config_extra,
        "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
        "history": [
            {"created": CREATED, "created_by": "scripts/make-example-registry.py"}
            for _ in layers
        ],
    }
    config_desc = layout.json_blob(OCI_CONFIG, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": [d for d, _ in layers],
        "annotations": dict(annotations, **{"org.opencontainers.image.created": CREATED}),
    }
    return layout.json_blob(
        OCI_MANIFEST, manifest, platform={"architecture": arch, "os": "linux"}
    )


def index(layout, manifests):
    return layout.json_blob(
        OCI_INDEX, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    )


# The platforms of `hello`: {architecture: (compilers that build for it)}.
PLATFORMS = {
    "amd64": ["x86_64-linux-gnu-gcc"] + (["gcc"] if os.uname().machine == "x86_64" else []),
    "arm64": ["aarch64-linux-gnu-gcc"] + (["gcc"] if os.uname().machine == "aarch64" else []),
}


# ELF e_machine of each platform's binary.
ELF_MACHINE = {"amd64": 62, "arm64": 183}


def check_elf(arch, data, source):
    """`data` is a static ELF executable for `arch`'s machine, or exit."""
    machine = int.from_bytes(data[18:20], "little") if len(data) > 20 else None
    if data[:4] != b"\x7fELF" or machine != ELF_MACHINE[arch]:
        sys.exit(f"{source}: not a linux/{arch} ELF executable (e_machine {machine})")
    return data


def compile_hello(compiler):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "hello")
        subprocess.run([compiler, *GCC_FLAGS, "-o", out, HELLO_C], check=True)
        with open(out, "rb") as f:
            return f.read()


def hellos_from_registry(root):
    """{architecture: the /hello binary} out of the committed registry/hello
    layers (an index of platform images, or a single image: amd64)."""
    layout = os.path.join(root, "hello")
    blob = lambda d: open(
        os.path.join(layout, "blobs", "sha256", d["digest"].split(":", 1)[1]), "rb"
    ).read()
    with open(os.path.join(layout, "index.json"), "rb") as f:
        top = json.load(f)["manifests"][0]
    doc = json.loads(blob(top))
    if doc.get("mediaType") == OCI_INDEX:
        images = [(d["platform"]["architecture"], json.loads(blob(d))) for d in doc["manifests"]]
    else:
        images = [("amd64", doc)]
    found = {}
    for arch, manifest in images:
        tar = gzip.decompress(blob(manifest["layers"][0]))
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            found[arch] = t.extractfile("hello").read()
    return found


def hello_binaries(reuse):
    """{architecture: /hello} for every platform: compiled, or reused."""
    out, committed = {}, None
    for arch, compilers in PLATFORMS.items():
        compiler = None if reuse else next(filter(shutil.which, compilers), None)
        if compiler:
            out[arch] = check_elf(arch, compile_hello(compiler), compiler)
            continue
        if committed is None:
            try:
                committed = hellos_from_registry(DEFAULT_OUT)
            except (OSError, KeyError, ValueError, IndexError, tarfile.TarError) as e:
                sys.exit(f"{DEFAULT_OUT}/hello holds no /hello to reuse: {e}")
        if arch not in committed:
            sys.exit(
                f"no compiler for linux/{arch} (tried {', '.join(compilers)}) "
                f"and {DEFAULT_OUT}/hello holds no linux/{arch} /hello to reuse"
            )
        print(f"reusing the linux/{arch} /hello from the committed registry/hello", file=sys.stderr)
        out[arch] = check_elf(arch, committed[arch], f"{DEFAULT_OUT}/hello linux/{arch}")
    return out


def generate(out, hello):
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)

    hello_files = {"hello": (0o755, hello["amd64"])}
    hello_config = {"Entrypoint": ["/hello"], "Env": ["PATH=/"]}
    title = lambda t: {"org.opencontainers.image.title": t}

    # hello: one runnable image per platform, behind one index.
    app = Layout(os.path.join(out, "hello"))
    platforms = [
        image(app, arch, [layer(app, {"hello": (0o755, hello[arch])})], hello_config, title("hello"))
        for arch in PLATFORMS
    ]
    both = index(app, platforms)
    app.list(both, "latest")
    app.list(both, "1.0")
    app.finish()

    # multi: tags over multi-platform indexes, and a referrer.
    app = Layout(os.path.join(out, "multi"))
    amd64 = image(app, "amd64", [layer(app, hello_files)], hello_config, title("multi"))
    readme = (
        b"This linux/arm64 image exists to show a multi-platform index.\n"
        b"It holds no program: the runnable linux/arm64 greeting is in hello.\n"
    )
    arm64 = image(
        app,
        "arm64",
        [layer(app, {"README.txt": (0o644, readme)})],
        {"Labels": {"org.example.runnable": "false"}},
        title("multi (arm64 placeholder)"),
    )
    old = index(app, [amd64])
    new = index(app, [amd64, arm64])
    for tag in ["latest", "1.1", "edge"]:
        app.list(new, tag)
    app.list(old, "1.0")
    sbom = {
        "spdxVersion": "SPDX-2.3",
        "name": "multi linux/amd64",
        "packages": [{"name": "hello", "versionInfo": "1.1", "licenseConcluded": "Apache-2.0"}],
    }
    empty = app.blob(OCI_EMPTY, b"{}")
    payload = app.json_blob(
        "application/spdx+json", sbom, annotations={"org.opencontainers.image.title": "sbom.spdx.json"}
    )
    subject = {k: amd64[k] for k in ("mediaType", "digest", "size")}
    artifact = app.json_blob(
        OCI_MANIFEST,
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SBOM_TYPE,
            "config": empty,
            "layers": [payload],
            "subject": subject,
            "annotations": {"org.opencontainers.image.created": CREATED},
        },
        artifactType=SBOM_TYPE,
    )
    app.list(artifact)
    app.finish()

    # team/tools: a namespaced, two-layer image.
    app = Layout(os.path.join(out, "team", "tools"))
    motd = b"Welcome to team/tools, served by ir-server.\n"
    m = image(
        app,
        "amd64",
        [layer(app, hello_files), layer(app, {"etc/motd": (0o644, motd)})],
        hello_config,
        title("team/tools"),
    )
    app.list(m, "latest")
    app.list(m, "1.0")
    m = image(
        app,
        "amd64",
        [zstd_layer(app, hello_files), zstd_layer(app, {"etc/motd": (0o644, motd)})],
        hello_config,
        title("team/tools (zstd layers)"),
    )
    app.list(m, "zstd")
    app.finish()


def same_tree(a, b):
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(same_tree(os.path.join(a, d), os.path.join(b, d)) for d in cmp.common_dirs)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=DEFAULT_OUT, help="output directory (wiped first)")
    p.add_argument(
        "--reuse-binary",
        action="store_true",
        help="take the /hello binaries from the committed registry/hello instead of compiling",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="generate into a temporary directory and compare with --out",
    )
    args = p.parse_args()
    hello = hello_binaries(args.reuse_binary)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = os.path.join(tmp, "registry")
            generate(fresh, hello)
            if not same_tree(fresh, args.out):
                sys.exit(f"{args.out} differs from what {sys.argv[0]} generates")
        print(f"{args.out} is up to date")
        return
    generate(args.out, hello)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
