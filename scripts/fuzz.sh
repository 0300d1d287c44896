#!/usr/bin/env bash
# make fuzz: runs every Go fuzz target (func FuzzX in a _test.go file) for
# FUZZTIME each, one after another, and prints one line per target.
#   FUZZTIME          how long each target runs (go test -fuzztime), default 10s
#   FUZZMINIMIZETIME  the most spent minimising each new input, default 100x
#                     (100 runs: a duration is mostly spent minimising on slow targets;
#                     Go's default of 60s can eat a whole short run)
#   FUZZPARALLEL      fuzzing workers per target (default: GOMAXPROCS)
#   FUZZ              a regexp: only targets whose name matches
# A crash leaves its input in the package's testdata/fuzz/FuzzX/ (commit it
# with the fix: go test then runs it for ever) and makes this script fail.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-100x}
FUZZPARALLEL=${FUZZPARALLEL:-}
FUZZ=${FUZZ:-.}

targets=$(find . -name '*_test.go' -not -path './.git/*' -print0 |
	xargs -0 grep -HoE '^func Fuzz[A-Za-z0-9_]*\(' | sed -E 's/:func /:/; s/\($//' | sort)
[ -n "$targets" ] || { echo "fuzz: no targets found" >&2; exit 1; }

n=0 failed=0 total=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in $targets; do
	dir=$(dirname "${t%%:*}") name=${t##*:}
	[[ $name =~ $FUZZ ]] || continue
	args=(test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME")
	[ -n "$FUZZPARALLEL" ] && args+=(-parallel "$FUZZPARALLEL")
	crashers=$(ls "$dir/testdata/fuzz/$name" 2>/dev/null | wc -l)
	if "$GO" "${args[@]}" "$dir" >"$log" 2>&1; then
		status=ok
	elif grep -qx '    context deadline exceeded' "$log" && [ "$(ls "$dir/testdata/fuzz/$name" 2>/dev/null | wc -l)" -eq "$crashers" ]; then
		# Go's coordinator can report its own -fuzztime deadline as a
		# failure when workers are starved (go.dev/issue/75804, fixed in
		# Go 1.27); no input failed.
		status=ok:deadline-race
	else
		status=FAIL failed=$((failed + 1))
	fi
	execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
	n=$((n + 1)) total=$((total + ${execs:-0}))
	printf '%-18s %-28s %-28s %12s execs\n' "$status" "$name" "$dir" "${execs:-?}"
	if [ "$status" = FAIL ]; then
		grep -vE '^fuzz: elapsed' "$log" | tail -40
	fi
done
echo "fuzz: $n targets, $total executions, $failed failed (FUZZTIME=$FUZZTIME each)"
[ "$failed" -eq 0 ]
