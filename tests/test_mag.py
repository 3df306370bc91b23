"""CLI tests of `dnr show` (subprocess runs of the console script): on a run folder of real recorded MMLU-Pro answers
(`dnr debate` offline replay) and on a multi-round run of local scripted agents whose texts hold HTML's special
characters; listing, the text transcript, the standalone HTML file (escaped, self-contained) and the errors."""
import json, os, re, subprocess, sys
from pathlib import Path

import pytest, yaml

from dnr.servers import ScriptedServer

ROOT = Path(__file__).resolve().parents[1]
DATA = os.environ.get('DNR_DATA_DIR') or str(ROOT.parent / 'shared' / 'data')
ENV = {**os.environ, 'DNR_DATA_DIR': DATA, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}
DNR = Path(sys.executable).with_name('dnr')  # the console script (dnr.cli.main)


def dnr(*args, timeout=180):
    "Run `dnr ARGS` in a subprocess; returns (rc, stdout, stderr)."
    head = [str(DNR)] if DNR.exists() else [sys.executable, '-m', 'dnr.cli']
    p = subprocess.run([*head, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout, cwd=ROOT)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope='session')
def replay(tmp_path_factory):
    "A debate run on the first 6 MMLU-Pro physics questions, replaying the recorded answers of five models."
    out = tmp_path_factory.mktemp('replay') / 'run'
    rc, o, e = dnr('debate', '--out', out, '--limit', 6, '--no-progress')
    assert rc == 0, e
    return out


@pytest.fixture(scope='session')
def scripted(tmp_path_factory):
    """A multi-round debate of local scripted agents: `teacher` always right, the student wrong until it reads its own
    self-reflection; answers and feedback contain `<b>`, `&`, `<script>`."""
    from dnr.data import load_benchmark
    qs = load_benchmark('mmlu_pro', 'train', 'physics', path=DATA)[:2]
    def responder(provider, req):
        text, model = req['messages'][-1]['content'], req['model']
        q = next(q for q in qs if q.question[:80] in text)
        if 'feedback to yourself' in text: return f"### Feedback\n[{model} on {q.id}] x<y & y>z, not <script>alert(1)</script>"
        if 'feedback to other agents' in text: return f"### Feedback\n[{model} to peer on {q.id}] Use \"p = m*v\" & check 'units'."
        right = model == 'teacher' or f'[student on {q.id}]' in text
        return f"### Answer\n{model}: <b>{'momentum' if right else 'energy'}</b> & more.\nFinal answer: {q.gold if right else ('A' if q.gold != 'A' else 'B')}"
    d = tmp_path_factory.mktemp('scripted')
    with ScriptedServer(responder) as srv:
        agents = [dict(name=n, role=n if n == 'student' else 'teacher', provider='openai_compatible', model=n, base_url=srv.openai_url)
                  for n in ('teacher', 'student')]
        (d / 'cfg.yaml').write_text(yaml.safe_dump(dict(dataset=dict(name='mmlu_pro', category='physics', split='train'),
                                                     agents=agents, max_rounds=2, limit=2)))
        rc, o, e = dnr('debate', '--config', d / 'cfg.yaml', '--out', d / 'run', '--no-progress')
    assert rc == 0, e
    return d / 'run'


def mag_ids(run): return [json.loads(l)['question_id'] for l in (run / 'mags.jsonl').read_text().splitlines()]


def test_help_lists_show():
    rc, o, _ = dnr('--help')
    assert rc == 0 and re.search(r'^  show +read one debated question', o, re.M)


def test_list(replay):
    rc, o, e = dnr('show', replay)
    assert rc == 0 and e == ''
    lines = o.splitlines()
    assert [l.split()[0] for l in lines] == mag_ids(replay)
    row = next(l for l in lines if l.split()[0] == '9650')  # the file's order is the order the debates finished in
    assert row.split()[:4] == ['9650', '1', 'round', 'no_recording'] and 'Find the dimension of the parallelepiped' in row


