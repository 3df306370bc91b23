"""CLI tests of `dnr debate` (subprocess runs): a full run against a local scripted server, kill -9 + --resume without
repeated calls, provider batch mode, bad configs and MAG files, the offline replay default on the real recorded
MMLU-Pro answers, and a real local student (`transformers serve` on the tiny model) in the multi-round loop."""
import json, os, signal, subprocess, sys, threading, time
from collections import Counter
from pathlib import Path

import pytest, yaml

from dnr.servers import ScriptedServer, Reply

ROOT = Path(__file__).resolve().parents[1]
DATA = os.environ.get('DNR_DATA_DIR') or str(ROOT.parent / 'shared' / 'data')
ENV = {**os.environ, 'DNR_DATA_DIR': DATA, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}
DNR = Path(sys.executable).with_name('dnr')  # the console script (dnr.cli.main)


def cli_args(*args):
    "`dnr debate ARGS` through the console script (or `dnr.debate.debate_cli` if it is not installed)."
    head = [str(DNR), 'debate'] if DNR.exists() else \
        [sys.executable, '-c', 'import sys; from dnr.debate import debate_cli; sys.exit(debate_cli(sys.argv[1:]))']
    return [*head, *map(str, args), '--no-progress']


def cli(*args, env=None, timeout=180):
    "Run `dnr debate ARGS` in a subprocess; returns (rc, last JSON line or None, stdout, stderr)."
    p = subprocess.run(cli_args(*args), capture_output=True, text=True, env=env or ENV, timeout=timeout, cwd=ROOT)
    last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ''
    return p.returncode, (json.loads(last) if last.startswith('{') else None), p.stdout, p.stderr


@pytest.fixture(scope='session')
def qs():
    from dnr.data import load_benchmark
    return load_benchmark('mmlu_pro', 'train', 'physics', path=DATA)[:4]


class Agents:
    """Scripted agents (the request's model is the agent): teachers always right; the student wrong in round 0 and
    right once it is shown its own self-reflection, except on the 2nd question (stubborn); right at once on the 3rd.
    With `hang_after=N`, every call after the first N hangs (so a run can be killed at a known point)."""
    def __init__(self, qs, hang_after=None):
        self.qs, self.hang_after, self.n, self.lock = qs, hang_after, 0, threading.Lock()

    def __call__(self, provider, req):
        with self.lock:
            self.n += 1
            hang = self.hang_after is not None and self.n > self.hang_after
        if hang: return Reply('### Answer\ntoo late\nFinal answer: A', latency=20)
        text, model = req['messages'][-1]['content'], req['model']
        i, q = next((i, q) for i, q in enumerate(self.qs) if q.question[:80] in text)
        if 'feedback to yourself' in text: return f"### Feedback\n[{model} reflects on {q.id}] I misread it."
        if 'feedback to other agents' in text: return f"### Feedback\n[{model} critiques {q.id}] Recheck the units."
        if model.startswith('teacher') or i == 2: return f"### Answer\n{model} solves {q.id}.\nFinal answer: {q.gold}"
        learned = f"[student reflects on {q.id}]" in text and i != 1
        return f"### Answer\nstudent on {q.id}.\nFinal answer: {q.gold if learned else ('A' if q.gold != 'A' else 'B')}"


def write_config(path, url, agent_kw=None, **kw):
    agents = [{**dict(name=n, role='student' if n == 'student' else 'teacher', provider='openai_compatible', model=n,
                      base_url=url, price_in=1.0, price_out=2.0), **(agent_kw or {})} for n in ('teacher-a', 'teacher-b', 'student')]
    cfg = {**dict(dataset=dict(name='mmlu_pro', category='physics', split='train'), agents=agents, max_rounds=3,
                  concurrency=4, seed=42, feedback=['self_reflection', 'critique'], limit=3), **kw}
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli_inproc(capsys, *args):
    "`debate_cli` in this process (for fast error paths that stop before any debate); returns (rc, stderr)."
    from dnr.debate import debate_cli
    rc = debate_cli([*map(str, args), '--no-progress'])
    return rc, capsys.readouterr().err


def mag_lines(run):
    return [json.loads(l) for l in (run / 'mags.jsonl').read_text().splitlines()]


def answers(mags):
    "What the debate produced, without usage/cache fields: question -> rounds of agent -> answer."
    return {m['question_id']: [{a: v['answer'] for a, v in r['answers'].items()} for r in m['rounds']] for m in mags}


