"""Benchmarks run (quick mode) and print their closing JSON."""
import json, subprocess
from conftest import BIN, ROOT

def test_grading_bench_quick():
    r = subprocess.run([str(BIN / 'python'), 'bench/grading.py', '--quick'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s['math_grade_per_s'] > 10 and s['mmlu_pro_extract_per_s'] > 1000
