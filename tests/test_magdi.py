"""MAGDi (nbs/05b_magdi.ipynb, nbs/05c_magdi_train.ipynb): one training step's three loss terms against the definitions,
the plain-torch GCN against torch-geometric's GCNConv, and `dnr build magdi` / `dnr train magdi` with the shipped configs."""
import ast, json
from pathlib import Path
import pytest, torch
import torch.nn.functional as F
from conftest import ROOT, dnr, last_json
from dnr.debate import debate_into, load_debate_config, offline_config, run_sync
from dnr.magdi import build_magdi, magdi_edges
from dnr.magdi_train import GCN, GCNLayer, gcn_adjacency, load_magdi_config, make_magdi_trainer, MAGDiConfig, MAGDI_DEFAULTS, MAGDI_LORA
from dnr.tiny import tiny_model

# MAGDi's construct_graph(), (source, target), written out again here
EDGES = [[0, 1], [1, 2], [2, 3], [4, 5], [5, 6], [6, 7], [8, 9], [9, 10], [10, 11], [0, 5], [5, 8], [1, 4], [1, 8], [0, 9],
         [4, 9], [2, 5], [2, 9], [1, 6], [6, 9], [1, 10], [5, 10], [3, 6], [3, 10], [2, 7], [7, 10], [2, 11], [6, 11]]

@pytest.fixture(scope='session')
def data(tmp_path_factory):
    """MAGDi data built from a replayed debate on 16 physics questions (real recorded answers).

    Budget: a debate replayed on 16 questions and MAGDi's graph data built from it, once per worker for the module."""
    d = tmp_path_factory.mktemp('magdi')
    run_sync(debate_into(load_debate_config(offline_config('physics', limit=16)), d / 'deb', progress=False))
    build_magdi(d / 'deb', d / 'data')
    return d

def _tiny_cfg(data, out, **args):
    return dict(model=str(tiny_model('trained')), data=str(data / 'data'), output_dir=str(out),
                lora={'r': 8, 'lora_alpha': 16, 'lora_dropout': 0.0},
                args={'per_device_train_batch_size': 4, 'gcn_hidden': 16, 'seed': 0, 'disable_tqdm': True, **args})

