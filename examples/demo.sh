#!/bin/sh
# `make demo`: starts the bundled LLM simulator on a free loopback port with
# realistic latency and a few faults, runs the demo job (3,000 documents,
# about 30 s) with the progress bar, then stops the simulator.
# Ctrl-C stops the job cleanly; `make demo` again resumes it.
# Then, against the same simulator, the review pipeline of examples/review/
# (four steps per file and a reduce; examples/review/run.sh).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
state=$BUILD/demo
mkdir -p "$state"
rm -f "$state/mock.port"

"$BUILD/longhaul-mockllm" --port 0 --port-file "$state/mock.port" \
	--latency-ms 60 --jitter-ms 30 --fault-429 0.01 --fault-500 0.01 --fault-503 0.005 \
	--fault-reset 0.005 --retry-after 1 >/dev/null 2>"$state/mock.log" &
mock=$!
trap 'kill $mock 2>/dev/null; wait $mock 2>/dev/null' EXIT INT TERM

i=0
while [ ! -s "$state/mock.port" ]; do
	i=$((i + 1))
	if [ $i -gt 200 ] || ! kill -0 $mock 2>/dev/null; then
		echo "demo: the simulator did not start (see $state/mock.log)" >&2
		exit 1
	fi
	sleep 0.05
done
port=$(cat "$state/mock.port")

restart=""
if grep -q '"state": "completed"' "$state/progress.json" 2>/dev/null; then
	restart="--restart"   # finished last time: show a fresh run
fi
echo "demo: simulator on http://127.0.0.1:$port/v1 (60 ms latency, 3% transient faults)"
echo "demo: longhaul run examples/demo/spec.yaml   (Ctrl-C to stop; make demo again resumes)"
"$BUILD/longhaul" run examples/demo/spec.yaml $restart \
	--base-url "http://127.0.0.1:$port/v1" \
	--store "$state/demo.longhaul.db" --output "$state/results.jsonl" \
	--errors "$state/errors.jsonl" --progress-file "$state/progress.json"
rc=$?
if [ $rc -eq 0 ]; then
	echo "demo: first result:"
	head -n 1 "$state/results.jsonl"
	echo
	sh examples/review/run.sh "http://127.0.0.1:$port/v1"
	rc=$?
fi
exit $rc
