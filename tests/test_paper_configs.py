"""Every experiment of the paper as a config (`configs/paper/`): each loads and validates, holds the paper's settings,
is listed in the docs with the paper's number, and `dnr figures` places a finished run beside that number."""
import json, re, subprocess
from pathlib import Path
import pytest, yaml
from conftest import BIN, ROOT
from dnr.data import load_benchmark
from dnr.debate import load_debate_config
from dnr.report import PAPER_EXPERIMENTS, PAPER_RESULTS, dataset_column, paper_number
from dnr.pipeline import load_pipeline_config

PAPER = ROOT / 'configs' / 'paper'
NAMES = sorted(f.stem for f in PAPER.glob('*.yaml') if not f.stem.startswith('debate_'))
TRAIN_SIZES = {'cs': 205, 'physics': 974, 'biology': 478, 'math': 1000}

def _numbers(e: str) -> set:
    return {v for st in PAPER_EXPERIMENTS[e]['paper'] if (v := paper_number(e, st)) is not None}

def test_one_config_per_experiment():
    assert NAMES == sorted(PAPER_EXPERIMENTS) and len(NAMES) == 38

@pytest.mark.parametrize('name', NAMES)
def test_paper_config_loads_with_the_papers_settings(name):
    cfg = load_pipeline_config(PAPER / f'{name}.yaml')  # nested files resolve beside the config, from any directory
    e = PAPER_EXPERIMENTS[name]
    assert cfg.experiment == name and cfg.out == f'runs/paper/{name}'
    assert cfg.student == ('meta-llama/Llama-3.1-8B-Instruct' if name == 'llama_math' else 'mistralai/Mistral-7B-Instruct-v0.2')
    d = load_debate_config(cfg.debate)
    col = e['column']
    assert dataset_column(cfg.eval.dataset) == col and cfg.eval.split == 'test'
    assert len(load_benchmark(cfg.eval.dataset, 'test')) == PAPER_RESULTS['test_sizes'][col]
    n_train = len(load_benchmark(d.dataset.name + (f':{d.dataset.category}' if d.dataset.category else ''), d.dataset.split))
    assert min(n_train, d.limit or n_train) == TRAIN_SIZES[col] and d.dataset.split == 'train'
    assert (cfg.eval.max_new_tokens, cfg.eval.temperature, cfg.eval.top_p) == (700, 0.3, 0.9)
    # hyperparameters (nbs/paper.ipynb, the authors' run_sft.sh / run_tdpo.sh; MAGDi's train.py)
    if name.startswith('magdi_'):
        m = cfg.block('magdi')
        assert m['lora'] == {'r': 16, 'lora_alpha': 32, 'lora_dropout': 0.05, 'target_modules': ['q_proj', 'v_proj']}
        a = m['args']
        assert (a['learning_rate'], a['num_train_epochs'], a['warmup_steps'], a['per_device_train_batch_size'] * a['gradient_accumulation_steps']) == (5e-6, 10, 100, 16)
        assert (a['alpha'], a['beta'], a['gamma'], a['gcn_hidden']) == (1.0, 1.0, 0.1, 512)
        assert (cfg.train, cfg.eval.models, cfg.debate_from) == (['magdi'], ['magdi'], f'runs/paper/table1_{col}/debate')
    else:
        assert cfg.sft['lora'] == {'r': 16, 'lora_alpha': 32, 'lora_dropout': 0.05, 'target_modules': ['q_proj', 'v_proj']}
        assert (cfg.sft['args']['learning_rate'], cfg.sft['args']['num_train_epochs']) == (2e-4, 2)
        t = cfg.tdpo['args']
        assert (t['learning_rate'], t['num_train_epochs'], t['beta'], t['max_length'], t['max_prompt_length']) == (5e-6, 3, 0.1, 1600, 1000)
    b = cfg.build
    assert (b['answer_cap'], b['cut_to'], b['context_budget'], b['prompt_cap'], b['unparsed']) == (950, 470, 1000, 1000, 'reject')
    assert b['ablation'] == e.get('ablation', 'none') and b.get('debates') == e.get('debates')
    # trains what the paper's number needs, and evaluates only students with a paper entry
    assert set(cfg.eval.models) <= set(e['paper']) and ('tdpo' in cfg.train) == ('tdpo' in e['paper'])
    if e['group'] in ('ablation', 'data_scale'):
        assert cfg.debate_from == 'runs/paper/table1_physics/debate' and cfg.debate == load_pipeline_config(PAPER / 'table1_physics.yaml').debate
    assert (cfg.sft_from is not None) == (e['group'] == 'ablation' or name.startswith('rpo_'))  # the ablations and RPO borrow an SFT adapter
    if name.startswith('rpo_'):
        assert (cfg.sft_from, cfg.debate_from, cfg.train, cfg.eval.models) == (f'runs/paper/table1_{col}/sft', f'runs/paper/table1_{col}/debate', ['sft', 'rpo'], ['rpo'])
        assert cfg.block('rpo')['args']['loss_type'] == ['sigmoid', 'sft'] and cfg.block('rpo')['args']['loss_weights'] == [1.0, 1.0]
    if name == 'llama_math': assert cfg.debate_from == 'runs/paper/table1_math/debate' and cfg.build['tokenizer'] == cfg.student
    assert cfg.eval.self_reflect == bool(e.get('self_reflect'))
    if name.startswith('single_teacher_'):
        who = {'claude': 'claude-3-5', 'gpt4o': 'gpt-4o', 'gemini': 'gemini-1-5'}[name.split('_')[2]]
        assert [a['name'] for a in d.agents] == [who] and d.max_rounds == 0 and cfg.train == ['sft']
    # the numbers in the config's header comment are the paper's
    head = ' '.join(l for l in (PAPER / f'{name}.yaml').read_text().splitlines()[:2])
    said = {float(x) for x in re.findall(r'\b\d+\.\d\d\b', head)}
    assert said <= _numbers(name) | {34.77} and (said or not _numbers(name)), (head, _numbers(name))

