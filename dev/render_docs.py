"""Offline docs fallback: render every chapter to `_site_fallback/*.html` without Quarto.

Usage:  python dev/render_docs.py [NB ...] [--jobs 2] [--out _site_fallback]
        python dev/render_docs.py --serve     (notebook paths on stdin; what tests/test_notebooks.py uses)

The real site is nbdev's Quarto site (`nbdev_docs`, built by the GitHub workflow). Quarto cannot be installed
offline, so this script reproduces what matters for checking the pages here:

1. nbdev's own docs processing (the processors `nbdev_proc_nbs` runs: front matter, `show_doc` cells for every
   export, hidden cells removed, directives stripped, links), with one change: nbdev's `exec_show_docs` step,
   which executes only the exported, import and `show_doc` cells, is replaced by one that executes **every** cell
   in an execnb `CaptureShell`, exactly as `nbdev_test` does (same skip rules: `tst_flags` cells such as
   `#| slow`/`#| gpu`/`#| apikey`, `#| eval: false`, and the `nbdev_export()` call). `show_doc` cells are among
   the executed cells, so their output is the same, and the chapters' figures are rendered. Each chapter is thus
   executed once: this is the docs build and, at the same time, a full run of the notebook tests (a failing cell
   fails the build with the chapter named, the cell and its traceback): the test suite's notebook tests are this
   execution (`tests/test_notebooks.py` renders each chapter once per run with `--serve`, and `tests/test_docs.py`
   checks the page that run wrote), so no chapter is executed twice.
2. The processed notebooks are written to `_proc/` (what Quarto would render);
3. each is exported with nbconvert's `HTMLExporter(template_name='lab')` after deleting each cell's
   `metadata.execution` (execnb stores float timings there that nbformat's validator rejects) to
   `_site_fallback/<chapter>.html`, with its manifest entry `_site_fallback/chapters/<chapter>.json` (status, seconds, its five slowest cells,
   number of image outputs, error and traceback, the build inputs and the test run it was rendered in), all of them
   listed in `_site_fallback/manifest.json`; `tests/test_docs.py` checks the pages in headless Chromium. What Quarto would do with the
   processed notebook is done here too: cell directives are applied and stripped (`#| echo: false` hides the
   input, as on every `show_doc` cell; `#| include: false` drops the cell; `#| output: false` its outputs), and
   Pandoc link attributes (`[source](url){target="_blank" ...}`) become HTML links, and links between pages
   (`[the paper page](paper.ipynb#numbers)`) point to the rendered `.html` page;
4. every page gets the sidebar Quarto builds from `nbs/sidebar.yml`: the chapters in the same order and sections,
   titled as in their notebooks, the current one marked (re-written into every page of the folder on each build).

Chapters run in parallel forked worker processes, as `nbdev_test` runs them (notebooks must not leave global state behind),
or with `--jobs 0` one chapter in this process, or with `--serve` each chapter named on stdin in a child forked from a
process that imported the heavy libraries once (the test suite's way). Exit status 1 if any chapter failed. Both `_proc/` and `_site_fallback/` are build outputs (gitignored).
"""
from __future__ import annotations
import argparse, json, os, re, sys, time, traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_inputs() -> str:
    """sha256 of what a build depends on: every notebook, module, `settings.ini`, this script, the data folder's
    listing and the installed distributions (name==version). `manifest.json` records it, and `tests/test_docs.py`
    rebuilds when it differs (file times say nothing about a build that failed or ran on other packages)."""
    import hashlib
    from importlib.metadata import distributions
    h = hashlib.sha256()
    files = sorted([*(ROOT / 'nbs').glob('*.ipynb'), *(ROOT / 'nbs').glob('*.yml'), *(ROOT / 'dnr').glob('*.py'),
                    ROOT / 'settings.ini', Path(__file__).resolve()])
    for f in files: h.update(f"{f.relative_to(ROOT)}\0".encode()); h.update(f.read_bytes())
    data = Path(os.environ.get('DNR_DATA_DIR') or ROOT.parent / 'shared' / 'data')
    if data.is_dir():
        for f in sorted(data.rglob('*')):
            if f.is_file(): h.update(f"{f.relative_to(data)}:{f.stat().st_size}\0".encode())
    h.update('\n'.join(sorted({f"{d.metadata['Name']}=={d.version}".lower() for d in distributions() if d.metadata['Name']})).encode())
    h.update(sys.version.encode())
    return h.hexdigest()