def test_transcript_of_recorded_answers(replay):
    rc, o, e = dnr('show', replay, '9650')
    assert rc == 0 and e == ''
    lines = o.splitlines()
    assert lines[0] == 'question 9650 (mmlu_pro, physics): 5 agents, 1 round, stopped: no_recording'
    assert lines[1].startswith('Q: Find the dimension of the parallelepiped of maximum volume')
    assert r'gold: F) $\frac{2}{\sqrt{3}}$$R$' in lines
    assert any(l.startswith('  gpt-4o [teacher]: F right | ') for l in lines)
    assert any(l.startswith('  deepseek [teacher]: J wrong | ') for l in lines)
    assert any(l.startswith('  student [student]: G wrong | The maximum volume') for l in lines)
    assert max(map(len, lines)) <= 100
    rc, full, _ = dnr('show', replay / 'mags.jsonl', '9650', '--full')  # a MAG file works as well as its folder
    assert rc == 0 and len(full) > 2 * len(o) and 'The answer is (J).' in [l.strip() for l in full.splitlines()]


def test_transcript_of_a_multi_round_debate(scripted):
    qid = mag_ids(scripted)[0]
    rc, o, e = dnr('show', scripted, qid)
    assert rc == 0, e
    assert f'question {qid} (mmlu_pro, physics): 2 agents, 2 rounds, stopped: all_correct' in o
    r0 = o[o.index('round 0'):o.index('round 1')]
    assert '  student [student]: A wrong | student: <b>energy</b> & more.' in r0  # both questions' gold is not A
    assert f'      self-reflection: [student on {qid}] x<y & y>z, not <script>alert(1)</script>' in r0
    assert f'      critique from teacher: [teacher to peer on {qid}] Use "p = m*v" & check \'units\'.' in r0
    assert re.search(r'\n  student \[student\]: \w right \| student: <b>momentum</b> & more\.', o[o.index('round 1'):])


def test_html_file_is_escaped_and_self_contained(scripted, tmp_path):
    qid = mag_ids(scripted)[0]
    rc, o, e = dnr('show', scripted, qid, '--html', tmp_path / 'q.html')
    assert rc == 0, e
    assert o.splitlines()[-1] == f"wrote {tmp_path / 'q.html'}"
    page = (tmp_path / 'q.html').read_text(encoding='utf-8')
    assert page.startswith('<!DOCTYPE html>') and page.rstrip().endswith('</html>') and '<meta charset="utf-8">' in page
    assert '<script' not in page and '<b>energy' not in page  # the models' markup is text, never markup
    assert 'student: &lt;b&gt;energy&lt;/b&gt; &amp; more.' in page
    assert 'x&lt;y &amp; y&gt;z, not &lt;script&gt;alert(1)&lt;/script&gt;' in page
    assert 'Use &quot;p = m*v&quot; &amp; check &#x27;units&#x27;.' in page
    assert page.count('<svg') == 1 and '<title>' in page  # the tree, with hover text
    assert re.sub(r'xmlns(:xlink)?="http://www.w3.org/[^"]+"', '', page).count('http') == 0  # nothing fetched
    assert page.count('<table class="dnr">') == 2


def test_errors_name_the_file(replay, tmp_path):
    rc, o, e = dnr('show', replay, '123456')
    assert (rc, o) == (2, '')
    assert e.strip() == (f"dnr show: error: {replay / 'mags.jsonl'}: no MAG with question_id '123456' among its 6 MAGs "
                         f"(ids: {', '.join(mag_ids(replay))})")
    rc, _, e = dnr('show', tmp_path, '1')
    assert rc == 2 and e.strip() == f"dnr show: error: {tmp_path}: no mags.jsonl in this folder (is it a debate run?)"
    rc, _, e = dnr('show', tmp_path / 'nope.jsonl', '1')
    assert rc == 2 and e.strip() == f"dnr show: error: {tmp_path / 'nope.jsonl'}: no such run folder or MAG file"
    lines = (replay / 'mags.jsonl').read_text().splitlines()
    bad = json.loads(lines[1]); bad['stop_reason'] = 'tired'
    (tmp_path / 'bad.jsonl').write_text(lines[0] + '\n' + json.dumps(bad) + '\n')
    rc, _, e = dnr('show', tmp_path / 'bad.jsonl', bad['question_id'])
    assert rc == 2 and e.startswith(f"dnr show: error: {tmp_path / 'bad.jsonl'}:2: invalid MAG") and "field 'stop_reason'" in e
    assert 'Traceback' not in e
    rc, _, e = dnr('show', replay, '--html', tmp_path / 'x.html')
    assert rc == 2 and 'error: --html needs a QUESTION_ID' in e


