"""Edit notebooks as plain text, keeping cell ids (so exports and merges stay stable).

    python dev/nb.py pull nbs/03_debate.ipynb ...   # -> dev/src/03_debate.txt
    python dev/nb.py push dev/src/03_debate.txt ... # -> nbs/03_debate.ipynb (then nbdev_clean)

In the text form each cell starts with a marker line `# %% code <id>` or `# %% markdown <id>` and holds
its source verbatim. A new cell takes `# %% code new` (or `markdown new`): push gives it a fresh id.
Deleting a marker block deletes the cell; moving it moves the cell.
"""
import json, re, secrets, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / 'dev' / 'src'
MARK = re.compile(r'^# %% (code|markdown|raw) (\S+)\s*$')

def pull(nb: Path) -> Path:
    d = json.loads(nb.read_text())
    out = SRC / (nb.stem + '.txt')
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    for c in d['cells']:
        src = ''.join(c['source'])
        parts.append(f"# %% {c['cell_type']} {c.get('id') or 'new'}\n{src}\n")
    out.write_text('\n'.join(parts))
    return out

def parse(text: str) -> list[tuple[str, str, str]]:
    cells, cur = [], None
    for line in text.splitlines(keepends=True):
        m = MARK.match(line.rstrip('\n'))
        if m:
            if cur: cells.append(cur)
            cur = [m[1], m[2], '']
        elif cur is None:
            if line.strip(): raise SystemExit(f'text before the first cell marker: {line!r}')
        else: cur[2] += line
    if cur: cells.append(cur)
    return [(t, i, s.rstrip('\n')) for t, i, s in cells]

def push(txt: Path) -> Path:
    nb = ROOT / 'nbs' / (txt.stem + '.ipynb')
    d = json.loads(nb.read_text()) if nb.exists() else {
        'cells': [], 'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
        'nbformat': 4, 'nbformat_minor': 5}
    old = {c.get('id'): c for c in d['cells']}
    seen, cells = set(), []
    for typ, cid, src in parse(txt.read_text()):
        if cid == 'new' or cid in seen: cid = secrets.token_hex(4)
        seen.add(cid)
        c = dict(old.get(cid) or {})
        c.update(cell_type=typ, id=cid, metadata=c.get('metadata', {}), source=src.splitlines(keepends=True))
        if typ == 'code': c.setdefault('execution_count', None); c.setdefault('outputs', [])
        else: c.pop('outputs', None); c.pop('execution_count', None)
        cells.append(c)
    d['cells'] = cells
    nb.write_text(json.dumps(d, indent=1, ensure_ascii=False) + '\n')
    subprocess.run([str(Path(sys.executable).with_name('nbdev_clean')), '--fname', str(nb)], check=True, cwd=ROOT)
    return nb

if __name__ == '__main__':
    cmd, *paths = sys.argv[1:]
    for p in paths: print({'pull': pull, 'push': push}[cmd](Path(p).resolve()))
