"""Regenerate tests/fixtures/protocols/*.json: the published protocols' prompts and answer readings, rendered by running
the authors' own code on a few real MMLU-Pro questions.

    python dev/protocol_fixtures.py --du GITDIR --reconcile GITDIR --mad GITDIR [--data DIR] [--out DIR]

Each GITDIR is a bare git directory of the authors' repository (a clone's `.git`, or what a mirror holds):
composable-models/llm_multiagent_debate (Du et al.), dinobby/ReConcile, Skytliang/Multi-Agents-Debate (MAD). The
script copies the files it needs from their HEAD commit into a temporary folder, imports them there with the network
clients they import replaced by scripted stand-ins (openai, Claude's web client, PaLM, backoff, tiktoken, dotenv),
runs their functions, and writes what they sent and read, naming the repository, commit and files. No reference code
is written into this repository. The questions are read from `$DNR_DATA_DIR/mmlu_pro/test.jsonl.gz` (or `--data`);
only the few questions used are written into the fixtures.
"""
from __future__ import annotations
import argparse, contextlib, copy, gzip, json, os, random, subprocess, sys, tempfile, types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPOS = {'du': 'composable-models/llm_multiagent_debate', 'reconcile': 'dinobby/ReConcile', 'mad': 'Skytliang/Multi-Agents-Debate'}
QUESTIONS = {'du': ['9358', '9413'], 'reconcile': ['3520', '7932'], 'mad': ['9358', '9045']}  # Du: 4 options, ReConcile: 5 (their formats' counts)


def git(gitdir: str, *args) -> str:
    return subprocess.run(['git', f'--git-dir={gitdir}', *args], capture_output=True, text=True, check=True).stdout


def checkout(gitdir: str, files: list[str], into: Path) -> str:
    "Copy `files` at HEAD of `gitdir` under `into`; returns the commit."
    commit = git(gitdir, 'rev-parse', 'HEAD').strip()
    for f in files:
        (into / f).parent.mkdir(parents=True, exist_ok=True)
        (into / f).write_text(git(gitdir, 'show', f'{commit}:{f}'))
    return commit


def source(key: str, commit: str, files: list[str]) -> dict:
    return dict(repository=REPOS[key], commit=commit, files=files, generator='dev/protocol_fixtures.py')


@contextlib.contextmanager
def stubbed(modules: dict[str, types.ModuleType], path: Path):
    "Import from `path` with `modules` standing in for the network clients; restore sys.modules and sys.path after."
    saved = dict(sys.modules)
    sys.path.insert(0, str(path))
    for n in [n for n in sys.modules if n == 'code' or n.startswith('code.')]: del sys.modules[n]  # MAD's package is named `code`
    sys.modules.update(modules)
    cwd = os.getcwd()
    os.chdir(path)
    try:
        with open(os.devnull, 'w') as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null): yield  # their progress prints
    finally:
        os.chdir(cwd)
        sys.path.remove(str(path))
        sys.modules.clear(); sys.modules.update(saved)


def module(name: str, **attrs) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    return m


def backoff_stub() -> types.ModuleType:
    "`backoff.on_exception(wait, exceptions, max_tries)`: call up to max_tries times while it raises one of `exceptions`."
    def on_exception(_wait, exceptions, max_tries=None, **_):
        def deco(f):
            def run(*a, **k):
                for i in range(max_tries):
                    try: return f(*a, **k)
                    except exceptions:
                        if i == max_tries - 1: raise
            return run
        return deco
    return module('backoff', on_exception=on_exception, expo=None)


def openai_stub(reply) -> dict[str, types.ModuleType]:
    "openai (0.x API) whose ChatCompletion.create records the request and answers `reply(kwargs)`."
    sent = []
    class ChatCompletion:
        @staticmethod
        def create(**kw):
            sent.append(copy.deepcopy(kw))
            return {'choices': [{'message': {'role': 'assistant', 'content': reply(kw)}}]}
    errors = {n: type(n, (Exception,), {}) for n in ('RateLimitError', 'APIError', 'ServiceUnavailableError', 'APIConnectionError', 'InvalidRequestError')}
    oa = module('openai', ChatCompletion=ChatCompletion, sent=sent, error=module('openai.error', **errors))
    return {'openai': oa, 'openai.error': oa.error}


