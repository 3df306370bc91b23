#!/usr/bin/env bash
# `make test`: the whole suite on the locked install, then the SDK and training tests on the newest releases.
#   1. every test (chapters, CLI, benchmarks, docs) in $VENV, installed from requirements.lock: each chapter executed once
#      (tests/test_notebooks.py, nbdev_test's rules; its docs page rendered from that run and checked by tests/test_docs.py),
#      two workers (-n 2) taking the longest tests first, each chapter's tests on one worker (--dist loadgroup); the run
#      ends with the tests over the 30 s budget (tests/conftest.py) and fails if one of them does not say why;
#   2. a second environment, $VENV-latest: the lock, then the newest releases that settings.ini allows of the provider
#      SDKs and the training stack ($LATEST_PACKAGES), torch kept at the lock's CPU build; it runs the provider, agents and
#      training tests ($LATEST_TESTS). A failure there is a break in a new release: fix the code or cap the package in
#      settings.ini with the reason beside the cap.
# Ends with one line `N passed, N failed` over both runs; exits non-zero if anything failed or errored.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
LATEST=${VENV}-latest
LATEST_PACKAGES=${LATEST_PACKAGES:?set by the Makefile}
LATEST_TESTS="tests/test_notebooks.py::test_notebook[01a_providers] tests/test_notebooks.py::test_notebook[01_agents]
 tests/test_notebooks.py::test_notebook[01c_batches] tests/test_notebooks.py::test_notebook[05_train]
 tests/test_notebooks.py::test_notebook[05a_tdpo] tests/test_agents.py tests/test_train.py"
PYTEST=(-p no:cacheprovider --timeout 1500 -o junit_family=xunit1 --dist loadgroup --no-loadscope-reorder)
out=$(mktemp -d)

"$VENV/bin/python" -m pytest -n 2 --durations=15 "${PYTEST[@]}" --junitxml "$out/locked.xml" tests
rc_locked=$?

echo; echo "== newest releases: $LATEST_PACKAGES =="
rc_latest=1
if [ "${DNR_SKIP_LATEST:-}" = 1 ]; then
  echo "skipped (DNR_SKIP_LATEST=1)"; rc_latest=0
elif make -s latest-env VENV="$VENV"; then
  LATEST_PACKAGES="$LATEST_PACKAGES" "$LATEST/bin/python" - <<'PY'
from importlib.metadata import version
import re
lock = dict(re.findall(r'^([A-Za-z0-9_.-]+)==(\S+)', open('requirements.lock').read(), re.M))
import os
for p in os.environ['LATEST_PACKAGES'].split() + ['torch']:
    v = version(p); print(f"  {p:<13} {v:<12}" + ('' if lock.get(p) == v else f" (lock: {lock.get(p)})"))
PY
  set -f  # test ids hold [brackets]: no globbing
  # shellcheck disable=SC2086
  "$LATEST/bin/python" -m pytest -n 2 "${PYTEST[@]}" --junitxml "$out/latest.xml" $LATEST_TESTS
  rc_latest=$?; set +f
else
  echo "could not build $LATEST (see above)"
fi

"$VENV/bin/python" - "$out" "$rc_locked" "$rc_latest" <<'PY'
import sys, xml.etree.ElementTree as ET
from pathlib import Path
out, rcs = Path(sys.argv[1]), sys.argv[2:]
tot = dict(passed=0, failed=0, skipped=0)
for name in ('locked', 'latest'):
    f = out / f'{name}.xml'
    if not f.exists(): print(f"{name}: no results"); tot['failed'] += 1; continue
    s = ET.parse(f).getroot(); s = s if s.tag == 'testsuite' else s.find('testsuite')
    n, fl, er, sk = (int(s.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped'))
    print(f"{name}: {n - fl - er - sk} passed, {fl + er} failed, {sk} skipped")
    tot['passed'] += n - fl - er - sk; tot['failed'] += fl + er; tot['skipped'] += sk
if tot['failed'] == 0 and any(rc != '0' for rc in rcs): tot['failed'] = 1  # a run that broke without results still fails
print(f"{tot['passed']} passed, {tot['failed']} failed, {tot['skipped']} skipped")
sys.exit(1 if tot['failed'] else 0)
PY
