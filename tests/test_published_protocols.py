"""The published protocols against their authors' own code: every prompt dnr sends and every reading it makes is compared
with what the reference functions produced on the same questions and replies (tests/fixtures/protocols/*.json, made
by dev/protocol_fixtures.py, each naming the repository, commit and files it ran); and the protocol configs."""
import asyncio, json, math
from pathlib import Path
from types import SimpleNamespace

import pytest, yaml

from dnr.agents import Completion
from dnr.data import Question
from dnr.mag import Answer, Round
from dnr.protocols import get_protocol
from dnr.published_protocols import (MAD_PROMPTS, du_parse, mad_verdict_json, rc_discussion, rc_parse_json, rc_weighted_vote,
                                     reconcile_prompt, trans_confidence)

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / 'tests' / 'fixtures' / 'protocols'
REPOS = {'du': ('composable-models/llm_multiagent_debate', '9846749'), 'reconcile': ('dinobby/ReConcile', '902ae91'),
         'mad': ('Skytliang/Multi-Agents-Debate', '022a7a8')}


def fixture(name):
    return json.loads((FIX / f'{name}.json').read_text())


def question(d):
    return Question(id=d['id'], dataset='mmlu_pro', question=d['question'], options=d['options'], gold=d['gold'], category=d.get('category'))


def cfg(protocol, names, providers=None, **kw):
    return SimpleNamespace(**{**dict(protocol=protocol, mode='test', feedback=[], seed=42, stop='never', max_rounds=2,
                                     agents=[dict(name=n, role='teacher', provider=(providers or {}).get(n, 'openai')) for n in names]), **kw})


class Engine:
    "The engine calls a protocol makes, answered from per-agent scripts; records every request."
    def __init__(self, scripts): self.scripts, self.sent = {a: list(v) for a, v in scripts.items()}, []

    async def _complete(self, agent, prompt, meta, sample=0):
        msgs = prompt if isinstance(prompt, list) else [{'role': 'user', 'content': prompt}]
        self.sent.append((agent, json.loads(json.dumps(msgs))))
        return Completion(content=self.scripts[agent].pop(0), prompt_tokens=1, completion_tokens=1)

    async def answer(self, q, agent, prompt, r):
        c = await self._complete(agent, prompt, dict(round=r))
        return Answer(response=c.content)


@pytest.mark.parametrize('name', ['du', 'reconcile', 'mad'])
def test_fixtures_name_their_source(name):
    "Each fixture names the repository, the commit and the files it was rendered from."
    src = fixture(name)['source']
    repo, commit = REPOS[name]
    assert src['repository'] == repo and src['commit'].startswith(commit) and src['files'] and src['generator'] == 'dev/protocol_fixtures.py'


def test_du_prompts_are_their_renders():
    "Du et al.: every message of every agent's conversation (first and debate messages) equals gen_mmlu.py's, byte for byte."
    fx = fixture('du')
    names = ['a0', 'a1', 'a2']
    P = get_protocol(cfg('society_of_minds', names, max_rounds=1))
    for d in fx['debates']:
        q = question(d['question'])
        r0 = Round(round=0, answers={n: Answer(response=fx['replies'][i][0]) for i, n in enumerate(names)})
        for i, n in enumerate(names):
            conv = d['conversations'][i]
            assert P.prompt(q, n, 0, [], None) == conv[:1]
            assert P.prompt(q, n, 1, [r0], None) == conv[:3]
            assert conv[3] == {'role': 'assistant', 'content': fx['replies'][i][1]}
        assert [r['messages'] for r in d['requests']] == [P.prompt(q, n, r, [r0][:r], None) for r in (0, 1) for n in names]