def _exec_all_processor(flags: set, path: Path | None = None):
    "An nbdev Processor that executes every runnable cell (nbdev_test's rules) in a CaptureShell."
    from execnb.shell import CaptureShell
    from nbdev.process import Processor

    class exec_all(Processor):
        def begin(self):
            self.k = CaptureShell(path)  # as nbdev_test: the notebook's folder on sys.path
            self.k.run_cell('from nbdev.showdoc import show_doc')
            self.failed = None
            self.nb.cell_seconds_ = []  # (seconds, cell index, first line) of each executed cell

        def __call__(self, cell):
            if self.failed or cell.cell_type != 'code': return
            if 'nbdev_export' + '(' in cell.source: return
            d = getattr(cell, 'directives_', {}) or {}
            if d.get('eval:', [''])[0].lower() == 'false' or flags & set(d): return
            t = time.time(); self.k.cell(cell)
            first = next((l for l in cell.source.splitlines() if l.strip() and not l.startswith('#|')), '')
            self.nb.cell_seconds_.append((round(time.time() - t, 1), cell.idx_, first[:80]))
            if self.k.exc:
                exc = self.k.exc[1] if isinstance(self.k.exc, tuple) else self.k.exc
                self.failed = f"cell {cell.idx_}: {type(exc).__name__}: {exc}"
                self.nb.exec_error_ = self.failed
                self.nb.exec_traceback_ = ''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return exec_all


def render_one(nb_path: str, out_dir: str, proc_dir: str) -> dict:
    """Process, execute and export one notebook; writes its page (with the sidebar) and its manifest entry
    `<out_dir>/chapters/<chapter>.json`, and returns the entry."""
    t0 = time.time()
    nb_path, out_dir, proc_dir = Path(nb_path), Path(out_dir), Path(proc_dir)
    os.environ['IN_TEST'] = '1'
    entry = dict(chapter=nb_path.stem, notebook=str(nb_path.relative_to(ROOT)), html=f'{nb_path.stem}.html', status='ok',
                 error=None, traceback=None, images=0,
                 inputs=build_inputs(), run=os.environ.get('DNR_TEST_RUN'))  # before the build: an edit while it runs makes it stale
    try:
        from fastcore.xtras import working_directory
        from nbdev.config import get_config
        from nbdev.process import NBProcessor
        from nbdev.processors import FilterDefaults, exec_show_docs
        from execnb.nbio import read_nb, write_nb
        cfg = get_config()
        flags = set(cfg.get('tst_flags', '').split())
        procs = [(_exec_all_processor(flags, nb_path) if p is exec_show_docs else p) for p in FilterDefaults().procs()]
        nb = read_nb(nb_path)
        with working_directory(nb_path.parent):
            NBProcessor(nb=nb, procs=procs).process()
        entry['slowest_cells'] = [dict(seconds=t, cell=i, first_line=f) for t, i, f in sorted(getattr(nb, 'cell_seconds_', []), reverse=True)[:5]]
        if getattr(nb, 'exec_error_', None): entry.update(status='error', error=nb.exec_error_, traceback=nb.exec_traceback_)
        proc_dir.mkdir(parents=True, exist_ok=True)
        write_nb(nb, proc_dir / nb_path.name)
        entry['images'] = _export_html(proc_dir / nb_path.name, out_dir / entry['html'])
        add_nav(out_dir, chapters_nav(), pages=[out_dir / entry['html']])
    except Exception as e:
        entry.update(status='error', error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    entry['seconds'] = round(time.time() - t0, 1)
    write_entry(out_dir, entry)
    return entry


def write_entry(out_dir: Path, entry: dict) -> None:
    "Write a chapter's manifest entry atomically (a reader in another process never sees half a file)."
    d = Path(out_dir) / 'chapters'; d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{entry['chapter']}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(entry, indent=1))
    os.replace(tmp, d / f"{entry['chapter']}.json")


