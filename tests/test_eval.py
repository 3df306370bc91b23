"""CLI tests for chapter 06 (dnr.eval): `dnr eval` as a subprocess on real data and the tiny model (`dnr figures`: tests/test_report.py)."""
import json
import numpy as np
import pytest

from conftest import ROOT, dnr, last_json, dnr_in_process


@pytest.fixture(scope='session')
def tiny():
    from dnr.tiny import tiny_model
    return tiny_model('trained')


def test_hf_eval_end_to_end_and_resume(tmp_path, tiny):
    """`dnr eval --backend hf` on the tiny model and real questions writes predictions and a summary; a rerun resumes.

    Budget: two `dnr eval` processes generating with the tiny model (a run and its resume)."""
    out = tmp_path / 'run'
    args = ['--model', str(tiny), '--backend', 'hf', '--dataset', 'mmlu_pro:physics', '--limit', '5', '--max-new-tokens', '24',
            '--out', str(out), '--label', 'tiny', '--tag', 'method=tiny', '--tag', 'n_debates=100', '--no-progress']
    s = last_json(dnr('eval', *args))
    from dnr.data import load_benchmark
    qs = load_benchmark('mmlu_pro:physics', 'test')[:5]
    recs = [json.loads(l) for l in (out / 'predictions.jsonl').read_text().splitlines()]
    assert [r['question_id'] for r in sorted(recs, key=lambda r: [q.id for q in qs].index(r['question_id']))] == [q.id for q in qs]
    for r in recs:
        assert set(r) >= {'question_id', 'response', 'answer', 'status', 'correct', 'prompt_tokens', 'completion_tokens'}
        assert r['prompt_tokens'] > 300 and 0 < r['completion_tokens'] <= 24   # the paper's long test prompt; capped generation
    assert (s['n'], s['generated'], s['resumed'], s['dataset'], s['tags']) == (5, 5, 0, 'mmlu_pro:physics', {'method': 'tiny', 'n_debates': 100})
    assert s['accuracy'] == sum(r['correct'] for r in recs) / 5
    assert s['mean_total_tokens'] == pytest.approx(np.mean([r['prompt_tokens'] + r['completion_tokens'] for r in recs]))
    assert json.loads((out / 'summary.json').read_text())['accuracy'] == s['accuracy']
    # resume after a crash that left 3 records and a torn line: only the 2 missing questions are generated
    lines = (out / 'predictions.jsonl').read_text().splitlines(True)
    (out / 'predictions.jsonl').write_text(''.join(lines[:3]) + lines[3][:20])
    s2 = last_json(dnr('eval', *args))
    assert (s2['generated'], s2['resumed'], s2['n']) == (2, 3, 5)
    assert len((out / 'predictions.jsonl').read_text().splitlines()) == 5
    s3 = last_json(dnr('eval', *args))
    assert (s3['generated'], s3['resumed']) == (0, 5)