def test_full_run_and_resume_noop(tmp_path, qs, capsys):
    with ScriptedServer(Agents(qs)) as srv:
        cfg = write_config(tmp_path / 'debate.yaml', srv.openai_url)
        t0 = time.time()
        rc, s, out, err = cli('--config', cfg, '--out', tmp_path / 'run')
        assert rc == 0, err
        assert s['questions'] == 3 and s['finished'] == 3 and s['debated_now'] == 3
        assert s['rounds_histogram'] == {'1': 1, '2': 1, '4': 1}
        assert s['stop_reasons'] == {'all_correct': 2, 'max_rounds': 1}
        assert s['provider_calls'] == srv.model_calls == 33
        mags = mag_lines(tmp_path / 'run')
        assert abs(sum(m['usage']['cost_usd'] for m in mags) - s['cost_usd']) < 1e-6
        assert sorted(p.name for p in (tmp_path / 'run').iterdir()) == ['cache.sqlite', 'config.yaml', 'mags.jsonl', 'usage.json']
        usage = json.loads((tmp_path / 'run' / 'usage.json').read_text())
        assert usage['paid_calls'] == 33 and usage['invocations'] == 1 and usage['cost_usd'] == pytest.approx(s['cost_usd'])
        # a plan from this finished run, for the same questions, predicts exactly what it asked for
        rc, p, _, err = cli('--config', cfg, '--plan', '--plan-from', tmp_path / 'run')
        items = [v for m in mags for r in m['rounds'] for v in [*r['answers'].values(), *r['reflections'].values(), *r['critiques']]]
        assert rc == 0 and p['total']['requests'] == 33 and p['estimated_usd'] == pytest.approx(s['cost_usd'], abs=1e-4), err
        assert p['total']['prompt_tokens'] == sum(v['prompt_tokens'] for v in items) and 'scaled to 3 questions' in p['assumption']
        # a finished run resumed: nothing to do, no call
        rc, s2, _, err = cli('--config', cfg, '--out', tmp_path / 'run', '--resume')
        assert rc == 0 and s2['debated_now'] == 0 and s2['provider_calls'] == 0 and srv.model_calls == 33, err
        # --limit grows the run: only the new question is debated
        rc, s3, _, err = cli('--config', cfg, '--out', tmp_path / 'run', '--resume', '--limit', '4')
        assert rc == 0 and s3['debated_now'] == 1 and s3['finished'] == 4, err
        # the same folder without --resume is refused
        rc, err = cli_inproc(capsys, '--config', cfg, '--out', tmp_path / 'run')
        assert rc == 2 and 'already holds a run' in err and 'pass --resume' in err
        # a resumed run with a different protocol is refused
        cfg2 = write_config(tmp_path / 'other.yaml', srv.openai_url, max_rounds=2)
        rc, err = cli_inproc(capsys, '--config', cfg2, '--out', tmp_path / 'run', '--resume')
        assert rc == 2 and "differs from this run's snapshot in ['max_rounds']" in err
    print(f'full run + resumes: {time.time() - t0:.1f}s')


