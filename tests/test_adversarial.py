"""Property-based tests (Hypothesis) of every debate protocol against the replies real providers send when things go
wrong (`dnr.servers.adversarial_reply`: empty, blank, a refusal, prose where JSON was asked, JSON with wrong types or
missing keys, truncated JSON, `finish_reason: length`, a 2 MB reply, odd unicode, two options named).

Two levels, for each protocol (D&R 'dnr', 'society_of_minds', 'reconcile', 'mad'):
- its reader: generated reply texts go through the engine's reading (`grade_debate_answer`, then the protocol's
  `read_answer`; MAD's moderator through `read_verdict`) and into a MAG: no exception, an unreadable reply is recorded
  as unparsed, and no unreadable answer enters the votes;
- whole runs: `dnr debate` (`debate_into`, in process) against a local server whose agents (OpenAI, Anthropic and
  Gemini SDKs) answer generated calls (agent, n-th call on a question) adversarially, in every round: no exception,
  every adversarial reply is in its question's MAG, every question finishes, the summary counts the unreadable
  answers, and a resume asks the server nothing it already answered.

Example counts are bounded (`READER_EXAMPLES`, `RUN_EXAMPLES`, plus the explicit `@example`s) so the file runs in
seconds; `CASES` is the number of generated cases the file tries."""
import json, os, re, tempfile
from collections import Counter
from pathlib import Path

import pytest, yaml
from hypothesis import HealthCheck, example, given, settings, strategies as st

from dnr.servers import ADVERSARIAL_KINDS, Adversarial, ScriptedServer, adversarial_reply

ROOT = Path(__file__).resolve().parents[1]
DATA = os.environ.get('DNR_DATA_DIR') or str(ROOT.parent / 'shared' / 'data')
PROTOCOLS = ['dnr', 'society_of_minds', 'reconcile', 'mad']
NAMES = {'dnr': ['teacher-a', 'teacher-b', 'student'], 'mad': ['affirmative', 'negative', 'moderator']}
PROVIDERS = ['openai', 'anthropic', 'gemini']  # agent i talks to the server through provider i's SDK
MAX_ROUNDS = 2
READER_EXAMPLES, RUN_EXAMPLES = 100, 2
ROUND_EXAMPLES = MAX_ROUNDS + 1  # the explicit examples of each run test: one per round
CASES = len(PROTOCOLS) * (READER_EXAMPLES + RUN_EXAMPLES + ROUND_EXAMPLES)
KEY_ENV = 'DNR_ADVERSARIAL_TEST_KEY'
BLANK = ('empty', 'whitespace', 'refusal', 'length', 'huge')  # kinds that carry no answer in any protocol's format


@pytest.fixture(scope='module')
def qs():
    from dnr.data import load_benchmark
    return load_benchmark('mmlu_pro', 'train', 'physics', path=DATA)[:2]


def _texts(provider, req) -> tuple[str, list[str]]:
    "The system prompt and the turns' texts of a request, for any of the three providers."
    if provider == 'gemini':
        sys_ = ''.join(p.get('text', '') for p in (req.get('systemInstruction') or {}).get('parts', []))
        return sys_, [''.join(p.get('text', '') for p in c.get('parts', [])) for c in req.get('contents', [])]
    msgs = req.get('messages', [])
    flat = lambda c: c if isinstance(c, str) else ''.join(b.get('text', '') for b in c or [] if isinstance(b, dict))
    sys_ = flat(req.get('system', '')) + ''.join(flat(m['content']) for m in msgs if m['role'] == 'system')
    return sys_, [flat(m['content']) for m in msgs if m['role'] != 'system']