def test_one_step_loss_terms_equal_the_definitions(data, tmp_path):
    "NLL, node cross-entropy and margin ranking of one micro-batch (3 real pairs + 1 'NA' pair), computed again here from the definitions."
    tr, _ = make_magdi_trainer(_tiny_cfg(data, tmp_path / 'o'))
    m = tr.model; m.train()
    torch.manual_seed(1)
    with torch.no_grad():  # a LoRA that changes the student, and heads as trained ones would be: not their initial zeros
        for n, p in m.named_parameters():
            if 'lora_B' in n or n.endswith('bias'): p.normal_(0, 0.05)
    rows = tr.train_dataset
    real = [r for r in rows if len(r['neg_ids']) > 5]; na = [r for r in rows if len(r['neg_ids']) <= 5]
    assert len(real) >= 3 and na, (len(real), len(na))
    batch = tr.data_collator(real[:3] + na[:1])
    torch.manual_seed(7); t = m(**batch)
    torch.manual_seed(7); loss = tr.compute_loss(m, batch)
    assert abs(loss.item() - (t['nll'] + t['node'] + 0.1 * t['mr']).item()) < 1e-6  # alpha, beta, gamma = 1, 1, 0.1

    dec = m.decoder
    with torch.no_grad():
        pos, pmask, neg, nmask = batch['pos_input_ids'], batch['pos_attention_mask'], batch['neg_input_ids'], batch['neg_attention_mask']
        po = dec(input_ids=pos, attention_mask=pmask, output_hidden_states=True)
        no = dec(input_ids=neg, attention_mask=nmask, output_hidden_states=True)
        # NLL: labels are the input ids (prompt tokens included), padding ignored; token j is predicted at j - 1
        lp = po.logits.float().log_softmax(-1)
        terms = [-lp[b, j - 1, pos[b, j]] for b in range(len(pos)) for j in range(1, pos.shape[1]) if pmask[b, j]]
        nll = torch.stack(terms).mean()
        # pooling: mean of the last hidden states weighted by mask * position (1..L) in the padded row
        def pool(h, mask):
            out = []
            for b in range(len(h)):
                w = [(j + 1) * int(mask[b, j]) for j in range(h.shape[1])]
                out.append(sum(w[j] * h[b, j].float() for j in range(h.shape[1])) / sum(w))
            return torch.stack(out)
        ps, ns = pool(po.hidden_states[-1], pmask), pool(no.hidden_states[-1], nmask)
        keep = [b for b in range(len(neg)) if int(nmask[b].sum()) > 5]  # the 'NA' filler pair is dropped
        assert keep == [0, 1, 2]
        score = lambda x: torch.tanh(m.mlp2.weight @ torch.relu(m.mlp1.weight @ x + m.mlp1.bias) + m.mlp2.bias)
        mr = sum(max(0.0, 1.0 - (score(ps[b]) - score(ns[b])).item()) for b in keep) / len(keep)
    # GCN: D^-1/2 (A + I) D^-1/2 with messages source -> target, degree = in-degree + 1
    deg = [1 + sum(t == v for _, t in EDGES) for v in range(12)]
    A = torch.zeros(12, 12)
    for v in range(12): A[v, v] = 1 / deg[v]
    for s, t_ in EDGES: A[t_, s] = (deg[t_] * deg[s]) ** -0.5
    x = batch['graph_x'].float()
    c1, c2 = m.gcn.conv1, m.gcn.conv2
    h1 = torch.relu(torch.stack([A @ (x[g] @ c1.weight.T) + c1.bias for g in range(len(x))]))
    torch.manual_seed(7); h1 = F.dropout(h1, 0.5)  # dropout 0.5, with autograd on as in training: the model's mask (its only random draw)
    h2 = torch.stack([A @ (h1[g] @ c2.weight.T) + c2.bias for g in range(len(x))]).log_softmax(-1)
    y = batch['graph_y']
    node = -torch.stack([h2[g, v, y[g, v]] for g in range(len(y)) for v in range(12)]).mean()
    for name, mine in (('nll', nll.item()), ('node', node.item()), ('mr', mr)):
        assert abs(t[name].item() - mine) < 1e-5, (name, t[name].item(), mine)
    assert t['mr'].item() > 0 and t['node'].item() > 0

def test_gcn_equals_torch_geometric():
    "The plain-torch GCN layer and 2-layer GCN equal torch-geometric's GCNConv on MAGDi's graph (both edge lists)."
    import torch_geometric  # noqa: F401 (a dev requirement: this equality is what lets dnr use its own plain-torch GCN)
    from torch_geometric.data import Batch, Data
    from torch_geometric.nn import GCNConv
    torch.manual_seed(0)
    for kind in ('magdi', 'forward'):
        ei = torch.tensor(magdi_edges(kind)).t().contiguous()
        conv1, conv2 = GCNConv(32, 16), GCNConv(16, 3)
        with torch.no_grad(): conv1.bias.normal_(); conv2.bias.normal_()
        ours = GCN(32, 16, 3, dropout=0.0, edges=kind)
        with torch.no_grad():
            for a, b in ((ours.conv1, conv1), (ours.conv2, conv2)): a.weight.copy_(b.lin.weight); a.bias.copy_(b.bias)
        x = torch.randn(5, 12, 32)
        bt = Batch.from_data_list([Data(x=x[i], edge_index=ei) for i in range(5)])
        ref = F.log_softmax(conv2(torch.relu(conv1(bt.x, bt.edge_index)), bt.edge_index), dim=1).reshape(5, 12, 3)
        assert (ours(x) - ref).abs().max() < 1e-5
        assert (GCNLayer(32, 16).to(x).weight.shape == conv1.lin.weight.shape)
    # GCNConv does not symmetrise: the literal and the forward edge lists give different outputs
    assert not torch.allclose(gcn_adjacency(magdi_edges('magdi')), gcn_adjacency(magdi_edges('forward')))

