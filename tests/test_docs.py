"""The docs pages (offline fallback of the Quarto site) load in headless Chromium without errors, show their figures,
link every chapter from a sidebar, carry no build markup, and document models and long configs as field tables.
Each page's screenshot is written to `_site_fallback/screenshots/<chapter>.png` for a reviewer to open.

The pages come from `dev/render_docs.py` (nbdev's processing + execution of every chapter + nbconvert HTML).
Building them executes every chapter once, which is the expensive part (it is a full notebook test run), so:
- CI runs `python dev/render_docs.py` as its own step (it fails on any failing chapter) and then this test, which
  only checks the pages (seconds);
- locally, when `_site_fallback/` is missing, failed in a chapter, or was built from other inputs (notebooks, modules,
  data, installed packages: `dev/render_docs.py`'s `build_inputs` hash in its manifest), the test builds it first
  (set DNR_DOCS_REBUILD=1 to force a rebuild, DNR_DOCS_NO_BUILD=1 to check what is there, as CI does after its build step).
Needs Debian's `chromium` (`apt-get install -y chromium`) and Playwright from PyPI (no browser download).
"""
import json, os, re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / '_site_fallback'
CHROMIUM = os.environ.get('DNR_CHROMIUM', '/usr/bin/chromium')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']
CHAPTERS = sorted(p.stem for p in (ROOT / 'nbs').glob('[!_.]*.ipynb'))


sys.path.insert(0, str(ROOT / 'dev'))
from render_docs import build_inputs


def _stale(site: Path = SITE) -> str | None:
    "Why `_site_fallback/` must be rebuilt (None: it was built, without a failure, from these notebooks, modules and packages)."
    mf = site / 'manifest.json'
    if os.environ.get('DNR_DOCS_REBUILD'): return 'DNR_DOCS_REBUILD is set'
    if not mf.exists(): return 'no manifest'
    m = json.loads(mf.read_text())
    if m.get('inputs') != build_inputs(): return 'built from other notebooks, modules, data or packages'
    have = {e['chapter']: e['status'] for e in m['chapters']}
    if missing := set(CHAPTERS) - set(have): return f"chapters missing: {sorted(missing)}"
    if bad := sorted(c for c in CHAPTERS if have[c] != 'ok'): return f"chapters failed in that build: {bad}"
    return None


def test_stale_site_is_rebuilt(tmp_path):
    "A manifest from other inputs, or from a build where a chapter failed, asks for a rebuild; a good one of these inputs does not."
    write = lambda inputs, status: (tmp_path / 'manifest.json').write_text(json.dumps(dict(
        inputs=inputs, chapters=[dict(chapter=c, status='ok' if c != CHAPTERS[0] else status) for c in CHAPTERS])))
    assert _stale(tmp_path) == 'no manifest'
    write('0' * 64, 'ok'); assert 'other notebooks' in _stale(tmp_path)
    write(build_inputs(), 'failed'); assert _stale(tmp_path) == f"chapters failed in that build: {[CHAPTERS[0]]}"
    write(build_inputs(), 'ok'); assert _stale(tmp_path) is None


@pytest.fixture(scope='module')
def manifest():
    from filelock import FileLock
    with FileLock(str(ROOT / '.docs-build.lock')):  # one build: pytest-xdist workers would otherwise rebuild the site under each other
        if (why := _stale()) and not os.environ.get('DNR_DOCS_NO_BUILD'):
            print(f"rebuilding {SITE}: {why}")
            env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}
            env.setdefault('DNR_DATA_DIR', str(ROOT.parent / 'shared' / 'data'))
            p = subprocess.run([sys.executable, str(ROOT / 'dev' / 'render_docs.py')], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=1800)
            print(p.stdout[-3000:], p.stderr[-3000:])
    return {e['chapter']: e for e in json.loads((SITE / 'manifest.json').read_text())['chapters']}


@pytest.fixture(scope='module')
def browser():
    if not Path(CHROMIUM).exists(): pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