def read_entries(out_dir: Path) -> dict:
    "chapter -> manifest entry, for every chapter rendered into `out_dir`."
    return {p.stem: json.loads(p.read_text()) for p in sorted((Path(out_dir) / 'chapters').glob('*.json'))}


# what most chapters import: loaded once by `--serve`, whose forked children render the chapters. torch and the training
# stack included: an earlier measurement that a chapter forked after torch's import trained slower was the two test
# workers' OpenMP threads spin-waiting for each other (tests/conftest.py now gives each worker its share of the cores);
# 05_train, 05a_tdpo, tiny and 04_distill in one worker: 70.5 s without torch preloaded, 56.6 s with it
PRELOAD = ('IPython', 'execnb.shell', 'nbdev.processors', 'nbdev.showdoc', 'nbconvert', 'numpy', 'pandas', 'pydantic', 'yaml',
           'httpx', 'openai', 'anthropic', 'google.genai', 'torch', 'transformers', 'trl', 'peft', 'datasets', 'matplotlib.pyplot')


def serve(out: str, proc: str) -> int:
    """`--serve`: import `PRELOAD` once, then render each notebook path read from stdin (one a line) in a forked child:
    a fresh process per chapter, as `--jobs 0`, without paying those imports again (several CPU seconds per chapter). Prints `<chapter> <exit status> <CPU seconds>` per notebook; the child's own output goes to
    `<out>/chapters/<chapter>.log`. Nothing runs in this process between forks (no threads, no torch ops)."""
    import importlib
    for m in PRELOAD:
        try: importlib.import_module(m)
        except ImportError: pass
    (Path(out) / 'chapters').mkdir(parents=True, exist_ok=True)
    while line := sys.stdin.readline():
        if not (nb := line.strip()): continue
        sys.stdout.flush(); sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the chapter's process
            rc = 1
            try:
                log = os.open(Path(out) / 'chapters' / f'{Path(nb).stem}.log', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(log, 1); os.dup2(log, 2); os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                rc = 0 if render_one(str(Path(nb).resolve()), out, proc)['status'] == 'ok' else 1
            except BaseException: traceback.print_exc()
            finally:
                sys.stdout.flush(); sys.stderr.flush()
                os._exit(rc)
        _, status, ru = os.wait4(pid, 0)
        print(Path(nb).stem, os.waitstatus_to_exitcode(status), round(ru.ru_utime + ru.ru_stime, 2), flush=True)
    return 0


_DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_NB_LINK = re.compile(r'\]\(([\w.-]+)\.ipynb(#[\w-]+)?\)')  # [text](paper.ipynb#numbers)
_PANDOC_LINK = re.compile(r'\[([^\]]+)\]\(([^)\s]+)\)\{target="_blank"[^}]*\}')


def _quarto_like(nb) -> None:
    "Apply what Quarto does with a processed notebook: cell directives, Pandoc link attributes."
    keep = []
    for c in nb.cells:
        if c.cell_type == 'code':
            lines = c.source.splitlines()
            d = {m[1].lower(): m[2].lower() for m in map(_DIRECTIVE.match, lines) if m}
            if d.get('include') == 'false': continue
            c.source = '\n'.join(l for l in lines if not _DIRECTIVE.match(l)).strip('\n')
            if d.get('echo') == 'false' or not c.source.strip():
                c.metadata.setdefault('tags', []).append('remove_input')
            if d.get('output') == 'false': c.outputs = []
            for o in c.get('outputs', []):
                md = o.get('data', {}).get('text/markdown')
                if md: o['data']['text/markdown'] = _PANDOC_LINK.sub(r'<a href="\2" target="_blank" class="dnr-source">\1</a>',
                                                                    ''.join(md) if isinstance(md, list) else md)
        elif c.cell_type == 'markdown':
            c.source = _PANDOC_LINK.sub(r'<a href="\2" target="_blank" class="dnr-source">\1</a>', c.source)
            c.source = _NB_LINK.sub(r'](\1.html\2)', c.source)  # links between pages, as Quarto rewrites them
        keep.append(c)
    nb.cells = keep


def _export_html(src: Path, dst: Path) -> int:
    "nbconvert lab-template HTML of a processed notebook; returns the number of image outputs."
    import nbformat
    from nbconvert import HTMLExporter
    import yaml
    nb = nbformat.read(src, as_version=4)
    if nb.cells and nb.cells[0].cell_type == 'raw' and nb.cells[0].source.startswith('---'):
        # Quarto renders the front matter as the page title; nbconvert would drop it: render it as a heading
        fm = yaml.safe_load(nb.cells[0].source.strip().strip('-')) or {}
        md = (f"# {fm['title']}\n\n" if fm.get('title') else '') + (f"> {fm['description']}\n" if fm.get('description') else '')
        nb.cells[0] = nbformat.v4.new_markdown_cell(md)
        nb.metadata['title'] = fm.get('title', src.stem)
    n_img = 0
    for c in nb.cells:
        c.metadata.pop('execution', None)
        for k in [k for k in c if k not in ('cell_type', 'id', 'metadata', 'source', 'outputs', 'execution_count', 'attachments')]:
            del c[k]  # nbdev's processing attributes (e.g. has_sd) that nbformat's schema rejects
        for o in c.get('outputs', []):
            n_img += any(k.startswith('image/') for k in o.get('data', {}))
    _quarto_like(nb)
    from nbconvert.preprocessors import TagRemovePreprocessor
    ex = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True)  # as Quarto: no In/Out prompts
    ex.register_preprocessor(TagRemovePreprocessor(remove_input_tags={'remove_input'}), enabled=True)
    html, _ = ex.from_notebook_node(nb)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(html, encoding='utf-8')
    return n_img


