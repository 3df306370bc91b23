"""`dnr train sft|tdpo|merge` on the tiny model, on CPU."""
import json, os, subprocess
import pytest, torch
from openai import OpenAI
from conftest import BIN, ROOT
from dnr.distill import _demo_mag, build_sft, build_tdpo
from dnr.tiny import tiny_model, serve_model
from dnr.train import train_cli

# One torch thread: on a shared 2-core machine, two spinning OpenMP threads per process slow tiny models 10-30x.
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'TQDM_DISABLE': '1'}

@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def _dnr(*args, timeout=300):
    r = subprocess.run([str(BIN / 'dnr'), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])

@pytest.fixture(scope='session')
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp('data')
    (d / 'mags.jsonl').write_text(''.join(json.dumps(_demo_mag(str(i), seed=i)) + '\n' for i in range(6)))
    build_sft(d, d / 'sft'); build_tdpo(d, d / 'tdpo', tiny_model('random'))
    build_tdpo(d, d / 'tdpo_drop', tiny_model('random'), unparsed='drop')  # nodes of unequal pair counts
    return d

def test_sft_tdpo_resume_merge_serve(data, tmp_path, capsys):
    """`dnr train sft`, then `dnr train tdpo` on its adapter, resumed from a checkpoint, merged, and the merged model served and asked.

    Budget: SFT, T-DPO, a resume, a merge and `transformers serve` of the result: the chain a user runs, each step a real training or server start."""
    model = str(tiny_model('trained'))
    s = _dnr('train', 'sft', '--config', 'configs/sft_tiny.yaml', '--model', model, '--data', str(data / 'sft'),
             '--output-dir', str(tmp_path / 'sft'))
    assert s['steps'] == 8 and s['examples'] == 42 and (tmp_path / 'sft' / 'checkpoint-8').is_dir()
    t = _dnr('train', 'tdpo', '--config', 'configs/tdpo_tiny.yaml', '--model', model, '--adapter', str(tmp_path / 'sft'),
             '--data', str(data / 'tdpo'), '--output-dir', str(tmp_path / 'tdpo'), '--max-steps', '4')
    assert t['steps'] == 4 and t['nodes'] == 12 and t['pairs'] == 48  # the unparsed student kept as rejected and (tmp_path / 'tdpo' / 'ref_logps.jsonl').exists()
    # resume from checkpoint-4 up to 8 steps (in process: same code path as the CLI)
    assert train_cli(['tdpo', '--config', 'configs/tdpo_tiny.yaml', '--model', model, '--adapter', str(tmp_path / 'sft'),
                      '--data', str(data / 'tdpo'), '--output-dir', str(tmp_path / 'tdpo'), '--resume', '--max-steps', '8']) == 0
    t2 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert t2['steps'] == 8 and (tmp_path / 'tdpo' / 'checkpoint-8').is_dir()
    assert train_cli(['merge', '--adapter', str(tmp_path / 'tdpo'), '--out', str(tmp_path / 'merged')]) == 0
    with serve_model(tmp_path / 'merged') as url:
        r = OpenAI(base_url=url, api_key='unused', max_retries=0, timeout=60).chat.completions.create(
            model=str(tmp_path / 'merged'), messages=[{'role': 'user', 'content': 'What is 2 + 3?'}], max_tokens=12, temperature=0)
    assert r.choices[0].finish_reason in ('stop', 'length') and r.usage.completion_tokens > 0

def test_trl_impl_and_bad_input(data, tmp_path, capsys):
    model = str(tiny_model('trained'))
    assert train_cli(['tdpo', '--config', 'configs/tdpo_tiny.yaml', '--model', model, '--adapter', '',
                      '--data', str(data / 'tdpo'), '--output-dir', str(tmp_path / 'trl'), '--impl', 'trl', '--max-steps', '2',
                      '--set', 'args.save_strategy=no']) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s['impl'] == 'trl' and s['steps'] == 2 and s['train_loss'] > 0
    # every node all-right or over-long: counted and reported, no crash inside TRL
    nodes = [json.loads(l) for l in open(data / 'tdpo' / 'nodes.jsonl')]
    bad = tmp_path / 'bad'; bad.mkdir()
    (bad / 'nodes.jsonl').write_text(''.join(json.dumps({**n, 'responses': [{**r, 'correct': True} for r in n['responses']]}) + '\n'
                                             for n in nodes[:3]) + json.dumps(nodes[3]) + '\n')
    assert train_cli(['tdpo', '--config', 'configs/tdpo_tiny.yaml', '--model', model, '--adapter', '', '--data', str(bad),
                      '--output-dir', str(tmp_path / 'b'), '--set', 'args.max_length=20', '--set', 'args.max_prompt_length=null']) == 2
    err = capsys.readouterr().err
    assert "no trainable nodes" in err and "'no_wrong': 3" in err and "'prompt_too_long': 1" in err, err

