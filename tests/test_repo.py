"""The tree is as nbdev would leave it: `nbdev_export` and `nbdev_clean` change nothing, README is generated."""
import shutil, subprocess, filecmp
from pathlib import Path
from conftest import BIN, ROOT

def _snapshot(dst: Path):
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT / f, dst / f)
    return [f for f in files if f.startswith(('nbs/', 'dnr/'))]

def test_export_and_clean_change_nothing(tmp_path):
    files = _snapshot(tmp_path)
    for cmd in ('nbdev_export', 'nbdev_clean'):
        r = subprocess.run([str(BIN / cmd)], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    changed = [f for f in files if not filecmp.cmp(ROOT / f, tmp_path / f, shallow=False)]
    new = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / 'dnr').rglob('*.py')
                 if not (ROOT / p.relative_to(tmp_path)).exists())
    assert not changed and not new, f"run nbdev_export and nbdev_clean, then commit: changed {changed}, new {new}"

def test_cli_help_lists_every_command():
    out = subprocess.run([str(BIN / 'dnr'), '--help'], capture_output=True, text=True, check=True).stdout
    for cmd in ('data', 'grade', 'chat', 'debate', 'build', 'train', 'eval', 'figures', 'run', 'demo'):
        assert f'  {cmd} ' in out

