#!/bin/bash
# Instructions per job of `asynctasklib run -j 8 -- true`, in the runner process only:
# (N=900 - N=300) / 600 under callgrind, so start-up and shutdown cancel out.
# Usage: benchmarks/cg_cli.sh [SRC_DIR] [PYTHON]   (defaults: src, python3)
set -eu
src=${1:-src}
py=${2:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in 300 900; do
  seq "$n" > "$tmp/in$n"
  PYTHONPATH=$src valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$n" \
    "$py" -m asynctasklib run -j 8 -- true < "$tmp/in$n" > /dev/null 2> "$tmp/err.$n"
  grep -h "^summary\|^totals" "$tmp/cg.$n" | head -1 | awk '{print $2}' > "$tmp/sum.$n"
done
a=$(cat "$tmp/sum.300"); b=$(cat "$tmp/sum.900")
echo "$src: $(( (b - a) / 600 )) instructions per job (N=300: $a, N=900: $b)"
