"""Why MAGDi stays at chance in the miniature: its row trained with MAGDi's NLL (whole node text, `nll_span: text`)
and with the NLL on the answer span only (`nll_span: answer`), pinned CPU paths, graded with MAGDi's prompt and
reading; writes `nbs/magdi_nll_experiment.json`, which `nbs/05c_magdi_train.ipynb` renders and checks.

    nice -n 10 python dev/mini_magdi_nll.py --runs /path/to/runs/mini_seeds --seeds 0 1

`--runs` holds finished miniatures (`python -m dnr.mini`), one `seed{N}` folder each: their built MAGDi data
(`data/magdi`) is trained on, so nothing is re-debated. Without it the seed's debate and data are built here. The
`text` row is the miniature's own MAGDi row (`eval/magdi`, the same configuration and pinned paths), read from
there unless `--retrain-text`. The record is rewritten after each row, so a stopped run keeps what it finished.
"""
from __future__ import annotations
import argparse, dataclasses, json, os, subprocess, sys, time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPANS = ('text', 'answer')


def magdi_data(runs: Path | None, seed: int, work: Path, n_train: int) -> Path:
    "The seed's built MAGDi data: from a finished miniature under `runs`, else debated and built here."
    from dnr.mini import MINI_DATA, mags_in_question_order, mini_debate
    if runs is not None and (runs / f'seed{seed}' / 'data' / 'magdi' / 'pairs.jsonl').exists(): return runs / f'seed{seed}' / 'data' / 'magdi'
    from dnr.tiny import tiny_model
    mini_debate(work / 'debate', n_train, seed)
    mags = mags_in_question_order(work / 'debate', work / 'data' / 'mags.jsonl')
    MINI_DATA['magdi'](mags, work / 'data' / 'magdi', str(tiny_model('trained')))
    return work / 'data' / 'magdi'


def finished_row(runs: Path, seed: int):
    "The miniature's own MAGDi row of `seed` (trained with `nll_span: text`): its evaluation summary, predictions and training summary."
    d = runs / f'seed{seed}'
    if not (d / 'eval' / 'magdi' / 'summary.json').exists(): return None
    preds = [json.loads(l) for l in (d / 'eval' / 'magdi' / 'predictions.jsonl').read_text().splitlines()]
    return json.loads((d / 'eval' / 'magdi' / 'summary.json').read_text()), preds, json.loads((d / 'summary.json').read_text())['train']['magdi']


def token_counts(data: Path) -> dict:
    "Mean tokens per positive text of the seed's MAGDi data under each `nll_span` (the tiny student's tokenizer, chat text)."
    from transformers import AutoTokenizer
    from dnr.magdi_train import magdi_rows
    from dnr.tiny import tiny_model
    tok = AutoTokenizer.from_pretrained(tiny_model('trained'))
    graphs, pairs = ([json.loads(l) for l in (data / f).read_text().splitlines()] for f in ('graphs.jsonl', 'pairs.jsonl'))
    out = {}
    for span in SPANS:
        rows = magdi_rows(graphs, pairs, tok, nll_span=span)
        out[span] = round(sum(sum(i != -100 for i in r['pos_labels']) for r in rows) / len(rows), 2)
    return dict(positives=len(pairs), mean_labelled_tokens=out)