def test_tokenize_node_equals_trl_tokenization(data, tmp_path):
    "dnr's own chat tokenization (no private TRL helper) gives the ids TRL's DPOTrainer trains on, for every pair of the demo nodes."
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer
    from datasets import Dataset
    from dnr.distill import nodes_to_pairs
    from dnr.train import tokenize_node
    nodes = [json.loads(l) for l in open(data / 'tdpo' / 'nodes.jsonl')]
    tok = AutoTokenizer.from_pretrained(tiny_model('random'))
    ours = {n['id']: (n, tokenize_node(n, tok)) for n in nodes}
    tr = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model('random')), processing_class=tok,
                    args=DPOConfig(output_dir=str(tmp_path), report_to='none', max_length=None, use_cpu=True, bf16=False),
                    train_dataset=Dataset.from_list(nodes_to_pairs(nodes)))
    assert len(tr.train_dataset) > 10
    for row in tr.train_dataset:
        n, t = ours[row['node_id']]
        texts = [r['content'] for r in n['responses']]
        assert row['prompt_ids'] == t['prompt_ids']
        assert row['chosen_ids'] == t['response_ids'][texts.index(row['chosen'][0]['content'])]
        assert row['rejected_ids'] == t['response_ids'][texts.index(row['rejected'][0]['content'])]

@pytest.mark.parametrize('share,tol', [('responses', 1e-5), ('context', 1e-4)])
def test_same_loss_and_grads_as_trl(data, share, tol):
    "Tree-aware loss == TRL DPOTrainer's on the flat pairs (policy: random tiny model; reference: trained tiny model)."
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from dnr.train import trl_pair_loss, tree_loss, max_grad_diff
    nodes = [json.loads(l) for l in open(data / 'tdpo_drop' / 'nodes.jsonl')][:3]
    tok = AutoTokenizer.from_pretrained(tiny_model('random'))
    def fresh():
        torch.manual_seed(0)
        return (AutoModelForCausalLM.from_pretrained(tiny_model('random'), dtype=torch.float32),
                AutoModelForCausalLM.from_pretrained(tiny_model('trained'), dtype=torch.float32).eval())
    l1, g1 = trl_pair_loss(*fresh(), nodes, tok)
    l2, g2 = tree_loss(*fresh(), nodes, tok, share=share)
    assert abs(l1.item() - 0.6931) > 0.01  # policy != reference: a loss that can differ
    assert abs(l1 - l2).item() < tol and max_grad_diff(g1, g2) < tol

