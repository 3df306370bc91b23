import os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('DNR_DATA_DIR', str((ROOT / '..' / 'shared' / 'data').resolve()))
os.environ.setdefault('DNR_CACHE_DIR', str(ROOT / '.cache'))
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ['HF_DATASETS_OFFLINE'] = '1'
BIN = Path(sys.executable).parent  # the venv's bin: dnr, nbdev_test, transformers