def test_shipped_configs_hold_magdis_settings():
    c = load_magdi_config(ROOT / 'configs' / 'magdi_paper.yaml')
    args = MAGDiConfig(**{**MAGDI_DEFAULTS, **c.args, 'output_dir': 'x', 'use_cpu': True})
    assert c.model == 'mistralai/Mistral-7B-Instruct-v0.2' and {**MAGDI_LORA, **c.lora} == MAGDI_LORA
    assert (args.learning_rate, args.num_train_epochs, args.warmup_steps, args.lr_scheduler_type, args.weight_decay) == (5e-6, 10, 100, 'linear', 0.0)
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 16
    assert (args.alpha, args.beta, args.gamma, args.margin, args.gcn_hidden, args.gcn_dropout) == (1.0, 1.0, 0.1, 1.0, 512, 0.5)
    assert (args.edges, args.graph_of_pair, args.seed) == ('magdi', 'cycle', 42)
    assert load_magdi_config(ROOT / 'configs' / 'magdi_tiny.yaml').args['max_steps'] == 8

def test_build_and_train_cli_log_three_terms_and_resume(data, tmp_path):
    """`dnr build magdi` (the first 6 of the 16 debates, `--debates`), then `dnr train magdi --config configs/magdi_tiny.yaml`
    (4 of its steps, a checkpoint every 2): the log has the three terms, only the adapter is kept, and a rerun resumes.

    Budget: two `dnr train magdi` processes (each imports torch, transformers, TRL and loads the tiny model; a MAGDi step encodes every node of its graphs): 4 steps with two checkpoints, then a resume."""
    s = last_json(dnr('build', 'magdi', '--run', data / 'deb', '--out', tmp_path / 'd', '--debates', 6))
    assert s['mags'] == 6 and s['pairs'] > 0
    tiny = tiny_model('trained')
    train = lambda *more: dnr('train', 'magdi', '--config', 'configs/magdi_tiny.yaml', '--set', f'model={tiny}',
                              '--data', tmp_path / 'd', '--output-dir', tmp_path / 'o', '--set', 'args.save_steps=2',
                              '--set', 'args.logging_steps=1', *more, timeout=900)
    p = train('--max-steps', '4')
    logs = [ast.literal_eval(l) for l in p.stdout.splitlines() if l.startswith("{'loss'")]
    assert len(logs) == 4, p.stdout[-2000:]
    for l in logs:
        v = {k: float(l[k]) for k in ('loss', 'nll', 'node', 'mr')}
        assert abs(v['loss'] - (v['nll'] + v['node'] + 0.1 * v['mr'])) < 2e-3 * v['loss'], l
    out = tmp_path / 'o'
    s = last_json(p)
    assert s['steps'] == 4 and {'nll', 'node', 'mr'} <= set(s)
    assert (out / 'adapter_model.safetensors').exists() and not (out / 'magdi_heads.pt').exists()
    assert sorted(c.name for c in out.glob('checkpoint-*')) == ['checkpoint-2', 'checkpoint-4']
    assert (out / 'checkpoint-2' / 'magdi_heads.pt').exists() and (out / 'checkpoint-2' / 'adapter_model.safetensors').exists()
    p = train('--resume', '--max-steps', '5')
    assert last_json(p)['steps'] == 5
    logs = [ast.literal_eval(l) for l in p.stdout.splitlines() if l.startswith("{'loss'")]
    assert len(logs) == 1 and float(logs[0]['epoch']) > 0  # step 5 only: it went on from checkpoint-4

def test_bad_input_is_named(data, tmp_path):
    "A typo in a MAGDi config, an agent the MAGs lack and a config without its model are refused by name, before anything is written."
    from conftest import dnr_in_process
    bad = tmp_path / 'bad.yaml'
    bad.write_text((ROOT / 'configs' / 'magdi_tiny.yaml').read_text().replace('gcn_hidden:', 'gcn_hiden:'))
    p = dnr_in_process('train', 'magdi', '--config', bad, '--set', f'model={tiny_model("trained")}')
    assert p.returncode == 2 and "field 'args.gcn_hiden'" in p.stderr and "did you mean 'gcn_hidden'" in p.stderr, p.stderr
    p = dnr_in_process('build', 'magdi', '--run', data / 'deb', '--out', tmp_path / 'x', '--agents', 'gpt-4o', 'gemini', 'claude')
    assert p.returncode == 2 and "agents ['claude'] not in this MAG" in p.stderr and not (tmp_path / 'x').exists()
    p = dnr_in_process('train', 'magdi', '--config', ROOT / 'configs' / 'magdi_tiny.yaml', '--data', data / 'data', '--output-dir', tmp_path / 'y')
    assert p.returncode == 2 and "field 'model' is not set (set it in the YAML or with --set model=" in p.stderr and not (tmp_path / 'y').exists(), p.stderr

