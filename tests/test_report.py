"""Tests for chapter 06_report (dnr.report): `dnr figures` as a subprocess, and the paper's numbers."""
import json, struct
from pathlib import Path
import numpy as np
import pytest

from conftest import ROOT, dnr, last_json


def _png_size(path):
    b = Path(path).read_bytes()
    assert b[:8] == b'\x89PNG\r\n\x1a\n'
    return struct.unpack('>II', b[16:24])


def test_figures_cli_writes_files(tmp_path):
    from dnr.eval import summarize
    from dnr.report import PAPER_RESULTS
    from dnr.mag import sample_mag, write_mags
    rng = np.random.default_rng(0)
    def run(name, dataset, acc, n, tags=None, self_reflect=False):
        d = tmp_path / 'runs' / name; d.mkdir(parents=True)
        ok = np.arange(n) < round(acc * n)
        recs = [dict(status='parsed', correct=bool(o), prompt_tokens=400, completion_tokens=int(rng.integers(80, 200))) for o in ok]
        (d / 'summary.json').write_text(json.dumps(summarize(recs, label=name.split('@')[0], dataset=dataset, tags=tags or {},
                                                             self_reflect=self_reflect)))
    for ds, n in [('mmlu_pro:computer science', 205), ('mmlu_pro:physics', 325), ('mmlu_pro:biology', 239), ('math', 200)]:
        run(f'labelled-dnr@{ds}', ds, 0.3, n, {'method': 'dnr'})
    for k in (100, 300):
        run(f'scale-{k}', 'mmlu_pro:physics', 0.2 + k / 3000, 325, {'method': 'dnr', 'n_debates': k})
    run('nosr', 'mmlu_pro:physics', 0.25, 325, {'ablation': 'no_sr'})
    (tmp_path / 'runs' / 'debate').mkdir()
    write_mags(tmp_path / 'runs' / 'debate' / 'mags.jsonl', [sample_mag()])
    out = tmp_path / 'figs'
    s = last_json(dnr('figures', str(tmp_path / 'runs'), '--out', str(out)))
    assert set(s['figures']) == {'table1_tables', 'table1', 'ablation', 'token_cost', 'data_scale', 'debates_debate', 'experiments'}
    for name in ('table1', 'ablation', 'token_cost', 'data_scale', 'debates_debate'):
        w, h = _png_size(out / f'{name}.png')
        assert w > 600 and h > 300, (name, w, h)
        assert (out / f'{name}.svg').read_text().lstrip().startswith('<?xml')
    import pandas as pd
    t = pd.read_csv(out / 'table1.csv').set_index(['source', 'method'])
    assert t.loc[('ours', 'labelled-dnr'), 'physics'] == pytest.approx(100 * round(0.3 * 325) / 325, abs=0.01)
    assert t.loc[('ours', 'labelled-dnr'), 'avg'] == pytest.approx(t.loc[('ours', 'labelled-dnr'), ['cs', 'physics', 'biology', 'math']].mean(), abs=0.01)
    assert ('ours', 'scale-100') not in t.index and ('ours', 'nosr') not in t.index   # variants go to their own figures
    assert t.loc[('paper', 'D&R (SFT + T-DPO)'), 'physics'] == 34.77
    assert pd.isna(t.loc[('paper', 'Single-teacher SFT (GPT-4o)'), 'cs'])   # not found in the paper: missing, not invented
    p = dnr('figures', str(tmp_path / 'nope'), '--out', str(out), check=False)
    assert p.returncode != 0 and 'no such run folder' in p.stderr


def test_paper_results_are_consistent():
    from dnr.report import PAPER_RESULTS
    rows = {r['key']: r for r in PAPER_RESULTS['table1']}
    for r in rows.values():
        if r['avg'] is not None:
            assert np.mean([r[c] for c in ('cs', 'physics', 'biology', 'math')]) == pytest.approx(r['avg'], abs=0.006)
    for r in PAPER_RESULTS['table1'] + PAPER_RESULTS['ablation_physics']:
        for c, n in PAPER_RESULTS['test_sizes'].items():
            if r.get(c) is not None: assert round(r[c] * n / 100) / n * 100 == pytest.approx(r[c], abs=0.006)
    assert PAPER_RESULTS['token_cost']['dnr'] == 528.83 and PAPER_RESULTS['token_cost']['baseline'] == 627.10
    assert all(v is None for v in PAPER_RESULTS['data_scale']['dnr'])