def test_eval_bad_input(tmp_path, tiny):
    out = tmp_path / 'run'; out.mkdir()
    (out / 'config.json').write_text(json.dumps({'model': 'other'}))
    (out / 'predictions.jsonl').write_text('{"question_id": "1"}\n')
    p = dnr_in_process('eval', '--model', str(tiny), '--dataset', 'mmlu_pro:physics', '--out', str(out))
    assert p.returncode != 0 and 'different configuration' in p.stderr
    p = dnr_in_process('eval', '--model', str(tiny), '--dataset', 'mmlu_pro:physics', '--out', str(tmp_path / 'b'), '--tag', 'oops')
    assert p.returncode != 0 and "--tag 'oops': expected KEY=VALUE" in p.stderr
    p = dnr_in_process('eval', '--model', str(tiny), '--dataset', 'mmlu_pro:physics', '--backend', 'openai', '--out', str(tmp_path / 'c'))
    assert p.returncode != 0 and '--base-url' in p.stderr
    from dnr.eval import read_predictions
    bad = tmp_path / 'p.jsonl'; bad.write_text('{"question_id": "1"}\n{"x": 1}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: field 'question_id': missing"): read_predictions(bad)


def test_eval_extraction_conventions_and_old_predictions(tmp_path, tiny):
    "--extraction picks the headline convention, the summary reports all three; predictions from before the conventions resume."
    out = tmp_path / 'run'
    args = ['--model', str(tiny), '--backend', 'hf', '--dataset', 'mmlu_pro:physics', '--limit', '3', '--max-new-tokens', '24',
            '--out', str(out), '--no-progress']
    s = last_json(dnr('eval', *args, '--extraction', 'authors'))
    assert s['extraction'] == 'authors' and set(s['by_extraction']) == {'dnr', 'authors', 'mmlu_pro'}
    assert s['accuracy'] == s['by_extraction']['authors']['accuracy']
    assert set(s['by_extraction']['mmlu_pro']) >= {'accuracy', 'unparsed', 'accuracy_seeded_guess'}
    recs = [json.loads(l) for l in (out / 'predictions.jsonl').read_text().splitlines()]
    assert all(r['extractions']['authors'][0] == r['answer'] and r['extraction'] == 'authors' for r in recs)
    old = [{k: v for k, v in r.items() if k not in ('extractions', 'guess_correct', 'extraction')} for r in recs]
    (out / 'predictions.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in old))
    s2 = last_json(dnr('eval', *args, '--extraction', 'mmlu_pro'))
    assert (s2['generated'], s2['resumed'], s2['extraction']) == (0, 3, 'mmlu_pro') and s2['by_extraction'] == s['by_extraction']
    assert s2['accuracy'] == s['by_extraction']['mmlu_pro']['accuracy']
    p = dnr_in_process('eval', *args, '--extraction', 'regex')
    assert p.returncode != 0 and "--extraction: invalid choice: 'regex'" in p.stderr
    p = dnr_in_process('eval', '--model', str(tiny), '--dataset', 'math', '--extraction', 'mmlu_pro', '--out', str(tmp_path / 'm'))
    assert p.returncode != 0 and 'multiple-choice letters only' in p.stderr


def test_eval_missing_model_folder_is_named(tmp_path):
    p = dnr_in_process('eval', '--model', '/no/such/dir', '--dataset', 'mmlu_pro:physics', '--out', str(tmp_path / 'r'))
    assert p.returncode != 0 and '--model /no/such/dir: not found locally, and not a hub id' in p.stderr
    assert 'Repo id must be' not in p.stderr
    p = dnr_in_process('eval', '--adapter', str(tmp_path / 'no-adapter'), '--model', 'org/name', '--dataset', 'mmlu_pro:physics',
            '--out', str(tmp_path / 'r2'))
    assert p.returncode != 0 and f'--adapter {tmp_path / "no-adapter"}: not found' in p.stderr
    (tmp_path / 'not-an-adapter').mkdir()  # a folder, but not a PEFT adapter: named before --out is created
    p = dnr_in_process('eval', '--adapter', str(tmp_path / 'not-an-adapter'), '--model', 'org/name', '--dataset', 'mmlu_pro:physics',
            '--out', str(tmp_path / 'r3'))
    assert p.returncode == 2 and 'adapter_config.json: not found (is --adapter a PEFT adapter folder?)' in p.stderr
    assert not (tmp_path / 'r3').exists()

def test_openai_backend_through_transformers_serve(tmp_path, tiny):
    """`dnr eval --backend openai` against `transformers serve` of the tiny model grades every question.

    Budget: starts `transformers serve` with the tiny model and evaluates through it."""
    from dnr.tiny import serve_model
    out = tmp_path / 'served'
    with serve_model(tiny) as url:
        s = last_json(dnr('eval', '--model', str(tiny), '--backend', 'openai', '--base-url', url, '--dataset', 'mmlu_pro:biology',
                          '--limit', '3', '--max-new-tokens', '24', '--temperature', '0', '--self-reflect', '--out', str(out), '--no-progress'))
        # served greedy answers equal local greedy answers through the hf backend (same chat template, same model)
        hf = last_json(dnr('eval', '--model', str(tiny), '--backend', 'hf', '--dataset', 'mmlu_pro:biology', '--limit', '3',
                           '--max-new-tokens', '24', '--temperature', '0', '--out', str(tmp_path / 'local'), '--no-progress'))
    assert (s['n'], s['errors'], s['missing'], s['self_reflect']) == (3, 0, 0, True)
    recs = [json.loads(l) for l in (out / 'predictions.jsonl').read_text().splitlines()]
    local = {json.loads(l)['question_id']: json.loads(l) for l in (tmp_path / 'local' / 'predictions.jsonl').read_text().splitlines()}
    for r in recs:
        assert {'first_response', 'reflection', 'first_answer'} <= set(r)
        assert r['first_response'].strip() == local[r['question_id']]['response'].strip()
        # three calls: the tokens are more than the first answer's prompt twice over
        assert r['prompt_tokens'] > 2 * local[r['question_id']]['prompt_tokens']
    assert (out / 'cache.sqlite').exists()


# MMLU-Pro's pred accuracies stated in shared/data/README.md
README_PRED = {'gpt-4o-2024-05-13': 76.8, 'gemini-1.5-pro-002': 68.3, 'llama-3.1-70b-instruct': 63.3,
               'deepseek-chat-v2': 53.2, 'mistral-7b-instruct-v0.2': 23.3}


def test_recorded_answers_reproduce_accuracies():
    from dnr.data import load_mmlu_pro, load_recorded_answers
    from dnr.eval import grade_recorded
    t = grade_recorded(load_recorded_answers(), {q.id: q for q in load_mmlu_pro()})
    print('\n' + t.to_string())
    for m, acc in README_PRED.items():
        assert round(t.loc[m, 'accuracy_pred'], 1) == acc            # the same path reproduces the stated accuracies
    for m in README_PRED:
        assert t.loc[m, 'agreement'] > 97, m   # where MMLU-Pro's regex found a letter, ours takes the same letter
        # where it found none, ours may recover one: the accuracies differ by at most the recovered share
        assert -1.0 < t.loc[m, 'accuracy_ours'] - t.loc[m, 'accuracy_pred'] <= 100 - t.loc[m, 'pred_found'] + 1.0, m
    for m in ('gpt-4o-2024-05-13', 'gemini-1.5-pro-002', 'llama-3.1-70b-instruct'):   # MMLU-Pro's regex found ~all letters
        assert abs(t.loc[m, 'accuracy_ours'] - t.loc[m, 'accuracy_pred']) < 1.5, m


@pytest.mark.parametrize('p,n', [(0.3, 200), (0.6, 325)])
def test_bootstrap_ci_coverage(p, n):
    from dnr.eval import bootstrap_ci
    rng = np.random.default_rng(123)
    reps = 400
    hits = sum(lo <= p <= hi for lo, hi in (bootstrap_ci(rng.random(n) < p, n_boot=2000, seed=i) for i in range(reps)))
    cov = hits / reps
    print(f'coverage p={p} n={n}: {cov:.3f}')
    assert 0.915 <= cov <= 0.98   # nominal 0.95; binomial SE of the estimate ~0.011
    lo, hi = bootstrap_ci(np.r_[np.ones(int(p * n)), np.zeros(n - int(p * n))])
    half = 1.96 * np.sqrt(p * (1 - p) / n)
    assert lo == pytest.approx(p - half, abs=0.012) and hi == pytest.approx(p + half, abs=0.012)