def test_kill_and_resume_repeats_no_call(tmp_path, qs):
    "Kill -9 mid-run, then --resume: every question finishes, and no call answered before the kill is made again."
    with ScriptedServer(Agents(qs)) as srv:  # reference: an uninterrupted run
        cfg = write_config(tmp_path / 'debate.yaml', srv.openai_url)
        rc, ref, _, err = cli('--config', cfg, '--out', tmp_path / 'ref')
        assert rc == 0, err
    K = 14  # calls answered before the kill
    agents = Agents(qs, hang_after=K)
    with ScriptedServer(agents) as srv:
        cfg = write_config(tmp_path / 'debate.yaml', srv.openai_url)
        p = subprocess.Popen(cli_args('--config', cfg, '--out', tmp_path / 'run'), env=ENV, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        t0 = time.time()
        while srv.model_calls <= K and time.time() - t0 < 60 and p.poll() is None: time.sleep(0.05)
        assert p.poll() is None, p.communicate()
        time.sleep(1.0)  # let the client store the K answered calls
        os.killpg(p.pid, signal.SIGKILL); p.wait()
        before = mag_lines(tmp_path / 'run') if (tmp_path / 'run' / 'mags.jsonl').exists() else []
        done_before = len(before)
        assert done_before < 3
        agents.hang_after = None; srv.reset()
        rc, s, _, err = cli('--config', cfg, '--out', tmp_path / 'run', '--resume')
        assert rc == 0, err
        assert s['finished'] == 3 and s['skipped'] == done_before
        assert srv.model_calls == ref['provider_calls'] - K  # only the calls never answered before the kill
        # the answered calls of questions unfinished at the kill are served by the cache
        assert s['cache_hits'] == K - sum(m['usage']['calls'] for m in before)
    mags, ref_mags = mag_lines(tmp_path / 'run'), mag_lines(tmp_path / 'ref')
    assert sorted(m['question_id'] for m in mags) == sorted(m['question_id'] for m in ref_mags)
    assert answers(mags) == answers(ref_mags)
    assert [m['rounds'][1]['order'] for m in sorted(mags, key=lambda m: m['question_id']) if len(m['rounds']) > 1] == \
           [m['rounds'][1]['order'] for m in sorted(ref_mags, key=lambda m: m['question_id']) if len(m['rounds']) > 1]


def test_torn_line_is_repaired_and_bad_lines_reported(tmp_path, qs):
    """A torn tail is cut only with a copy of the original beside it and a line saying so; a bad line in the middle stops
    the run before anything changes, naming `dnr repair RUN`, which sets it aside (again keeping a copy)."""
    with ScriptedServer(Agents(qs)) as srv:
        cfg = write_config(tmp_path / 'debate.yaml', srv.openai_url)
        assert cli('--config', cfg, '--out', tmp_path / 'run', '--limit', '1')[0] == 0
        f = tmp_path / 'run' / 'mags.jsonl'
        with open(f, 'a') as fh: fh.write('{"schema_version": 1, "question_id": "89')  # a writer killed mid-line
        torn = f.read_bytes()
        rc, s, _, err = cli('--config', cfg, '--out', tmp_path / 'run', '--resume', '--limit', '2')
        assert rc == 0 and s['finished'] == 2 and s['skipped'] == 1, err
        assert len(mag_lines(tmp_path / 'run')) == 2
        backups = list((tmp_path / 'run').glob('mags.jsonl.bak-*'))
        assert len(backups) == 1 and backups[0].read_bytes() == torn and f'the original file is kept as {backups[0]}' in err
        lines = f.read_text().splitlines(); d = json.loads(lines[1]); d['rounds'][0]['answers']['student']['correct'] = 'maybe'
        bad = lines[0] + '\n' + json.dumps(d) + '\n' + '{"torn'
        f.write_text(bad)
        rc, _, _, err = cli('--config', cfg, '--out', tmp_path / 'run', '--resume', '--limit', '2')
        assert rc == 2 and f"{f}:2: invalid MAG" in err and "field 'rounds.0.answers.student.correct'" in err
        assert f"dnr repair {tmp_path / 'run'}" in err and f.read_text() == bad  # nothing changed
        p = subprocess.run([str(DNR), 'repair', str(tmp_path / 'run')], capture_output=True, text=True, env=ENV, cwd=ROOT)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        assert p.returncode == 0 and r['bad_lines'] == [2] and r['kept'] == 1 and Path(r['backup']).read_text() == bad
        assert len(mag_lines(tmp_path / 'run')) == 1 and json.loads(Path(r['rejected']).read_text()) == d
        rc, s, _, err = cli('--config', cfg, '--out', tmp_path / 'run', '--resume', '--limit', '2')
        assert rc == 0 and s['finished'] == 2 and s['debated_now'] == 1, err


class Metered:
    "Wraps a responder and adds up what the server would bill ($1 / $2 per million prompt / completion tokens), hung calls included."
    def __init__(self, inner): self.inner, self.usd, self.lock = inner, 0.0, threading.Lock()
    def __call__(self, provider, req):
        from dnr.servers import success_body
        rep = self.inner(provider, req)
        u = success_body(provider, req, rep)['usage']
        with self.lock: self.usd += (u['prompt_tokens'] * 1.0 + u['completion_tokens'] * 2.0) / 1e6
        return rep


def test_budget_is_the_runs_and_stopped_questions_fail(tmp_path, qs):
    """A run cut short by its budget exits 3 and says how to go on; a plain --resume stops at the same cap (nothing
    new); --budget-usd raises it and the resume (which re-debates budget-stopped questions by default) finishes."""
    with ScriptedServer(Metered(Agents(qs))) as srv:
        cfg = write_config(tmp_path / 'debate.yaml', srv.openai_url, budget_usd=0.0025, agent_kw=dict(max_tokens=40))
        rc, s, _, err = cli('--config', cfg, '--out', tmp_path / 'run')
        assert rc == 3 and s['stopped'].get('budget', 0) > 0 and s['finished'] + s['stopped']['budget'] == 3, (s, err)
        assert 'did not finish' in err and '--budget-usd' in err and '--resume' in err
        first, usd = srv.model_calls, srv.responder.usd
        assert usd <= 0.0025
        rc, s2, _, err = cli('--config', cfg, '--out', tmp_path / 'run', '--resume')  # the same cap: the run's spending stays under it
        assert rc == 3 and srv.responder.usd <= 0.0025 and s2['cost_usd_run'] == pytest.approx(srv.responder.usd), (s2, err)
        rc, s2, _, err = cli('--config', cfg, '--out', tmp_path / 'run', '--resume')
        assert rc == 3 and srv.responder.usd <= 0.0025  # resumed again and again: never past the cap

        rc, s3, _, err = cli('--config', cfg, '--out', tmp_path / 'run', '--resume', '--budget-usd', 1)
        assert rc == 0 and s3['stopped'] == {} and s3['next'] is None, err
        assert s3['stop_reasons'] == {'all_correct': 2, 'max_rounds': 1} and s3['finished'] == 3
        assert srv.model_calls == 33  # every call answered before is served from the cache
        assert sorted(m['question_id'] for m in mag_lines(tmp_path / 'run')) == sorted(q.id for q in qs[:3])
        usage = json.loads((tmp_path / 'run' / 'usage.json').read_text())
        assert usage['invocations'] == 4 and usage['cost_usd'] == pytest.approx(srv.responder.usd)
        assert usage['cost_usd'] == pytest.approx(sum(m['usage']['cost_usd'] for m in mag_lines(tmp_path / 'run')))


@pytest.mark.parametrize('seed', [1, 2])
def test_kill_at_random_point_never_exceeds_budget(tmp_path, qs, seed):
    """kill -9 at a random point of a budgeted run, resume with the same cap: the server never bills more than the cap
    (calls in flight at the kill count at their worst case); raising the cap finishes the run, and usage.json equals
    the ledger and the sum over the MAG lines."""
    import random
    cap = 0.0035
    K = random.Random(seed).randint(3, 20)  # calls answered before the kill
    agents = Agents(qs, hang_after=K)
    with ScriptedServer(Metered(agents)) as srv:
        cfg = write_config(tmp_path / 'debate.yaml', srv.openai_url, budget_usd=cap, agent_kw=dict(max_tokens=40))
        p = subprocess.Popen(cli_args('--config', cfg, '--out', tmp_path / 'run'), env=ENV, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        t0 = time.time()
        while srv.model_calls <= K and time.time() - t0 < 60 and p.poll() is None: time.sleep(0.02)
        time.sleep(random.Random(seed).uniform(0, 0.5))
        if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        agents.hang_after = None
        rc, s, _, err = cli('--config', cfg, '--out', tmp_path / 'run', '--resume')
        assert rc in (0, 3), err
        assert srv.responder.usd <= cap + 1e-12, (srv.responder.usd, s)
        rc, s, _, err = cli('--config', cfg, '--out', tmp_path / 'run', '--resume', '--budget-usd', 1)
        assert rc == 0 and s['finished'] == 3, err
    mags = mag_lines(tmp_path / 'run')
    usage = json.loads((tmp_path / 'run' / 'usage.json').read_text())
    assert usage['cost_usd'] == pytest.approx(sum(m['usage']['cost_usd'] for m in mags))
    assert usage['cost_usd'] <= srv.responder.usd + 1e-12  # the ledger has every reply that came back; hung ones never did


def test_errors_exit_4_and_resume_retries_them(tmp_path, qs):
    "A question that ends on a provider error makes `dnr debate` exit 4 after writing what finished; --resume retries it."
    from dnr.servers import Fail
    broken = {'on': True}
    base = Agents(qs)
    def responder(provider, req):
        if broken['on'] and qs[2].question[:80] in req['messages'][-1]['content']: return Fail(400, 'context too long')
        return base(provider, req)
    with ScriptedServer(responder) as srv:
        cfg = write_config(tmp_path / 'debate.yaml', srv.openai_url)
        rc, s, _, err = cli('--config', cfg, '--out', tmp_path / 'run')
        assert rc == 4 and s['stopped'] == {'error': 1} and s['finished'] == 2 and 'context too long' in (tmp_path / 'run' / 'mags.jsonl').read_text()
        assert 'provider errors' in err
        broken['on'] = False
        rc, s, _, err = cli('--config', cfg, '--out', tmp_path / 'run', '--resume')
        assert rc == 0 and s['finished'] == 3 and s['debated_now'] == 1 and s['stopped'] == {}, err
        assert 'debating again 1 questions' in err and (tmp_path / 'run' / 'mags.stopped.jsonl').exists()


def test_validate_then_write(tmp_path, capsys, qs):
    "Bad dataset, category, split, limit, a missing key or a server that is down: exit 2, nothing written; fixed, the same --out works."
    from dnr.tiny import free_port
    out = tmp_path / 'run'
    with ScriptedServer(Agents(qs)) as srv:
        good = yaml.safe_load(write_config(tmp_path / 'good.yaml', srv.openai_url, limit=1).read_text())
        for bad, msg in [(dict(dataset=dict(name='mmlu_pr', split='train')), "unknown dataset 'mmlu_pr'"),
                         (dict(dataset=dict(name='mmlu_pro', category='physcs')), "unknown MMLU-Pro category 'physcs'"),
                         (dict(dataset=dict(name='mmlu_pro', category='physics', split='trian')), "split must be"),
                         (dict(limit=0), "field 'limit'"),
                         (dict(agents=[{**good['agents'][0], 'provider': 'openai', 'api_key_env': 'DNR_UNSET_KEY'}]),
                          'environment variable DNR_UNSET_KEY is not set'),
                         (dict(agents=[{**good['agents'][0], 'base_url': f'http://127.0.0.1:{free_port()}/v1'}]), 'cannot connect to http://127.0.0.1:')]:
            f = tmp_path / 'bad.yaml'; f.write_text(yaml.safe_dump({**good, **bad}))
            rc, err = cli_inproc(capsys, '--config', f, '--out', out)
            assert rc == 2 and msg in err and not out.exists(), (bad, err)
        with pytest.raises(SystemExit) as e: cli_inproc(capsys, '--config', tmp_path / 'good.yaml', '--out', out, '--limit', '-1')
        assert e.value.code == 2 and 'must be at least 1' in capsys.readouterr().err and not out.exists()
        rc, s, _, err = cli('--config', tmp_path / 'good.yaml', '--out', out)  # fixed: the same --out works
        assert rc == 0 and s['finished'] == 1, err


def test_plan_needs_no_network_or_key(tmp_path, capsys):
    "--plan on agents with unset keys and a dead server: a table and a JSON last line; nothing written."
    from dnr.debate import debate_cli
    from dnr.tiny import free_port
    dead = f'http://127.0.0.1:{free_port()}/v1'
    cfg = write_config(tmp_path / 'debate.yaml', dead, agent_kw=dict(provider='openai', api_key_env='DNR_UNSET_KEY', max_tokens=100), limit=5)
    rc = debate_cli(['--config', str(cfg), '--plan', '--out', str(tmp_path / 'run')])
    out = capsys.readouterr().out.strip().splitlines()
    p = json.loads(out[-1])
    assert rc == 0 and not (tmp_path / 'run').exists() and p['questions'] == 5
    assert set(p['agents']) == {'teacher-a', 'teacher-b', 'student'} and p['estimated_usd'] == p['total']['usd'] > 0
    # upper bound: rounds 0..3 with 3 answer calls each, plus 3 round ends of at most 4 feedback calls (3 agents), per question
    assert p['total']['requests'] == 5 * (3 * 4 + 3 * 4) and p['total']['completion_tokens'] == p['total']['requests'] * 100
    assert any(l.startswith('teacher-a') for l in out) and 'upper bound' in p['assumption']


def test_bad_config_names_file_and_field(tmp_path, capsys):
    bad = tmp_path / 'bad.yaml'
    bad.write_text(yaml.safe_dump(dict(agents=[dict(name='a', provider='openai_compatible', model='m', base_url='http://x')],
                                       max_round=2)))
    rc, err = cli_inproc(capsys, '--config', bad, '--out', tmp_path / 'run')
    assert rc == 2 and f"{bad}: field 'max_round': Extra inputs are not permitted" in err
    bad.write_text(yaml.safe_dump(dict(agents=[dict(name='a', provider='telepathy', model='m')])))
    rc, err = cli_inproc(capsys, '--config', bad, '--out', tmp_path / 'run2')
    assert rc == 2 and "field 'agents[0]': agent 'a': field 'provider'" in err


def test_offline_default_on_recorded_answers(tmp_path):
    "No --config: replay agents on the real recorded MMLU-Pro physics answers; nothing invented after round 0."
    rc, s, out, err = cli('--out', tmp_path / 'run', '--limit', '30')
    assert rc == 0, err
    assert s['questions'] == s['finished'] == 30 and s['provider_calls'] == 0 and s['rounds_histogram'] == {'1': 30}
    assert set(s['stop_reasons']) <= {'all_correct', 'no_recording'} and s['stop_reasons']['no_recording'] > 0
    import pandas as pd
    rec = pd.read_json(Path(DATA) / 'mmlu_pro' / 'responses.jsonl.gz', lines=True)
    rec['question_id'] = rec['question_id'].astype(str)
    rec = rec.set_index(['model', 'question_id'])
    models = {a['name']: a['model'] for a in mag_lines(tmp_path / 'run')[0]['agents']}
    n = agree = 0
    for m in mag_lines(tmp_path / 'run'):
        r0 = m['rounds'][0]
        assert not r0['reflections'] and not r0['critiques']
        for a, v in r0['answers'].items():
            key = (models[a], m['question_id'])
            if key not in rec.index: assert v['error'] == 'no recording' and m['stop_reason'] == 'no_recording'; continue
            assert v['response'] == rec.loc[key, 'response']  # real recorded text
            if rec.loc[key, 'pred'] is not None and v['status'] == 'parsed': n += 1; agree += v['answer'] == rec.loc[key, 'pred']
        if m['stop_reason'] == 'all_correct': assert all(v['correct'] for v in r0['answers'].values())
    assert n > 100 and agree / n > 0.97, (agree, n)  # our extraction matches MMLU-Pro's own on "The answer is (X)"


def test_provider_batches_gather_rounds(tmp_path, qs):
    "batch: true with OpenAI agents: each stage's requests across questions go into one provider batch per agent."
    env = {**ENV, 'DNR_TEST_KEY': 'sk-test-not-a-real-key'}
    with ScriptedServer(Agents(qs), batch_delay=0.1) as srv:
        cfg = write_config(tmp_path / 'debate.yaml', srv.openai_url, batch=True, max_rounds=1,
                           agent_kw=dict(provider='openai', api_key_env='DNR_TEST_KEY', batch_window=0.3, poll_s=0.1))
        rc, s, _, err = cli('--config', cfg, '--out', tmp_path / 'run', env=env)
        assert rc == 0, err
        # 3 stages x 3 agents: round 0 (3 questions), round end (student: 2 reflections, each teacher: 2 critiques),
        # round 1 (2 questions): one provider batch per agent and stage
        assert srv.calls['openai.batches.create'] == 3 * 3
        assert srv.calls['openai.batch_item'] == 9 + 6 + 6 and srv.calls['openai.chat'] == 0
        mags = mag_lines(tmp_path / 'run')
        a = mags[0]['rounds'][0]['answers']['teacher-a']
        assert abs(a['cost_usd'] - 0.5 * (a['prompt_tokens'] + 2 * a['completion_tokens']) / 1e6) < 1e-12  # half price
        assert 'sk-test-not-a-real-key' not in (tmp_path / 'run' / 'mags.jsonl').read_text() + (tmp_path / 'run' / 'usage.json').read_text()


def test_tiny_local_student_multi_round(tmp_path, qs):
    """A real local OpenAI-compatible student (`transformers serve`, tiny model) debating with scripted teachers.

    Budget: starts `transformers serve` with the tiny model and runs a multi-round debate where the student generates for real."""
    from dnr.tiny import serve_model, tiny_model
    path = tiny_model('trained')
    with ScriptedServer(Agents(qs)) as srv, serve_model(path) as url:
        cfg = write_config(tmp_path / 'debate.yaml', srv.openai_url, max_rounds=1, limit=1)
        d = yaml.safe_load(cfg.read_text())
        d['agents'][2].update(base_url=url, model=str(path), max_tokens=32, temperature=0.0, price_in=0, price_out=0)
        cfg.write_text(yaml.safe_dump(d))
        t0 = time.time()
        rc, s, _, err = cli('--config', cfg, '--out', tmp_path / 'run')
        assert rc == 0, err
    mags = mag_lines(tmp_path / 'run')
    for m in mags:
        for r in m['rounds']:
            st = r['answers']['student']
            assert st['response'] and st['completion_tokens'] > 0 and st['error'] is None
        if not m['rounds'][0]['answers']['student']['correct']:  # the loop ran: reflections, critiques, later rounds
            assert len(m['rounds']) >= 2 and 'student' in m['rounds'][0]['reflections']
            assert m['rounds'][1]['last_round'].count('Answer ') >= 3
    print(f'tiny student: {time.time() - t0:.1f}s', s)


class MMLUStyle(Agents):
    "`Agents`, but teacher-b answers the 3rd question (where all are right) in MMLU-Pro's form, not D&R's."
    def __call__(self, provider, req):
        text, model = req['messages'][-1]['content'], req['model']
        if model == 'teacher-b' and self.qs[2].question[:80] in text and 'feedback to' not in text:
            return f"F = ma.\nThe answer is ({self.qs[2].gold})."
        return super().__call__(provider, req)


def test_strict_grading_needs_final_answer_and_old_runs_resume(tmp_path, qs, capsys):
    "grading: strict (default) counts only `Final answer:`; lenient is dnr's cascade; a run from before the field resumes."
    res = {}
    with ScriptedServer(MMLUStyle(qs)) as srv:
        for g in ('strict', 'lenient'):
            cfg = write_config(tmp_path / f'{g}.yaml', srv.openai_url, max_rounds=1, **({'grading': g} if g == 'lenient' else {}))
            rc, s, _, err = cli('--config', cfg, '--out', tmp_path / g)
            assert rc == 0, err
            res[g] = {m['question_id']: m for m in mag_lines(tmp_path / g)}
    m = res['strict'][qs[2].id]; r0 = m['rounds'][0]
    a = r0['answers']['teacher-b']
    assert (a['answer'], a['correct'], a['parse'], a['status']) == (None, False, 'fallback', 'unparsed')
    assert list(r0['reflections']) == ['teacher-b']                      # it reflects ...
    assert sorted((c['from'], c['to']) for c in r0['critiques']) == [('student', 'teacher-b'), ('teacher-a', 'teacher-b')]
    assert m['stop_reason'] == 'max_rounds' and len(m['rounds']) == 2   # ... and the question does not stop all-correct
    assert r0['answers']['teacher-a']['parse'] == 'final_answer'
    m = res['lenient'][qs[2].id]
    assert m['rounds'][0]['answers']['teacher-b']['correct'] and m['stop_reason'] == 'all_correct' and len(m['rounds']) == 1
    # a run made before `grading` and `parse` existed: snapshot without `grading`, MAG answers without `parse`
    run = tmp_path / 'lenient'
    snap = yaml.safe_load((run / 'config.yaml').read_text()); del snap['grading']
    (run / 'config.yaml').write_text(yaml.safe_dump(snap, sort_keys=False))
    old = [json.loads(l) for l in (run / 'mags.jsonl').read_text().splitlines()]
    for mm in old:
        for r in mm['rounds']:
            for v in r['answers'].values(): v.pop('parse')
    (run / 'mags.jsonl').write_text(''.join(json.dumps(mm) + '\n' for mm in old))
    rc, s, _, err = cli('--config', tmp_path / 'lenient.yaml', '--out', run, '--resume')
    assert rc == 0 and s['finished'] == 3 and s['debated_now'] == 0 and s['provider_calls'] == 0, err
    rc, err = cli_inproc(capsys, '--config', tmp_path / 'strict.yaml', '--out', run, '--resume')
    assert rc == 2 and "differs from this run's snapshot in ['grading']" in err


def test_agents_sharing_a_model_get_their_own_samples(tmp_path, qs):
    """Two debaters on one model at temperature 0.7 (real HTTP, local server): one call each, different samples; the
    same agent's repeated request is one call; a cache written before the agent was in the key still serves the
    agent that made its entries, and only that agent."""
    import itertools
    from dnr.agents import AgentPool, legacy_cache_key
    n = itertools.count()
    with ScriptedServer(lambda provider, req: f"### Answer\nsample {next(n)}\nFinal answer: A") as srv:
        agents = [dict(name=x, role='teacher', provider='openai_compatible', model='gpt-4o', base_url=srv.openai_url,
                       temperature=0.7) for x in ('gpt-a', 'gpt-b')]
        msgs = [{'role': 'user', 'content': 'Which force? A) gravity B) friction'}]
        pool = AgentPool(agents, cache=tmp_path / 'cache.sqlite', progress=False)
        try:
            a, b = pool.complete_many([dict(agent='gpt-a', messages=msgs), dict(agent='gpt-b', messages=msgs)])
            a2 = pool.complete('gpt-a', msgs)
        finally: pool.close()
        assert srv.model_calls == 2 and a.content != b.content
        assert a2.cached and a2.content == a.content and srv.model_calls == 2
        # an old (version-1 key) cache entry made by gpt-a: gpt-a finds it, gpt-b asks for its own sample
        old = [{'role': 'user', 'content': 'An old question'}]
        pool = AgentPool(agents, cache=tmp_path / 'cache.sqlite', progress=False)
        try:
            spec = pool.spec('gpt-a')
            pool.cache.put(legacy_cache_key(spec, old), spec, dict(content='old answer of gpt-a', prompt_tokens=3,
                                                                    completion_tokens=3, cost_usd=0.0))
            oa, ob = pool.complete('gpt-a', old), pool.complete('gpt-b', old)
        finally: pool.close()
        assert oa.cached and oa.content == 'old answer of gpt-a'
        assert not ob.cached and ob.content.startswith('### Answer\nsample') and srv.model_calls == 3
    # in a debate: two teachers on one model answer round 0 with different samples
    with ScriptedServer(lambda provider, req: f"### Answer\nsample {next(n)}\nFinal answer: A") as srv:
        cfg = write_config(tmp_path / 'du.yaml', srv.openai_url, max_rounds=0, limit=1, agent_kw=dict(model='same-model', temperature=0.7))
        rc, s, _, err = cli('--config', cfg, '--out', tmp_path / 'du')
        assert rc == 0 and s['provider_calls'] == 3 == srv.model_calls, err
    r0 = mag_lines(tmp_path / 'du')[0]['rounds'][0]['answers']
    assert len({v['response'] for v in r0.values()}) == 3


class ProtocolAgents:
    """Scripted agents for the published protocols, each answering in the protocol's own format, with replies that trip
    a wrong reader. `right` is right, `wrong` wrong in round 0 and right once shown other answers (stubborn on the 2nd
    question), the student wrong. Du et al.: `right` ends with `Final answer: Given the steps above, the answer is (X)`
    (D&R's reader would take G); on the 2nd question `wrong` gives no answer (right and student tie 1-1: the first
    agent's answer wins), on the 3rd the student (the last agent) gives none (their compute_accuracy: no answer).
    ReConcile: JSON with a confidence; on the 1st question `wrong` never writes JSON in round 0 (asked 5 times, then a
    random option) and the student writes prose once before its JSON; on the 2nd right and wrong tie at confidence 0.7
    (the first agent's answer wins); the others agree once shown the discussion. MAD: the moderator decides in round 1 on the 1st question, never decides on the 2nd
    (the judge decides, shown the first round's answers), and on the 3rd names no single option (no answer)."""
    def __init__(self, qs): self.qs, self.seen, self.judged, self.lock = qs, Counter(), [], threading.Lock()

    def __call__(self, provider, req):
        msgs, model = req['messages'], req['model']
        text = '\n'.join(m['content'] for m in msgs)
        i, q = next((i, q) for i, q in enumerate(self.qs) if q.question[:80] in text)
        wrong, other = ('A' if q.gold != 'A' else 'B'), ('C' if q.gold != 'C' else 'D')
        with self.lock:
            self.seen[model, text] += 1
            asked = self.seen[model, text]
        if 'You are a moderator' in msgs[0]['content']:
            if 'what answer candidates' in msgs[-1]['content']:
                with self.lock: self.judged.append(msgs[-1]['content'])
                return f"Candidates: {q.gold} and {wrong}."
            if 'Please summarize your reasons and give the final answer' in msgs[-1]['content']:
                return '{"Reason": "[scripted] the affirmative computed it", "debate_answer": "(%s)"}' % q.gold
            if i == 1: return "[scripted] I cannot decide."
            over = sum(m['role'] == 'assistant' for m in msgs) >= 1
            said = ('It is unclear; %s or %s' % (wrong, q.gold) if i == 2 else q.gold) if over else ''
            return ('{"Whether there is a preference": "%s", "Supported Side": "Affirmative", "Reason": "[scripted]", "debate_answer": "%s"}'
                    % ('Yes' if over else 'No', said))
        r = sum(m['role'] == 'assistant' for m in msgs)  # the debater's round (MAD, Du: its conversation so far)
        shown = 'One agent solution' in text or 'Do you agree with my perspective' in text or 'You disagree' in text
        ans = wrong if model == 'student' or (model == 'wrong' and (not shown or i == 1)) else q.gold
        if 'confidence_level' in text:  # ReConcile
            if i == 0 and not shown and (model == 'wrong' or (model == 'student' and asked == 1)): return f"[scripted] {model} thinks it is {ans}."
            if i == 1: ans, conf = {'right': (q.gold, 0.7), 'wrong': (wrong, 0.7), 'student': (other, 0.5)}[model]
            else: ans, conf = (q.gold if model == 'right' or shown else wrong), 0.9  # everyone agrees once shown the discussion
            return '{"reasoning": "[scripted] %s works %s out", "answer": "%s", "confidence_level": "%s"}' % (model, q.id, ans, conf)
        if 'putting the answer in the form (X)' in text:  # society of minds
            if (i == 1 and model == 'wrong') or (i == 2 and model == 'student'): return f"[scripted] {model} is not sure."
            if model == 'right': return f"[scripted] right on {q.id}.\nFinal answer: Given the steps above, the answer is ({ans})"
            return f"[scripted] {model} on {q.id}: it is ({ans})."
        return f"[scripted] [r{r}] {model} on {q.id}: I hold ({ans}).\nFinal answer: {ans}"  # MAD's debaters: prose, read by the run's grading


@pytest.mark.parametrize('protocol', ['society_of_minds', 'reconcile', 'mad'])
def test_published_protocols_end_to_end(tmp_path, qs, protocol):
    """Each published protocol: `dnr debate` on scripted agents answering in its own format exits 0 with valid MAGs and
    its authors' readings, ties and fallbacks (see `ProtocolAgents`); no unreadable answer reaches a vote or a prompt as
    None; `dnr build` makes SFT and T-DPO data; `dnr show` reads every question; `--plan` predicts at least the requests made.

    Budget: per protocol, a debate, `dnr build` of SFT and T-DPO data, `dnr show` and `--plan`: five `dnr` processes, each importing the stack
    (ReConcile: a sixth, the plan from the finished run, which must count its retried replies)."""
    from dnr.mag import read_mags
    base = yaml.safe_load((ROOT / 'configs' / 'protocols' / f'{protocol}.yaml').read_text())
    names = ['right', 'student', 'wrong'] if protocol == 'mad' else ['right', 'wrong', 'student']
    agents_ = ProtocolAgents(qs)
    with ScriptedServer(agents_) as srv:
        agents = [dict(name=n, role='student' if n == 'student' else 'teacher', provider='openai_compatible', model=n,
                       base_url=srv.openai_url, price_in=1.0, price_out=2.0) for n in names]
        cfg = tmp_path / 'cfg.yaml'
        cfg.write_text(yaml.safe_dump({**base, 'agents': agents, 'limit': 3, 'max_rounds': 2}))
        rc, s, out, err = cli('--config', cfg, '--out', tmp_path / 'run', '--mode', 'test')
        made, prompts = srv.model_calls, srv.prompts()
    assert rc == 0, err[-3000:]
    assert f'the debate as a baseline ({protocol}, no gold): accuracy ' in out and 0 <= s['debate_accuracy'] <= 1 and s['tokens_per_question'] > 0, out
    mags = read_mags(tmp_path / 'run' / 'mags.jsonl')
    by = {m.question_id: m for m in mags}
    assert len(mags) == 3 and {m.protocol for m in mags} == {protocol} and s['finished'] == 3
    assert not any('answer is None' in p or '(None)' in p for p in prompts)
    rc, plan, _, err = cli('--config', cfg, '--plan')
    assert rc == 0 and plan['total']['requests'] >= made > 0, (plan['total']['requests'], made)
    assert all(r['prompt_tokens'] > 0 for r in plan['agents'].values()), plan['agents']
    if protocol == 'reconcile':  # a plan from the finished run counts the unreadable replies asked again, as the server did
        rc, pf, _, err = cli('--config', cfg, '--plan', '--plan-from', tmp_path / 'run')
        assert rc == 0 and pf['total']['requests'] == made, (pf['total']['requests'], made)
    for kind in ('sft', 'tdpo'):
        p = subprocess.run([sys.executable, '-m', 'dnr.cli', 'build', kind, '--run', str(tmp_path / 'run'), '--out', str(tmp_path / kind)],
                           capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)
        assert p.returncode == 0, p.stderr[-2000:]
        s_b = json.loads(p.stdout.strip().splitlines()[-1])
        assert s_b['examples' if kind == 'sft' else 'pairs'] > 0, s_b
    for m in mags:
        p = subprocess.run([sys.executable, '-m', 'dnr.cli', 'show', str(tmp_path / 'run'), m.question_id],
                           capture_output=True, text=True, env=ENV, timeout=60, cwd=ROOT)
        assert p.returncode == 0 and f"question {m.question_id}" in p.stdout and protocol in p.stdout, p.stderr[-2000:]
    q0, q1, q2 = (by[q.id] for q in qs[:3])
    if protocol == 'society_of_minds':
        assert all(r.answers['right'].answer == qs[0].gold for r in q0.rounds), 'Du reads the last (X), not Final answer: G'
        assert q0.consensus == qs[0].gold
        assert q1.rounds[-1].answers['wrong'].status == 'unparsed' and q1.consensus == qs[1].gold  # 1-1 tie: the first agent's
        assert q2.rounds[-1].answers['student'].answer is None and q2.consensus is None  # the last agent has no answer
    if protocol == 'reconcile':
        r0 = q0.rounds[0].answers
        assert r0['right'].confidence == 0.9 and r0['right'].unparsed_fields == [] and r0['student'].sample == 1 and r0['student'].status == 'parsed'
        assert r0['wrong'].unparsed_fields == ['json'] and r0['wrong'].sample == 4 and r0['wrong'].confidence == 0.0 and r0['wrong'].answer in qs[0].labels
        assert all(None not in m.votes and max(m.votes, key=m.votes.get) == m.consensus for m in mags)
        w1 = 'A' if qs[1].gold != 'A' else 'B'
        assert q1.votes[qs[1].gold] == q1.votes[w1] and q1.consensus == qs[1].gold  # a tie at 0.3 + 1e-5 each: the first agent's
    if protocol == 'mad':
        assert q0.stop_reason == 'judge' and q0.consensus == qs[0].gold
        v = q1.rounds[-1].verdict  # the moderator never decided: the judge did, after the last round
        assert q1.stop_reason == 'max_rounds' and v.debate_over and v.answer == qs[1].gold and q1.rounds[0].verdict.status == 'unparsed'
        assert q2.consensus is None and q2.rounds[-1].verdict.status == 'unparsed'  # 'It is unclear; A or B' is no answer
        assert len(agents_.judged) == 1 and '[r0] right' in agents_.judged[0] and '[r0] student' in agents_.judged[0] and '[r2]' not in agents_.judged[0]


def test_protocol_configs_validate(tmp_path):
    """Every config in configs/protocols/ loads as written and names a registered protocol (the file's name); every
    protocol dnr ships besides D&R has one; `mad` refuses other than three agents."""
    from dnr.debate import load_debate_config, DebateConfigError
    from dnr.protocols import protocols
    files, known = sorted((ROOT / 'configs' / 'protocols').glob('*.yaml')), protocols()
    assert files and {f.stem for f in files} <= set(known), ([f.stem for f in files], sorted(known))
    shipped = {n for n, c in known.items() if c.__module__.startswith('dnr.') and n != 'dnr'}
    assert shipped and shipped <= {f.stem for f in files}, shipped
    for f in files: assert load_debate_config(f).protocol == f.stem
    raw = yaml.safe_load((ROOT / 'configs' / 'protocols' / 'mad.yaml').read_text())
    (tmp_path / 'two.yaml').write_text(yaml.safe_dump({**raw, 'agents': raw['agents'][:2]}))
    with pytest.raises(DebateConfigError, match=r"two.yaml: field 'protocol': mad needs 3 agents"): load_debate_config(tmp_path / 'two.yaml')


def test_dnr_mode_test_reports_the_debate_as_a_baseline(tmp_path, qs):
    "`dnr debate --mode test` on D&R: no gold in any prompt; the summary's accuracy is the share of final answers that are right."
    from dnr.mag import read_mags
    with ScriptedServer(Agents(qs)) as srv:
        rc, s, out, err = cli('--config', write_config(tmp_path / 'c.yaml', srv.openai_url, max_rounds=1, stop='consensus'),
                              '--out', tmp_path / 'run', '--mode', 'test')
        prompts = srv.prompts()
    assert rc == 0, err[-2000:]
    mags = read_mags(tmp_path / 'run' / 'mags.jsonl')
    assert not any('Correct Final Answer' in p for p in prompts)
    assert s['debate_accuracy'] == round(sum(m.consensus == m.gold for m in mags) / len(mags), 4)
    assert s['tokens_per_question'] == round(sum(m.usage['prompt_tokens'] + m.usage['completion_tokens'] for m in mags) / len(mags), 2)
    assert '(dnr, no gold): accuracy' in out
