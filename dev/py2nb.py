"""Author notebooks as jupytext percent-format .py files, convert to .ipynb.

Usage: python dev/py2nb.py dev/src/00_data.py  ->  nbs/00_data.ipynb
Cells: `# %%` code, `# %% [markdown]` markdown. The .ipynb is the source of truth once written.
"""
import sys, jupytext, pathlib
for src in sys.argv[1:]:
    src = pathlib.Path(src)
    nb = jupytext.read(src, fmt='py:percent')
    nb.metadata = {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}
    for c in nb.cells: c.metadata = {}
    out = pathlib.Path('nbs') / (src.stem + '.ipynb')
    jupytext.write(nb, out, fmt='ipynb')
    print('wrote', out)
    import subprocess
    subprocess.run([str(pathlib.Path(sys.executable).with_name('nbdev_clean')), '--fname', str(out)], check=True)
