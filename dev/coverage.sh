#!/usr/bin/env bash
# Line coverage of dnr/ by the locked test suite, every Python process included (the pytest workers, the chapters'
# renders forked by dev/render_docs.py --serve, `dnr` CLI subprocesses, torchrun ranks):
#   bash dev/coverage.sh [OUT] [PYTEST ARGS...]    (default OUT .cache/coverage, default args: the whole suite as make test)
# Writes OUT/coverage.txt (`coverage report`) and OUT/coverage.json; installs coverage.py into .venv when missing
# (its own .pth starts coverage in each Python process that finds COVERAGE_PROCESS_START).
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
OUT=$(realpath -m "${1:-.cache/coverage}"); shift || true
"$VENV/bin/python" -c 'import coverage' 2>/dev/null || "$VENV/bin/python" -m pip install -q coverage
rm -rf "$OUT"; mkdir -p "$OUT"
cat > "$OUT/rc" <<RC
[run]
source = dnr
parallel = True
concurrency = multiprocessing,thread
patch = subprocess
    fork
    _exit
data_file = $OUT/.coverage
[report]
precision = 1
RC
export COVERAGE_PROCESS_START="$OUT/rc" DNR_DATA_DIR=${DNR_DATA_DIR:-$(realpath -m ../shared/data)} DNR_CACHE_DIR=${DNR_CACHE_DIR:-$PWD/.cache}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
[ $# -gt 0 ] || set -- -n 2 --dist loadgroup --no-loadscope-reorder --timeout 1500 tests
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"; rc=$?
"$VENV/bin/python" -m coverage combine -q --rcfile "$OUT/rc" "$OUT" >/dev/null
"$VENV/bin/python" -m coverage report --rcfile "$OUT/rc" > "$OUT/coverage.txt"
"$VENV/bin/python" -m coverage json -q --rcfile "$OUT/rc" -o "$OUT/coverage.json"
tail -1 "$OUT/coverage.txt"
exit $rc