@pytest.mark.parametrize('name', [n for n in NAMES if n.startswith('ablation_')])
def test_ablations_borrow_table1_physics_sft(name, tmp_path):
    "`sft_from` names Table 1 physics' SFT folder, and the ablation's SFT would be that one: same student, debates, build options, SFT config."
    from dnr.distill import _demo_mag, build_sft
    from dnr.pipeline import _train_cfg, fingerprint_diff, sft_fingerprint
    phys, cfg = load_pipeline_config(PAPER / 'table1_physics.yaml'), load_pipeline_config(PAPER / f'{name}.yaml')
    assert cfg.sft_from == f'{phys.out}/sft' and cfg.debate_from == f'{phys.out}/debate' and cfg.student == phys.student
    assert 'sft' in cfg.train and [cfg.build.get(k) for k in ('include_student', 'debates')] == [phys.build.get(k) for k in ('include_student', 'debates')]
    (tmp_path / 'mags.jsonl').write_text(''.join(json.dumps(_demo_mag(str(i), seed=i)) + '\n' for i in range(20)))
    build_sft(tmp_path, tmp_path / 'sft')
    fp = lambda c, **kw: sft_fingerprint(_train_cfg(c.sft, 'sft', model=c.student, data='x', output_dir=c.out, **kw), tmp_path / 'sft')
    assert fingerprint_diff(fp(phys), fp(cfg)) == []
    assert fingerprint_diff(fp(phys), fp(cfg, args={'seed': 7})) == ["field 'args.seed': 42 there, 7 here"]  # the check can fail
    (tmp_path / 'fewer').mkdir()  # other debates give other SFT data: the data half of the check can fail too
    (tmp_path / 'fewer' / 'sft.jsonl').write_text(''.join((tmp_path / 'sft' / 'sft.jsonl').read_text().splitlines(keepends=True)[:5]))
    other = sft_fingerprint(_train_cfg(cfg.sft, 'sft', model=cfg.student, data='x', output_dir=cfg.out), tmp_path / 'fewer')
    assert [d.split(' (')[0] for d in fingerprint_diff(fp(phys), other)] == ["field 'data'"]
    if 'tdpo' not in cfg.train: assert cfg.eval.models == ['sft']  # SFT only: evaluates the borrowed adapter

def test_docs_list_every_config_with_its_number():
    nb = json.loads((ROOT / 'nbs' / '07_pipeline.ipynb').read_text())
    md = '\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown')
    for name in NAMES:
        row = next((l for l in md.splitlines() if l.startswith(f'| `{name}.yaml` |')), None)
        assert row is not None, f'{name} not in the docs table'
        nums = {float(x) for x in re.findall(r'\b\d+\.\d\d\b', row)}
        assert nums == _numbers(name) or (nums and nums <= _numbers(name)), (row, _numbers(name))
        if not _numbers(name): assert 'not published' in row

