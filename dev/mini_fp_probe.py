"""Which floating-point paths the miniature's training takes, and whether they change its result (dev/, not part of dnr).

python dev/mini_fp_probe.py DATA OUT [--steps 20] : trains D&R SFT as the miniature does on DATA (a built `sft` folder) for
--steps steps, and prints one JSON line: the CPU paths in use, the loss at every step (full precision), a hash of the
adapter's weights and the seconds per step; with --record FILE --name NAME it also stores that line as runs[NAME] of
FILE (the chapter reads nbs/mini_cpu_paths.json). Run it under different ATEN_CPU_CAPABILITY / MKL_* / ONEDNN_* settings:
  native: nothing set; emulated_avx2: ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2;
  pinned_native: dnr.mini.PINNED_CPU; pinned_emulated_avx2: both."""
import argparse, hashlib, json, os, time
from pathlib import Path

def main(argv=None):
    p = argparse.ArgumentParser(); p.add_argument('data'); p.add_argument('out'); p.add_argument('--steps', type=int, default=20)
    p.add_argument('--record', default=None); p.add_argument('--name', default=None)
    a = p.parse_args(argv)
    import torch, dnr.train as T
    from dnr import mini
    from dnr.tiny import tiny_model
    from safetensors.torch import load_file
    hist = {}
    orig = T._summary
    def keep(tr, res, out, **kw): hist['h'] = tr.state.log_history; return orig(tr, res, out, **kw)
    T._summary = keep
    m = next(m for m in mini.MINI_METHODS if m.name == 'dnr_sft')
    args = {**mini.MINI_ARGS, 'logging_steps': 1}
    t, c = time.time(), time.process_time()
    cfg = dict(model=str(tiny_model('trained')), data=a.data, output_dir=a.out, lora=dict(mini.MINI_LORA),
               args={**args, 'max_steps': a.steps, **m.args})
    s = mini.resolve(m.trainer)(cfg)
    secs, cpu = time.time() - t, time.process_time() - c
    w = load_file(str(Path(a.out) / 'adapter_model.safetensors'))
    h = hashlib.sha256(b''.join(w[k].numpy().tobytes() for k in sorted(w))).hexdigest()[:16]
    r = dict(capability=torch.backends.cpu.get_cpu_capability(),
             env={k: os.environ.get(k) for k in ('ATEN_CPU_CAPABILITY', 'MKL_CBWR', 'MKL_ENABLE_INSTRUCTIONS', 'ONEDNN_MAX_CPU_ISA') if os.environ.get(k)},
             losses=[x['loss'] for x in hist['h'] if 'loss' in x], weights=h, seconds=round(secs, 1), cpu_seconds=round(cpu, 1), train_runtime=s.get('runtime_s'))
    print(json.dumps(r))
    if a.record:
        f = Path(a.record); rec = json.loads(f.read_text()) if f.exists() else {'steps': a.steps, 'runs': {}}
        rec['runs'][a.name] = r; f.write_text(json.dumps(rec, indent=1) + '\n')

if __name__ == '__main__': main()