def test_readme_is_generated_from_index():
    r = subprocess.run([str(BIN / 'python'), 'dev/make_readme.py', '--check'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_ci_runs_the_readme_test_command():
    readme, ci = (ROOT / 'README.md').read_text(), (ROOT / '.ci' / 'run').read_text()
    assert 'make test' in readme and '\nmake test\n' in ci

def test_docs_processing_runs_no_test_cell_out_of_context():
    """nbdev's docs processing executes export cells and every cell with an import, skipping the rest: a cell
    mixing imports with other code would run without the state it needs (and break `nbdev_docs`)."""
    import ast, warnings
    from nbdev.process import NBProcessor
    from nbdev.processors import _do_eval
    bad = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for p in sorted((ROOT / 'nbs').glob('*.ipynb')):
            for c in NBProcessor(p).nb.cells:
                if c.cell_type != 'code' or not _do_eval(c): continue
                if c.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'}: continue
                if not all(isinstance(t, (ast.Import, ast.ImportFrom)) for t in c.parsed_()): bad.append(f'{p.name} cell {c.idx_}')
    assert not bad, f"split imports into their own cells: {bad}"

def _chapters() -> dict:
    "module name -> notebook stem, for every exporting notebook."
    import re
    out = {}
    for p in sorted((ROOT / 'nbs').glob('*.ipynb')):
        if m := re.search(r'#\| default_exp (\w+)', p.read_text()): out[m.group(1)] = p.stem
    return out

def _dnr_imports(path: Path) -> set:
    "The dnr modules a module imports, at top level or inside functions (not under `if TYPE_CHECKING`)."
    import ast
    tree, out = ast.parse(path.read_text()), set()
    typing_only = {id(n) for t in ast.walk(tree) if isinstance(t, ast.If) and 'TYPE_CHECKING' in ast.unparse(t.test)
                   for b in t.body for n in ast.walk(b)}
    for n in ast.walk(tree):
        if id(n) in typing_only: continue
        if isinstance(n, ast.ImportFrom) and (n.level == 1 or (n.module or '').startswith('dnr.')):
            out.add((n.module or '').removeprefix('dnr.').split('.')[0])
        elif isinstance(n, ast.Import): out |= {a.name.split('.')[1] for a in n.names if a.name.startswith('dnr.')}
    return out - {''}

def test_chapters_import_one_way():
    """A numbered chapter's module imports only modules of chapters with the same or a lower number (`02a_analysis`
    may use `02_mag`; `02_mag` may not use `03_debate`), plus `dnr.cli`'s one-line error formatting, which imports
    nothing. Tool chapters (no number: tiny, servers, bench, ...) may import any chapter; only the last chapter,
    `07_pipeline`, imports tools (the demo's tiny student and scripted debate server)."""
    import re
    chapters = _chapters()
    number = {m: int(s[:2]) for m, s in chapters.items() if re.match(r'\d\d', s)}
    assert len(number) >= 16, number
    assert not _dnr_imports(ROOT / 'dnr' / 'cli.py')
    bad = []
    for m, n in number.items():
        for d in _dnr_imports(ROOT / 'dnr' / f'{m}.py') - {'cli', m}:
            if (d not in number and n != max(number.values())) or number.get(d, 0) > n: bad.append(f"{chapters[m]} imports dnr.{d} ({chapters.get(d, d)})")
    assert not bad, bad

def test_lettered_chapters_import_no_circle():
    """Lettered chapters are chapters of their own (`02a_analysis` is not `02_mag`): no module imports, even inside a
    function, a module that imports it back, directly or through others (imports for type annotations only, under
    `if TYPE_CHECKING`, do not count: they never run)."""
    chapters = _chapters()
    graph = {m: _dnr_imports(ROOT / 'dnr' / f'{m}.py') - {m} for m in chapters}
    def reach(a, seen=None):
        seen = set() if seen is None else seen
        for b in graph.get(a, ()):
            if b not in seen: seen.add(b); reach(b, seen)
        return seen
    circles = sorted({' <-> '.join(sorted((chapters[a], chapters[b]))) for a in graph for b in graph[a] if b in graph and a in reach(b)})
    assert not circles, f"import circles: {circles}"

def test_readme_and_sidebar_list_every_chapter():
    chapters, readme = _chapters(), (ROOT / 'README.md').read_text()
    sidebar = (ROOT / 'nbs' / 'sidebar.yml').read_text()
    missing = [s for m, s in chapters.items() if m not in ('cli', 'tiny', 'servers', 'showdoc', 'bench')
               and f"| `{s}` | `dnr.{m}` |" not in readme]
    assert not missing, f"add these chapters to the chapter table in nbs/index.ipynb: {missing}"
    assert not [s for s in chapters.values() if f"- {s}.ipynb" not in sidebar]

def _only(src: str, ok) -> bool:
    "Is every statement of a cell's code (directives dropped) accepted by `ok`?"
    import ast
    try: tree = ast.parse('\n'.join(l for l in src.splitlines() if not l.startswith('#|')))
    except SyntaxError: return False
    return all(ok(n) for n in tree.body)

def test_every_exported_definition_is_followed_by_a_test():
    """fastcore style: after each exported cell (other than imports) and before the next one, a code cell with an
    assertion (`assert`, `test_eq`, `test_fail`, ...): the definition's example, checked, right where a reader meets it."""
    import ast, json, re
    imports = lambda n: isinstance(n, (ast.Import, ast.ImportFrom)) or (isinstance(n, ast.If) and 'TYPE_CHECKING' in ast.unparse(n.test))
    docs = lambda n: imports(n) or (isinstance(n, ast.Expr) and 'show_doc(' in ast.unparse(n))
    bad = []
    for p in sorted((ROOT / 'nbs').glob('*.ipynb')):
        cells = [(c['cell_type'], ''.join(c['source'])) for c in json.loads(p.read_text())['cells']]
        exported = [i for i, (t, s) in enumerate(cells) if t == 'code' and re.match(r'#\|\s*export\b', s)]
        for i, nxt in zip(exported, exported[1:] + [len(cells)]):
            if _only(cells[i][1], imports): continue
            if not any(t == 'code' and not _only(s, docs) and re.search(r'\b(test_\w+|assert)\b', s) for t, s in cells[i + 1:nxt]):
                names = re.findall(r'^(?:async def|def|class) (\w+)|^(\w+) *=', cells[i][1], re.M)
                bad.append(f"{p.stem}: {[a or b for a, b in names][:3]}")
    assert not bad, f"exported cells with no test before the next exported cell: {bad}"