def read_questions(data: Path, ids: list[str]) -> list[dict]:
    want, out = set(ids), {}
    with gzip.open(data / 'mmlu_pro' / 'test.jsonl.gz', 'rt') as f:
        for line in f:
            d = json.loads(line)
            if str(d['question_id']) in want: out[str(d['question_id'])] = dict(id=str(d['question_id']), question=d['question'], options=d['options'], gold=d['answer'], category=d['category'])
    return [out[i] for i in ids]


# --- Du et al.: mmlu/gen_mmlu.py (the whole __main__ run) and mmlu/eval_mmlu.py (parse_answer, solve_math_problems, most_frequent)
DU_REPLIES = [  # agent -> round -> reply; what the scripted model says
    ["Momentum is conserved, so the answer is (B).", "Final answer: Given the steps above, the answer is (B)"],
    ["The speed is unchanged (C)", "After reading the other agents, I keep (C). Final answer: In summary (C)"],
    ["I would pick (A), not (D).", "Agreeing with agent one: (B)"],
]
DU_PARSE = ["Final answer: Given the steps above, the answer is (B)", "Final answer: In summary (B)", "so (a) then (b).",
            "The answer is 42.", "It is 3.5 m/s, so 7 in total.", "no answer here", "(1) first, then (C)", "B",
            "The answer is (B) or (E).", "", "Answer: (x) (y)", "The answer is (10)"]
DU_VOTES = [["B", "C", "B"], ["B", "C"], ["C", "B", "B", "C"], ["A"], ["C", "B", "A"]]
DU_ACCURACY = [("B", ["(B)", "(C)", "(B)"]), ("B", ["(B)", "(B)", "no answer"]), ("B", ["no answer", "(B)", "(B)"]), ("C", ["(B)", "(C)", "the answer is 3"])]


