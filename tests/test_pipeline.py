"""`dnr demo` and `dnr run` as a user runs them: the whole pipeline offline, resumable, with clear config errors."""
import json, os, re, subprocess
from pathlib import Path
import yaml
from conftest import BIN, ROOT, dnr_in_process

def dnr(*args, check=True, env=None):
    return subprocess.run([str(BIN / 'dnr'), *map(str, args)], capture_output=True, text=True, check=check, timeout=600, env=env)

def test_demo_without_data_says_where_data_comes_from(tmp_path):
    "No DNR_DATA_DIR and nothing fetched: one error line naming `dnr data fetch` and DNR_DATA_DIR, no traceback."
    env = {k: v for k, v in os.environ.items() if k != 'DNR_DATA_DIR'}
    env['DNR_CACHE_DIR'] = str(tmp_path / 'cache')
    r = dnr('demo', '--out', tmp_path / 'demo', check=False, env=env)
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and 'dnr data fetch' in r.stderr and 'DNR_DATA_DIR' in r.stderr, r.stderr
    assert not (tmp_path / 'demo').exists()

def test_run_bad_config_names_file_and_field(tmp_path):
    cfg = yaml.safe_load((ROOT / 'configs' / 'pipeline_paper.yaml').read_text())
    cfg['eval']['backnd'] = 'hf'
    f = tmp_path / 'p.yaml'; f.write_text(yaml.safe_dump(cfg))
    r = dnr_in_process('run', '--config', f)
    assert r.returncode == 2 and f"{f}: field 'eval.backnd'" in r.stderr

def test_paper_pipeline_config_is_valid():
    from dnr.pipeline import load_pipeline_config
    import os
    cwd = os.getcwd(); os.chdir(ROOT)
    try: cfg = load_pipeline_config('configs/pipeline_paper.yaml')
    finally: os.chdir(cwd)
    assert cfg.debate['max_rounds'] == 3 and cfg.sft['args']['learning_rate'] == 2e-4 and cfg.tdpo['args']['beta'] == 0.1


def _partial_config(tmp_path, url, **debate):
    from dnr.tiny import tiny_model
    agents = [dict(name=n, role='student' if n == 'student' else 'teacher', provider='openai_compatible', model=n,
                   base_url=url, price_in=1.0, price_out=2.0) for n in ('teacher-a', 'student')]
    cfg = dict(out=str(tmp_path / 'run'), student=str(tiny_model('trained')),
               debate=dict(dataset=dict(name='mmlu_pro', category='physics', split='train'), agents=agents, max_rounds=1, limit=2, **debate))
    f = tmp_path / 'p.yaml'; f.write_text(yaml.safe_dump(cfg))
    return f


def test_run_refuses_partial_debate_unless_allowed(tmp_path, monkeypatch):
    "A debate with errored questions: `dnr run` exits 4 and builds nothing; --allow-partial goes on and records it."
    from dnr.servers import ScriptedServer, Fail
    from dnr import pipeline
    with ScriptedServer(lambda p, r: Fail(400, 'context too long')) as srv:
        f = _partial_config(tmp_path, srv.openai_url)
        r = dnr('run', '--config', f, '--no-progress', check=False)
        assert r.returncode == 4 and 'did not finish' in r.stderr and '--allow-partial' in r.stderr, r.stderr
        assert not (tmp_path / 'run' / 'build').exists() and not (tmp_path / 'run' / 'debate' / 'done.json').exists()
        class Reached(Exception): pass
        def stop(*a, **k): raise Reached
        monkeypatch.setattr('dnr.distill.build_sft', stop)  # the build stage is reached: enough for this test
        cfg = pipeline.load_pipeline_config(f)
        try: pipeline.run_pipeline(cfg, progress=False, log=lambda m: None, allow_partial=True)
        except Reached: pass
        else: raise AssertionError('the build stage was not reached')
        done = json.loads((tmp_path / 'run' / 'debate' / 'done.json').read_text())
        assert done['partial'] and done['stopped'] == {'error': 2}


def test_run_plan_and_validation_before_writing(tmp_path):
    "`dnr run --plan`: no network, no key; a dead server or a typo is refused before `out` exists."
    from dnr.tiny import free_port
    dead = f'http://127.0.0.1:{free_port()}/v1'
    f = _partial_config(tmp_path, dead)
    r = dnr_in_process('run', '--config', f, '--plan')
    p = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0 and p['questions'] == 2 and p['estimated_usd'] > 0 and not (tmp_path / 'run').exists()
    r = dnr_in_process('run', '--config', f)
    assert r.returncode == 2 and f'cannot connect to {dead}' in r.stderr and not (tmp_path / 'run').exists()

def test_pipeline_config_refuses_by_name():
    """A pipeline config built in code (`PipelineConfig`, as a notebook does) is refused with the field and what it
    should be: a key that is neither a setting nor a training method, a method block that is not a mapping, a borrowed
    SFT student in a run that does not train SFT; and through `load_pipeline_config` with the file's field."""
    import pytest
    from pydantic import ValidationError
    from dnr.pipeline import PipelineConfig, load_pipeline_config
    base = dict(out='runs/x', student='m', debate={})
    with pytest.raises(ValidationError, match=r"unknown key 'sftt': neither a pipeline setting nor a training method \(\['magdi', 'rpo', 'sft', 'tdpo'\]\)"):
        PipelineConfig(**base, sftt={'lr': 1})
    with pytest.raises(ValidationError, match=r"magdi: expected a mapping \(a `dnr train magdi` config\)"):
        PipelineConfig(**base, magdi=5)
    with pytest.raises(ValidationError, match=r"sft_from: runs/y/sft is this run's SFT student \(borrowed, not trained\), so train needs sft"):
        PipelineConfig(**base, sft_from='runs/y/sft', train=['magdi'])
    with pytest.raises(ValueError, match=r"field 'sftt': unknown key \(did you mean 'sft'\?\)"):
        load_pipeline_config({**base, 'sftt': {'lr': 1}})