def chapters_nav(nbs_dir: Path = ROOT / 'nbs') -> list:
    "The sidebar of `nbs/sidebar.yml` as [(section or None, [(chapter, title), ...])], titles from the notebooks."
    import yaml
    def title(nb: str) -> str:
        p = nbs_dir / nb
        try:
            cells = json.loads(p.read_text(encoding='utf-8'))['cells']
            for c in cells:
                if c['cell_type'] == 'markdown':
                    m = re.match(r'#\s+(.+)', ''.join(c['source']).strip())
                    if m: return m.group(1).strip()
        except (OSError, ValueError, KeyError): pass
        return Path(nb).stem
    out = []
    for item in yaml.safe_load((nbs_dir / 'sidebar.yml').read_text())['website']['sidebar']['contents']:
        if isinstance(item, str): out.append((None, [(Path(item).stem, title(item))]))
        else: out.append((item.get('section'), [(Path(x).stem, title(x)) for x in item.get('contents', []) if isinstance(x, str)]))
    return out


_NAV_CSS = """<style id="dnr-nav-css">
#dnr-nav { position: fixed; top: 0; left: 0; bottom: 0; width: 230px; overflow-y: auto; padding: 16px 12px;
  background: #f7f7f9; border-right: 1px solid #ddd; font: 14px/1.45 system-ui, sans-serif; z-index: 10; }
#dnr-nav .site { font-weight: 700; font-size: 17px; display: block; margin-bottom: 10px; color: #222; text-decoration: none; }
#dnr-nav .section { margin: 12px 0 4px; font-size: 12px; text-transform: uppercase; color: #777; letter-spacing: .04em; }
#dnr-nav a.chapter { display: block; padding: 3px 6px; border-radius: 4px; color: #1a5fb4; text-decoration: none; }
#dnr-nav a.chapter:hover { background: #e8eef8; }
#dnr-nav a.chapter.current { background: #1a5fb4; color: #fff; }
body.jp-Notebook, body { margin-left: 250px !important; }
a.dnr-source { float: right; font-size: smaller; }
.jp-RenderedMarkdown table { border-collapse: collapse; margin: 6px 0 14px; }
.jp-RenderedMarkdown th, .jp-RenderedMarkdown td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
</style>"""