class Honest:
    "Agents that answer every protocol in its format: teachers right, the student wrong; MAD's moderator never decides (so every round runs)."
    def __init__(self, qs): self.qs = qs

    def question(self, provider, req):
        sys_, turns = _texts(provider, req)
        text = sys_ + '\n'.join(turns)
        return next((q for q in self.qs if q.question[:80] in text), None)

    def key(self, provider, req):
        q = self.question(provider, req)
        return (req.get('model', ''), q.id if q else '?')

    def __call__(self, provider, req):
        sys_, turns = _texts(provider, req)
        q, model, last = self.question(provider, req), req.get('model', ''), turns[-1] if turns else ''
        if q is None: return "### Answer\n[scripted] not a question I know.\nFinal answer: A"
        wrong = 'A' if q.gold != 'A' else 'B'
        if sys_.startswith('You are a moderator'):
            if 'what answer candidates' in last: return f"Candidates: {q.gold} and {wrong}."
            if 'Please summarize your reasons and give the final answer' in last:
                return '{"Reason": "[scripted] the affirmative computed it", "debate_answer": "%s"}' % q.gold
            return '{"Whether there is a preference": "No", "Supported Side": "", "Reason": "[scripted]", "debate_answer": ""}'
        if 'feedback to yourself' in last: return "### Feedback\n[scripted] I misread the question."
        if 'feedback to other agents' in last: return "### Feedback\n[scripted] Recheck the units."
        ans = wrong if model in ('student', 'negative') else q.gold
        if 'confidence_level' in last:
            return '{"reasoning": "[scripted] %s works it out", "answer": "%s", "confidence_level": "0.9"}' % (model, ans)
        return f"### Answer\n[scripted] {model} on {q.id}.\nFinal answer: {ans}"


@pytest.fixture(scope='module')
def server():
    old = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = 'sk-test-adversarial'
    with ScriptedServer() as srv: yield srv
    if old is None: os.environ.pop(KEY_ENV, None)
    else: os.environ[KEY_ENV] = old


def config(protocol, srv, **kw) -> dict:
    "The protocol's config (configs/protocols/, or D&R's defaults) with three local agents on the three providers."
    base = {} if protocol == 'dnr' else yaml.safe_load((ROOT / 'configs' / 'protocols' / f'{protocol}.yaml').read_text())
    names = NAMES.get(protocol, ['right', 'wrong', 'student'])
    url = {'openai': srv.openai_url, 'anthropic': srv.anthropic_url, 'gemini': srv.gemini_url}
    agents = [dict(name=n, role='student' if n == 'student' else 'teacher', provider=p, model=n, base_url=url[p],
                   api_key_env=KEY_ENV, price_in=1.0, price_out=2.0, retry_wait=0.01, max_attempts=2)
              for n, p in zip(names, PROVIDERS)]
    return {**base, 'dataset': dict(name='mmlu_pro', category='physics', split='train', path=DATA), 'agents': agents,
            'max_rounds': MAX_ROUNDS, 'concurrency': 4, **kw}


# ---------------------------------------------------------------- the readers

_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
                            max_leaves=8)
_json_like = st.fixed_dictionaries({}, optional={'reasoning': _json_values, 'answer': _json_values | st.sampled_from(list('ABCDEFGHIJ')),
                                                 'confidence_level': _json_values | st.sampled_from(['0.9', '85%', '1.5', 'high']),
                                                 'debate_answer': _json_values, 'Whether there is a preference': _json_values})
