#!/usr/bin/env python3
"""module_cycles.py SRC: the module-level import graph of a crate and its cycles.

Every `crate::` / `super::` path in a module's non-test code is an edge to the longest module
that prefixes it (a child naming its own parent is not counted). Prints each pair of modules
that import each other and each group of modules in a cycle; exits 1 if there is one.
Run by the test `code_layout` (tests/it/code_layout.rs)."""
import os, re, sys
src = sys.argv[1]
mods = {}
for root, _, files in os.walk(src):
    for f in files:
        if not f.endswith('.rs'): continue
        p = os.path.join(root, f); rel = os.path.relpath(p, src)[:-3]
        parts = rel.split('/')
        if parts[-1] == 'mod': parts = parts[:-1]
        if parts in (['lib'], ['main']): parts = []
        mods['::'.join(parts)] = p
def strip_tests(text):
    i = text.find('#[cfg(test)]\nmod tests')
    return text if i < 0 else text[:i]
edges = {m: set() for m in mods}
for m, p in mods.items():
    if m == '': continue
    text = strip_tests(open(p).read())
    text = re.sub(r'//.*', '', text)
    parent = m.rsplit('::', 1)[0] if '::' in m else ''
    if not p.endswith('mod.rs'):
        text = text.replace('super::', ('crate::' + parent + '::') if parent else 'crate::')
    else:
        pp = parent.rsplit('::', 1)[0] if '::' in parent else ''
        text = text.replace('super::', ('crate::' + pp + '::') if pp else 'crate::')
    text = text.replace('self::', 'crate::' + m + '::') if p.endswith('mod.rs') else text
    # expand `use crate::a::{b, c::d}` roughly: take every crate::path token, and brace groups
    for path in re.findall(r'crate((?:::[a-z_][a-z0-9_]*)+)', text):
        segs = path.strip(':').split('::')
        for k in range(len(segs), 0, -1):
            cand = '::'.join(segs[:k])
            if cand in mods:
                if cand != m and not m.startswith(cand + '::') : edges[m].add(cand)
                break
    for grp in re.findall(r'crate::((?:[a-z_][a-z0-9_]*::)*)\{([^}]*)\}', text):
        base = grp[0].strip(':')
        for item in grp[1].split(','):
            item = item.strip().split('::')[0].strip()
            cand = (base + '::' + item) if base else item
            if cand in mods and cand != m and not m.startswith(cand + '::'): edges[m].add(cand)
# parent modules re-exporting children are not edges we care about; report 2-cycles and SCCs
index = {}; low = {}; stack = []; on = set(); sccs = []; counter = [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index: strong(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
for v in edges:
    if v not in index: strong(v)
for m in sorted(edges):
    for n in sorted(edges[m]):
        if m in edges.get(n, ()) and m < n: print(f"2-cycle: {m} <-> {n}")
for c in sccs: print("cycle group:", ", ".join(c))
if not sccs: print("no import cycles")
sys.exit(1 if sccs else 0)
