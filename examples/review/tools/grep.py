#!/usr/bin/env python3
"""The `grep` tool of examples/review: searches one file for a pattern.

longhaul runs it without a shell as `python3 tools/grep.py FILE` (from the
spec's directory) and writes the model's call arguments, a JSON object such
as {"pattern": "TODO"}, on its stdin. It prints the matching lines as
"LINE: TEXT", or "(no matching lines)". Whatever it prints goes back to the
model as the tool's result; a non-zero exit sends the model the error (the
last lines of stderr) instead, and the loop goes on.
"""
import json
import re
import sys


def main():
    if len(sys.argv) != 2:
        print("usage: grep.py FILE < {\"pattern\": \"...\"}", file=sys.stderr)
        return 2
    try:
        args = json.load(sys.stdin)
    except ValueError as e:
        print("the arguments are not JSON: %s" % e, file=sys.stderr)
        return 1
    pattern = args.get("pattern") if isinstance(args, dict) else None
    if not isinstance(pattern, str) or not pattern:
        print('expected {"pattern": "a regular expression"}', file=sys.stderr)
        return 1
    try:
        rx = re.compile(pattern)
    except re.error as e:
        print("bad pattern %r: %s" % (pattern, e), file=sys.stderr)
        return 1
    found = 0
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if rx.search(line):
                print("%d: %s" % (n, line.rstrip("\n")))
                found += 1
    if not found:
        print("(no matching lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
