"""`dnr build sft|tdpo`: CLI runs on MAG files, summaries, bad input."""
import json, os, subprocess
from conftest import BIN, ROOT
from dnr.distill import UNPARSED_TEXT, _demo_mag, build_cli
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
    """`dnr build tdpo` on the demo's MAGs: the preference trees, their pairs and token budgets.

    Budget: a `dnr build` process that imports transformers and tokenizes every context entry of the demo's debates."""
    run = _mags(tmp_path)
    r, s = _dnr('build', 'tdpo', '--run', str(run), '--tokenizer', str(tiny_model('random')), '--out', str(tmp_path / 'tdpo'))
    assert r.returncode == 0, r.stderr[-2000:]
    # each demo MAG: round 0 (2 right x 2 wrong), round 1 (2 right x 2 wrong: claude and the unparsed student, kept as
    # rejected as the authors do), round 2 all right. The all-unparsed round 0 has no right answer.
    assert s['skipped'] == {'no_right': 2, 'no_wrong': 12, 'unparsed': 0}
    assert s['unparsed_answers'] == 10 + 1 + 4 + 1 and s['unparsed'] == 'reject'
    nodes = [json.loads(l) for l in open(tmp_path / 'tdpo' / 'nodes.jsonl')]
    pairs = [json.loads(l) for l in open(tmp_path / 'tdpo' / 'pairs.jsonl')]
    assert s['nodes'] == len(nodes) and s['pairs'] == len(pairs) == 10 * (4 + 4) + 4 + 4
    assert s['pairs_per_round'] == {'0': 40, '1': 48} and s['amplification'] == round(88 / 12, 2)
    assert s['pairs_unparsed_rejected'] == 10 * 2 + 2 + 2 == sum(p['rejected'][0]['content'] == UNPARSED_TEXT for p in pairs)
    assert UNPARSED_TEXT == '### Answer\nNone\nFinal answer: None'
    assert 'skipped rounds: 2 no right answer, 12 no wrong answer, 0 unparsed' in r.stdout
    assert 'pairs per round: r0 40, r1 48; amplification: 7.33 pairs per debated question' in r.stdout
    assert all(p['chosen'][0]['role'] == 'assistant' and p['prompt'][0]['role'] == 'user' for p in pairs)
    tree = [json.loads(l) for l in open(tmp_path / 'tdpo' / 'tree.jsonl')]
    assert len(tree) == 12 and [len(r['contexts']) for r in tree[0]['rounds']] == [1, 1]
    # the switch: dnr's former behaviour, unparsed answers dropped
    r, d = _dnr('build', 'tdpo', '--run', str(run), '--out', str(tmp_path / 'drop'), '--unparsed', 'drop', '--debates', '11')
    assert r.returncode == 0, r.stderr[-2000:]
    assert d['mags'] == 11 and d['pairs'] == 10 * (4 + 2) + 2 and d['pairs_per_round'] == {'0': 40, '1': 22}
    assert d['skipped'] == {'no_right': 1, 'no_wrong': 11, 'unparsed': 0} and d['pairs_unparsed_rejected'] == 0
    assert 'unparsed answers dropped' in r.stdout
    r, _ = _dnr('build', 'tdpo', '--run', str(run), '--out', str(tmp_path / 'x'), '--unparsed', 'keep')
    assert r.returncode == 2 and 'unparsed' in r.stderr

def test_build_from_a_replayed_debate(tmp_path):
    "Real recorded answers (the offline replay of MMLU-Pro physics): unparsed answers become rejected responses."
    from dnr.debate import offline_config, load_debate_config, debate_into, run_sync
    run_sync(debate_into(load_debate_config(offline_config('physics', limit=40)), tmp_path / 'deb', progress=False))
    from dnr.mag import read_mags
    from dnr.distill import pair_role, build_tdpo
    mags = read_mags(tmp_path / 'deb' / 'mags.jsonl')
    states = [pair_role(a) for m in mags for a in m.rounds[0].answers.values()]
    s_rej = build_tdpo(tmp_path / 'deb', tmp_path / 'rej', str(tiny_model('random')))
    s_drop = build_tdpo(tmp_path / 'deb', tmp_path / 'drop', str(tiny_model('random')), unparsed='drop')
    assert s_rej['unparsed_answers'] == states.count('unparsed') > 0
    assert s_rej['pairs'] - s_drop['pairs'] == s_rej['pairs_unparsed_rejected'] > 0
    assert s_rej['pairs_per_round']['0'] == s_rej['pairs'] and s_rej['amplification'] == round(s_rej['pairs'] / 40, 2)
    # `grading: lenient`: an answer the debate graded right by the fallback cue is a chosen answer, never a rejected one
    fallback_right = [(m.question_id, n) for m in mags for n, a in m.rounds[0].answers.items() if a.status == 'fallback' and a.correct]
    assert fallback_right, 'the replayed debate has answers graded right by fallback'
    nodes = {n['question_id']: n for n in map(json.loads, open(tmp_path / 'rej' / 'nodes.jsonl'))}
    for qid, name in fallback_right:
        if qid in nodes: assert [k['correct'] for k in nodes[qid]['responses'] if k['agent'] == name] == [True], (qid, name)
    right = sum(a.correct for m in mags for a in m.rounds[0].answers.values() if any(not b.correct and b.response for b in m.rounds[0].answers.values()))
    assert sum(k['correct'] for n in nodes.values() for k in n['responses']) == right  # every answer graded right, and only those, is chosen

def test_build_sft_cli_and_ablation(tmp_path):
    run = _mags(tmp_path)
    r, s = _dnr('build', 'sft', '--run', str(run), '--out', str(tmp_path / 'sft'), '--include-student')
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(l) for l in open(tmp_path / 'sft' / 'sft.jsonl')]
    assert s['examples'] == len(rows) > 0 and all(x['completion'][0]['content'].startswith('### Answer\n') for x in rows)
    assert {x['agent'] for x in rows} == {'gpt-4o', 'claude', 'gemini', 'student'}
    assert s['amplification'] == round(len(rows) / 12, 2) and 'SFT examples per debated question' in r.stdout
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