def test_tiny_pipeline_trains_and_evaluates_magdi(tmp_path):
    """`train: [magdi]` in a pipeline, offline end to end: replayed debate -> build/magdi -> magdi -> eval (base, magdi) -> figures; a changed MAGDi setting is then refused by name.

    Budget: a pipeline end to end: debate, MAGDi data, MAGDi training, two evaluations, figures."""
    from dnr.demo import demo_config
    from dnr.pipeline import load_pipeline_config, run_pipeline
    base = demo_config(tmp_path / 'x', questions=12, eval_questions=4, steps=2).model_dump()
    d = {k: v for k, v in base.items() if k not in ('sft', 'tdpo')}
    magdi = {'lora': {'r': 8, 'lora_alpha': 16, 'lora_dropout': 0.0},
             'args': {'max_steps': 2, 'per_device_train_batch_size': 4, 'gradient_accumulation_steps': 1, 'warmup_steps': 0,
                      'learning_rate': 1e-3, 'gcn_hidden': 16, 'logging_steps': 1, 'disable_tqdm': True, 'seed': 0}}
    cfg = load_pipeline_config({**d, 'out': str(tmp_path / 'run'), 'train': ['magdi'], 'magdi': magdi,
                                'eval': {**d['eval'], 'models': ['base', 'magdi']}, 'figures': True})
    res = run_pipeline(cfg, progress=False, log=lambda *a: None)
    run = tmp_path / 'run'
    assert res['build_magdi']['mags'] == 12 and res['magdi']['steps'] == 2 and {'nll', 'node', 'mr'} <= set(res['magdi'])
    assert (run / 'magdi' / 'adapter_model.safetensors').exists() and not (run / 'sft').exists()
    ev = {w: json.loads((run / 'eval' / w / 'summary.json').read_text()) for w in ('base', 'magdi')}
    tags = ev['magdi']['tags']
    assert tags['method'] == 'magdi' and tags['stage'] == 'magdi' and tags['n_debates'] == 12
    # each student graded on its own prompt: MAGDi's frame and reading for the MAGDi student, D&R's for the base
    assert (ev['magdi']['prompt'], ev['magdi']['extraction'], ev['base']['prompt'], ev['base']['extraction']) == ('magdi', 'magdi', 'dnr', 'dnr')
    first = json.loads((run / 'eval' / 'magdi' / 'predictions.jsonl').read_text().splitlines()[0])
    assert set(first['extractions']) >= {'magdi', 'dnr'} and "MAGDi's prompt" not in ev['magdi']['label']
    assert (run / 'figures').exists()
    # eval.prompt: dnr grades every student on D&R's prompt: the MAGDi evaluation is then made from other inputs (refused
    # by name), and a new run names the prompt in its label; the base evaluation stays done
    dnr_prompt = {**cfg.model_dump(), 'eval': {**cfg.eval.model_dump(), 'prompt': 'dnr'}}
    with pytest.raises(ValueError, match=r"stage 'eval_magdi'.*field 'prompt': 'magdi' then, '\(unset\)' now"):
        run_pipeline(load_pipeline_config(dnr_prompt), progress=False, log=lambda *a: None)
    logs = []
    run_pipeline(load_pipeline_config(dnr_prompt), progress=False, log=logs.append, rerun_from='eval_magdi')
    again = json.loads((run / 'eval' / 'magdi' / 'summary.json').read_text())
    assert again['prompt'] == 'dnr' and again['label'].endswith(", D&R's prompt)"), again['label']
    assert [l.stage for l in logs if getattr(l, 'event', None) == 'running'] == ['eval_magdi', 'figures']
    with pytest.raises(ValueError, match=r"eval.self_reflect: the magdi student is evaluated with prompt 'magdi'"):
        load_pipeline_config({**cfg.model_dump(), 'eval': {**cfg.eval.model_dump(), 'self_reflect': True}})
    with pytest.raises(ValueError, match=r"unknown prompt 'mad'"):
        load_pipeline_config({**cfg.model_dump(), 'eval': {**cfg.eval.model_dump(), 'prompt': 'mad'}})
    changed = load_pipeline_config({**cfg.model_dump(), 'magdi': {**magdi, 'args': {**magdi['args'], 'gamma': 0.2}}})
    with pytest.raises(ValueError, match=r"magdi.*args\.gamma"): run_pipeline(changed, progress=False, log=lambda *a: None)

