"""`dnr data` and `dnr grade` as a user runs them."""
import gzip, json, subprocess
from conftest import BIN
import os

def dnr(*args, check=True):
    return subprocess.run([str(BIN / 'dnr'), *map(str, args)], capture_output=True, text=True, check=check)

def test_data_summary_counts():
    s = json.loads(dnr('data').stdout.strip().splitlines()[-1])
    assert s['mmlu_pro']['questions'] == 12032
    assert s['paper_splits']['physics'] == {'train': 974, 'test': 325}
    assert s['math'] == {'train': 7500, 'test': 5000}

def test_grade_math_solutions(tmp_path):
    rows = [json.loads(l) for l in gzip.open(os.environ['DNR_DATA_DIR'] + '/math/test.jsonl.gz', 'rt')][:200]
    inp = tmp_path / 'in.jsonl'
    with open(inp, 'w') as f:
        for i, r in enumerate(rows):  # the reference solution, and for every 4th problem a wrong answer
            resp = r['solution'] if i % 4 else 'We get Final answer: $\\frac{7}{3}+x$'
            f.write(json.dumps({'unique_id': r['unique_id'], 'response': resp}) + '\n')
    out = tmp_path / 'out.jsonl'
    s = json.loads(dnr('grade', '--dataset', 'math', '--in', inp, '--out', out).stdout.strip().splitlines()[-1])
    graded = [json.loads(l) for l in out.read_text().splitlines()]
    assert [g['correct'] for g in graded] == [bool(i % 4) for i in range(200)]
    assert s == {'n': 200, 'accuracy': 0.75, 'unparsed': 0.0, 'accuracy_random_guess': 0.75, 'extraction': 'dnr'}

def test_grade_bad_input_names_file_line_field(tmp_path):
    inp = tmp_path / 'in.jsonl'
    inp.write_text('{"question_id": 70, "response": "The answer is (I)."}\n{"response": "x"}\n')
    r = dnr('grade', '--dataset', 'mmlu_pro', '--in', inp, '--out', tmp_path / 'o.jsonl', check=False)
    assert r.returncode != 0 and "in.jsonl:2: field 'question_id': missing" in r.stderr
    assert not (tmp_path / 'o.jsonl').exists()


def test_grade_extraction_conventions(tmp_path):
    """`dnr grade --extraction`: mmlu_pro reproduces the recorded `pred` of Gemini (made by MMLU-Pro's full chain);
    authors reads as the D&R code (MATH: only `$…$` after `Final answer:`); bad choices are refused."""
    from dnr.data import load_recorded_answers
    rec = load_recorded_answers()
    g = rec[rec.model == 'gemini-1.5-pro-002'].iloc[:400]
    inp = tmp_path / 'in.jsonl'
    inp.write_text(''.join(json.dumps({'question_id': int(i), 'response': r}) + '\n' for i, r in zip(g.question_id, g.response)))
    res = {}
    for e in ('dnr', 'authors', 'mmlu_pro'):
        s = json.loads(dnr('grade', '--dataset', 'mmlu_pro', '--in', inp, '--out', tmp_path / f'{e}.jsonl', '--extraction', e).stdout.strip().splitlines()[-1])
        res[e] = [json.loads(l) for l in (tmp_path / f'{e}.jsonl').read_text().splitlines()]
        assert s['extraction'] == e and s['n'] == 400 and 0 < s['accuracy'] <= s['accuracy_seeded_guess']
    assert [r['answer'] for r in res['mmlu_pro']] == [p if isinstance(p, str) else None for p in g.pred]
    assert [r['answer'] for r in res['authors']] != [r['answer'] for r in res['mmlu_pro']]
    rows = [json.loads(l) for l in gzip.open(os.environ['DNR_DATA_DIR'] + '/math/test.jsonl.gz', 'rt')][:1]  # gold 2
    m = tmp_path / 'math.jsonl'
    m.write_text(''.join(json.dumps({'unique_id': rows[0]['unique_id'], 'response': r}) + '\n'
                         for r in ['So Final answer: 2', 'So Final answer: $\\frac{4}{2}$', 'Final answer: $3$']))
    for e, want in (('dnr', [True, True, False]), ('authors', [False, True, False])):  # theirs needs `$…$`
        dnr('grade', '--dataset', 'math', '--in', m, '--out', tmp_path / f'm-{e}.jsonl', '--extraction', e)
        assert [json.loads(l)['correct'] for l in (tmp_path / f'm-{e}.jsonl').read_text().splitlines()] == want, e
    r = dnr('grade', '--dataset', 'math', '--in', m, '--out', tmp_path / 'x.jsonl', '--extraction', 'mmlu_pro', check=False)
    assert r.returncode != 0 and 'multiple-choice letters only' in r.stderr
    r = dnr('grade', '--dataset', 'mmlu_pro', '--in', inp, '--out', tmp_path / 'x.jsonl', '--extraction', 'regex', check=False)
    assert r.returncode != 0 and "--extraction: invalid choice: 'regex'" in r.stderr

def test_mmlu_pro_reader_takes_the_first_line_with_an_answer():
    """`extract_mmlu_pro`'s second step is MMLU-Pro's `re.search(r'.*[aA]nswer:\s*([A-J])', r)` (the last match on the
    first line that has one; `.*` does not cross a newline) in linear time: equal on replies with an answer on one
    line, on several lines, on none (the `00b_grading` chapter compares them on every recorded answer)."""
    import re
    from dnr.grading import _mmlu_pro_second
    ref = lambda r: (m := re.search(r'.*[aA]nswer:\s*([A-J])', r)) and m.group(1)
    mine = lambda r: (m := _mmlu_pro_second(r)) and m.group(1)
    replies = ["The answer: A, or rather answer: B\nFinal answer: C", "no\nanswer: D\nanswer: E", "Answer: F", "answer: none"]
    assert [mine(r) for r in replies] == [ref(r) for r in replies] == ['B', 'D', 'F', None]
