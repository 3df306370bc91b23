"""Benchmarks run (quick mode) and print their closing JSON."""
import json, os, subprocess
from conftest import BIN, ROOT

def test_grading_bench_quick():
    r = subprocess.run([str(BIN / 'python'), 'bench/grading.py', '--quick'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s['math_grade_per_s'] > 10 and s['mmlu_pro_extract_per_s'] > 1000

def test_tdpo_bench_quick():
    """`bench/tdpo.py --quick` (= `dnr bench tdpo --quick`): both trainers on the tiny model, same pairs, same loss.

    Budget: trains both T-DPO trainers (tree and TRL) on the same pairs to compare speed, memory and loss."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'TQDM_DISABLE': '1'}  # one torch thread: the shared CPU box
    r = subprocess.run([str(BIN / 'python'), 'bench/tdpo.py', '--quick'], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s['max_abs_loss_diff'] < 1e-4 and s['max_abs_grad_diff'] < 1e-4
    assert s['trl']['pairs'] == s['ours']['pairs'] > 0 and s['tokens_ratio'] > 1.5 and s['pairs_per_s_ratio'] > 0

def test_tdpo_bench_rpo_quick():
    """`dnr bench tdpo --rpo-alpha 1`: RPO (TRL's loss_type [sigmoid, sft]) against the tree trainer's same terms.

    Budget: trains both trainers with the RPO terms to compare them."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'TQDM_DISABLE': '1'}
    r = subprocess.run([str(BIN / 'dnr'), 'bench', 'tdpo', '--quick', '--rpo-alpha', '1'], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s['rpo_alpha'] == 1.0 and s['max_abs_loss_diff'] <= 1e-4 and s['max_abs_grad_diff'] < 1e-4 and s['check_loss'] > 1
    assert 'pairs/s ours/TRL = ' in r.stdout and s['pairs_per_s_ratio'] > 0
