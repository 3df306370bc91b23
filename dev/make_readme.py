"""Write README.md from nbs/index.ipynb (what `nbdev_readme` does, without needing Quarto).

Wherever Quarto is installed, `nbdev_readme` gives the same content; tests/test_repo.py checks README is current.
"""
import sys, re
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]

def render() -> str:
    nb = nbformat.read(ROOT / 'nbs' / 'index.ipynb', as_version=4)
    nb.cells = [c for c in nb.cells if not c.source.lstrip().startswith('#|')]
    md, _ = MarkdownExporter().from_notebook_node(nb)
    md = re.sub(r'^# (.+)\n\n> (.+)$', r'# \1\n\n> \2', md, count=1, flags=re.M)
    note = '<!-- generated from nbs/index.ipynb by dev/make_readme.py (or nbdev_readme); edit the notebook -->\n\n'
    return note + md.strip() + '\n'

if __name__ == '__main__':
    text = render()
    if '--check' in sys.argv:
        sys.exit(0 if (ROOT / 'README.md').read_text() == text else 'README.md is stale: run python dev/make_readme.py')
    (ROOT / 'README.md').write_text(text); print('wrote README.md')
