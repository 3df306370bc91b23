import os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('DNR_DATA_DIR', str((ROOT / '..' / 'shared' / 'data').resolve()))
os.environ.setdefault('DNR_CACHE_DIR', str(ROOT / '.cache'))
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ['HF_DATASETS_OFFLINE'] = '1'
BIN = Path(sys.executable).parent  # the venv's bin: dnr, nbdev_test, transformers


def dnr(cmd, *args, check=True, timeout=300):
    "Run `dnr <cmd> ...` (the venv's console script) in a subprocess from the repository root."
    import subprocess
    p = subprocess.run([str(BIN / 'dnr'), cmd, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and p.returncode != 0: raise AssertionError(f"rc={p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def last_json(p):
    "The JSON summary a `dnr` command prints as its last line."
    import json
    return json.loads(p.stdout.strip().splitlines()[-1])
