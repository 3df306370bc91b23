"""`dnr build sft|tdpo`: CLI runs on MAG files, summaries, bad input."""
import json, os, subprocess
from conftest import BIN, ROOT
from dnr.distill import _demo_mag, build_cli
from dnr.tiny import tiny_model

def _mags(tmp_path):
    "Ten demo MAGs plus one with no right answer in round 0 and one whose round 0 is all unparsed."
    ms = [_demo_mag(str(i), seed=i) for i in range(10)]
    no_right = _demo_mag('nr')
    for a in no_right['rounds'][0]['answers'].values(): a['correct'] = False
    unparsed = _demo_mag('up')
    for a in unparsed['rounds'][0]['answers'].values(): a.update(status='unparsed', answer=None, reasoning=None, correct=None)
    run = tmp_path / 'run'; run.mkdir()
    (run / 'mags.jsonl').write_text(''.join(json.dumps(m) + '\n' for m in ms + [no_right, unparsed]))
    return run

def _dnr(*args):
    r = subprocess.run([str(BIN / 'dnr'), *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'})  # shared 2-core machines: no thread oversubscription
    return r, (json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None)

def test_build_tdpo_cli(tmp_path):
    run = _mags(tmp_path)
    r, s = _dnr('build', 'tdpo', '--run', str(run), '--tokenizer', str(tiny_model('random')), '--out', str(tmp_path / 'tdpo'))
    assert r.returncode == 0, r.stderr[-2000:]
    # each demo MAG: round 0 (2 right x 2 wrong), round 1 (2 right x 1 wrong; the unparsed student dropped), round 2 all right
    assert s['skipped'] == {'no_right': 1, 'no_wrong': 12, 'unparsed': 1}
    assert s['unparsed_answers'] == 10 + 1 + 4 + 1
    nodes = [json.loads(l) for l in open(tmp_path / 'tdpo' / 'nodes.jsonl')]
    pairs = [json.loads(l) for l in open(tmp_path / 'tdpo' / 'pairs.jsonl')]
    assert s['nodes'] == len(nodes) and s['pairs'] == len(pairs) == 10 * (4 + 2) + 2 + 2
    assert 'skipped rounds: 1 no right answer, 12 no wrong answer, 1 unparsed' in r.stdout
    assert all(p['chosen'][0]['role'] == 'assistant' and p['prompt'][0]['role'] == 'user' for p in pairs)
    tree = [json.loads(l) for l in open(tmp_path / 'tdpo' / 'tree.jsonl')]
    assert len(tree) == 12 and [len(r['contexts']) for r in tree[0]['rounds']] == [1, 1]

def test_build_sft_cli_and_ablation(tmp_path):
    run = _mags(tmp_path)
    r, s = _dnr('build', 'sft', '--run', str(run), '--out', str(tmp_path / 'sft'), '--include-student')
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(l) for l in open(tmp_path / 'sft' / 'sft.jsonl')]
    assert s['examples'] == len(rows) > 0 and all(x['completion'][0]['content'].startswith('### Answer\n') for x in rows)
    assert {x['agent'] for x in rows} == {'gpt-4o', 'claude', 'gemini', 'student'}
    assert build_cli(['tdpo', '--run', str(run), '--out', str(tmp_path / 'a'), '--ablation', 'no_both']) == 0
    full = build_cli(['tdpo', '--run', str(run), '--out', str(tmp_path / 'f')])
    n_a = [json.loads(l) for l in open(tmp_path / 'a' / 'nodes.jsonl')]
    n_f = [json.loads(l) for l in open(tmp_path / 'f' / 'nodes.jsonl')]
    r1 = lambda ns: next(n for n in ns if n['round'] == 1)['prompt'][0]['content']
    assert len(r1(n_a)) < len(r1(n_f)) and 'Self-reflection: None' in r1(n_a)

def test_build_bad_input(tmp_path, capsys):
    f = tmp_path / 'mags.jsonl'
    f.write_text(json.dumps(_demo_mag()) + '\n{"question_id": "x"\n')
    assert build_cli(['sft', '--run', str(f), '--out', str(tmp_path / 'o')]) == 2
    assert 'mags.jsonl:2: not valid JSON' in capsys.readouterr().err
    assert build_cli(['tdpo', '--run', str(tmp_path / 'missing'), '--out', str(tmp_path / 'o')]) == 2
    assert 'no mags.jsonl' in capsys.readouterr().err
