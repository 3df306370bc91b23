"""Probe one miniature configuration: its table, and each trainer's loss at every logged step (dev/, not part of dnr).

python dev/mini_probe.py OUT [--methods base dnr_sft] [--n-test 100] [--steps 200] [--pref-steps 20] [--seed 0]
Writes OUT/probe.json: the rows, each row's log history, and the CPU paths in use (torch capability, MKL/oneDNN env)."""
import argparse, json, os, sys
from pathlib import Path

def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument('out'); p.add_argument('--methods', nargs='+', default=['base', 'dnr_sft'])
    p.add_argument('--n-train', type=int, default=300); p.add_argument('--n-test', type=int, default=100)
    p.add_argument('--steps', type=int, default=None); p.add_argument('--pref-steps', type=int, default=None)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    import torch, dnr.train as T
    from dnr import mini
    logs = {}
    orig = T._summary
    def keep(tr, res, out, **kw):
        logs[Path(str(out)).name] = [{k: v for k, v in h.items() if k in ('step', 'loss', 'rewards/accuracies', 'rewards/margins')}
                                     for h in tr.state.log_history]
        return orig(tr, res, out, **kw)
    T._summary = keep
    kw = {k: v for k, v in dict(steps=a.steps, pref_steps=a.pref_steps).items() if v is not None}
    s = mini.run_mini(a.out, n_train=a.n_train, n_test=a.n_test, seed=a.seed, log=lambda m: None,
                      methods=tuple(m for m in mini.MINI_METHODS if m.name in a.methods), **kw)
    r = dict(capability=torch.backends.cpu.get_cpu_capability(), env={k: os.environ.get(k) for k in
             ('ATEN_CPU_CAPABILITY', 'MKL_CBWR', 'MKL_ENABLE_INSTRUCTIONS', 'ONEDNN_MAX_CPU_ISA', 'OMP_NUM_THREADS')},
             rows=s['rows'], seconds=s['seconds'], data=s['data'], logs=logs)
    Path(a.out, 'probe.json').write_text(json.dumps(r, indent=1))
    print(json.dumps({k: r[k] for k in ('capability', 'env', 'rows', 'seconds')}))
    for k, h in logs.items(): print(k, [(x.get('step'), round(x['loss'], 4)) for x in h if 'loss' in x][:12])

if __name__ == '__main__': main()