def du_fixture(gitdir: str, data: Path, tmp: Path) -> dict:
    files = ['mmlu/gen_mmlu.py', 'mmlu/eval_mmlu.py']
    commit = checkout(gitdir, files, tmp)
    import pandas as pd
    qs, out = read_questions(data, QUESTIONS['du']), []
    for q in qs:
        calls = []
        def reply(kw):
            k = len(calls) % 6; calls.append(1)
            return DU_REPLIES[k % 3][k // 3]
        mods = openai_stub(reply)
        mods['glob'] = module('glob', glob=lambda pattern: ['q.csv'])
        df = pd.DataFrame([[q['question'], *q['options'], q['gold']]])
        read_csv, pd.read_csv = pd.read_csv, lambda *_a, **_k: df
        try:
            with stubbed(mods, tmp / 'mmlu'):
                exec(compile((tmp / 'mmlu' / 'gen_mmlu.py').read_text(), 'gen_mmlu.py', 'exec'), {'__name__': '__main__'})
                dumped = json.loads((tmp / 'mmlu' / 'mmlu_3_2.json').read_text())
        finally: pd.read_csv = read_csv
        (contexts, answer), = dumped.values()
        out.append(dict(question=q, conversations=contexts, requests=mods['openai'].sent[-6:]))
    with stubbed(openai_stub(lambda kw: ''), tmp / 'mmlu'):
        import eval_mmlu as ev
        parse = [dict(reply=r, parse_answer=ev.parse_answer(r), solve_math_problems=ev.solve_math_problems(r)) for r in DU_PARSE]
        votes = [dict(answers=v, most_frequent=ev.most_frequent(v)) for v in DU_VOTES]
        acc = [dict(gold=g, replies=rs, compute_accuracy=ev.compute_accuracy(g, rs)) for g, rs in DU_ACCURACY]
    return dict(source=source('du', commit, files), replies=DU_REPLIES, debates=out, parse=parse, most_frequent=votes, compute_accuracy=acc)


# --- ReConcile: utils.py (prepare_context*, parse_json, clean_output, parse_output, trans_confidence), generation.py (*_gen_ans, *_debate)
RC_MODELS = ['claude', 'gpt', 'bard']
RC_REPLIES = {  # model -> replies in the order asked (round 0 first try, retries, round 1 ...)
    'claude': ['{"reasoning": "The worm glows: it emits light.", "answer": "B", "confidence_level": "0.9"}',
               '{"reasoning": "Still B after review.", "answer": "B", "confidence_level": 0.95}'],
    'gpt': ["I think the answer is C.", '{"reasoning": "It reflects light.", "answer": "c", "confidence_level": "70%"}',
            '{"reasoning": "I now agree with B.", "answer": "B", "confidence_level": "0.8"}'],
    'bard': ['{"reasoning": "Glowing needs energy.", "answer": "C", "confidence_level": "0.6"}',
             '{"reasoning": ["First.", "Then B."], "answer": "B", "confidence_level": "0.85"}'],
}
RC_PARSE = ['Sure. {"reasoning": "p = mv", "answer": "B", "confidence_level": "0.9"} done', "### Answer\nx\nFinal answer: B",
            "{'reasoning': 'it's mass', 'answer': 'C', 'confidence_level': 0.7}", '{"reasoning": "x", "answer": "B"', '{"answer": true}',
            '{"reasoning": "r", "answer": "B", "confidence_level": "85%"}\n{"answer": "C"}', "", "{1, 2}",
            '{"reasoning": "a\nb", "answer": "D", "confidence_level": ""}']
RC_CLEAN = [{"reasoning": ["a", "b"], "answer": "b", "confidence_level": "85%"}, {"answer": "C", "confidence_level": "high"},
            {"reasoning": "r", "confidence_level": 0.7}, {"reasoning": "r", "answer": "A", "confidence_level": None}]
RC_VOTES = [  # (answer, confidence) per model (claude, gpt, bard): weighted vote and the discussion text they make
    [("B", 0.9), ("C", 0.7), ("B", 0.6)], [("B", 0.7), ("C", 0.7), ("D", 0.5)], [("A", 1.0), ("A", 0.95), ("A", 0.2)],
    [("C", 0.0), ("B", 0.85), ("C", 0.6)]]


def rc_sample(q: dict) -> dict:
    "dnr's MMLU-Pro question as their Aqua sample (options 'A)text', gold letter)."
    return dict(question=q['question'], options=[f"{chr(65 + i)}){o}" for i, o in enumerate(q['options'])], answer=q['gold'], gold_explanation='')


def reconcile_fixture(gitdir: str, data: Path, tmp: Path) -> dict:
    files = ['utils.py', 'generation.py']
    commit = checkout(gitdir, files, tmp)
    qs, debates = read_questions(data, QUESTIONS['reconcile']), []
    for q in qs:
        sent, script = {m: [] for m in RC_MODELS}, {m: list(r) for m, r in RC_REPLIES.items()}
        def answer(model, request):
            sent[model].append(copy.deepcopy(request))
            return script[model].pop(0)
        class Client:  # Claude's web client
            def __init__(self, cookie): pass
            def create_new_chat(self): return {'uuid': 'chat'}
            def send_message(self, text, uuid): return answer('claude', text) if text.startswith('Q: ') else 'I am Claude.'
        class Chat:
            def __init__(self, last): self.last = last
        palm = module('google.generativeai', configure=lambda **k: None, chat=lambda **k: Chat(answer('bard', k)))
        mods = {**openai_stub(lambda kw: answer('gpt', kw['messages'])), 'backoff': backoff_stub(), 'dotenv': module('dotenv', load_dotenv=lambda: None),
                'claude': module('claude', Client=Client), 'google': module('google', generativeai=palm), 'google.generativeai': palm,
                'google.api_core': module('google.api_core'), 'google.api_core.exceptions': module('google.api_core.exceptions', ServiceUnavailable=type('ServiceUnavailable', (Exception,), {})),
                'curl_cffi': module('curl_cffi', CurlError=type('CurlError', (Exception,), {}))}
        env = {k: 'unused' for k in ('OPEN_AI_API_BASE', 'OPEN_AI_API_VERSION', 'OPEN_AI_API_KEY', 'PALM_API_KEY', 'CLAUDE_COOCKIE1')}
        env.update({k: '' for k in ('CLAUDE_COOCKIE2', 'CLAUDE_COOCKIE3', 'CLAUDE_COOCKIE4', 'CLAUDE_COOCKIE5')})
        old_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with stubbed(mods, tmp):
                import utils, generation
                s = rc_sample(q)
                claude = generation.ClaudeModel()
                r0 = {'claude': claude.claude_gen_ans(s, None, None, False, 'Aqua'), 'gpt': generation.gpt_gen_ans(s, None, None, False, 'Aqua'),
                      'bard': generation.bard_gen_ans(s, None, None, False, 'Aqua')}
                res = [{'gold_answer': s['answer'], **{f"{'gpt3' if m == 'gpt' else m}_output_0": r0[m] for m in RC_MODELS}}]
                res = utils.parse_output(utils.clean_output(res, 0, 'Aqua'), 0)
                round0 = copy.deepcopy(res[0])
                res = claude.claude_debate([s], res, 1, None, 'Aqua')
                res = generation.gpt_debate([s], res, 1, None, 'Aqua')
                res = generation.bard_debate([s], res, 1, None, 'Aqua')
                res = utils.parse_output(utils.clean_output(res, 1, 'Aqua'), 1)
                contexts = dict(claude=utils.prepare_context(s, None, False, 'Aqua'), gpt=utils.prepare_context_for_chat_assistant(s, None, False, 'Aqua'),
                                bard=utils.prepare_context_for_bard(s, None, False, 'Aqua')[0])
                debates.append(dict(question=q, sample=s, contexts=contexts, sent=sent, round0=round0, round1=res[0]))
                parse = [dict(reply=r, parse_json=readable(safe(utils.parse_json, r))) for r in RC_PARSE]
                clean = [dict(output=o, cleaned={k: v for k, v in utils.clean_output([{'claude_output_0': copy.deepcopy(o)}], 0, 'Aqua')[0]['claude_output_0'].items() if k != 'answer' or 'answer' in o}) for o in RC_CLEAN]
                trans = [dict(confidence=x, weight=utils.trans_confidence(x)) for x in (0.0, 0.6, 0.61, 0.8, 0.85, 0.9, 0.99, 1.0, 1.2)]
                votes = []
                for v in RC_VOTES:
                    out = {f"{'gpt3' if m == 'gpt' else m}_output_0": dict(reasoning=f'{m} reasons.', answer=a, confidence_level=c) for m, (a, c) in zip(RC_MODELS, v)}
                    r = utils.parse_output([out], 0)[0]
                    votes.append(dict(answers=v, weighted_vote=r['weighted_vote_0'], weighted_max=r['weighted_max_0'], majority=r['majority_ans_0'], debate_prompt=r['debate_prompt_0']))
        finally:
            for k, v in old_env.items():
                if v is None: os.environ.pop(k, None)
                else: os.environ[k] = v
    return dict(source=source('reconcile', commit, files), adaptation="MMLU-Pro questions passed as their Aqua samples (options 'A)text', dataset='Aqua'); questions with 5 options, the count Aqua's answer line names",
                replies=RC_REPLIES, debates=debates, parse_json=parse, clean_output=clean, trans_confidence=trans, votes=votes)


def readable(x):
    "A parse result as JSON can hold it: a dict or their 'ERR_SYNTAX' as is, an exception by name, anything else as {'not_a_dict': repr}."
    return x if isinstance(x, dict) or x == 'ERR_SYNTAX' or str(x).startswith('raises ') else {'not_a_dict': repr(x)}


def safe(f, *a):
    try: return f(*a)
    except Exception as e: return f'raises {type(e).__name__}'


# --- MAD: interactive.py (Debate: init_agents, run) with code/utils/config4all.json; code/utils/agent.py
MAD_SCRIPT = {  # who -> replies in order; the moderator never decides, so the judge runs
    'Affirmative side': ["Affirmative: it is (B), momentum.", "I still hold B.", "B, for the third time."],
    'Negative side': ["I disagree: (C), speed.", "No, C.", "C: speed is what stays."],
    'Moderator': ['{"Whether there is a preference": "No", "Supported Side": "", "Reason": "Both argue well.", "debate_answer": ""}'] * 3,
    'Judge': ["B and C", '{"Reason": "Momentum is conserved in every collision.", "debate_answer": "B"}'],
}
MAD_EVAL = ['{"Whether there is a preference": "Yes", "Supported Side": "Affirmative", "Reason": "", "debate_answer": "B"}',
            '```json\n{"Reason": "r", "debate_answer": "B"}\n```', 'I cannot decide.', '{"Reason": "x", "debate_answer": "A or B"}',
            '{"debate_answer": "B", "Reason": null}', "{'Reason': 'single quotes', 'debate_answer': '(C)'}", '{"debate_answer": true}', '']


def mad_fixture(gitdir: str, data: Path, tmp: Path) -> dict:
    files = ['interactive.py', 'code/__init__.py', 'code/utils/__init__.py', 'code/utils/agent.py', 'code/utils/openai_utils.py', 'code/utils/config4all.json']
    commit = checkout(gitdir, files, tmp)
    sys.path.insert(0, str(ROOT))
    from dnr.data import Question
    debates = []
    for qd in read_questions(data, QUESTIONS['mad']):
        q = Question(id=qd['id'], dataset='mmlu_pro', question=qd['question'], options=qd['options'], gold=qd['gold'])
        script, sent = {k: list(v) for k, v in MAD_SCRIPT.items()}, []
        def reply(kw):
            first = kw['messages'][0]['content']
            who = ('Judge' if 'what answer candidates' in kw['messages'][1]['content'] else 'Moderator') if first.startswith('You are a moderator') else \
                  'Affirmative side' if len(kw['messages']) % 2 == 0 and kw['messages'][1]['content'] == q.text else 'Negative side'
            sent.append(dict(who=who, messages=copy.deepcopy(kw['messages']), temperature=kw['temperature']))
            return script[who].pop(0)
        tik = module('tiktoken', encoding_for_model=lambda m: types.SimpleNamespace(encode=lambda s: s.split()), get_encoding=lambda n: types.SimpleNamespace(encode=lambda s: s.split()))
        with stubbed({**openai_stub(reply), 'backoff': backoff_stub(), 'tiktoken': tik}, tmp):
            import interactive
            config = json.load(open(tmp / 'code' / 'utils' / 'config4all.json'))
            config['debate_topic'] = q.text
            d = interactive.Debate(num_players=3, openai_api_key='unused', config=config, temperature=0, sleep_time=0)
            d.run()
            debates.append(dict(question=qd, debate_topic=q.text, sent=sent, result={k: d.config.get(k) for k in ('debate_answer', 'Reason', 'success')}))
    evals = [dict(reply=r, eval=safe(lambda s: eval(s, {}), r)) for r in MAD_EVAL]
    return dict(source=source('mad', commit, files), config4all=json.loads((tmp / 'code' / 'utils' / 'config4all.json').read_text()),
                script=MAD_SCRIPT, debates=debates, eval=evals)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    for k in REPOS: ap.add_argument(f'--{k}', required=True, help=f'git directory of {REPOS[k]}')
    ap.add_argument('--data', default=os.environ.get('DNR_DATA_DIR'), help='data folder with mmlu_pro/test.jsonl.gz (default $DNR_DATA_DIR)')
    ap.add_argument('--out', default=str(ROOT / 'tests' / 'fixtures' / 'protocols'), help='where the fixtures go')
    a = ap.parse_args(argv)
    if not a.data: ap.error('--data (or $DNR_DATA_DIR) is needed')
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    for key, make in (('du', du_fixture), ('reconcile', reconcile_fixture), ('mad', mad_fixture)):
        random.seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            fx = make(getattr(a, key), Path(a.data), Path(tmp))
        (out / f'{key}.json').write_text(json.dumps(fx, indent=1, ensure_ascii=False) + '\n')
        print(f'{out / key}.json: {fx["source"]["repository"]} @ {fx["source"]["commit"][:7]}')


if __name__ == '__main__':
    main()
