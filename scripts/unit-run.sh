#!/bin/sh
# Runs the Criterion unit tests and fails when a sanitizer spoke, even if
# Criterion counted the test as passed: a leak (LeakSanitizer) or an ASan
# or UBSan report in a test's worker does not fail the test by itself.
#   sh scripts/unit-run.sh build-san/test-unit [criterion args...]
set -u
bin=$1
shift
log=$(mktemp)
"$bin" --jobs 2 "$@" 2>&1 | tee "$log"
rc=$?
# tee's status hides the binary's: read it back from the summary line.
if grep -q "Failing: [1-9]\|Crashing: [1-9]" "$log"; then
	rc=1
fi
if grep -q "ERROR: [A-Za-z]*Sanitizer\|runtime error:" "$log"; then
	echo "unit-run: a sanitizer reported an error above (a test counted as passing is not enough)" >&2
	rc=1
fi
if ! grep -q "Synthesis: Tested:" "$log"; then
	echo "unit-run: the test binary did not finish" >&2
	rc=1
fi
rm -f "$log"
exit $rc