def test_du_reads_and_votes_as_eval_mmlu():
    "Du et al.: `parse_answer` then `solve_math_problems`, `most_frequent` (ties) and `compute_accuracy` (an unreadable last reply) as their code gives them."
    fx = fixture('du')
    P = get_protocol(cfg('society_of_minds', ['a', 'b', 'c']))
    q = Question(id='1', dataset='mmlu_pro', question='?', options=list('abcdefghij'), gold='B')
    for c in fx['parse']:
        want = c['parse_answer'] or c['solve_math_problems']
        assert du_parse(c['reply']) == want, c
        # the protocol's reading by default, even where the run's grading read something else (D&R's reader: G)
        assert P.read_answer(q, 'a', Answer(response=c['reply'], answer='G', status='parsed')).answer == want, c
    q = Question(id='1', dataset='mmlu_pro', question='?', options=list('abcde'), gold='B')
    for c in fx['most_frequent']:
        names = [f'a{i}' for i in range(len(c['answers']))]
        P = get_protocol(cfg('society_of_minds', names))
        rnd = Round(round=1, answers={n: Answer(response=f'({x})', answer=x) for n, x in zip(names, c['answers'])})
        assert P.final_answer([rnd]) == c['most_frequent'], c
    P = get_protocol(cfg('society_of_minds', ['a', 'b', 'c']))
    for c in fx['compute_accuracy']:
        q = Question(id='1', dataset='mmlu_pro', question='?', options=list('abcde'), gold=c['gold'])
        rnd = Round(round=1, answers={n: P.read_answer(q, n, Answer(response=r)) for n, r in zip('abc', c['replies'])})
        assert int(P.final_answer([rnd]) == c['gold']) == c['compute_accuracy'], c


RC_NAMES = ['claude', 'gpt', 'bard']
RC_PROVIDERS = {'claude': 'anthropic', 'gpt': 'openai', 'bard': 'gemini'}


def test_reconcile_prompts_retries_and_vote_are_their_run():
    """ReConcile: each model's context (Claude, GPT, Bard variants), the discussion text and each round-1 prompt equal
    what their generation.py sent; GPT's unreadable first reply is asked again as theirs is; the round's vote is theirs."""
    fx = fixture('reconcile')
    for d in fx['debates']:
        q = question(d['question'])
        P = get_protocol(cfg('reconcile', RC_NAMES, RC_PROVIDERS))
        assert P.variants == {'claude': 'claude', 'gpt': 'gpt', 'bard': 'bard'}
        assert reconcile_prompt(q, None, 'claude') == d['contexts']['claude']
        assert [{'role': 'user', 'content': reconcile_prompt(q, None, 'gpt')}] == d['contexts']['gpt']
        assert reconcile_prompt(q, None, 'bard') == d['contexts']['bard']
        eng = Engine(fx['replies'])
        r0 = asyncio.run(P.play_round(eng, q, 0, []))
        assert r0.answers['gpt'].sample == 1 and r0.answers['gpt'].status == 'parsed'  # the first reply had no JSON: asked again
        assert rc_discussion(r0.answers, RC_NAMES) == d['round0']['debate_prompt_0']
        r1 = asyncio.run(P.play_round(eng, q, 1, [r0]))
        sent = {a: [m for b, m in eng.sent if b == a] for a in RC_NAMES}
        assert [m[-1]['content'] for m in sent['claude']] == d['sent']['claude']
        assert sent['gpt'] == d['sent']['gpt']
        assert [m[-1]['content'] for m in sent['bard']] == [x['messages'] for x in d['sent']['bard']]
        v = P.votes([r0, r1])
        assert v.keys() == d['round1']['weighted_vote_1'].keys() and all(math.isclose(v[k], w) for k, w in d['round1']['weighted_vote_1'].items())
        assert P.final_answer([r0, r1]) == d['round1']['weighted_max_1']


