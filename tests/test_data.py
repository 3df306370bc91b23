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
    assert s == {'n': 200, 'accuracy': 0.75, 'unparsed': 0.0, 'accuracy_random_guess': 0.75}

def test_grade_bad_input_names_file_line_field(tmp_path):
    inp = tmp_path / 'in.jsonl'
    inp.write_text('{"question_id": 70, "response": "The answer is (I)."}\n{"response": "x"}\n')
    r = dnr('grade', '--dataset', 'mmlu_pro', '--in', inp, '--out', tmp_path / 'o.jsonl', check=False)
    assert r.returncode != 0 and "in.jsonl:2: field 'question_id': missing" in r.stderr
    assert not (tmp_path / 'o.jsonl').exists()
