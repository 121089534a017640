#!/usr/bin/env python3
"""scripts/include_cycles.py: fail when a file of src/ depends on a file that
depends on it.

A module is a .c file together with the .h file of the same name (feed.c and
feed.h); a header with no .c file of its name is a module of its own. Module A
depends on module B when a file of A includes B's header (#include "b.h"), or
when A's .c file calls a function that B's .c file defines (an extern
definition: its name at the start of a line, after a line with its type).
Prints each cycle found, as "a -> b -> a", and exits 1 if there is one.

Usage: scripts/include_cycles.py [SRC_DIR]   (default: src/ of this tree)
       scripts/include_cycles.py --self-test  (plants a cycle in a copy of
       src/ and checks that it is reported)

Copyright (c) 2026, provider_connections developers.
Released under the PostgreSQL License (see LICENSE).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
# An extern function definition in PostgreSQL style: the type on one line,
# "name(" at the start of the next. Static ones are private to their file.
DEFINITION = re.compile(r'^(?!static\b)[A-Za-z_][^\n;(]*\n([A-Za-z_]\w*)\(', re.M)
COMMENT = re.compile(r'/\*.*?\*/|//[^\n]*', re.S)
STRING = re.compile(r'"(?:\\.|[^"\\\n])*"')


def module(name):
    return os.path.splitext(name)[0]


def read(path):
    with open(path, encoding='utf-8', errors='replace') as f:
        return f.read()


def dependencies(src):
    files = sorted(f for f in os.listdir(src) if f.endswith(('.c', '.h')))
    texts = {f: read(os.path.join(src, f)) for f in files}
    defined = {}                # function -> module of the .c defining it
    for f in files:
        if f.endswith('.c'):
            for name in DEFINITION.findall(COMMENT.sub('', texts[f])):
                defined[name] = module(f)
    deps = {module(f): set() for f in files}
    for f in files:
        me = module(f)
        for inc in INCLUDE.findall(texts[f]):
            if inc in texts and module(inc) != me:
                deps[me].add(module(inc))
        if f.endswith('.c'):
            code = STRING.sub('""', COMMENT.sub('', texts[f]))
            for name in set(re.findall(r'\b([A-Za-z_]\w*)\s*\(', code)):
                other = defined.get(name)
                if other is not None and other != me:
                    deps[me].add(other)
    return deps


def cycles(deps):
    """Every elementary cycle's smallest rotation, found by depth-first search."""
    found = set()
    for start in sorted(deps):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(deps.get(node, ())):
                if nxt == start:
                    i = path.index(min(path))
                    found.add(tuple(path[i:] + path[:i]))
                elif nxt not in path and nxt > start:
                    stack.append((nxt, path + [nxt]))
    return sorted(found)


def check(src):
    found = cycles(dependencies(src))
    for c in found:
        print('cycle: ' + ' -> '.join(c + (c[0],)))
    if not found:
        print('no cycle among the modules of %s' % src)
    return 1 if found else 0


def self_test(src):
    """Plant feed.h in worker_internal.h (worker_api <- feed) and expect a cycle."""
    tmp = tempfile.mkdtemp()
    try:
        copy = os.path.join(tmp, 'src')
        shutil.copytree(src, copy)
        path = os.path.join(copy, 'worker_internal.h')
        with open(path, 'a') as f:
            f.write('\n#include "feed.h"\n')
        rc = subprocess.run([sys.executable, __file__, copy],
                            stdout=subprocess.PIPE, universal_newlines=True)
        print(rc.stdout, end='')
        if rc.returncode == 1 and 'cycle:' in rc.stdout:
            print('the planted cycle was reported')
            return 0
        print('the planted cycle was NOT reported')
        return 1
    finally:
        shutil.rmtree(tmp)


if __name__ == '__main__':
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src')
    args = sys.argv[1:]
    if args == ['--self-test']:
        sys.exit(self_test(os.path.normpath(here)))
    sys.exit(check(args[0] if args else os.path.normpath(here)))