def test_first_step_equals_trl_with_shipped_defaults(data, tmp_path):
    """One real optimizer step with the shipped defaults (LoRA dropout 0.05, 1 node x accumulation) gives TRL
    DPOTrainer's loss and gradients (1 pair x accumulation over the same pairs): dropout off, every pair weighted alike."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer
    from datasets import Dataset
    from dnr.distill import nodes_to_pairs
    from dnr.train import LORA_DEFAULTS, TDPO_DEFAULTS, TreeDPOConfig, TreeDPOTrainer, tokenize_node
    assert LORA_DEFAULTS['lora_dropout'] == 0.05 and TDPO_DEFAULTS['per_device_train_batch_size'] == 1
    nodes = [json.loads(l) for l in open(data / 'tdpo_drop' / 'nodes.jsonl')][:3]
    tok = AutoTokenizer.from_pretrained(tiny_model('random'))
    toks = [tokenize_node(n, tok, TDPO_DEFAULTS['max_length']) for n in nodes]
    pairs = nodes_to_pairs(nodes)
    assert len({sum(t['correct']) * (len(t['correct']) - sum(t['correct'])) for t in toks}) > 1  # nodes of unequal pair counts

    class Probe(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            self.grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    def step(make, ga, tmp):
        torch.manual_seed(0)
        policy = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model('random'), dtype=torch.float32),
                                LoraConfig(task_type='CAUSAL_LM', **LORA_DEFAULTS, init_lora_weights=False))  # non-zero, like an SFT adapter
        ref = AutoModelForCausalLM.from_pretrained(tiny_model('trained'), dtype=torch.float32).eval()
        kw = {**TDPO_DEFAULTS, 'gradient_accumulation_steps': ga, 'max_steps': 1, 'max_grad_norm': 0.0, 'output_dir': str(tmp),
              'save_strategy': 'no', 'use_cpu': True, 'bf16': False, 'train_sampling_strategy': 'sequential', 'disable_tqdm': True}  # float32
        tr = make(policy, ref, kw); p = Probe(); tr.add_callback(p)
        return tr.train().training_loss, p.grads
    l1, g1 = step(lambda pol, ref, kw: DPOTrainer(model=pol, ref_model=ref, processing_class=tok, train_dataset=Dataset.from_list(pairs),
                  args=DPOConfig(**kw, precompute_ref_log_probs=True, activation_checkpointing=False)), len(pairs), tmp_path / 'trl')
    l2, g2 = step(lambda pol, ref, kw: TreeDPOTrainer(pol, TreeDPOConfig(**kw), Dataset.from_list(toks), processing_class=tok,
                  ref_model=ref), len(toks), tmp_path / 'tree')
    assert g1.keys() == g2.keys()
    gd = max((g1[k] - g2[k]).abs().max().item() for k in g1)
    print(f"loss TRL {l1:.6f}, |loss diff| {abs(l1 - l2):.1e}, max |grad diff| {gd:.1e}")
    assert abs(l1 - l2) < 1e-4 and gd < 1e-5  # float32 sums over 10 micro-batches: ~5e-6 measured

def _log_losses(out):
    "Per-step training losses recorded in the run's last checkpoint."
    ck = max(out.glob('checkpoint-*'), key=lambda p: int(p.name.split('-')[1]))
    return [h['loss'] for h in json.load(open(ck / 'trainer_state.json'))['log_history'] if 'loss' in h]

def test_two_processes_equal_one(data, tmp_path, capsys):
    """`dnr train sft|tdpo` on 2 processes under torchrun (CPU, gloo; tree and TRL T-DPO) finishes, saves one adapter,
    prints one summary line per command (rank 0's), and its losses equal a one-process run with the same global batch
    (2 processes x 2 per device = 1 process x 2 per device x 2 accumulation steps), shuffling off, float32.
    The three commands share one launch (tests/multi_train.py runs each through `dnr.cli.main`, the entry point of
    `torchrun -m dnr.cli`): a launch costs more than the training here.

    Budget: a torchrun launch of two processes (three trainings) and the same three trainings in one process, to compare losses."""
    model = str(tiny_model('trained'))
    common = ['--model', model, '--max-steps', '2', '--set', 'args.train_sampling_strategy=sequential',
              '--set', 'args.logging_steps=1', '--set', 'args.save_steps=2']
    runs = {'sft': ['train', 'sft', '--config', 'configs/sft_tiny.yaml', '--data', str(data / 'sft')]}
    for impl in ('tree', 'trl'):
        runs[impl] = ['train', 'tdpo', '--config', 'configs/tdpo_tiny.yaml', '--impl', impl, '--data', str(data / 'tdpo'),
                      '--adapter', str(tmp_path / 'sft2')]  # continues the 2-process SFT adapter
    argv = [x for name, args in runs.items() for x in ['--', *args, *common, '--output-dir', str(tmp_path / f'{name}2')]][1:]
    r = subprocess.run([str(BIN / 'torchrun'), '--standalone', '--nproc_per_node', '2', 'tests/multi_train.py', *argv],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.startswith('{"')]
    assert [s['output_dir'] for s in lines] == [str(tmp_path / f'{n}2') for n in runs], r.stdout[-3000:]  # rank 0 only
    for (name, args), s2 in zip(runs.items(), lines):
        out2, out1 = tmp_path / f'{name}2', tmp_path / f'{name}1'
        assert s2['steps'] == 2 and (out2 / 'adapter_model.safetensors').exists()
        assert [p.parent for p in out2.rglob('adapter_model.safetensors') if 'checkpoint-' not in str(p)] == [out2]
        assert train_cli([*args[1:], *common, '--output-dir', str(out1), '--set', 'args.gradient_accumulation_steps=2']) == 0
        s1 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        l1, l2 = _log_losses(out1), _log_losses(out2)
        with capsys.disabled(): print(name, 'losses, 1 process:', l1, 'max |diff| 2 vs 1:', max(abs(a - b) for a, b in zip(l1, l2)))
        assert len(l1) == len(l2) == 2 and max(abs(a - b) for a, b in zip(l1, l2)) < 1e-4
        assert abs(s1['train_loss'] - s2['train_loss']) < 1e-4

@pytest.mark.parametrize('name', ['sft_paper', 'sft_tiny', 'tdpo_paper', 'tdpo_tiny'])
def test_shipped_configs_validate(name):
    from dnr.train import TrainConfig, load_train_config
    c = load_train_config(ROOT / 'configs' / f'{name}.yaml', name.split('_')[0])
    assert isinstance(c, TrainConfig) and c.impl == 'tree' and c.args

@pytest.mark.parametrize('name,old,new,field', [
    ('sft_paper', '\nlora:', '\nloar:', "field 'loar': unknown key (did you mean 'lora'?)"),  # a misspelt block: was ignored
    ('sft_paper', '  r: 16', '  rr: 16', "field 'lora.rr': unknown LoRA setting (did you mean 'r'?)"),  # was a TypeError
    ('sft_tiny', '\nargs:', '\nadapter: runs/x\nargs:', "field 'adapter': a T-DPO setting"),
    ('tdpo_paper', '  learning_rate:', '  learning_rat:', "field 'args.learning_rat': unknown setting of TreeDPOConfig (did you mean 'learning_rate'?)"),
    ('tdpo_paper', '  beta: 0.1', '  beta: 0.1\n  lora_dropout: 0.0', "field 'args.lora_dropout': unknown setting"),
    ('tdpo_tiny', 'impl: tree', 'impl: tlr', "field 'impl': Input should be 'tree' or 'trl'"),
    ('tdpo_tiny', '\nargs:', '\nlora: {r: 8, alpha: 16}\nargs:', "field 'lora.alpha': unknown LoRA setting"),
])
def test_bad_training_configs_named(name, old, new, field, tmp_path, capsys):
    "A bad key at any level of a shipped config: exit 2, one error line naming the file and the field, nothing written."
    text = (ROOT / 'configs' / f'{name}.yaml').read_text()
    assert text.count(old) == 1
    bad = tmp_path / f'{name}.yaml'; bad.write_text(text.replace(old, new))
    out = tmp_path / 'out'
    assert train_cli([name.split('_')[0], '--config', str(bad), '--model', str(tiny_model('trained')),
                      '--data', str(tmp_path / 'no-data'), '--output-dir', str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dnr train {name.split('_')[0]}: error: {bad}: {field}") and '\n' not in err, err
    assert not out.exists()

def test_rpo_method_trains_from_the_registry(data, tmp_path, capsys):
    """`dnr train rpo` (a registered method): T-DPO's trainer with TRL's `loss_type: [sigmoid, sft]`; it logs both terms.

    Budget: a real RPO training (reference log-probabilities, then two steps) on the tiny model."""
    from dnr.methods import get_method
    model = str(tiny_model('trained'))
    assert get_method('rpo').starts_from == 'sft' and get_method('rpo').paper_key == 'dnr_rpo'
    assert train_cli(['rpo', '--config', 'configs/tdpo_tiny.yaml', '--model', model, '--adapter', '', '--data', str(data / 'tdpo'),
                      '--output-dir', str(tmp_path / 'rpo'), '--max-steps', '2', '--set', 'args.logging_steps=1',
                      '--set', 'args.save_strategy=no']) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s['stage'] == 'rpo' and s['steps'] == 2 and (tmp_path / 'rpo' / 'adapter_model.safetensors').exists()
    assert s['train_loss'] > 1  # DPO starts at log 2 (0.69); the NLL term adds nats per token
    assert train_cli(['rpo', '--config', 'configs/tdpo_tiny.yaml', '--model', model, '--data', str(data / 'tdpo'), '--output-dir',
                      str(tmp_path / 'bad'), '--set', 'args.loss_weights=[1.0]']) == 2  # one weight per term, named before training
    assert 'one weight per loss_type' in capsys.readouterr().err
