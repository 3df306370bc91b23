"""`dnr demo` and `dnr run` as a user runs them: the whole pipeline offline, resumable, with clear config errors."""
import json, subprocess
from pathlib import Path
import yaml
from conftest import BIN, ROOT

def dnr(*args, check=True):
    return subprocess.run([str(BIN / 'dnr'), *map(str, args)], capture_output=True, text=True, check=check, timeout=600)

def test_demo_then_rerun_repeats_nothing(tmp_path):
    out = tmp_path / 'demo'
    s = json.loads(dnr('demo', '--out', out, '--questions', 16, '--eval-questions', 4, '--steps', 2, '--no-progress').stdout.strip().splitlines()[-1])
    assert s['questions'] == 16 and sum(s['stop_reasons'].values()) == 16
    assert s['sft_examples'] > 0 and s['tdpo_pairs'] > 0 and set(s['accuracy']) == {'base', 'sft', 'tdpo'}
    assert (out / 'figures' / 'table1.png').stat().st_size > 1000
    mtimes = {p: p.stat().st_mtime for p in out.rglob('*') if p.is_file()}
    r = dnr('demo', '--out', out, '--questions', 16, '--eval-questions', 4, '--steps', 2, '--no-progress')
    assert json.loads(r.stdout.strip().splitlines()[-1]) == s
    changed = [p for p, t in mtimes.items() if p.stat().st_mtime != t and p.name != 'pipeline.yaml']
    assert not changed, changed

def test_run_bad_config_names_file_and_field(tmp_path):
    cfg = yaml.safe_load((ROOT / 'configs' / 'pipeline_paper.yaml').read_text())
    cfg['eval']['backnd'] = 'hf'
    f = tmp_path / 'p.yaml'; f.write_text(yaml.safe_dump(cfg))
    r = dnr('run', '--config', f, check=False)
    assert r.returncode == 2 and f"{f}: field 'eval.backnd'" in r.stderr

def test_paper_pipeline_config_is_valid():
    from dnr.pipeline import load_pipeline_config
    import os
    cwd = os.getcwd(); os.chdir(ROOT)
    try: cfg = load_pipeline_config('configs/pipeline_paper.yaml')
    finally: os.chdir(cwd)
    assert cfg.debate['max_rounds'] == 3 and cfg.sft['args']['learning_rate'] == 2e-4 and cfg.tdpo['args']['beta'] == 0.1