@pytest.mark.parametrize('chapter', CHAPTERS)
def test_chapter_page(chapter, manifest, browser):
    e = manifest.get(chapter)
    assert e is not None, f"{chapter}: not rendered (run dev/render_docs.py)"
    assert e['status'] == 'ok', f"{chapter}: {e['error']}"
    page = browser.new_page()
    errors, failed = [], []
    page.on('pageerror', lambda exc: errors.append(str(exc)))
    page.on('console', lambda m: m.type == 'error' and errors.append(m.text))
    page.on('requestfailed', lambda r: failed.append(r.url))
    page.route('http*://**', lambda route: route.abort())   # offline: no CDN (MathJax, require.js) requests
    resp = page.goto((SITE / e['html']).as_uri(), wait_until='load')
    assert resp is None or resp.ok
    h1 = page.locator('h1').first.inner_text()
    assert h1.strip(), f"{chapter}: no title"
    imgs = page.eval_on_selector_all('.jp-OutputArea-output img',
                                     'els => els.map(e => [e.naturalWidth, e.naturalHeight, e.complete])')
    shown = [i for i in imgs if i[0] > 0 and i[1] > 0 and i[2]]
    assert len(shown) == e['images'] == len(imgs), f"{chapter}: {len(shown)} of {len(imgs)} images shown, {e['images']} image outputs"
    # a sidebar linking every chapter (in nbs/sidebar.yml's order), this one marked, every link to an existing page
    links = page.eval_on_selector_all('#dnr-nav a.chapter', 'els => els.map(e => [e.dataset.chapter, e.getAttribute("href"), e.classList.contains("current"), e.offsetWidth > 0])')
    assert sorted(l[0] for l in links) == CHAPTERS, f"{chapter}: sidebar links {[l[0] for l in links]}"
    assert [l[0] for l in links if l[2]] == [chapter] and all(l[3] for l in links), f"{chapter}: sidebar not shown or current not marked"
    assert all((SITE / l[1]).exists() for l in links), f"{chapter}: sidebar links to missing pages"
    # no build markup: directives, Pandoc attributes, show_doc calls, pydantic's generic signature
    text = page.locator('body').inner_text()
    for junk in (r'(?m)^\s*#\|\s*[\w-]+', r'\{target=', r'\bshow_doc\(', r'data:Any'):
        m = re.search(junk, text)
        assert not m, f"{chapter}: build markup {m.group(0)!r} in the page: ...{text[max(0, m.start() - 80):m.end() + 80]}..."
    # API entries: no signature wall (long configs are field tables)
    sigs = page.eval_on_selector_all('.jp-RenderedMarkdown h3 ~ pre', 'els => els.map(e => e.innerText.length)')
    assert not sigs or max(sigs) < 1500, f"{chapter}: an API signature of {max(sigs)} characters"
    (SITE / 'screenshots').mkdir(exist_ok=True)
    page.set_viewport_size({'width': 1280, 'height': 900})
    page.screenshot(path=str(SITE / 'screenshots' / f'{chapter}.png'), full_page=True)
    tracebacks = page.locator('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    assert not any('Traceback' in t for t in tracebacks), f"{chapter}: traceback in page"
    # blocked external requests (CDN scripts) are expected offline; page errors from them are not counted
    errors = [x for x in errors if 'net::ERR_FAILED' not in x and 'Failed to load resource' not in x]
    assert not errors, f"{chapter}: JS errors {errors}"
    page.close()


def test_report_chapter_has_its_figures(manifest):
    "Chapter 06_report plots Table 1, the ablation, token cost, data scale and debate statistics."
    assert manifest['06_report']['images'] >= 5


def _fields(browser, chapter, name):
    "The field column of the API entry `name`'s table in a chapter page."
    page = browser.new_page()
    page.route('http*://**', lambda route: route.abort())
    page.goto((SITE / f'{chapter}.html').as_uri(), wait_until='load')
    rows = page.evaluate("""name => { const h = [...document.querySelectorAll('.jp-RenderedMarkdown h3')].find(e => e.innerText.trim() == name);
        const t = h && h.parentElement.querySelector('table'); return t ? [...t.querySelectorAll('tbody tr')].map(r => [...r.cells].map(c => c.innerText.trim())) : null }""", name)
    page.close()
    return rows


def test_models_and_configs_are_field_tables(manifest, browser):
    "Pydantic models list their fields with type, default and description; the T-DPO config lists its own fields."
    crit = _fields(browser, '02_mag', 'Critique')
    assert crit is not None, 'no field table for Critique'
    assert [r[0] for r in crit][-2:] == ['from', 'to'] and ['text', 'str | None', 'required', 'extracted feedback'] in crit, crit
    cfg = _fields(browser, '05a_tdpo', 'TreeDPOConfig')
    assert cfg is not None and [r[0] for r in cfg] == ['beta', 'share', 'max_length', 'max_prompt_length', 'loss_average', 'disable_dropout', 'loss_type', 'loss_weights'], cfg
    assert cfg[0][2] == '0.1' and cfg[0][3].startswith('DPO temperature') and all(r[3] for r in cfg), cfg  # every field described


def test_quarto_sidebar_lists_every_chapter():
    "The Quarto site's sidebar (nbs/sidebar.yml, kept by custom_sidebar = True) names every chapter notebook once."
    import configparser, yaml
    sb = yaml.safe_load((ROOT / 'nbs' / 'sidebar.yml').read_text())['website']['sidebar']['contents']
    flat = [x for i in sb for x in ([i] if isinstance(i, str) else i['contents'])]
    assert sorted(Path(x).stem for x in flat) == CHAPTERS and len(flat) == len(set(flat))
    ini = configparser.ConfigParser(); ini.read(ROOT / 'settings.ini')
    assert ini['DEFAULT']['custom_sidebar'] == 'True' and ini['DEFAULT']['renderer'] == 'dnr.showdoc.DocRenderer'
    q = yaml.safe_load((ROOT / 'nbs' / '_quarto.yml').read_text())
    assert 'sidebar.yml' in q['metadata-files']
