"""Tests of dnr.agents: real SDKs over real HTTP against local endpoints (dnr.servers) and a real
`transformers serve` process; `dnr chat` runs as a subprocess (via `chat_cli`)."""
import asyncio, json, os, signal, sqlite3, subprocess, sys, time
from pathlib import Path
import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('DNR_DATA_DIR', str(Path(__file__).resolve().parents[2] / 'shared' / 'data'))

from dnr.agents import AgentPool, AgentSpec, Completion, ResponseCache, cache_key, load_agents, chat_cli, AgentConfigError
from dnr.servers import ScriptedServer, Fail, Reply, MALFORMED, scripted, echo_responder

ROOT = Path(__file__).resolve().parents[1]
Q = [{'role': 'user', 'content': 'Which particle has no electric charge? A) proton B) neutron C) electron'}]
KEY_ENV = 'DNR_TEST_KEY'


def run_chat(argv, env=None, timeout=120):
    "Run `chat_cli(argv)` in a fresh Python process; returns (rc, summary dict or None, stdout, stderr)."
    code = 'import sys; from dnr.agents import chat_cli; sys.exit(chat_cli(sys.argv[1:]))'
    p = subprocess.run([sys.executable, '-c', code, *map(str, argv)], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})}, cwd=ROOT)
    lines = p.stdout.strip().splitlines()
    try: summary = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError): summary = None
    return p.returncode, summary, p.stdout, p.stderr


def call_chat(argv, capsys):
    "Run `chat_cli(argv)` in this process; returns (rc, summary dict or None, stdout, stderr)."
    capsys.readouterr()
    rc = chat_cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    try: summary = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError): summary = None
    return rc, summary, out, err


def write_requests(path, n, prefix='Question'):
    path.write_text(''.join(json.dumps({'id': f'q{i}', 'messages': [{'role': 'user', 'content': f'{prefix} {i}: which option?'}]}) + '\n'
                            for i in range(n)))
    return path


def agent_yaml(path, **kw):
    path.write_text(''.join(f'{k}: {json.dumps(v)}\n' for k, v in kw.items()))
    return path


# ---------------------------------------------------------------- the three SDKs through their HTTP stacks

def _spec(srv, provider, **kw):
    url = {'openai': srv.openai_url, 'anthropic': srv.anthropic_url, 'gemini': srv.gemini_url}[provider]
    return dict(name=provider, provider=provider, model=f'{provider}-model', base_url=url, api_key_env=KEY_ENV, retry_wait=0.05, **kw)


@pytest.mark.parametrize('provider', ['openai', 'anthropic', 'gemini'])
def test_provider_success_retry_after_500_malformed(provider, monkeypatch):
    "success, 429 with Retry-After, 500 and a malformed body, each through the real SDK; retries are counted at the server."
    monkeypatch.setenv(KEY_ENV, 'sk-test-provider')
    replies = scripted(Fail(429, 'Rate limit reached for requests', retry_after=0.3), Fail(500, 'internal error'), MALFORMED,
                       Reply('### Answer\nNeutrons carry no charge.\nFinal answer: B', prompt_tokens=20, completion_tokens=9, cached_tokens=4))
    with ScriptedServer(replies) as srv, AgentPool([_spec(srv, provider, price_in=2.0, price_out=8.0, price_cached=1.0)]) as pool:
        t = time.time(); c = pool.complete(provider, Q, meta={'question_id': 'x', 'round': 0}); dt = time.time() - t
    assert c.content.endswith('Final answer: B') and c.error is None and c.finish_reason == 'stop'
    assert (c.prompt_tokens, c.completion_tokens, c.cached_tokens) == (20, 9, 4)
    assert c.cost_usd == pytest.approx((16 * 2.0 + 4 * 1.0 + 9 * 8.0) / 1e6)
    assert srv.model_calls == 4 and pool.provider_calls == 4  # 429, 500, malformed, success
    assert dt >= 0.3  # Retry-After honoured
    assert pool.usage['rounds'][0]['cost_usd'] == pytest.approx(c.cost_usd)