REPLIES = st.one_of(
    st.builds(lambda k, s: adversarial_reply(k, s).text, st.sampled_from(ADVERSARIAL_KINDS), st.integers(0, 1000)),
    st.text(max_size=300),
    _json_like.map(json.dumps),
    st.builds(lambda d, n: json.dumps(d)[:n], _json_like, st.integers(0, 80)),  # truncated JSON
    st.builds(lambda pre, x: f"### Answer\n{pre}\nFinal answer: {x}", st.text(max_size=60), st.text(max_size=20)),
    st.builds(lambda a, b: f"The answer is ({a}) or ({b}).", st.sampled_from('ABCDEFGHIJ'), st.sampled_from('ABCDEFGHIJ')),
)


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_reader_survives_any_reply(protocol, qs, server):
    "Any reply text: the protocol's reading never raises, a reply without an answer is unparsed, the MAG validates with no None vote."
    from dnr.debate import Debate, load_debate_config, read_with_protocol
    from dnr.grading import grade_debate_answer
    from dnr.mag import Answer, Round, Verdict, validate_mag
    cfg = load_debate_config(config(protocol, server))
    eng = Debate(cfg, pool=None)
    P, q, names = eng.protocol, qs[0], eng.names
    readers = Counter()

    @settings(max_examples=READER_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(texts=st.lists(REPLIES, min_size=len(names), max_size=len(names)))
    def check(texts):
        answers = {}
        for agent, text in zip(names, texts):
            a = Answer(response=text, **grade_debate_answer(q, text, cfg.grading))
            a = read_with_protocol(P, q, agent, a)
            assert a.answer is None or (isinstance(a.answer, str) and a.status != 'missing'), a
            if a.answer is None: assert a.status in ('unparsed', 'missing') and not a.correct, a
            if not text.strip(): assert a.answer is None or _fallback(protocol, a), (text, a)
            answers[agent] = a
        rnd = Round(round=0, answers=answers)
        if protocol == 'mad':
            v = P.read_verdict(q, texts[0])
            rnd.verdict = Verdict(agent=names[2], text=texts[0], response=texts[0], **v)
            # unreadable: no answer (MAD's code may still end the debate on it: a non-empty debate_answer ends it, read or not)
            assert v['status'] in ('parsed', 'unparsed') and (v['status'] == 'parsed' or v.get('answer') is None), v
        m = validate_mag(eng.mag(q, [rnd], 'max_rounds').to_dict())
        assert None not in m.votes and 'None' not in m.votes, m.votes
        readers[sum(a.answer is None or a.status == 'unparsed' for a in answers.values())] += 1  # ReConcile's fallback is unreadable too
    check()
    assert sum(readers.values()) == READER_EXAMPLES and readers[0] < READER_EXAMPLES, readers  # some replies were unreadable


# ---------------------------------------------------------------- whole runs

def _plans(protocol):
    "Adversarial calls: (agent, n, kind), the agent's n-th call on every question answered with `kind`."
    names = NAMES.get(protocol, ['right', 'wrong', 'student'])
    return st.lists(st.tuples(st.sampled_from(names), st.integers(0, 2 * MAX_ROUNDS + 2), st.sampled_from(ADVERSARIAL_KINDS)),
                    min_size=1, max_size=4, unique_by=lambda t: t[:2])


def _fallback(protocol, a) -> bool:
    "ReConcile's reading of a reply it could not read after its retries: their `invalid_result`, a seeded option at confidence 0, unparsed."
    return protocol == 'reconcile' and a.status == 'unparsed' and a.confidence == 0 and a.correct is None and bool(a.unparsed_fields)


def _recorded(m) -> list[tuple[int, str, str]]:
    "(round, what, text) of every reply a MAG records."
    out = []
    for r in m.rounds:
        out += [(r.round, 'answer', a.response) for a in r.answers.values() if a.response is not None]
        out += [(r.round, 'retried answer', t) for a in r.answers.values() for t in a.retried]
        out += [(r.round, 'reflection', x.response) for x in r.reflections.values() if x.response is not None]
        out += [(r.round, 'critique', x.response) for x in r.critiques if x.response is not None]
        if r.verdict and r.verdict.response is not None: out.append((r.round, 'verdict', r.verdict.response))
    return out


def _model_requests(srv) -> list[str]:
    with srv.lock: reqs = list(srv.requests)
    return [json.dumps(body, sort_keys=True) for route, body, _ in reqs if route in ('openai.chat', 'anthropic.messages', 'gemini.generate')]


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_runs_survive_adversarial_replies(protocol, qs, server):
    """Adversarial replies at generated calls of every round: the run finishes, records them, counts them, and a resume
    re-asks nothing. 6-11 s on an idle machine, over 30 s on a busy one: each of its
    `RUN_EXAMPLES + ROUND_EXAMPLES` cases runs `dnr debate` three times (one question, a resume with two, a resume
    that asks nothing) over real HTTP through three SDKs, with replies of up to 2 MB carried into later rounds."""
    from dnr.debate import debate_into, load_debate_config, run_sync
    from dnr.mag import read_mags
    names = NAMES.get(protocol, ['right', 'wrong', 'student'])
    hits, kinds_seen, survived = Counter(), Counter(), [0]
    step = 2 if protocol == 'dnr' else 1  # a D&R agent makes two calls a round (its answer, then a reflection or a critique)
    K = ADVERSARIAL_KINDS  # the explicit cases: every agent in round r, and the first agent's next call; all kinds among them
    per_round = [[(names[i], step * r, K[(4 * r + i) % len(K)]) for i in range(3)] + [(names[0], step * r + 1, K[(4 * r + 3) % len(K)])]
                 for r in range(ROUND_EXAMPLES)]

    @settings(max_examples=RUN_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(plan=_plans(protocol))
    @example(plan=per_round[0])
    @example(plan=per_round[1])
    @example(plan=per_round[2])
    def run(plan):
        honest = Honest(qs)
        adv = Adversarial(honest, plan={((a, q.id), n): k for a, n, k in plan for q in qs}, key=honest.key)
        server.responder = adv; server.reset()
        with tempfile.TemporaryDirectory() as tmp:
            out, quiet = Path(tmp) / 'run', (lambda msg: None)
            # 1. the first question; 2. resume with both: only the second is debated; 3. resume again: nothing is asked
            s1 = run_sync(debate_into(load_debate_config(config(protocol, server, limit=1)), out, progress=False, probe=False, log=quiet))
            first = _model_requests(server)
            s2 = run_sync(debate_into(load_debate_config(config(protocol, server, limit=2)), out, resume=True, progress=False, probe=False, log=quiet))
            second = _model_requests(server)[len(first):]
            n_before = server.model_calls
            s3 = run_sync(debate_into(load_debate_config(config(protocol, server, limit=2)), out, resume=True, progress=False, probe=False, log=quiet))
            mags = {m.question_id: m for m in read_mags(out / 'mags.jsonl')}
        assert (s1['finished'], s2['finished'], s2['debated_now'], s2['skipped'], s3['debated_now']) == (1, 2, 1, 1, 0), (s1, s2, s3)
        assert s2['stopped'] == {} and set(mags) == {q.id for q in qs} and s2['protocol'] == protocol, s2
        assert not set(first) & set(second), "the resume asked again what the first invocation had asked"
        assert server.model_calls == n_before, "a resume of a finished run asked the server"
        for (agent, qid), n, kind in adv.sent:  # every adversarial reply is recorded in its question's MAG
            rep = adversarial_reply(kind, seed=adv.seed + n)  # a refusal is recorded as its text (OpenAI) or as empty
            sent = [x for x in (rep.text, rep.refusal) if x is not None]
            where = [(r, what) for r, what, t in _recorded(mags[qid]) if any(t == x if not x else x in t for x in sent)]
            assert where, (agent, qid, n, kind)
            hits[where[0]] += 1; kinds_seen[kind] += 1
        answers = [a for m in mags.values() for r in m.rounds for a in r.answers.values()]
        for a in answers:
            if a.response is not None and not a.response.strip(): assert (a.answer is None or _fallback(protocol, a)) and a.status != 'parsed', a
            if a.answer is not None: assert isinstance(a.answer, str) and a.answer != 'None'
        unparsed = sum(a.response is not None and (a.answer is None or a.status == 'unparsed') for a in answers)
        assert s2['unreadable']['unparsed_answers'] == unparsed and s2['unreadable']['answers'] == len(answers), s2['unreadable']
        assert all(None not in m.votes and 'None' not in m.votes for m in mags.values())
        survived[0] += len(adv.sent)
    run()
    rounds_hit = {r for r, _ in hits}
    assert rounds_hit == set(range(MAX_ROUNDS + 1)), (protocol, hits)  # every round got adversarial replies
    print(f"{protocol}: {survived[0]} adversarial replies survived; by round and call: {dict(sorted(hits.items()))}; kinds: {dict(kinds_seen)}")


@pytest.mark.parametrize('unparsed_shown', ['none', 'skip'])
def test_dnr_shows_an_unreadable_answer_as_its_authors_or_skips_it(unparsed_shown, qs, server):
    "D&R's next round shows an unreadable last-round answer as the authors' debate script prints it (`Final answer: None`), or, with `unparsed_shown: skip`, leaves it out."
    from dnr.debate import Debate, load_debate_config
    from dnr.grading import grade_debate_answer
    from dnr.mag import Answer, Round
    eng = Debate(load_debate_config(config('dnr', server, unparsed_shown=unparsed_shown)), pool=None)
    q = qs[0]
    texts = {'teacher-a': f"### Answer\nIt follows.\nFinal answer: {q.gold}", 'teacher-b': adversarial_reply('refusal').refusal,
             'student': adversarial_reply('length').text}
    rnd = Round(round=0, answers={a: Answer(response=t, **grade_debate_answer(q, t, 'strict')) for a, t in texts.items()})
    assert [rnd.answers[a].answer for a in texts] == [q.gold, None, None]
    context, order = eng.protocol.shown(q, 1, [rnd])
    if unparsed_shown == 'none':
        assert sorted(order) == sorted(texts) and context.count('Final answer: None') == 2 and context.count('Answer ') == 3, context
    else:
        assert order == ['teacher-a'] and 'None\nFinal answer' not in context and 'Final answer: None' not in context, context
        assert context.startswith(f"Answer 1:\nIt follows.\nFinal answer: {q.gold}"), context


def test_reconcile_unreadable_then_valid_json_exits_0(tmp_path, qs, server, capsys):
    """The reported failure: ReConcile agents whose replies are unreadable once before valid JSON; `dnr debate` used to stop on
    `votes.None`. It now exits 0: as ReConcile's code does, each unreadable reply is asked again and read at the second try,
    the unreadable reply kept in the answer's `retried` and counted in the summary."""
    from dnr.debate import debate_cli
    from dnr.mag import read_mags
    honest = Honest(qs)  # 'right' unreadable in round 0, the student in the last round (whose votes decide)
    plan = {((a, q.id), n): 'prose' for a, n in (('right', 0), ('student', MAX_ROUNDS)) for q in qs}
    server.responder = Adversarial(honest, plan=plan, key=honest.key); server.reset()
    (tmp_path / 'cfg.yaml').write_text(yaml.safe_dump(config('reconcile', server, limit=2)))
    rc = debate_cli(['--config', str(tmp_path / 'cfg.yaml'), '--out', str(tmp_path / 'run'), '--no-progress'])
    out = capsys.readouterr().out
    assert rc == 0, out[-2000:]
    s = json.loads(out.strip().splitlines()[-1])
    mags = read_mags(tmp_path / 'run' / 'mags.jsonl')
    u = s['unreadable']
    assert s['finished'] == 2 and u['unparsed_answers'] == 0 and u['retried_replies'] == 4 and '4 unreadable replies asked again' in out, s
    for m in mags:
        assert len(m.rounds) == MAX_ROUNDS + 1 and m.votes, m.votes
        for r, agent in ((0, 'right'), (MAX_ROUNDS, 'student')):
            a = m.rounds[r].answers[agent]
            assert len(a.retried) == 1 and a.answer is not None and a.status == 'parsed' and a.sample == 1, a
        assert sum(len(a.retried) for r in m.rounds for a in r.answers.values()) == 2
        assert set(m.votes) == {a.answer for a in m.rounds[-1].answers.values() if a.answer is not None}
