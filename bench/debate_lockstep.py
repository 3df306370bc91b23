"""Does the debate engine's batch-mode lockstep (`dnr.debate._Lockstep`) change anything, given that the pool's
provider batches and the `hf` provider's queue group requests already?

Debates the first N MMLU-Pro physics questions (batch mode, max_rounds 2) with two batch teachers (the OpenAI batch
API of a local `ScriptedServer`) and a student, with the lockstep and without it (the engine's `lockstep` set to
None), and prints provider batch jobs, model calls, `hf` generate calls, seconds, and whether the MAG lines are
byte-identical. Scenarios: an OpenAI-compatible student; the same student taking `--slow` seconds on one question's
round 0; the tiny local `hf` student (`dnr.tiny`, built on first use).
Usage: python bench/debate_lockstep.py [--questions 8] [--slow 1.0] [--no-hf]   (needs DNR_DATA_DIR)
"""
import argparse, os, tempfile, time
from collections import Counter
from unittest import mock
from dnr.agents import AgentPool
from dnr.data import load_benchmark
from dnr.debate import Debate, debate_questions, load_debate_config, pool_specs
from dnr.providers import _HFModel
from dnr.servers import ScriptedServer, Reply

def run(qs, lockstep: bool, student: str, slow: float = 0.0) -> dict:
    slow_id = next((q.id for q in qs if int(q.id) % 2), None)  # a question that goes past round 0
    def responder(provider, req):  # teacher ta always right; tb and st right on even ids or once tb's feedback was shown
        text, model = req['messages'][-1]['content'], req['model']
        q = next(q for q in qs if q.question[:80] in text)
        if 'feedback to' in text: return f"### Feedback\n[{model} on {q.id}] recheck."
        ok = model == 'ta' or int(q.id) % 2 == 0 or '[tb on' in text
        lat = slow if model == 'st' and q.id == slow_id and 'Last Round' not in text else 0
        return Reply(f"### Answer\n{model} on {q.id}.\nFinal answer: {q.gold if ok else ('A' if q.gold != 'A' else 'B')}", latency=lat)
    gens, orig = [], _HFModel.generate
    def counting(self, batch): gens.append(len(batch)); return orig(self, batch)
    with mock.patch.dict(os.environ, {'DNR_BENCH_KEY': 'fake'}), ScriptedServer(responder, batch_delay=0.1) as srv, \
         mock.patch.object(_HFModel, 'generate', counting), tempfile.TemporaryDirectory() as tmp:
        agents = [dict(name=n, role='teacher', provider='openai', model=n, base_url=srv.openai_url, api_key_env='DNR_BENCH_KEY',
                       batch_window=0.1, poll_s=0.05, price_in=1, price_out=2) for n in ('ta', 'tb')]
        if student == 'hf':
            from dnr.tiny import tiny_model
            agents.append(dict(name='st', role='student', provider='hf', model=str(tiny_model('trained')), temperature=0, max_tokens=24))
        else: agents.append(dict(name='st', role='student', provider='openai_compatible', model='st', base_url=srv.openai_url,
                                 api_key_env='DNR_BENCH_KEY'))
        cfg = load_debate_config(dict(agents=agents, batch=True, max_rounds=2))
        with AgentPool(pool_specs(cfg), concurrency=cfg.concurrency, cache=f'{tmp}/cache.sqlite') as pool:
            eng = Debate(cfg, pool)
            if not lockstep: eng.lockstep = None
            t0 = time.time()
            mags = debate_questions(qs, cfg, pool, progress=False, engine=eng)
        return dict(batch_jobs=srv.calls['openai.batches.create'], model_calls=srv.model_calls, hf_generate=gens,
                    seconds=round(time.time() - t0, 2), stops=dict(Counter(m.stop_reason for m in mags)),
                    lines=[m.to_line() for m in mags])

def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--questions', type=int, default=8); ap.add_argument('--slow', type=float, default=1.0)
    ap.add_argument('--no-hf', action='store_true')
    a = ap.parse_args(argv)
    qs = load_benchmark('mmlu_pro', 'train', 'physics')[:a.questions]
    cases = [('openai_compatible student', 'compat', 0.0), (f'student {a.slow}s slow on one question', 'compat', a.slow)]
    if not a.no_hf: cases.append(('hf student (tiny model)', 'hf', 0.0))
    for label, student, slow in cases:
        run(qs[:2], False, student)  # warm-up: imports, model loading, first connections
        w, wo = run(qs, True, student, slow), run(qs, False, student, slow)
        print(f"{label}, {len(qs)} questions: MAG lines identical: {w['lines'] == wo['lines']}; stops {w['stops']}")
        for k in ('batch_jobs', 'model_calls', 'hf_generate', 'seconds'):
            print(f"  {k:12} with lockstep {w[k]!s:24} without {wo[k]}")

if __name__ == '__main__': main()