def test_reconcile_reads_as_parse_json_and_clean_output():
    "ReConcile: `parse_json`, `clean_output`, `trans_confidence`, the weighted vote (ties), and the discussion text, against their code's results."
    fx = fixture('reconcile')
    for c in fx['parse_json']:
        want = c['parse_json'] if isinstance(c['parse_json'], dict) and 'not_a_dict' not in c['parse_json'] else None
        assert rc_parse_json(c['reply']) == want, c
    q = Question(id='1', dataset='mmlu_pro', question='?', options=list('abcde'), gold='B')
    P = get_protocol(cfg('reconcile', RC_NAMES, RC_PROVIDERS))
    for c in fx['clean_output']:
        a = P.read_answer(q, 'claude', Answer(response=repr(c['output'])))  # a Python literal, as their parse_json reads
        want = c['cleaned']
        assert a.confidence == want['confidence_level'], (a, c)
        if 'answer' in want: assert (a.answer, a.reasoning, a.status) == (want['answer'].upper(), want.get('reasoning', ''), 'parsed'), (a, c)
        else: assert a.status == 'unparsed' and 'answer' in a.unparsed_fields and a.answer in 'ABCDE', (a, c)  # their random option
    for c in fx['trans_confidence']: assert trans_confidence(c['confidence']) == c['weight'], c
    for c in fx['votes']:
        ans = {m: Answer(response='', answer=x, reasoning=f'{m} reasons.', confidence=float(w)) for m, (x, w) in zip(RC_NAMES, c['answers'])}
        rnd = Round(round=0, answers=ans)
        v = rc_weighted_vote(ans, RC_NAMES)
        assert list(v) == list(c['weighted_vote']) and all(math.isclose(v[k], w) for k, w in c['weighted_vote'].items()), c
        assert P.final_answer([rnd]) == c['weighted_max'] and rc_discussion(ans, RC_NAMES) == c['debate_prompt'], c


def test_reconcile_unreadable_replies_retry_then_fall_back_seeded():
    "An agent whose every reply is unreadable is asked its variant's tries (Claude 3, GPT 5), then gets a seeded random option with confidence 0, recorded as unparsed, never None."
    q = Question(id='7', dataset='mmlu_pro', question='?', options=list('abcde'), gold='B')
    P = get_protocol(cfg('reconcile', RC_NAMES, RC_PROVIDERS))
    eng = Engine({'claude': ['no json'] * 3, 'gpt': ['{"answer": '] * 5, 'bard': ['{"reasoning": "r", "answer": "B", "confidence_level": 1}']})
    r0 = asyncio.run(P.play_round(eng, q, 0, []))
    assert [a for a, _ in eng.sent].count('claude') == 3 and [a for a, _ in eng.sent].count('gpt') == 5
    for a in ('claude', 'gpt'):
        x = r0.answers[a]
        assert x.answer in 'ABCDE' and x.confidence == 0.0 and x.status == 'unparsed' and x.unparsed_fields == ['json'] and x.correct is None
        assert x.completion_tokens == P.tries(a)  # every try is paid for
    again = asyncio.run(get_protocol(cfg('reconcile', RC_NAMES, RC_PROVIDERS)).play_round(
        Engine({'claude': ['no json'] * 3, 'gpt': ['{"answer": '] * 5, 'bard': ['{"answer": "B"}']}), q, 0, []))
    assert {a: x.answer for a, x in again.answers.items()} == {a: x.answer for a, x in r0.answers.items()}  # seeded
    assert None not in P.votes([r0]) and 'None' not in rc_discussion(r0.answers, RC_NAMES)


MAD_NAMES = ['aff', 'neg', 'mod']
MAD_WHO = {'Affirmative side': 'aff', 'Negative side': 'neg', 'Moderator': 'mod', 'Judge': 'mod'}


def test_mad_flow_is_interactive_py():
    """MAD: every request of a three-round debate whose moderator never decides (debaters, moderator each round, then the
    judge shown the first-round answers) equals what interactive.py sent with config4all.json, byte for byte."""
    fx = fixture('mad')
    for k, v in MAD_PROMPTS.items(): assert fx['config4all'][k] == v, k
    for d in fx['debates']:
        q = question(d['question'])
        assert q.text == d['debate_topic']
        P = get_protocol(cfg('mad', MAD_NAMES, max_rounds=2))
        scripts = {MAD_WHO[w]: [] for w in fx['script']}
        for w, v in fx['script'].items(): scripts[MAD_WHO[w]] += v
        eng, rounds = Engine(scripts), []
        for r in range(3):
            rounds.append(rnd := asyncio.run(P.play_round(eng, q, r, rounds)))
            asyncio.run(P.run_round_end(eng, q, rnd))
            assert P.stop(rnd) is None
        assert [(MAD_WHO[s['who']], s['messages']) for s in d['sent']] == eng.sent
        assert 'Affirmative side arguing: ' + fx['script']['Affirmative side'][0] in eng.sent[-2][1][1]['content']  # the judge sees round 0
        assert rounds[-1].verdict.answer == d['result']['debate_answer'] and rounds[-1].verdict.debate_over


