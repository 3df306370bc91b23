"""What moves the miniature's T-DPO row (dev/, not part of dnr): the T-DPO row retrained under variants from a finished
seed's D&R SFT adapter, each evaluated on the miniature's test questions; the chapter `07b_mini` renders the record.

python dev/mini_tdpo_experiments.py [--run runs/mini_seeds/seed2] [--record nbs/mini_tdpo_experiments.json] [--out DIR]
RUN is a finished `python -m dnr.mini` seed folder (its `dnr_sft` adapter, `data/tdpo`, `summary.json`); pick one whose
D&R SFT is below its ceiling, or no variant can move it. Every variant trains `MINI_PREF_STEPS` steps of the miniature's
T-DPO row (`dnr_tdpo`: same trainer, seed, batch and start) with one thing changed:
  default      : as the miniature (must reproduce RUN's dnr_tdpo row, to the digit)
  round0       : preference nodes of round 0 only: the test prompt's form, no debate context
  later_rounds : nodes of rounds 1+ only: every prompt carries the debate context
  lr_x4, lr_div4 : learning rate x4, /4
  steps_x4     : 4 x MINI_PREF_STEPS steps
  beta_0.5     : beta 0.5 instead of 0.1
  half_pairs   : the nodes of every other question (about half the pairs), whole trees kept
  rpo          : the miniature's RPO row (`dnr_rpo`: T-DPO plus the chosen responses' NLL, weight 1), retrained (must
                 reproduce RUN's dnr_rpo row)
  rpo_nll_0, rpo_nll_0.25, rpo_nll_4 : the RPO row with the NLL term's weight 0 (T-DPO's loss through RPO's trainer), 1/4, 4
It also re-evaluates RUN's D&R SFT adapter (the start; must reproduce RUN's dnr_sft row). Per variant it records the
accuracy and 95% CI, the codebook words the student answers right (the task is ten words, so accuracy moves in steps of a
word), the words gained or lost against D&R SFT, the pairs trained on, the last logged reward margin, and the seconds.
--add keeps the record's rows of the variants not run now (same run and settings; each row names its commit). It runs on the pinned CPU paths (`dnr.mini.PINNED_CPU`, in a child process when this one is not pinned)."""
import argparse, dataclasses, json, os, subprocess, sys, time
from collections import Counter
from pathlib import Path

VARIANTS = {  # name: (nodes kept, trainer args over the row's, the question it answers[, the row: dnr_tdpo]); the most telling first
    # (a 'steps' entry multiplies MINI_PREF_STEPS; 'learning_rate' multiplies the row's)
    'default': (None, {}, "the miniature's T-DPO row, retrained: does this script reproduce it?"),
    'round0': (lambda n, i: n['round'] == 0, {}, "only the nodes whose prompt is the test prompt's form: does the debate context matter?"),
    'lr_x4': (None, {'learning_rate': 4}, "a larger step"),
    'beta_0.5': (None, {'beta': 0.5}, "a stronger pull to the reference"),
    'half_pairs': (lambda n, i: i % 2 == 0, {}, "half the pairs (every other question's tree)"),
    'later_rounds': (lambda n, i: n['round'] > 0, {}, "only the nodes under the debate context"),
    'lr_div4': (None, {'learning_rate': 0.25}, "a smaller step"),
    'steps_x4': (None, {'steps': 4}, "more of the same training (4 x MINI_PREF_STEPS steps)"),
    'rpo': (None, {}, "the miniature's RPO row, retrained: does this script reproduce it?", 'dnr_rpo'),
    'rpo_nll_0': (None, {'loss_weights': [1.0, 0.0]}, "RPO without its NLL term: is the gap to T-DPO that term?", 'dnr_rpo'),
    'rpo_nll_0.25': (None, {'loss_weights': [1.0, 0.25]}, "a quarter of the NLL term", 'dnr_rpo'),
    'rpo_nll_4': (None, {'loss_weights': [1.0, 4.0]}, "four times the NLL term", 'dnr_rpo'),
}

def git_commit(record: Path | None = None) -> str:
    "HEAD, '+dirty' when a tracked file other than the record this script writes differs from it."
    here = Path(__file__).resolve().parent.parent
    sha = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True, text=True).stdout.strip()
    skip = [f':!{Path(record).resolve().relative_to(here)}'] if record else []
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no', '--', '.', *skip], cwd=here, capture_output=True, text=True).stdout.strip()
    return sha + ('+dirty' if dirty else '')

def word_counts(pred: Path) -> dict:
    "Right answers per codebook word, from an evaluation's predictions.jsonl."
    from dnr.codebook import CODEBOOK
    word = {v: k for k, v in CODEBOOK.items()}
    rows = [json.loads(l) for l in pred.read_text().splitlines() if l.strip()]
    c = Counter(word[r['gold']] for r in rows if r['correct'])
    return {w: c.get(w, 0) for w in CODEBOOK}

def last_margin(adapter: Path) -> dict:
    "The last logged reward margin and accuracy of a T-DPO training (its log_history.jsonl)."
    from dnr.report import read_log_history
    logs = read_log_history(adapter)
    last = [x for x in logs if 'rewards/margins' in x][-1]
    return dict(margin=round(last['rewards/margins'], 4), reward_accuracy=round(last['rewards/accuracies'], 4), step=last['step'])

