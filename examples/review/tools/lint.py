#!/usr/bin/env python3
"""The `lint` step of examples/review: a few mechanical checks of one file.

longhaul runs it without a shell as `python3 tools/lint.py FILE` (from the
spec's directory). It prints one finding per line; its stdout is the step's
output. Exit 0 even when it finds something: a non-zero status would fail
the item (75 would retry it).
"""
import re
import sys

UNBOUNDED = re.compile(r"\b(strcpy|strcat|sprintf|gets)\(")


def main():
    if len(sys.argv) != 2:
        print("usage: lint.py FILE", file=sys.stderr)
        return 2
    path = sys.argv[1]
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    print("%s: %d lines" % (path, len(lines)))
    for n, line in enumerate(lines, 1):
        if len(line.expandtabs(8)) > 100:
            print("%s:%d: longer than 100 columns" % (path, n))
        if line != line.rstrip():
            print("%s:%d: trailing whitespace" % (path, n))
        for word in ("TODO", "FIXME", "XXX"):
            if word in line:
                print("%s:%d: %s" % (path, n, word))
        m = UNBOUNDED.search(line)
        if m:
            print("%s:%d: %s() does not bound its output" % (path, n, m.group(1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