@pytest.mark.parametrize('provider', ['openai', 'anthropic', 'gemini'])
def test_auth_and_invalid_request_fail_fast(provider, monkeypatch):
    "401 and 400 are not retried; the provider's message reaches Completion.error."
    monkeypatch.setenv(KEY_ENV, 'sk-test-provider')
    for fail in (Fail(401, 'Incorrect API key provided'), Fail(400, "max_tokens: must be <= 8192")):
        with ScriptedServer(scripted(fail)) as srv, AgentPool([_spec(srv, provider)]) as pool:
            c = pool.complete(provider, Q)
        assert srv.model_calls == 1, (provider, fail)
        assert c.content is None and fail.message in c.error


def test_retries_are_bounded_by_count_and_time(monkeypatch):
    monkeypatch.setenv(KEY_ENV, 'sk-test-provider')
    with ScriptedServer(scripted(Fail(503, 'overloaded'))) as srv, AgentPool([_spec(srv, 'anthropic', max_attempts=3)]) as pool:
        c = pool.complete('anthropic', Q)
    assert srv.model_calls == 3 and 'overloaded' in c.error
    # a Retry-After longer than the time left is not waited for
    with ScriptedServer(scripted(Fail(429, 'slow down', retry_after=30))) as srv, \
         AgentPool([_spec(srv, 'openai', max_attempts=10, max_retry_s=2)]) as pool:
        t = time.time(); c = pool.complete('openai', Q)
    assert srv.model_calls == 1 and time.time() - t < 5 and 'slow down' in c.error


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with ScriptedServer() as srv, AgentPool([_spec(srv, 'openai')]) as pool:
        c = pool.complete('openai', Q)
    assert srv.model_calls == 0 and f'environment variable {KEY_ENV} is not set' in c.error


def test_concurrency_limit_and_many_in_flight(monkeypatch):
    "The pool keeps exactly `concurrency` requests in flight per endpoint."
    monkeypatch.setenv(KEY_ENV, 'sk-test-provider')
    with ScriptedServer(latency=0.1) as srv, AgentPool([_spec(srv, 'openai'), _spec(srv, 'anthropic')], concurrency=5) as pool:
        reqs = [{'agent': 'openai', 'messages': [{'role': 'user', 'content': f'q{i}'}]} for i in range(20)]
        t = time.time(); rs = pool.complete_many(reqs, progress=False); dt = time.time() - t
    assert all(r.ok for r in rs) and srv.max_inflight == 5 and srv.model_calls == 20
    assert dt < 1.5  # ideal 0.4 s; one at a time would take 2 s


def test_rate_limit_rpm(monkeypatch):
    monkeypatch.setenv(KEY_ENV, 'sk-test-provider')
    with ScriptedServer() as srv, AgentPool([_spec(srv, 'openai', rpm=1200)]) as pool:  # 20/s, burst 20
        reqs = [{'agent': 'openai', 'messages': [{'role': 'user', 'content': f'q{i}'}]} for i in range(40)]
        t = time.time(); rs = pool.complete_many(reqs, progress=False); dt = time.time() - t
    assert all(r.ok for r in rs) and 0.9 <= dt < 2.5


def test_sync_wrapper_inside_running_loop(monkeypatch):
    "pool.complete works where a loop is already running (as in Jupyter), and acomplete works in the caller's loop."
    monkeypatch.setenv(KEY_ENV, 'sk-test-provider')
    with ScriptedServer() as srv, AgentPool([_spec(srv, 'gemini')]) as pool:
        async def inside():
            sync = pool.complete('gemini', Q)
            asyn = await pool.acomplete('gemini', Q, sample=1)
            await pool.aclose()
            return sync, asyn
        sync, asyn = asyncio.run(inside())
    assert sync.content == asyn.content == echo_responder('gemini', {'contents': [{'role': 'user', 'parts': [{'text': Q[0]['content']}]}]})


# ---------------------------------------------------------------- real openai_compatible server (transformers serve)