def test_bad_paper_config_names_file_and_field(tmp_path):
    "Three bad pipeline configs: `dnr run` exits 2 naming the file and the field, before any stage runs."
    from conftest import dnr_in_process
    d = yaml.safe_load((PAPER / 'ablation_no_both.yaml').read_text())
    for k, v, field in (('build', {**d['build'], 'unparsed': 'keep'}, "field 'build.unparsed'"),
                        ('experiment', 'table_9', "field 'experiment'"), ('train', ['tdpo'], 'train needs sft')):
        f = tmp_path / 'p.yaml'; f.write_text(yaml.safe_dump({**d, k: v, 'debate': str(PAPER / 'debate_physics.yaml'),
                                                             'sft': str(ROOT / 'configs' / 'sft_paper.yaml'), 'tdpo': str(ROOT / 'configs' / 'tdpo_paper.yaml')}))
        r = dnr_in_process('run', '--config', f)
        assert r.returncode == 2 and str(f) in r.stderr and field in r.stderr, r.stderr[-1000:]

def test_figures_place_a_finished_run_beside_the_paper(tmp_path):
    "A finished physics run and a data-scale run, their students' evaluations made of real recorded answers."
    from dnr.data import load_recorded_answers
    from dnr.distill import _demo_mag
    from dnr.eval import ReplayBackend, evaluate
    from dnr.pipeline import eval_tags
    rec = load_recorded_answers()
    resp = lambda m: dict(zip(rec[rec.model == m].question_id, rec[rec.model == m].response))
    qs = load_benchmark('mmlu_pro:physics', 'test')
    runs = tmp_path / 'runs' / 'paper'
    phys = load_pipeline_config(PAPER / 'table1_physics.yaml', out=str(runs / 'table1_physics'))
    (runs / 'table1_physics' / 'debate').mkdir(parents=True)
    (runs / 'table1_physics' / 'debate' / 'mags.jsonl').write_text(''.join(json.dumps(_demo_mag(str(i), seed=i)) + '\n' for i in range(120)))
    scale = load_pipeline_config(PAPER / 'data_scale_100.yaml', out=str(runs / 'data_scale_100'), debate_from=str(runs / 'table1_physics' / 'debate'))
    rpo = load_pipeline_config(PAPER / 'rpo_physics.yaml', out=str(runs / 'rpo_physics'), debate_from=str(runs / 'table1_physics' / 'debate'))
    acc = {}
    for cfg, stage, model in ((phys, 'base', 'mistral-7b-instruct-v0.2'), (phys, 'tdpo', 'llama-3.1-70b-instruct'),
                              (scale, 'tdpo', 'deepseek-chat-v2'), (rpo, 'rpo', 'gemini-1.5-pro-002')):
        s = evaluate(qs, ReplayBackend(resp(model)), Path(cfg.out) / 'eval' / stage, progress=False,
                     label=f'{stage} ({Path(cfg.out).name})', tags=eval_tags(cfg, stage))
        acc[(cfg.experiment, stage)] = 100 * s['accuracy']
    assert eval_tags(scale, 'tdpo')['n_debates'] == 100 and eval_tags(phys, 'tdpo')['n_debates'] == 120
    r = subprocess.run([str(BIN / 'dnr'), 'figures', str(runs), '--out', str(tmp_path / 'fig')], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert eval_tags(rpo, 'rpo') == {'method': 'dnr_rpo', 'stage': 'rpo', 'experiment': 'rpo_physics', 'n_debates': 120}
    for (e, st), paper in ((('table1_physics', 'base'), '18.46'), (('table1_physics', 'tdpo'), '34.77'), (('data_scale_100', 'tdpo'), 'not published'),
                           (('rpo_physics', 'rpo'), 'not published')):
        assert f"| {e} | {st} | MMLU-Pro Physics | {paper} | {acc[(e, st)]:.2f} |" in r.stdout, r.stdout
    md = (tmp_path / 'fig' / 'experiments.md').read_text()
    assert '| table1_cs | tdpo | MMLU-Pro CS | 33.17 | — |' in md  # not run yet: the paper's number alone
    for row in ('| llama_math | tdpo | MATH | 48.02 | — |', '| ablation_inference_sr | tdpo | MMLU-Pro Physics | 36.92 | — |',
                '| single_teacher_gpt4o_cs | sft | MMLU-Pro CS | not published | — |', '| rpo_math | rpo | MATH | not published | — |'):
        assert row in md, row
    t1 = (tmp_path / 'fig' / 'table1.md').read_text()
    assert f"| ours | D&R w/ RPO (ours) | – | {acc[('rpo_physics', 'rpo')]:.2f} |" in t1, t1
    assert json.loads(r.stdout.strip().splitlines()[-1])['figures']['experiments'][1].endswith('experiments.md')

def test_pipeline_builds_from_another_runs_debates(tmp_path):
    """`debate_from` + `build.debates` + `train: [sft]` (the data-scale and SFT-only configs), on replayed real debates.

    Budget: a pipeline that builds data from another run's replayed debates and trains SFT on the tiny model."""
    from dnr.debate import offline_config, debate_into, run_sync
    from dnr.demo import demo_config
    from dnr.pipeline import run_pipeline
    run_sync(debate_into(load_debate_config(offline_config('physics', limit=12)), tmp_path / 'deb', progress=False))
    base = demo_config(tmp_path / 'x', questions=12, eval_questions=4, steps=2).model_dump()
    cfg = load_pipeline_config({**base, 'out': str(tmp_path / 'scale'), 'debate_from': str(tmp_path / 'deb'),
                                'experiment': 'ablation_sft_only', 'train': ['sft'], 'build': {**base['build'], 'debates': 5},
                                'eval': {**base['eval'], 'models': ['sft']}, 'figures': False})
    res = run_pipeline(cfg, progress=False, log=lambda *a: None)
    assert res['debate']['debate_from'] == str(tmp_path / 'deb') and res['debate']['stopped'] == {}
    assert not (tmp_path / 'scale' / 'debate').exists()
    assert res['build_sft']['mags'] == 5 and res['build_sft']['debates'] == 5
    assert 'tdpo' not in res and 'build_tdpo' not in res and not (tmp_path / 'scale' / 'tdpo').exists()
    tags = json.loads((tmp_path / 'scale' / 'eval' / 'sft' / 'summary.json').read_text())['tags']
    assert tags == {'method': 'dnr_sft', 'stage': 'sft', 'experiment': 'ablation_sft_only', 'n_debates': 5}
    # a borrowed debate with a question stopped on the budget is not trained on, and nothing is written
    from dnr.pipeline import PartialDebate
    (tmp_path / 'part').mkdir()
    rows = [json.loads(l) for l in (tmp_path / 'deb' / 'mags.jsonl').read_text().splitlines()]
    rows[3]['stop_reason'] = 'budget'
    (tmp_path / 'part' / 'mags.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    part = load_pipeline_config({**cfg.model_dump(), 'out': str(tmp_path / 'p'), 'debate_from': str(tmp_path / 'part')})
    with pytest.raises(PartialDebate, match="did not finish .*'budget': 1") as e: run_pipeline(part, progress=False, log=lambda *a: None)
    assert e.value.code == 3 and not (tmp_path / 'p').exists()
    bad = load_pipeline_config({**base, 'out': str(tmp_path / 'b'), 'debate_from': str(tmp_path / 'nothing')})
    with pytest.raises(ValueError, match='debate_from: .*nothing has no mags.jsonl'): run_pipeline(bad, progress=False, log=lambda *a: None)

@pytest.mark.parametrize('name', ['debate_cs', 'debate_physics', 'debate_biology', 'debate_math', 'single_teacher_claude_physics',
                                  'single_teacher_gpt4o_math', 'single_teacher_gemini_cs'])
def test_paper_budgets_come_from_the_plan(name):
    "Each paid config's cap is its `--plan` estimate (400-token completions) plus a 15% margin, rounded up to $5."
    import math
    from dnr.debate import load_debate_config, plan_debate
    f = PAPER / f'{name}.yaml'
    cfg = load_debate_config(f) if name.startswith('debate_') else load_debate_config(load_pipeline_config(f).debate)
    usd = plan_debate(cfg, typical_tokens=400)['estimated_usd']
    assert cfg.budget_usd == max(5, 5 * math.ceil(usd * 1.15 / 5)), (cfg.budget_usd, usd)
    assert f"estimates ${usd:.2f}" in f.read_text()
