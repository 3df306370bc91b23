"""The docs pages (offline fallback of the Quarto site) load in headless Chromium without errors and show their figures.

The pages come from `dev/render_docs.py` (nbdev's processing + execution of every chapter + nbconvert HTML).
Building them executes every chapter once, which is the expensive part (it is a full notebook test run), so:
- CI runs `python dev/render_docs.py` as its own step (it fails on any failing chapter) and then this test, which
  only checks the pages (seconds);
- locally, when `_site_fallback/` is missing or older than a notebook or a module, the test builds it first
  (set DNR_DOCS_REBUILD=1 to force a rebuild, DNR_DOCS_NO_BUILD=1 to check what is there, as CI does after its build step).
Needs Debian's `chromium` (`apt-get install -y chromium`) and Playwright from PyPI (no browser download).
"""
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / '_site_fallback'
CHROMIUM = os.environ.get('DNR_CHROMIUM', '/usr/bin/chromium')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']
CHAPTERS = sorted(p.stem for p in (ROOT / 'nbs').glob('[!_.]*.ipynb'))


def _stale() -> bool:
    mf = SITE / 'manifest.json'
    if os.environ.get('DNR_DOCS_REBUILD') or not mf.exists(): return True
    built = mf.stat().st_mtime
    srcs = list((ROOT / 'nbs').glob('*.ipynb')) + list((ROOT / 'dnr').glob('*.py'))
    have = {e['chapter'] for e in json.loads(mf.read_text())['chapters']}
    return any(p.stat().st_mtime > built for p in srcs) or not set(CHAPTERS) <= have


@pytest.fixture(scope='module')
def manifest():
    if _stale() and not os.environ.get('DNR_DOCS_NO_BUILD'):
        env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}
        env.setdefault('DNR_DATA_DIR', str(ROOT.parent / 'shared' / 'data'))
        p = subprocess.run([sys.executable, str(ROOT / 'dev' / 'render_docs.py')], cwd=ROOT, env=env, capture_output=True, text=True)
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
    tracebacks = page.locator('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    assert not any('Traceback' in t for t in tracebacks), f"{chapter}: traceback in page"
    # blocked external requests (CDN scripts) are expected offline; page errors from them are not counted
    errors = [x for x in errors if 'net::ERR_FAILED' not in x and 'Failed to load resource' not in x]
    assert not errors, f"{chapter}: JS errors {errors}"
    page.close()


def test_eval_chapter_has_its_figures(manifest):
    "Chapter 06 plots Table 1, the ablation, token cost, data scale and debate statistics."
    assert manifest['06_eval']['images'] >= 5