def run(a, save) -> dict:
    from dnr.codebook import load_codebook
    from dnr.eval import bootstrap_ci
    from dnr.mini import MINI_ARGS, MINI_LORA, MINI_METHODS, MINI_STEPS, evaluate_method, table_rows, train_method
    from dnr.tiny import cpu_paths, tiny_model
    student, qs = tiny_model('trained'), load_codebook('test', a.n_test)
    magdi = next(m for m in MINI_METHODS if m.name == 'magdi')
    rec = dict(config=dict(method='dnr.mini MINI_METHODS magdi', args={**MINI_ARGS, 'max_steps': MINI_STEPS, **magdi.args}, lora=MINI_LORA,
                           n_test=a.n_test, prompt=magdi.prompt, spans=list(SPANS), data=('finished miniatures (python -m dnr.mini), data/magdi'
                                                                                         if a.runs else 'debated and built here'), cpu=cpu_paths()),
               rows=[], seconds={})
    for sd in a.seeds:
        data = magdi_data(Path(a.runs) if a.runs else None, sd, Path(a.out) / f'seed{sd}', 300)
        rec.setdefault('tokens', {})[str(sd)] = token_counts(data)
        for span in SPANS:
            m = dataclasses.replace(magdi, name=f'magdi_nll_{span}', args={**magdi.args, 'nll_span': span})
            out = Path(a.out) / f'seed{sd}' / m.name
            t = time.time()
            if span == 'text' and a.runs and not a.retrain_text and (done := finished_row(Path(a.runs), sd)):
                (ev, preds, tr), source = done, "the finished miniature's magdi row"
            elif a.reuse and (out.parent / 'eval' / m.name / 'summary.json').exists():  # trained and evaluated by an earlier invocation
                ev = json.loads((out.parent / 'eval' / m.name / 'summary.json').read_text())
                preds = [json.loads(l) for l in (out.parent / 'eval' / m.name / 'predictions.jsonl').read_text().splitlines()]
                old = a.first
                tr = (json.loads((out / 'train_summary.json').read_text()) if (out / 'train_summary.json').exists() else
                      next(dict(train_loss=r['train_loss']) for r in old['rows'] if (r['seed'], r['nll_span']) == (sd, span)))
                source, rec['seconds'][f'seed{sd} {span}'] = 'trained here', old['seconds'][f'seed{sd} {span}']
            else:
                tr = train_method(m, student, data, out, MINI_STEPS, {}, sd)
                (out / 'train_summary.json').write_text(json.dumps(tr, default=str))
                ev = evaluate_method(student, out, qs, out.parent / 'eval' / m.name, prompt=m.prompt)
                preds = [json.loads(l) for l in (out.parent / 'eval' / m.name / 'predictions.jsonl').read_text().splitlines()]
                source = 'trained here'
                rec['seconds'][f'seed{sd} {span}'] = round(time.time() - t, 1)
            top, n_top = Counter(p['answer'] for p in preds).most_common(1)[0]
            lenient = [float(p['extractions']['dnr'][2]) for p in preds]  # the same replies read by D&R's reader (a bare letter counts)
            lo, hi = bootstrap_ci(lenient)
            row = dict(seed=sd, nll_span=span, source=source, **table_rows({m.name: ev})[0], unparsed=round(100 * ev['unparsed'], 2),
                       dnr_reading=dict(accuracy=round(100 * sum(lenient) / len(lenient), 2), ci_low=round(100 * lo, 2), ci_high=round(100 * hi, 2)),
                       mean_completion_tokens=ev['mean_completion_tokens'],
                       most_common_answer=top, most_common_share=round(100 * n_top / len(preds), 2),
                       train_loss=tr.get('train_loss'), example_response=preds[0]['response'])
            rec['rows'].append(row); print(json.dumps(row), flush=True); save(rec)
    return rec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--runs', default=None, help='folder of finished miniatures (seed{N}/data/magdi)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0])
    p.add_argument('--n-test', type=int, default=300)
    p.add_argument('--out', default='/tmp/mini_magdi_nll')
    p.add_argument('--retrain-text', action='store_true', help="train the text row here too (default: the finished miniature's magdi row)")
    p.add_argument('--record', default=str(ROOT / 'nbs' / 'magdi_nll_experiment.json'))
    p.add_argument('--reuse', action='store_true', help='rows already trained and evaluated under --out (an earlier invocation) are read, not trained again')
    p.add_argument('--add-tokens', action='store_true', help="only add the token counts of the seeds' data to an existing record")
    a = p.parse_args(argv)
    if a.add_tokens:
        rec = json.loads(Path(a.record).read_text())
        rec['tokens'] = {str(sd): token_counts(magdi_data(Path(a.runs), sd, Path(a.out) / f'seed{sd}', 300)) for sd in a.seeds}
        Path(a.record).write_text(json.dumps(rec, indent=1) + '\n'); return 0
    from dnr.tiny import PINNED_CPU, cpu_pinned
    if not cpu_pinned():  # the miniature's pinned floating-point paths, set before torch starts
        return subprocess.call([sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])], env={**os.environ, **PINNED_CPU})
    t = time.time()
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cmd = 'nice -n 10 python dev/mini_magdi_nll.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    first = a.first = json.loads(Path(a.record).read_text()) if a.reuse else None  # the invocation that trained the rows
    def save(rec):
        if first: rec.update(total_seconds=first['total_seconds'], commit=first['commit'], command=first['command'], read_again_by=cmd)
        else: rec.update(total_seconds=round(time.time() - t, 1), commit=commit, command=cmd)
        Path(a.record).write_text(json.dumps(rec, indent=1) + '\n')
    run(a, save)
    print(f"wrote {a.record}")
    return 0


if __name__ == '__main__': sys.exit(main())
