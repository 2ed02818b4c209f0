#!/bin/sh
# Runs the review pipeline (examples/review/review.yaml) against the bundled
# LLM simulator: `make demo` calls it with the simulator it started; alone,
# it starts one of its own. Outputs go to build/review/.
#
#   sh examples/review/run.sh [BASE_URL]
#
# Run it again: the job is already finished and its outputs are rewritten
# from the store (nothing is sent). Edit a step's prompt and run it again:
# only that step and the ones after it run. Delete build/review/ to start over.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
state=$BUILD/review
mkdir -p "$state"
url=${1:-}

mock=""
if [ -z "$url" ]; then
	rm -f "$state/mock.port"
	"$BUILD/longhaul-mockllm" --port 0 --port-file "$state/mock.port" --latency-ms 20 \
		>/dev/null 2>"$state/mock.log" &
	mock=$!
	trap 'kill $mock 2>/dev/null; wait $mock 2>/dev/null' EXIT INT TERM
	i=0
	while [ ! -s "$state/mock.port" ]; do
		i=$((i + 1))
		if [ $i -gt 200 ] || ! kill -0 $mock 2>/dev/null; then
			echo "review: the simulator did not start (see $state/mock.log)" >&2
			exit 1
		fi
		sleep 0.05
	done
	url="http://127.0.0.1:$(cat "$state/mock.port")/v1"
fi

echo "review: longhaul run examples/review/review.yaml   (4 files: notes, lint, verify with a grep tool, report; then a reduce)"
"$BUILD/longhaul" run examples/review/review.yaml --base-url "$url" \
	--store "$state/review.longhaul.db" --output "$state/results.jsonl" \
	--errors "$state/errors.jsonl" --reduce-output "$state/review.md" \
	--progress-file "$state/progress.json"
rc=$?
if [ $rc -eq 0 ]; then
	echo "review: one line per file, with every step's output: $state/results.jsonl"
	echo "review: the reduce report: $state/review.md"
	echo "review: one file's steps, and what its verify loop got from the grep tool:"
	python3 - "$state/results.jsonl" <<'PY' || true
import json, sys
with open(sys.argv[1]) as f:
    r = json.loads(f.readline())
print("  %s: steps %s" % (r["key"], ", ".join(r["steps"])))
print("  verify: %s" % r["steps"]["verify"]["output"][:160].replace("\n", " "))
PY
	echo "review: the report starts:"
	head -n 8 "$state/review.md" | sed 's/^/  /'
fi
exit $rc
