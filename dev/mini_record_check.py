"""Store a finished pinned MINI_CHECK run as the record's `check` table (dev/, not part of dnr), instead of running it
again: python dev/mini_record_check.py RUN [--record nbs/mini_seeds.json]. RUN is a folder `run_mini` wrote with
MINI_CHECK's settings on the pinned paths (for example the `check` folder of `python -m dnr.mini`, or of the chapter's
test); its settings are checked against MINI_CHECK and PINNED_CPU before anything is written."""
import argparse, json
from pathlib import Path

def main(argv=None):
    p = argparse.ArgumentParser(); p.add_argument('run'); p.add_argument('--record', default=None); a = p.parse_args(argv)
    from dnr import mini
    from dnr.files import write_json
    s = json.loads((Path(a.run) / 'summary.json').read_text())
    c = mini.MINI_CHECK
    got = dict(seed=s['seed'], n_train=s['debate']['questions'], n_test=s['rows'][0]['n'], methods=tuple(r['method'] for r in s['rows']),
               steps=s['train']['dnr_sft']['steps'], pref_steps=s['train']['dnr_tdpo']['steps'])
    want = dict(seed=c['seed'], n_train=c['n_train'], n_test=c['n_test'], methods=tuple(c['methods']), steps=c['steps'], pref_steps=c['pref_steps'])
    if got != want: raise SystemExit(f"{a.run}: not a MINI_CHECK run: {got} != {want}")
    if s['cpu'] != {'capability': mini.PINNED_CPU['ATEN_CPU_CAPABILITY'].upper(), **mini.PINNED_CPU}: raise SystemExit(f"{a.run}: not pinned: {s['cpu']}")
    f = Path(a.record) if a.record else mini.record_path()
    rec = json.loads(f.read_text()) if f.exists() else dict(settings={}, seeds={}, spread=[])
    rec['check'] = dict(config={**c, 'methods': list(c['methods'])}, rows=s['rows'], train=s['train'], cpu=s['cpu'])
    write_json(f, rec, newline=True)
    print(json.dumps(rec['check']))

if __name__ == '__main__': main()
