#!/usr/bin/env python3
"""Import circles in one crate, read from its source: which file uses which.

    scripts/import-cycles.py crates/ir-server/src [--level files|modules]

Every `.rs` file under SRC is a node (`a/mod.rs` and `a.rs` are module `a`).
An edge A -> B is any path in A's code (a `use` line or an inline path) that
starts with `crate::` and names B, starts with `super::`/`self::` and
resolves to B, or starts with the name of a child module B of A; a path is resolved to the longest module prefix that has a
file, and `use crate::{a, b::c}` groups are expanded. Comments, strings and
`#[cfg(test)]` modules at the end of a file are left out: tests may use
anything. A file's own uses of itself do not count.

`--level files` (the default) keeps every file: a circle is a file that
imports, through others, a file that imports it back (a folder's `mod.rs`
that re-exports its children while they use its types is one).
`--level modules` merges each top-level module (a folder or a file directly
under SRC) into one node, for a coarser view of the design's boxes.

Prints each strongly connected component of more than one node with the
edges that make it, and exits 1 if there is any; prints "no import circles"
and exits 0 otherwise.
"""

import argparse
import os
import re
import sys


def module_of(src, path):
    rel = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if rel[-1] == "mod" or (len(rel) == 1 and rel[0] in ("lib", "main")):
        rel = rel[:-1]
    return tuple(rel)


def strip(code):
    """Code without comments, string and char literals, and the trailing
    `#[cfg(test)] mod ... { ... }` blocks."""
    code = re.sub(r"//[^\n]*", "", code)
    code = re.sub(r"/\*.*?\*/", "", code, flags=re.S)
    code = re.sub(r'r#*"(?:.|\n)*?"#*', '""', code)
    code = re.sub(r'"(?:\\.|[^"\\])*"', '""', code)
    m = re.search(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", code)
    if m:
        code = code[: m.start()]
    return code


def expand(prefix, body):
    """`a::{b, c::{d, e}}` as a::b, a::c::d, a::c::e (top-level commas only)."""
    out, depth, item = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(item)
            item = ""
        else:
            item += ch
    out.append(item)
    paths = []
    for it in out:
        it = it.strip()
        if not it:
            continue
        m = re.match(r"^([\w:]*?)::\{(.*)\}$", it, re.S)
        if m:
            paths += expand(prefix + m.group(1).split("::"), m.group(2))
        else:
            paths.append(prefix + [p for p in re.split(r"\s*::\s*", it.split(" as ")[0]) if p])
    return paths


def paths_in(code):
    """Every `crate::`/`super::`/`self::` path, as a list of segments."""
    found = []
    for m in re.finditer(r"\b(crate|super|self)((?:\s*::\s*(?:\w+|\*))*)\s*::\s*\{", code):
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        head = [m.group(1)] + [s for s in re.split(r"\s*::\s*", m.group(2)) if s]
        found += expand(head, code[m.end() : i - 1])
    code = re.sub(r"\b(?:crate|super|self)(?:\s*::\s*\w+)*\s*::\s*\{", "", code)
    for m in re.finditer(r"\b(crate|super|self)((?:\s*::\s*\w+)+)", code):
        found.append([m.group(1)] + [s for s in re.split(r"\s*::\s*", m.group(2)) if s])
    return found


def resolve(modules, here, path):
    """The longest module prefix of `path` (from file module `here`)."""
    if path[0] == "crate":
        base, rest = (), path[1:]
    else:
        # A file `a/b.rs` is module a::b: `self` is a::b, `super` is a. A
        # `mod.rs` or `lib.rs` is its folder's module already.
        base = here
        rest = path
        while rest and rest[0] in ("self", "super"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    full = base + tuple(rest)
    for n in range(len(full), -1, -1):
        if full[:n] in modules:
            return full[:n]
    return ()


def tarjan(nodes, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", help="a crate's src directory")
    ap.add_argument("--level", choices=("files", "modules"), default="files")
    args = ap.parse_args()
    files = {}
    for dirpath, _, names in os.walk(args.src):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(dirpath, name)
                files[module_of(args.src, path)] = path
    modules = set(files)
    edges = {}
    for mod, path in files.items():
        with open(path, encoding="utf-8") as f:
            code = strip(f.read())
        # `super` of a file `a/b.rs` is `a`; of `a/mod.rs` it is the parent.
        children = [
            m.group(1)
            for m in re.finditer(r"(?<![\w:])(\w+)\s*::", code)
            if mod + (m.group(1),) in modules and m.group(1) not in ("crate", "self", "super")
        ]
        for p in paths_in(code) + [["self", c] for c in children]:
            target = resolve(modules, mod, p)
            if target == mod or target == ():
                continue
            edges.setdefault(mod, set()).add(target)

    def node(m):
        if args.level == "modules":
            return m[:1]
        return m

    graph = {}
    for a, targets in edges.items():
        for b in targets:
            na, nb = node(a), node(b)
            if na != nb and na != () and nb != ():
                graph.setdefault(na, set()).add(nb)
    nodes = {node(m) for m in modules if node(m) != ()}
    name = lambda m: "::".join(m) or "crate"
    circles = [c for c in tarjan(nodes, graph) if len(c) > 1]
    for c in circles:
        members = set(c)
        print(f"import circle of {len(c)}: " + ", ".join(name(m) for m in c))
        for a in c:
            for b in sorted(graph.get(a, ())):
                if b in members:
                    print(f"  {name(a)} -> {name(b)}")
    if circles:
        return 1
    print(f"no import circles ({len(nodes)} {args.level} in {args.src})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
