"""Write README.md from nbs/index.ipynb (what `nbdev_readme` does, without needing Quarto).

Wherever Quarto is installed, `nbdev_readme` gives the same content; tests/test_repo.py checks README is current.
"""
import sys, re
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]

def _joined(o: dict) -> dict:
    "execnb keeps multi-line text as lists of lines; nbconvert's templates want strings."
    j = lambda v: ''.join(v) if isinstance(v, list) else v
    o = dict(o)
    if 'text' in o: o['text'] = j(o['text'])
    if 'data' in o: o['data'] = {k: j(v) for k, v in o['data'].items()}
    return o

def _execute(nb):
    "Run the code cells in-process (as nbdev_test does) so the README shows their outputs."
    from execnb.shell import CaptureShell
    sh = CaptureShell()
    for c in nb.cells:
        if c.cell_type == 'code':
            c.outputs = [nbformat.from_dict(_joined(o)) for o in sh.run(c.source)]
            if sh.exc: raise RuntimeError(f"index.ipynb: cell failed:\n{c.source}") from sh.exc

def render() -> str:
    nb = nbformat.read(ROOT / 'nbs' / 'index.ipynb', as_version=4)
    nb.cells = [c for c in nb.cells if not c.source.lstrip().startswith('#|')]
    _execute(nb)
    for c in nb.cells:
        for o in c.get('outputs', []):
            if o.get('output_type') == 'execute_result': o['execution_count'] = None
    nb.metadata.setdefault('language_info', {})['name'] = 'python'
    md, _ = MarkdownExporter().from_notebook_node(nb)
    md = re.sub(r'^# (.+)\n\n> (.+)$', r'# \1\n\n> \2', md, count=1, flags=re.M)
    note = '<!-- generated from nbs/index.ipynb by dev/make_readme.py (or nbdev_readme); edit the notebook -->\n\n'
    return note + md.strip() + '\n'

if __name__ == '__main__':
    text = render()
    if '--check' in sys.argv:
        sys.exit(0 if (ROOT / 'README.md').read_text() == text else 'README.md is stale: run python dev/make_readme.py')
    (ROOT / 'README.md').write_text(text); print('wrote README.md')
