"""The docs pages (offline fallback of the Quarto site) load in headless Chromium without errors, show their figures,
link every chapter from a sidebar, carry no build markup, and document models and long configs as field tables.
Each page's screenshot is written to `_site_fallback/screenshots/<chapter>.png` for a reviewer to open.

The pages come from `dev/render_docs.py` (nbdev's processing + execution of every chapter + nbconvert HTML). Rendering
a page executes its chapter, which is also the chapter's notebook test: `conftest.rendered_chapter` renders each
chapter once per test run, for whichever of `tests/test_notebooks.py` and this file asks first (both in the chapter's
xdist group, so on one worker). Set DNR_DOCS_REUSE=1 to check pages rendered, without a failure, from the same inputs
(notebooks, modules, data, installed packages) in an earlier run or by `python dev/render_docs.py` (as the deploy
workflow does, with DNR_DOCS_NO_BUILD=1), e.g. while changing these checks.
Needs Debian's `chromium` (`apt-get install -y chromium`) and Playwright from PyPI (no browser download).
"""
import os, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / '_site_fallback'
CHROMIUM = os.environ.get('DNR_CHROMIUM', '/usr/bin/chromium')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']
CHAPTERS = sorted(p.stem for p in (ROOT / 'nbs').glob('[!_.]*.ipynb'))

from conftest import chapter_param, rendered_chapter, stale

REUSE = bool(os.environ.get('DNR_DOCS_REUSE') or os.environ.get('DNR_DOCS_NO_BUILD'))  # the deploy workflow: after its own build


def test_stale_page_is_rendered_again():
    "A page of other inputs, or of an earlier run, is rendered again; with reuse, an earlier good one of these inputs is not."
    ok = dict(inputs='a' * 64, run='r1', status='ok')
    assert stale(None, 'a' * 64, 'r1') == 'not rendered'
    assert 'other notebooks' in stale(ok, 'b' * 64, 'r1') and 'other notebooks' in stale(ok, 'b' * 64, 'r1', reuse=True)
    assert stale(ok, 'a' * 64, 'r2') == 'rendered in another test run' and stale(ok, 'a' * 64, 'r1') is None
    assert stale(ok, 'a' * 64, 'r2', reuse=True) is None and stale(dict(ok, status='error'), 'a' * 64, 'r2', reuse=True) == 'failed in that build'


def entry_of(chapter: str) -> dict:
    "The chapter's manifest entry, rendered in this run (once), failing with the chapter's error if it failed."
    e = rendered_chapter(chapter, reuse=REUSE)
    assert e['status'] == 'ok', f"{chapter}: {e['error']}"
    return e


@pytest.fixture
def browser():
    """Headless Chromium for one test: Playwright's sync API runs its event loop in this thread while it is open, so it is
    closed after each test (held across tests, it broke every later test in the worker that calls `asyncio.run`)."""
    if not Path(CHROMIUM).exists(): pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


@pytest.mark.parametrize('chapter', [chapter_param(c) for c in CHAPTERS])
def test_chapter_page(chapter, browser):
    """The chapter's page loads without errors, shows its figures and sidebar, carries no build markup, no signature wall, no traceback.

    Budget: when it is the first test of its chapter in the run, it executes the chapter (the chapter's notebook test, see tests/test_notebooks.py); the page checks themselves take seconds."""
    e = entry_of(chapter)
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
    assert all(l[1] == f'{l[0]}.html' for l in links), f"{chapter}: sidebar links {links}"  # each page is checked by its own test
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


@pytest.mark.xdist_group('06_report')
def test_report_chapter_has_its_figures():
    "Chapter 06_report plots Table 1, the ablation, token cost, data scale and debate statistics."
    assert entry_of('06_report')['images'] >= 5


def _fields(browser, chapter, name):
    "The field column of the API entry `name`'s table in a chapter page."
    page = browser.new_page()
    page.route('http*://**', lambda route: route.abort())
    page.goto((SITE / f'{chapter}.html').as_uri(), wait_until='load')
    rows = page.evaluate("""name => { const h = [...document.querySelectorAll('.jp-RenderedMarkdown h3')].find(e => e.innerText.trim() == name);
        const t = h && h.parentElement.querySelector('table'); return t ? [...t.querySelectorAll('tbody tr')].map(r => [...r.cells].map(c => c.innerText.trim())) : null }""", name)
    page.close()
    return rows


@pytest.mark.xdist_group('02_mag')
def test_models_are_field_tables(browser):
    "Pydantic models list their fields with type, default and description."
    entry_of('02_mag')
    crit = _fields(browser, '02_mag', 'Critique')
    assert crit is not None, 'no field table for Critique'
    assert [r[0] for r in crit][-2:] == ['from', 'to'] and ['text', 'str | None', 'required', 'extracted feedback'] in crit, crit


@pytest.mark.xdist_group('05a_tdpo')
def test_configs_are_field_tables(browser):
    "The T-DPO config lists its own fields, each with its default and description."
    entry_of('05a_tdpo')
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
