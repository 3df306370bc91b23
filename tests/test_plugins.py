"""A protocol and a training method from outside dnr: written in a module of their own in a temporary folder, found
through the entry-point groups `dnr.protocols` and `dnr.methods` (a tiny installed-package record on PYTHONPATH),
with no edit to any file of the repository."""
import json, os, subprocess, sys, textwrap
from pathlib import Path

import pytest, yaml

from conftest import BIN, ROOT
from dnr.servers import ScriptedServer

PROTOCOL = '''
"A user's debate protocol, outside dnr."
from dnr.data import round0_prompt
from dnr.protocols import Protocol, register_protocol

@register_protocol
class ToyVote(Protocol):
    "Every agent answers once, alone; the majority wins."
    name, stop_reasons, round_limit = 'toy_vote', ('single_round',), 0
    def shown(self, q, r, rounds): return None, []
    def prompt(self, q, agent, r, rounds, context): return round0_prompt(q)
    def stop(self, rnd): return 'single_round'
    def plan_prompts(self, q, text): return round0_prompt(q), round0_prompt(q), ''
'''

METHOD = '''
"A user's training method, outside dnr: SFT with its own learning rate."
from dnr.methods import register_method
from dnr.train import trainer_method

register_method(trainer_method('sft_toylr', 'sft', 'SFT, learning rate 3e-4', {'learning_rate': 3e-4}))
'''

DRIVER = '''
"Runs `dnr` commands (JSON list of argument lists on stdin) in one process; prints each one's exit status and output."
import contextlib, io, json, sys
from dnr.cli import main
out = []
for argv in json.load(sys.stdin):
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e): rc = main(argv)
    out.append(dict(rc=rc, out=o.getvalue(), err=e.getvalue()))
print(json.dumps(out))
'''


@pytest.fixture(scope='module')
def plugin(tmp_path_factory):
    "A folder holding the plug-in module and its package record (entry_points.txt), and the environment that finds it."
    site = tmp_path_factory.mktemp('site')
    (site / 'toy_vote.py').write_text(PROTOCOL); (site / 'toy_method.py').write_text(METHOD); (site / 'driver.py').write_text(DRIVER)
    info = site / 'toy_dnr_plugin-0.1.dist-info'; info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: toy-dnr-plugin\nVersion: 0.1\n')
    (info / 'entry_points.txt').write_text('[dnr.protocols]\ntoy_vote = toy_vote\n\n[dnr.methods]\nsft_toylr = toy_method\n')
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(site), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep),
           'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}
    return site, env


def dnr_commands(env, site, *commands, timeout=600) -> list[dict]:
    "Run `dnr` commands in one subprocess (one import of dnr and torch); each one's `rc`, `out` and `err`."
    p = subprocess.run([sys.executable, str(site / 'driver.py')], input=json.dumps([[str(a) for a in c] for c in commands]),
                       capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_a_protocol_and_a_method_from_outside_dnr(tmp_path, plugin):
    """The toy protocol debates scripted agents (`dnr debate`), refuses a config it cannot honour before any call,
    and its MAGs keep its own stop reason and read back (`dnr show`, `dnr build sft` / `tdpo`); the toy method trains
    the tiny student 2 steps (`dnr train sft_toylr`) with its own learning rate, and its summary names it.

    Budget: `dnr` subprocesses that import dnr (one of them torch) with the plugin installed, and a training."""
    from dnr.data import load_benchmark
    from dnr.tiny import tiny_model
    site, env = plugin
    assert not any(n in f.read_text() for f in (ROOT / 'dnr').glob('*.py') for n in ('toy_vote', 'sft_toylr'))  # nothing of it in dnr
    qs = load_benchmark('mmlu_pro', 'train', 'physics')[:3]

    def voter(provider, req):
        q = next(q for q in qs if q.question[:80] in req['messages'][-1]['content'])
        ans = q.gold if req['model'] != 'lost' else ('A' if q.gold != 'A' else 'B')
        return f"### Answer\n[scripted] {req['model']} on {q.id}.\nFinal answer: {ans}"

    run = tmp_path / 'run'
    with ScriptedServer(voter) as srv:
        agents = [dict(name=n, role='student' if n == 'lost' else 'teacher', provider='openai_compatible', model=n,
                       base_url=srv.openai_url) for n in ('sure', 'also-sure', 'lost')]
        cfg = dict(dataset=dict(name='mmlu_pro', category='physics', split='train'), agents=agents, protocol='toy_vote', limit=3)
        (tmp_path / 'two.yaml').write_text(yaml.safe_dump({**cfg, 'max_rounds': 2}))
        (tmp_path / 'cfg.yaml').write_text(yaml.safe_dump({**cfg, 'max_rounds': 0}))
        refused, deb, show, sft, tdpo, train = dnr_commands(env, site,
            ['debate', '--config', tmp_path / 'two.yaml', '--out', tmp_path / 'refused', '--no-progress'],
            ['debate', '--config', tmp_path / 'cfg.yaml', '--out', run, '--no-progress'],
            ['show', run, qs[0].id],
            ['build', 'sft', '--run', run, '--out', tmp_path / 'sft'],
            ['build', 'tdpo', '--run', run, '--out', tmp_path / 'tdpo'],
            ['train', 'sft_toylr', '--model', tiny_model('trained'), '--data', tmp_path / 'sft', '--output-dir', tmp_path / 'toylr',
             '--max-steps', 2, '--set', 'args.save_strategy=no', '--set', 'args.per_device_train_batch_size=2',
             '--set', 'args.gradient_accumulation_steps=1'])
        calls = srv.model_calls
    assert refused['rc'] == 2 and 'toy_vote runs at most 0 rounds after round 0' in refused['err'], refused
    assert not (tmp_path / 'refused').exists()
    assert deb['rc'] == 0 and calls == 9, (deb['err'][-3000:], calls)  # 3 questions x 3 agents, none for the refused config
    s = json.loads(deb['out'].strip().splitlines()[-1])
    assert s['stop_reasons'] == {'single_round': 3} and s['finished'] == 3, s
    mags = [json.loads(l) for l in (run / 'mags.jsonl').read_text().splitlines()]
    assert {m['question_id']: (m['protocol'], m['consensus']) for m in mags} == {q.id: ('toy_vote', q.gold) for q in qs}  # in finishing order
    assert show['rc'] == 0 and 'stopped: single_round' in show['out'] and 'protocol toy_vote: max_rounds 0' in show['out'], show
    for b, count in ((sft, 'examples'), (tdpo, 'pairs')):
        assert b['rc'] == 0 and json.loads(b['out'].strip().splitlines()[-1])[count] > 0, b
    assert train['rc'] == 0, train['err'][-3000:]
    t = json.loads(train['out'].strip().splitlines()[-1])
    assert (t['stage'], t['steps']) == ('sft_toylr', 2) and (tmp_path / 'toylr' / 'adapter_model.safetensors').exists(), t
    import torch
    assert torch.load(tmp_path / 'toylr' / 'training_args.bin', weights_only=False).learning_rate == 3e-4
    # without the plug-in, the name is unknown and the error says how to register one
    p = subprocess.run([str(BIN / 'dnr'), 'debate', '--config', str(tmp_path / 'cfg.yaml'), '--plan'], capture_output=True, text=True,
                       env={k: v for k, v in env.items() if k != 'PYTHONPATH'}, timeout=300, cwd=ROOT)
    assert p.returncode == 2 and "unknown protocol 'toy_vote'" in p.stderr and "entry-point group 'dnr.protocols'" in p.stderr, p.stderr[-2000:]