def test_openai_compatible_tiny_serve_many_concurrent(tmp_path):
    """Many concurrent requests through the OpenAI-compatible provider to `transformers serve` on the tiny model all come back.

    Budget: starts `transformers serve` with the tiny model and sends it many concurrent requests that it generates for real."""
    from dnr.tiny import tiny_model, serve_model
    path = tiny_model('trained')
    spec = dict(name='student', role='student', provider='openai_compatible', model=str(path), max_tokens=24, temperature=0.0)
    qs = [f'What is {a} + {b}?' for a, b in zip(range(10, 22), range(50, 62))]
    with serve_model(path) as url:
        with AgentPool([{**spec, 'base_url': url}], cache=tmp_path / 'c.db', concurrency=12) as pool:
            rs = pool.complete_many([{'agent': 'student', 'messages': [{'role': 'user', 'content': q}]} for q in qs], progress=False)
            assert pool.provider_calls == len(qs) and pool.cache_hits == 0
        with AgentPool([{**spec, 'base_url': url}], cache=tmp_path / 'c.db') as pool2:
            again = pool2.complete('student', [{'role': 'user', 'content': qs[0]}])
    assert all(r.ok for r in rs), [r.error for r in rs if not r.ok][:3]
    assert all(r.content.startswith('The answer is') and '\\boxed{' in r.content for r in rs), rs[0].content
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in rs)
    assert again.cached and again.content == rs[0].content and pool2.provider_calls == 0


# ---------------------------------------------------------------- local transformers

def test_hf_provider_batched(tmp_path):
    from dnr.tiny import tiny_model
    path = tiny_model('trained')
    spec = dict(name='hf', role='student', provider='hf', model=str(path), max_tokens=24, temperature=0.0, hf_batch_size=4)
    qs = [f'What is {a} + {b}?' for a, b in [(1, 2), (30, 40), (5, 17), (2, 99), (12, 12)]]
    with AgentPool([spec]) as pool:
        rs = pool.complete_many([{'agent': 'hf', 'messages': [{'role': 'user', 'content': q}]} for q in qs], progress=False)
        single = pool.complete('hf', [{'role': 'user', 'content': qs[3]}], sample=1)  # alone: no padding
    assert all(r.ok and r.content.startswith('The answer is') for r in rs), [r.content for r in rs]
    assert single.content == rs[3].content  # left padding in a batch does not change greedy output
    assert all(r.finish_reason == 'stop' and r.completion_tokens > 0 for r in rs)


# ---------------------------------------------------------------- replay on the real recorded answers

def test_replay_real_recorded_answers():
    from dnr.data import load_recorded_answers
    rec = load_recorded_answers()
    rows = rec.groupby('model').head(3)
    specs = [dict(name=m, provider='replay', model=m) for m in rows.model.unique()]
    assert len(specs) == 5
    with AgentPool(specs) as pool:
        got = [pool.complete(r.model, Q, meta={'question_id': r.question_id, 'round': 0}) for r in rows.itertuples()]
        later = pool.complete(rows.model.iloc[0], Q, meta={'question_id': rows.question_id.iloc[0], 'round': 1})
        refl = pool.complete(rows.model.iloc[0], Q, meta={'question_id': rows.question_id.iloc[0], 'round': 0, 'kind': 'reflection'})
        other = pool.complete(rows.model.iloc[0], Q, meta={'question_id': 'not-a-question', 'round': 0})
        nometa = pool.complete(rows.model.iloc[0], Q)
    assert [g.content for g in got] == list(rows.response)
    for c in (later, refl, other, nometa): assert (c.content, c.error) == (None, 'no recording')
    assert pool.provider_calls == 0 and pool.usage['total']['errors'] == 4


# ---------------------------------------------------------------- cache: second run, kill and resume, concurrency

def test_cli_second_identical_run_makes_zero_calls(tmp_path, capsys):
    with ScriptedServer() as srv:
        a = agent_yaml(tmp_path / 'a.yaml', name='s', provider='openai_compatible', model='m', base_url=srv.openai_url, price_in=1, price_out=2)
        req = write_requests(tmp_path / 'r.jsonl', 25)
        argv = ['--agent', a, '--in', req, '--out', tmp_path / 'o.jsonl', '--cache', tmp_path / 'c.db', '--concurrency', 8]
        rc1, s1, _, e1 = call_chat(argv, capsys)
        n1 = srv.model_calls
        rc2, s2, _, _ = call_chat(argv, capsys)
        n2 = srv.model_calls - n1
    assert (rc1, rc2) == (0, 0), e1
    assert (n1, n2) == (25, 0)
    assert (s1['provider_calls'], s1['cache_hits'], s2['provider_calls'], s2['cache_hits']) == (25, 0, 0, 25)
    assert s1['cost_usd'] > 0 and s2['cost_usd'] == 0 and s1['prompt_tokens'] > 0
    assert set(s1) >= {'requests', 'provider_calls', 'cache_hits', 'prompt_tokens', 'completion_tokens', 'cost_usd', 'wall_s'}
    out = [json.loads(l) for l in (tmp_path / 'o.jsonl').read_text().splitlines()]
    assert [o['id'] for o in out] == [f'q{i}' for i in range(25)] and all(o['cached'] for o in out)
    assert all(o['content'] == echo_responder('openai', o) for o in out)