def test_mad_reads_verdicts_as_eval_does():
    "MAD: a reply their `eval` reads as a dict is read the same; one it raises on is unparsed (recorded, not guessed)."
    P = get_protocol(cfg('mad', MAD_NAMES))
    q = Question(id='1', dataset='mmlu_pro', question='?', options=list('abcde'), gold='B')
    for c in fixture('mad')['eval']:
        want = c['eval'] if isinstance(c['eval'], dict) else None
        assert mad_verdict_json(c['reply']) == want, c
        assert (P.read_verdict(q, c['reply'])['status'] == 'unparsed') == (want is None or want.get('debate_answer') not in ('B', '(C)', '')), c


CONFIGS = ROOT / 'configs' / 'protocols'


def test_protocol_configs_are_the_published_line_ups():
    "Du: 3 agents of one model, 2 rounds; ReConcile: 3 different models, their 2 discussion rounds; MAD: one model in all three roles at temperature 0, 3 rounds; each priced, with a D&R-agents variant beside it; no 1000-token cap."
    from dnr.debate import load_debate_config
    for name in ('society_of_minds', 'reconcile', 'mad'):
        for f in (CONFIGS / f'{name}.yaml', CONFIGS / 'dnr_agents' / f'{name}.yaml'):
            c = load_debate_config(f)
            assert c.protocol == name and all(a.get('price_in') is not None and a.get('price_out') for a in c.agents if a['provider'] != 'openai_compatible'), f
            assert all(a.get('max_tokens', 0) >= 4096 for a in c.agents), f
    du, rc, mad = (yaml.safe_load((CONFIGS / f'{n}.yaml').read_text()) for n in ('society_of_minds', 'reconcile', 'mad'))
    assert len(du['agents']) == 3 and len({a['model'] for a in du['agents']}) == 1 and du['max_rounds'] == 1 and du['stop'] == 'never'
    assert len(rc['agents']) == 3 and len({a['model'] for a in rc['agents']}) == 3 and rc['max_rounds'] == 2 and rc['stop'] == 'consensus'
    assert len(mad['agents']) == 3 and len({a['model'] for a in mad['agents']}) == 1 and mad['max_rounds'] == 2
    assert all(a['temperature'] == 0 for a in mad['agents'])


def test_protocol_options_from_a_config(tmp_path):
    "A config's `protocol_options` reach the protocol (D&R's reader for Du's debate); an unknown option or value is refused naming the file and field."
    from dnr.debate import DebateConfigError, load_debate_config
    from dnr.protocols import get_protocol as gp
    raw = yaml.safe_load((CONFIGS / 'society_of_minds.yaml').read_text())
    (tmp_path / 'dnr_reader.yaml').write_text(yaml.safe_dump({**raw, 'protocol_options': {'reader': 'dnr'}}))
    c = load_debate_config(tmp_path / 'dnr_reader.yaml')
    assert gp(c).options == {'reader': 'dnr', 'last_unparsed': 'no_answer'}
    for bad, msg in (({'reader': 'lenient'}, "protocol_options.reader is 'lenient'"), ({'retries': 3}, "unknown protocol_options ['retries']")):
        (tmp_path / 'bad.yaml').write_text(yaml.safe_dump({**raw, 'protocol_options': bad}))
        with pytest.raises(DebateConfigError, match=r"bad.yaml: field 'protocol': .*" + msg.replace('[', r'\[').replace(']', r'\]')):
            load_debate_config(tmp_path / 'bad.yaml')