def _nav_html(nav: list, current: str) -> str:
    from html import escape
    parts = ['<nav id="dnr-nav" aria-label="chapters"><a class="site" href="index.html">dnr</a>']
    for section, items in nav:
        if section: parts.append(f'<div class="section">{escape(section)}</div>')
        for ch, t in items:
            cur = ' current' if ch == current else ''
            parts.append(f'<a class="chapter{cur}" href="{ch}.html" data-chapter="{ch}">{escape(t)}</a>')
    return ''.join(parts) + '</nav>'


def add_nav(out: Path, nav: list, pages: list | None = None) -> int:
    "Write the sidebar into every chapter page in `out`, or only into `pages` (replacing an earlier one); returns the pages updated."
    n = 0
    for page in (pages if pages is not None else out.glob('*.html')):
        html = page.read_text(encoding='utf-8')
        html = re.sub(r'<style id="dnr-nav-css">.*?</style>|<nav id="dnr-nav".*?</nav>', '', html, flags=re.S)
        html = html.replace('</head>', _NAV_CSS + '</head>', 1)
        html = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + _nav_html(nav, page.stem), html, count=1)
        page.write_text(html, encoding='utf-8'); n += 1
    return n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('notebooks', nargs='*', help='notebooks (default: every nbs/*.ipynb)')
    p.add_argument('--jobs', type=int, default=2, help='parallel worker processes (0: render in this process, one notebook)')
    p.add_argument('--out', default=str(ROOT / '_site_fallback'))
    p.add_argument('--proc', default=str(ROOT / '_proc'))
    p.add_argument('--serve', action='store_true', help='render the notebooks named on stdin, one a line, each in a forked child (the test suite)')
    a = p.parse_args(argv)
    if a.serve: return serve(a.out, a.proc)
    nbs = [Path(n).resolve() for n in a.notebooks] or sorted((ROOT / 'nbs').glob('[!_.]*.ipynb'))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if a.jobs == 0:
        if len(nbs) != 1: p.error('--jobs 0 renders one notebook')
        entries = [render_one(str(nbs[0]), str(out), a.proc)]
    else:
        with ProcessPoolExecutor(a.jobs, mp_context=__import__('multiprocessing').get_context('fork')) as ex:  # as nbdev_test
            # by module name, not __main__: executing a notebook replaces sys.modules['__main__'] in the worker
            sys.path.insert(0, str(Path(__file__).parent))
            worker = __import__('render_docs').render_one
            entries = list(ex.map(worker, map(str, nbs), [str(out)] * len(nbs), [a.proc] * len(nbs)))
    if not a.notebooks: add_nav(out, chapters_nav())
    inputs = build_inputs()
    kept = [e for e in read_entries(out).values() if e.get('inputs') == inputs]  # pages of other inputs are not listed
    (out / 'manifest.json').write_text(json.dumps(dict(built=time.time(), inputs=inputs, chapters=kept), indent=1))
    for e in entries:
        print(f"{e['chapter']:<14} {e['status']:<6} {e['seconds']:>6.1f}s  images={e['images']}" + (f"  {e['error'].splitlines()[0]}" if e['error'] else ''))
        if e['traceback'] and a.jobs == 0: print(e['traceback'], file=sys.stderr)
    bad = [e['chapter'] for e in entries if e['status'] != 'ok']
    print(f"{len(entries) - len(bad)} rendered, {len(bad)} failed{': ' + ', '.join(bad) if bad else ''} in {time.time() - t0:.0f}s -> {out}")
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
