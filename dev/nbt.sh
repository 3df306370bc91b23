#!/usr/bin/env bash
# convert dev/src/NAME.py -> nbs/NAME.ipynb, export, test it
set -e
cd "$(dirname "$0")/.."
source .venv/bin/activate
export DNR_DATA_DIR=${DNR_DATA_DIR:-/work/shared/data} DNR_CACHE_DIR=$PWD/.cache HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
for n in "$@"; do
  python dev/py2nb.py dev/src/$n.py >/dev/null
  nbdev_export --path nbs/$n.ipynb
  /usr/bin/time -f "$n: %es" nbdev_test --path nbs/$n.ipynb --do_print 2>&1 | tail -40
done
