"""Mutations that the miniature's claims must catch (dev/, not part of dnr): T-DPO with its sign flipped, on a fully
trained seed-0 miniature (300 debates, `MINI_STEPS` + `MINI_PREF_STEPS` steps, 100 test questions: what `MINI_CHECK`
was before it became a 20-step prefix), stored with the claims it breaks and the run it came from under `mutations`.

python dev/mini_mutations.py [--record nbs/mini_seeds.json] [--out runs/mini_mutations] [--from RUN]
Mutation `tdpo_sign_flipped`: `dnr.tdpo.pair_losses` with chosen and rejected swapped (T-DPO prefers the wrong answers).
Without --from it runs that miniature in this process; with --from RUN (a finished pinned miniature folder whose D&R
SFT is fully trained, e.g. a seed folder of `python -m dnr.mini`) it keeps RUN's base and D&R SFT rows and adapter and retrains only the T-DPO row from them (same
data, same seed), which is what the mutation changes, and the same row unmutated for its margin. Both logged reward margins
(`rewards/margins`, chosen minus rejected, at the last logging step) are stored under `margins`. Run it under dnr.mini.PINNED_CPU to match the record's paths."""
import argparse, json
from pathlib import Path
from unittest import mock

def last_margin(adapter: Path) -> float | None:
    "T-DPO's last logged reward margin (`rewards/margins`, chosen minus rejected, in the true direction) in `adapter`'s log history."
    from dnr.report import read_log_history
    logs = read_log_history(adapter) if (Path(adapter) / 'log_history.jsonl').exists() else []
    return next((round(x['rewards/margins'], 4) for x in reversed(logs) if 'rewards/margins' in x), None)

def main(argv=None):
    p = argparse.ArgumentParser(); p.add_argument('--record', default=None); p.add_argument('--out', default='runs/mini_mutations')
    p.add_argument('--from', dest='src', default=None)
    a = p.parse_args(argv)
    import torch.nn.functional as F
    import dnr.tdpo as T
    from dnr import mini
    from dnr.codebook import load_codebook
    from dnr.files import write_json
    from dnr.tiny import tiny_model
    def flipped(logps, ref_logps, pairs, beta=0.1):
        ratio = logps - ref_logps.to(logps)
        ch, rj = ratio[pairs[:, 0]], ratio[pairs[:, 1]]
        return -F.logsigmoid(beta * (rj - ch)), beta * ch.detach(), beta * rj.detach()
    full = dict(n_train=300, n_test=100, seed=0, steps=mini.MINI_STEPS, pref_steps=mini.MINI_PREF_STEPS)
    cfg = {**full, 'methods': tuple(m for m in mini.MINI_METHODS if m.name in ('base', 'dnr_sft', 'dnr_tdpo'))}
    if a.src is not None:  # the run's own settings
        s = json.loads((Path(a.src) / 'summary.json').read_text())
        cfg.update(seed=s['seed'], n_train=s['debate']['questions'], n_test=s['rows'][0]['n'], steps=s['train']['dnr_sft']['steps'])
    out = Path(a.out) / 'tdpo_sign_flipped'
    with mock.patch.object(T, 'pair_losses', flipped):
        if a.src is None: rows = mini.run_mini(out, log=print, pin_cpu=False, **cfg)['rows']
        else:
            src, m = Path(a.src), next(m for m in mini.MINI_METHODS if m.name == 'dnr_tdpo')
            mini.train_method(m, tiny_model('trained'), src / 'data' / m.data, out / m.name, mini.MINI_PREF_STEPS,
                              {'dnr_sft': src / 'dnr_sft'}, cfg['seed'])
            ev = mini.evaluate_method(tiny_model('trained'), out / m.name, load_codebook('test', cfg['n_test']), out / 'eval' / m.name)
            rows = [r for r in json.loads((src / 'summary.json').read_text())['rows'] if r['method'] != 'dnr_tdpo'] + mini.table_rows({m.name: ev})
    if a.src is not None:  # the same row unmutated, for its margin (RUN's own T-DPO may predate the logged margins)
        mini.train_method(m, tiny_model('trained'), src / 'data' / m.data, out.parent / 'tdpo_normal' / m.name, mini.MINI_PREF_STEPS,
                          {'dnr_sft': src / 'dnr_sft'}, cfg['seed'])
    margins = dict(flipped=last_margin(out / 'dnr_tdpo'), normal=last_margin(out.parent / 'tdpo_normal' / 'dnr_tdpo') if a.src else None)
    f = Path(a.record) if a.record else mini.record_path()
    rec = json.loads(f.read_text()) if f.exists() else dict(settings={}, seeds={}, spread=[], check=None)
    rec.setdefault('mutations', {})['tdpo_sign_flipped'] = dict(rows=rows, claims_broken=mini.mini_claims(rows), cpu=mini.cpu_paths(), margins=margins,
                                                                 source={k: v for k, v in cfg.items() if k != 'methods'}, retrained=['dnr_tdpo'] if a.src else 'all')
    write_json(f, rec, newline=True)
    print(json.dumps(rec['mutations']['tdpo_sign_flipped'], indent=1))

if __name__ == '__main__': main()