def test_explore_in_jupyterlab(scripted, replay, tmp_path):
    """`explore` in a real JupyterLab (headless Chromium, ipywidgets' lab extension): the question list shows each
    question's id, stop reason and text, a filter narrows it, and the view holds the tree with hover titles.

    Budget: starts a real JupyterLab server and drives it in headless Chromium."""
    import socket, time
    from playwright.sync_api import sync_playwright
    chromium = os.environ.get('DNR_CHROMIUM', '/usr/bin/chromium')
    if not Path(chromium).exists(): pytest.fail(f"{chromium} not found: apt-get install -y chromium (dev/ensure_chromium.sh)")
    import nbformat
    nb = nbformat.v4.new_notebook(metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
    nb.cells = [nbformat.v4.new_code_cell(f"from dnr.mag import read_mags\nfrom dnr.analysis import explore\n"
                                          f"explore(read_mags({str(scripted / 'mags.jsonl')!r}) + read_mags({str(replay / 'mags.jsonl')!r}))")]
    nbformat.write(nb, tmp_path / 'explore.ipynb')
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    lab = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', f'--port={port}', '--ServerApp.token=t',
                            f'--ServerApp.root_dir={tmp_path}', '--ServerApp.ip=127.0.0.1', '--allow-root'],
                           env={**ENV, 'PYTHONPATH': str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=chromium, args=['--headless', '--no-sandbox', '--disable-gpu'], headless=True)
            p = b.new_page(viewport={'width': 1300, 'height': 1000})
            try: _drive_explorer(p, port)
            except Exception:
                p.screenshot(path=str(tmp_path / 'lab.png')); print(f"what the page showed: {tmp_path / 'lab.png'}")
                raise
            finally: b.close()
    finally:
        lab.terminate(); lab.wait(20)


def _drive_explorer(p, port):
    import time
    for _ in range(60):  # the server takes a few seconds to listen
        try: p.goto(f'http://127.0.0.1:{port}/lab/tree/explore.ipynb?token=t', timeout=10000); break
        except Exception: time.sleep(1)
    p.wait_for_selector('.jp-Notebook .jp-Cell', timeout=60000)
    try: p.get_by_role('button', name='Select', exact=True).click(timeout=8000)  # Lab may ask which kernel to start
    except Exception: pass
    p.get_by_role('menuitem', name='Run').click(); p.get_by_text('Run All Cells', exact=True).click()
    p.wait_for_selector('.widget-select select option', state='attached', timeout=120000)
    p.wait_for_selector('.widget-html-content svg title', state='attached', timeout=60000)
    opts = p.eval_on_selector_all('.widget-select select option', 'els => els.map(e => e.textContent.replace(/\\u00a0/g, " "))')
    assert len(opts) == 8 and all(' · ' in o for o in opts), opts
    assert any(o.startswith('9650 · no_recording · 1 rd · Find the dimension of the parallelepiped') for o in opts), opts
    assert p.eval_on_selector_all('.widget-html-content svg title', 'els => els.length') > 5
    p.locator('.widget-dropdown', has_text='stopped').locator('select').select_option(label='no_recording')
    p.wait_for_function("document.querySelectorAll('.widget-select select option').length < 8", timeout=30000)
    assert p.locator('.widget-html', has_text='of 8 questions').first.inner_text().endswith('of 8 questions')
    opts = p.eval_on_selector_all('.widget-select select option', 'els => els.map(e => e.textContent.replace(/\\u00a0/g, " "))')
    assert opts and all(' · no_recording · ' in o for o in opts), opts