def test_kill_during_run_then_resume_asks_nothing_twice(tmp_path):
    "Kill `dnr chat` mid-run (SIGKILL), re-run: only requests not yet answered reach the server."
    n = 60
    with ScriptedServer(latency=0.15) as srv:
        a = agent_yaml(tmp_path / 'a.yaml', name='s', provider='openai_compatible', model='m', base_url=srv.openai_url)
        req = write_requests(tmp_path / 'r.jsonl', n)
        db = tmp_path / 'c.db'
        argv = ['--agent', a, '--in', req, '--out', tmp_path / 'o.jsonl', '--cache', db, '--concurrency', 4]
        code = 'import sys; from dnr.agents import chat_cli; sys.exit(chat_cli(sys.argv[1:]))'
        p = subprocess.Popen([sys.executable, '-c', code, *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        deadline = time.time() + 60
        while srv.model_calls < 16 and time.time() < deadline: time.sleep(0.02)
        p.send_signal(signal.SIGKILL); p.wait()
        time.sleep(0.3)  # let the server finish the requests that were in flight
        first = srv.prompts()
        cached = sqlite3.connect(db).execute('SELECT COUNT(*) FROM responses').fetchone()[0]
        srv.reset()
        rc, s, _, err = run_chat(argv)
        second = srv.prompts()
    assert 16 <= len(first) < n and 0 < cached <= len(first)
    assert rc == 0, err
    assert len(second) == n - cached  # every answered request came from the cache
    assert len(set(second)) == len(second) and len(set(first) | set(second)) == n
    assert (s['provider_calls'], s['cache_hits']) == (n - cached, cached)
    assert len((tmp_path / 'o.jsonl').read_text().splitlines()) == n


def test_cache_safe_under_concurrent_processes(tmp_path):
    "Two processes share one cache db while writing; afterwards every response is there once and readable."
    with ScriptedServer(latency=0.02) as srv:
        a = agent_yaml(tmp_path / 'a.yaml', name='s', provider='openai_compatible', model='m', base_url=srv.openai_url)
        for i in (0, 1): write_requests(tmp_path / f'r{i}.jsonl', 40, prefix=f'P{i}')
        db = tmp_path / 'c.db'
        code = 'import sys; from dnr.agents import chat_cli; sys.exit(chat_cli(sys.argv[1:]))'
        ps = [subprocess.Popen([sys.executable, '-c', code, '--agent', str(a), '--in', str(tmp_path / f'r{i}.jsonl'), '--out',
                                str(tmp_path / f'o{i}.jsonl'), '--cache', str(db), '--concurrency', '16'], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (0, 1)]
        assert [p.wait(60) for p in ps] == [0, 0], [p.stderr.read().decode()[-3000:] for p in ps]
    con = sqlite3.connect(db)
    assert con.execute('SELECT COUNT(*) FROM responses').fetchone()[0] == 80
    assert con.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'


def test_identical_concurrent_requests_are_sent_once(monkeypatch):
    monkeypatch.setenv(KEY_ENV, 'sk-test-provider')
    with ScriptedServer(latency=0.1) as srv, AgentPool([_spec(srv, 'openai')]) as pool:
        rs = pool.complete_many([{'agent': 'openai', 'messages': Q}] * 6, progress=False)
    assert srv.model_calls == 1 and len({r.content for r in rs}) == 1 and pool.cache_hits == 5


# ---------------------------------------------------------------- budget

def test_budget_stops_paid_calls_and_rerun_continues(tmp_path, capsys):
    long_reply = lambda p, r: Reply(echo_responder(p, r), completion_tokens=1000, finish_reason='length')
    with ScriptedServer(long_reply) as srv:
        a = agent_yaml(tmp_path / 'a.yaml', name='t', provider='openai_compatible', model='m', base_url=srv.openai_url,
                       price_out=10.0, max_tokens=1000)  # $0.01 per reply
        req = write_requests(tmp_path / 'r.jsonl', 10)
        argv = ['--agent', a, '--in', req, '--out', tmp_path / 'o.jsonl', '--cache', tmp_path / 'c.db', '--concurrency', 2]
        rc1, s1, _, _ = call_chat([*argv, '--budget', 0.045], capsys)
        calls1 = srv.model_calls
        out1 = [json.loads(l) for l in (tmp_path / 'o.jsonl').read_text().splitlines()]
        rc2, s2, _, _ = call_chat([*argv, '--budget', 1.0], capsys)
        calls2 = srv.model_calls - calls1
    assert rc1 == 1 and s1['budget_exceeded'] and s1['cost_usd'] <= 0.045 and calls1 == 4
    assert len(out1) == 10 and sum('budget exceeded' in (o['error'] or '') for o in out1) == 6
    assert rc2 == 0 and not s2['budget_exceeded'] and (s2['cache_hits'], calls2) == (4, 6)
    assert s2['cost_usd'] == pytest.approx(0.06)


def test_ledger_budget_is_the_runs(tmp_path):
    "ledger=True: a second pool on the same cache counts what the first paid (and a killed pool's reservations)."
    long_reply = lambda p, r: Reply(echo_responder(p, r), completion_tokens=1000, finish_reason='length')
    spec = dict(name='t', provider='openai_compatible', model='m', price_out=10.0, max_tokens=1000)  # $0.01 per reply
    reqs = [{'agent': 't', 'messages': [{'role': 'user', 'content': f'Question {i}'}]} for i in range(10)]
    with ScriptedServer(long_reply) as srv:
        spec['base_url'] = srv.openai_url
        with AgentPool([spec], cache=tmp_path / 'c.db', budget_usd=0.035, concurrency=1, ledger=True) as p1:
            r1 = p1.complete_many(reqs[:5], progress=False)
        assert [r.ok for r in r1] == [True] * 3 + [False] * 2 and srv.model_calls == 3
        with AgentPool([spec], cache=tmp_path / 'c.db', budget_usd=0.035, concurrency=1, ledger=True) as p2:
            r2 = p2.complete_many(reqs[5:], progress=False)  # the same cap: nothing new
            assert p2.spent_before == pytest.approx(0.03) and srv.model_calls == 3 and all(not r.ok for r in r2)
        # an invocation killed with a call in flight: its reservation counts at its worst case
        ResponseCache(tmp_path / 'c.db').reserve('in-flight-key', AgentSpec(**spec), 'killed-invocation', 0.01)
        with AgentPool([spec], cache=tmp_path / 'c.db', budget_usd=0.055, concurrency=1, ledger=True) as p3:
            r3 = p3.complete_many(reqs[5:], progress=False)  # 0.03 paid + 0.01 unsettled: room for one more
            led = p3.cache.ledger(p3.invocation)
        assert sum(r.ok for r in r3) == 1 and srv.model_calls == 4
        assert led == {'paid_usd': pytest.approx(0.04), 'paid_calls': 4, 'unsettled_usd': pytest.approx(0.01)}


# ---------------------------------------------------------------- batch APIs: submit, persist, restart, resume by id

@pytest.mark.parametrize('provider', ['openai', 'anthropic', 'gemini'])
def test_batch_resume_by_id_after_restart(provider, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, 'sk-test-provider')
    db = tmp_path / 'c.db'
    reqs = [{'agent': provider, 'messages': [{'role': 'user', 'content': f'Batch question {i}'}]} for i in range(6)]
    with ScriptedServer(batch_delay=1.0) as srv:
        spec = _spec(srv, provider, batch=True, batch_window=0.05, poll_s=0.1, price_in=2.0, price_out=8.0)
        # run 1: submit, then stop before the batch has finished (a crash after submission)
        pool = AgentPool([spec], cache=db)
        async def submit_and_quit():
            tasks = [asyncio.ensure_future(pool.acomplete(r['agent'], r['messages'])) for r in reqs]
            deadline = time.monotonic() + 30
            while not pool.cache.batches():
                assert time.monotonic() < deadline, f"no batch submitted in 30 s: {[t.exception() for t in tasks if t.done()]}"
                await asyncio.sleep(0.02)
            for t in tasks: t.cancel()
            await pool.aclose()
        asyncio.run(submit_and_quit()); pool.close()
        # nothing answered outside the batch; the server may already have processed the batch itself (its `batch_delay`
        # can pass while the SDK clients close: Gemini's took over a second in some runs), but nothing was collected
        direct = {k: v for k, v in srv.calls.items() if k in ('openai.chat', 'anthropic.messages', 'gemini.generate')}
        assert not direct and [b['status'] for b in ResponseCache(db).batches()] == ['submitted'], direct
        # run 2: the same requests resume the persisted batch by id; nothing is submitted again
        with AgentPool([spec], cache=db) as pool2:
            rs = pool2.complete_many(reqs, progress=False)
        creates = srv.calls[f'{provider}.batches.create']
        # run 3: everything from the cache
        with AgentPool([spec], cache=db) as pool3: rs3 = pool3.complete_many(reqs, progress=False)
    assert creates == 1 and srv.model_calls == 6
    assert [r.content for r in rs] == [echo_responder('openai', {'messages': r['messages']}) for r in reqs]  # the same text for every provider
    assert all(r.cost_usd == pytest.approx((r.prompt_tokens * 2 + r.completion_tokens * 8) / 1e6 / 2) for r in rs)
    assert all(r.cached for r in rs3) and pool3.provider_calls == 0
    assert [b['status'] for b in ResponseCache(db).batches()] == ['collected']


def test_collect_batches_without_requests(tmp_path, monkeypatch):
    "collect_batches() picks up open batches by id after a restart and fills the cache."
    monkeypatch.setenv(KEY_ENV, 'sk-test-provider')
    db = tmp_path / 'c.db'
    with ScriptedServer(batch_delay=0.5) as srv:
        spec = _spec(srv, 'anthropic', batch=True, batch_window=0.05, poll_s=0.1)
        pool = AgentPool([spec], cache=db)
        async def submit_and_quit():
            tasks = [asyncio.ensure_future(pool.acomplete('anthropic', [{'role': 'user', 'content': f'B{i}'}])) for i in range(3)]
            deadline = time.monotonic() + 30
            while not pool.cache.batches():
                assert time.monotonic() < deadline, f"no batch submitted in 30 s: {[t.exception() for t in tasks if t.done()]}"
                await asyncio.sleep(0.02)
            for t in tasks: t.cancel()
            await pool.aclose()
        asyncio.run(submit_and_quit()); pool.close()
        with AgentPool([spec], cache=db) as pool2: n = pool2.collect_batches()
    assert n == 1 and len(ResponseCache(db)) == 3 and srv.calls['anthropic.batches.create'] == 1


# ---------------------------------------------------------------- keys never reach disk

def test_planted_key_reaches_no_file(tmp_path):
    key = 'sk-PLANTED-' + os.urandom(8).hex()
    env = {KEY_ENV: key}
    def responder(provider, req):
        return Fail(401, 'invalid x-api-key') if 'bad' in str(req) else echo_responder(provider, req)
    with ScriptedServer(responder) as srv:
        (tmp_path / 'agents.yaml').write_text(json.dumps({'agents': [
            _spec(srv, 'openai', price_in=1, price_out=1), _spec(srv, 'anthropic'), _spec(srv, 'gemini')]}))
        lines = [{'id': i, 'agent': p, 'messages': [{'role': 'user', 'content': f'{p} question {i}' + (' bad' if i % 5 == 4 else '')}]}
                 for i, p in enumerate(['openai', 'anthropic', 'gemini'] * 5)]
        (tmp_path / 'r.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
        rc, s, out, err = run_chat(['--agent', tmp_path / 'agents.yaml', '--in', tmp_path / 'r.jsonl', '--out', tmp_path / 'o.jsonl',
                                    '--cache', tmp_path / 'c.db', '--log', tmp_path / 'run.log'], env=env)
        headers = [{k.lower(): v for k, v in h.items()} for _, _, h in srv.requests]
    assert rc == 1 and s['errors'] == 3 and s['requests'] == 15  # the 'bad' requests failed with the provider's message
    # the key did reach the providers, in each one's header
    sent = [h.get('authorization', '') + h.get('x-api-key', '') + h.get('x-goog-api-key', '') for h in headers]
    assert all(key in v for v in sent) and len(sent) == 15
    files = [p for p in tmp_path.rglob('*') if p.is_file()]
    assert {p.name for p in files} >= {'o.jsonl', 'c.db', 'run.log'}
    assert 'invalid x-api-key' in (tmp_path / 'run.log').read_text()
    for p in files: assert key.encode() not in p.read_bytes(), p
    assert key not in out and key not in err


# ---------------------------------------------------------------- CLI input errors

def test_cli_bad_input_names_file_line_field(tmp_path, capsys):
    a = agent_yaml(tmp_path / 'a.yaml', name='s', provider='openai_compatible', model='m', base_url='http://127.0.0.1:9/v1')
    bad = tmp_path / 'r.jsonl'
    bad.write_text('{"id": "a", "messages": [{"role": "user", "content": "hi"}]}\n{"id": "a", "messages": [{"role": "user", "content": "x"}]}\n')
    rc, s, _, err = call_chat(['--agent', a, '--in', bad, '--out', tmp_path / 'o.jsonl'], capsys)
    assert rc == 2 and "r.jsonl:2: field 'id': duplicate id 'a'" in err
    (tmp_path / 'b.yaml').write_text('name: s\nprovider: openai_compatible\nmodel: m\n')
    rc, s, _, err = call_chat(['--agent', tmp_path / 'b.yaml', '--in', bad, '--out', tmp_path / 'o.jsonl'], capsys)
    assert rc == 2 and 'b.yaml:1' in err and 'needs base_url' in err


def test_cli_dead_server_is_refused_before_writing(tmp_path, capsys):
    "`dnr chat` against a server that is down: exit 2 at once, naming the URL; no output file."
    from dnr.tiny import free_port
    url = f'http://127.0.0.1:{free_port()}/v1'
    a = agent_yaml(tmp_path / 'a.yaml', name='s', provider='openai_compatible', model='m', base_url=url)
    req = write_requests(tmp_path / 'r.jsonl', 5)
    rc, s, _, err = call_chat(['--agent', a, '--in', req, '--out', tmp_path / 'o.jsonl'], capsys)
    assert rc == 2 and f'cannot connect to {url}' in err and not (tmp_path / 'o.jsonl').exists()


@pytest.mark.parametrize('provider,where', [('openai_compatible', 'refused'), ('openai_compatible', 'dns'),
                                            ('anthropic', 'refused'), ('gemini', 'dns')])
def test_unreachable_server_fails_fast_with_url(provider, where, monkeypatch):
    """Connection refused / DNS failure: 3 short tries (not max_attempts=6 with long backoff), the URL in the error, and
    requests queued behind them fail without new tries. Rate limits keep their backoff (test_retries_are_bounded...)."""
    from dnr.tiny import free_port
    monkeypatch.setenv(KEY_ENV, 'sk-test-key-0123456789')
    url = f'http://127.0.0.1:{free_port()}/v1' if where == 'refused' else 'http://no-such-host.invalid/v1'
    key = {} if provider == 'openai_compatible' else {'api_key_env': KEY_ENV}
    with AgentPool([dict(name='s', provider=provider, model='m', base_url=url, retry_wait=5.0, **key)], concurrency=2) as pool:
        rs = pool.complete_many([{'agent': 's', 'messages': [{'role': 'user', 'content': f'Q{i}'}]} for i in range(6)], progress=False)
    assert all(r.error and f'cannot connect to {url}' in r.error for r in rs), rs[0].error
    assert pool.provider_calls == 3 * 2  # the two in flight tried 3 times each; the four queued ones not at all


# ---------------------------------------------------------------- benchmark smoke test

def test_bench_quick():
    p = subprocess.run([sys.executable, str(ROOT / 'bench' / 'agents_throughput.py'), '--quick'], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    # the benchmark runs and reports its ratios (measured against its baselines in the same run); what they are on a
    # given machine is the benchmark's to print, not a unit test's to assert (this machine's load moves them)
    assert res['ratio_vs_ideal'] > 0 and res['speedup_vs_process_pool'] > 0, res