def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument('--run', default='runs/mini_seeds/seed2'); p.add_argument('--record', default='nbs/mini_tdpo_experiments.json')
    p.add_argument('--out', default='runs/mini_tdpo_experiments'); p.add_argument('--variants', nargs='*', default=list(VARIANTS))
    p.add_argument('--add', action='store_true', help="keep the record's rows of the variants not run now (same run and settings)")
    a = p.parse_args(argv)
    from dnr.tiny import PINNED_CPU, cpu_pinned
    if not cpu_pinned():  # the libraries read these when they start: rerun this script in a child process that has them
        return subprocess.run([sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])], env={**os.environ, **PINNED_CPU}).returncode
    from dnr import mini
    from dnr.codebook import load_codebook
    from dnr.files import read_jsonl, write_json, write_jsonl
    from dnr.tiny import tiny_model
    from dnr.train import RPO_DEFAULTS
    src, out = Path(a.run), Path(a.out)
    summary = json.loads((src / 'summary.json').read_text())
    seed, recorded = summary['seed'], {r['method']: r for r in summary['rows']}
    row = next(m for m in mini.MINI_METHODS if m.name == 'dnr_tdpo')
    student, qs = tiny_model('trained'), load_codebook('test', recorded['dnr_sft']['n'])
    nodes = [n for _, n in read_jsonl(src / 'data' / row.data / 'nodes.jsonl')]
    qids = sorted({n['question_id'] for n in nodes})
    def evaluate(name, adapter):
        ev = mini.evaluate_method(student, adapter, qs, out / 'eval' / name)
        return {**mini.table_rows({name: ev})[0], 'words': word_counts(out / 'eval' / name / 'predictions.jsonl')}
    t = time.time()
    sft = {**evaluate('dnr_sft', src / 'dnr_sft'), 'seconds': round(time.time() - t, 1)}
    old = json.loads(Path(a.record).read_text()) if a.add and Path(a.record).exists() else {}
    rows, ref_cache = [r for r in old.get('rows', []) if r['variant'] not in a.variants], out / 'default' / 'ref_logps.jsonl'
    old_commits = old.get('source_commit') if isinstance(old.get('source_commit'), list) else [old.get('source_commit')]  # rows made before rows named theirs
    def save():
        rec = dict(config=dict(run=src.name, seed=seed, pref_steps=mini.MINI_PREF_STEPS, args=row.args, n_test=len(qs), cpu=mini.cpu_paths()),
                   recorded={k: recorded[k] for k in ('dnr_sft', 'dnr_tdpo', 'dnr_rpo') if k in recorded},
                   sft={k: sft[k] for k in ('accuracy', 'n', 'ci_low', 'ci_high', 'words')}, rows=rows,
                   seconds=round(sum(r['seconds'] for r in rows) + sft['seconds'], 1), source_commit=sorted({c for r in rows for c in ([r['commit']] if 'commit' in r else old_commits)}))
        if old and {k: old[k] for k in ('config', 'recorded', 'sft')} != {k: rec[k] for k in ('config', 'recorded', 'sft')}:
            raise SystemExit(f"--add: {a.record} is of another run or settings: {old['config']}")
        write_json(Path(a.record), rec, newline=True)
    for name in a.variants:
        keep, over, question, *which = VARIANTS[name]
        vrow = next(m for m in mini.MINI_METHODS if m.name == (which[0] if which else 'dnr_tdpo'))
        data = src / 'data' / vrow.data
        if keep:
            data = out / 'data' / name
            data.mkdir(parents=True, exist_ok=True)
            write_jsonl(data / 'nodes.jsonl', [n for n in nodes if keep(n, qids.index(n['question_id']))])
        args = {**vrow.args, **{k: vrow.args[k] * v if k == 'learning_rate' else v for k, v in over.items() if k != 'steps'}}
        if ref_cache.exists():  # the reference log-probs do not depend on the variant: the trainer's own cache, keyed by tokens and adapter
            (out / name).mkdir(parents=True, exist_ok=True)
            ids = {n['id'] for _, n in read_jsonl(data / 'nodes.jsonl')} if keep else None
            write_jsonl(out / name / 'ref_logps.jsonl', [r for _, r in read_jsonl(ref_cache) if ids is None or r['id'] in ids])
        t = time.time()
        tr = mini.train_method(dataclasses.replace(vrow, args=args), student, data, out / name, mini.MINI_PREF_STEPS * over.get('steps', 1),
                               {'dnr_sft': src / 'dnr_sft'}, seed)
        r = evaluate(name, out / name)
        right = lambda ws: {w for w, c in ws.items() if 2 * c > recorded['dnr_sft']['n'] / len(ws)}
        rows.append(dict(variant=name, row=vrow.name, question=question, **{k: r[k] for k in ('accuracy', 'n', 'ci_low', 'ci_high', 'words')},
                         gained=sorted(right(r['words']) - right(sft['words'])), lost=sorted(right(sft['words']) - right(r['words'])),
                         nodes=tr['nodes'], pairs=tr['pairs'], steps=tr.get('steps'), learning_rate=args['learning_rate'], beta=args['beta'],
                         **({'nll_weight': (args.get('loss_weights') or RPO_DEFAULTS['loss_weights'])[1]} if vrow.name == 'dnr_rpo' else {}),
                         **last_margin(out / name), seconds=round(time.time() - t, 1), commit=git_commit(Path(a.record))))
        print(json.dumps(rows[-1]), flush=True)
        save()  # after each variant, so a stopped run keeps what it finished
    return 0

if __name__ == '__main__': sys.exit(main())
