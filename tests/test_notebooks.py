"""Each chapter's inline tests, run by nbdev's own runner (one process per notebook, so no state leaks)."""
import subprocess, time
from pathlib import Path
import pytest
from conftest import BIN, ROOT

NOTEBOOKS = sorted(p.name for p in (ROOT / 'nbs').glob('*.ipynb') if not p.name.startswith('_'))

@pytest.mark.parametrize('nb', NOTEBOOKS)
def test_notebook(nb):
    t = time.time()
    r = subprocess.run([str(BIN / 'nbdev_test'), '--path', f'nbs/{nb}', '--n_workers', '0'], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    print(f'{nb}: {time.time() - t:.1f}s')
    assert r.returncode == 0 and 'Success.' in r.stdout, (r.stdout + r.stderr)[-6000:]
