#!/usr/bin/env python3
"""Module dependency graph of the controller crate, and its cycles.

Reads controller/src/**/*.rs, finds every `crate::<module>` path and every `super::<name>` path
(comments and string literals skipped) and prints, one line each, `from -> to, to...` between
the nodes: the top-level modules of the crate (`lib.rs` and `main.rs` are `crate`), except `api`,
`rest` and `queue`, whose submodules are nodes of their own (`api/invoke`, `rest/versions`,
`queue/dispatch`; their `mod.rs` is `api` / `rest` / `queue`). Then it prints every cycle (a strongly connected component of more
than one node, with one cycle through it) and exits 1 when there is one, 0 when there is none.

Usage: deploy/modgraph.py [--root controller/src] [--allow "a <-> b <-> c"]...
A cycle among nodes that are all in one `--allow` group is reported but does not fail the run.
"""
import argparse
import os
import re
import sys

SPLIT = ("api", "rest", "queue")  # top-level modules whose submodules are nodes of their own


def strip_comments_and_strings(text):
    """The source with comments, string and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r(#*)"', text[i:i + 100]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append("\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 12]):
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            i += len(m.group(0)) if m else 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_path(rel):
    """controller/src-relative file -> its module path as a list (`api/invoke.rs` -> [api, invoke])."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["lib"], ["main"]):
        return []
    return parts


def node_of(path):
    """The graph node of a module path."""
    if not path:
        return "crate"
    if path[0] in SPLIT and len(path) > 1:
        return path[0] + "/" + path[1]
    return path[0]


def uses(text, module, modules, split_children):
    """The nodes `text` (the source of `module`, a module path) refers to."""
    found = []
    for m in re.finditer(r"\b(crate|super)((?:\s*::\s*\w+)*)", text):
        segs = [s for s in re.split(r"\s*::\s*", m.group(2)) if s]
        if m.group(1) == "crate":
            base = []
        else:
            ups = 1
            while segs and segs[0] == "super":
                ups, segs = ups + 1, segs[1:]
            base = module[:-ups] if ups <= len(module) else []
        path = base + segs
        group = re.match(r"\s*::\s*\{", text[m.end():])
        if not group or len(path) >= 2:
            found.append(path)
            continue
        # `prefix::{a, b::c, d::{e, f}}`: the paths that matter are at most two deep.
        for item in group_items(text[m.end() + group.end():]):
            head = re.match(r"\s*(\w+)(?:\s*::\s*(\w+|\{))?", item)
            if not head or head.group(1) == "self":
                found.append(path)
                continue
            first = path + [head.group(1)]
            if head.group(2) == "{":
                inner = item[head.end():]
                found.extend(first + [i.strip().split(":")[0].strip()] for i in group_items(inner))
            elif head.group(2):
                found.append(first + [head.group(2)])
            else:
                found.append(first)
    out = set()
    for segs in found:
        if not segs or segs[0] not in modules:
            continue
        if segs[0] in SPLIT and len(segs) > 1 and segs[1] in split_children.get(segs[0], ()):
            out.add(segs[0] + "/" + segs[1])
        else:
            out.add(segs[0])
    return out


def group_items(s):
    """The items of a `{...}` group whose text starts at `s` (just after the brace)."""
    items, depth, item = [], 0, ""
    for c in s:
        if c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                break
            depth -= 1
        elif c == "," and depth == 0:
            items.append(item)
            item = ""
            continue
        item += c
    items.append(item)
    return [i for i in items if i.strip()]


def tarjan(graph):
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
            comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [c for c in comps if len(c) > 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "controller", "src"))
    ap.add_argument("--allow", action="append", default=[], help='nodes allowed to form a cycle: "a <-> b"')
    args = ap.parse_args()
    root = os.path.normpath(args.root)
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(dirpath, name)
                files[os.path.relpath(path, root)] = path
    paths = {rel: module_path(rel) for rel in files}
    modules = {p[0] for p in paths.values() if p}
    split_children = {}
    for p in paths.values():
        if len(p) > 1 and p[0] in SPLIT:
            split_children.setdefault(p[0], set()).add(p[1])
    graph = {}
    for rel in sorted(files):
        module = paths[rel]
        # A `#[path = "x_tests.rs"] mod tests;` file is the `tests` submodule of the file it
        # tests: its `super::` is that module.
        if rel.endswith("_tests.rs") and module:
            module = module[:-1] + [module[-1][: -len("_tests")], "tests"]
        with open(files[rel], encoding="utf-8") as f:
            text = strip_comments_and_strings(f.read())
        src = node_of(module)
        graph.setdefault(src, set())
        for dst in uses(text, module, modules, split_children):
            if dst != src:
                graph[src].add(dst)
    for node in sorted(graph):
        print(f"{node} -> {', '.join(sorted(graph[node])) or '(nothing)'}")
    allowed = [{n.strip() for n in a.split("<->")} for a in args.allow]
    failed = False
    for comp in tarjan(graph):
        members = set(comp)
        edges = [(a, b) for a in comp for b in sorted(graph[a]) if b in members]
        ok = any(members <= group for group in allowed)
        print(f"{'allowed ' if ok else ''}cycle: {' <-> '.join(comp)}  (edges: {', '.join(f'{a}->{b}' for a, b in edges)})")
        failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