def test_figures_place_magdi_runs_beside_the_paper(tmp_path):
    "Finished magdi_physics and MAGDi data-scale students (evaluations made of real recorded answers): `dnr figures` puts them beside 20.00, in Table 1's MAGDi row and in the data-scale figure's MAGDi series."
    import subprocess
    from conftest import BIN
    from dnr.data import load_benchmark, load_recorded_answers
    from dnr.distill import _demo_mag
    from dnr.eval import ReplayBackend, evaluate
    from dnr.pipeline import eval_tags, load_pipeline_config
    from dnr.report import load_runs, plot_data_scale
    rec = load_recorded_answers()
    resp = lambda m: dict(zip(rec[rec.model == m].question_id, rec[rec.model == m].response))
    qs = load_benchmark('mmlu_pro:physics', 'test')
    runs = tmp_path / 'runs' / 'paper'
    deb = runs / 'table1_physics' / 'debate'; deb.mkdir(parents=True)
    (deb / 'mags.jsonl').write_text(''.join(json.dumps(_demo_mag(str(i), seed=i)) + '\n' for i in range(400)))
    acc = {}
    for name, model in (('magdi_physics', 'gemini-1.5-pro-002'), ('magdi_data_scale_100', 'deepseek-chat-v2'), ('magdi_data_scale_300', 'llama-3.1-70b-instruct')):
        cfg = load_pipeline_config(ROOT / 'configs' / 'paper' / f'{name}.yaml', out=str(runs / name), debate_from=str(deb))
        s = evaluate(qs, ReplayBackend(resp(model)), runs / name / 'eval' / 'magdi', progress=False, label=f'magdi ({name})',
                     tags=eval_tags(cfg, 'magdi'))
        acc[name] = 100 * s['accuracy']
        assert s['n'] >= 300 and s['tags']['method'] == 'magdi' and s['tags']['n_debates'] == {'magdi_physics': 400, 'magdi_data_scale_100': 100, 'magdi_data_scale_300': 300}[name]
    r = subprocess.run([str(BIN / 'dnr'), 'figures', str(runs), '--out', str(tmp_path / 'fig')], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    md = (tmp_path / 'fig' / 'experiments.md').read_text()
    assert f"| magdi_physics | magdi | MMLU-Pro Physics | 20.00 | {acc['magdi_physics']:.2f} |" in md, md
    assert f"| magdi_data_scale_100 | magdi | MMLU-Pro Physics | not published | {acc['magdi_data_scale_100']:.2f} |" in md
    assert '| magdi_cs | magdi | MMLU-Pro CS | 22.93 | — |' in md and '| magdi_data_scale_974 | magdi | MMLU-Pro Physics | 20.00 | — |' in md
    t1 = (tmp_path / 'fig' / 'table1.md').read_text()
    assert f"| ours | MAGDi (ours) | – | {acc['magdi_physics']:.2f} |" in t1, t1
    fig = plot_data_scale(load_runs([runs])[0])
    series = {c.get_label(): c.lines[0] for c in fig.axes[0].containers}
    assert list(series) == ['ours: magdi']  # one series, drawn at its numbers of debates
    test_x = [round(v) for v in series['ours: magdi'].get_xdata()]
    assert test_x == [100, 300, 400], test_x
    assert [round(v, 6) for v in series['ours: magdi'].get_ydata()] == [round(acc[k], 6) for k in ('magdi_data_scale_100', 'magdi_data_scale_300', 'magdi_physics')]
