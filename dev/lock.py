"""Write `requirements.lock`: every package of the default install (core, `serve`, `track` and `dev` extras, CPU torch, uv), pinned.

    make lock     # = python dev/lock.py: resolves the newest releases allowed by settings.ini and rewrites the lock

The lock is what `make setup` (and so `make demo`, `make test` and CI) installs, exactly. It is resolved for CPython
3.11 on x86-64 Linux with the CPU build of torch (`TORCH` below); the GPU install (CUDA torch, vLLM) stays outside it.
`uv pip compile` does the resolving (uv is installed into the venv by `make setup`).
"""
import configparser, os, re, shlex, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH = os.environ.get('TORCH_SPEC', 'torch==2.13.0+cpu')
PYTHON, PLATFORM = '3.11', 'x86_64-manylinux_2_28'

def requirements() -> list[str]:
    "settings.ini's `requirements`, `serve_requirements`, `track_requirements` and `dev_requirements` (the default install), with torch's CPU build."
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT / 'settings.ini', encoding='utf-8')
    d = cfg['DEFAULT']
    reqs = [r for k in ('requirements', 'serve_requirements', 'track_requirements', 'dev_requirements') for r in shlex.split(d.get(k, ''))]
    is_torch = lambda r: re.match(r'torch\s*([<>=!~;\[]|$)', r, re.I)  # torch itself, not torch-geometric
    return [r for r in reqs if not is_torch(r)] + [TORCH, 'uv']  # uv: the installer `make setup` uses

def main() -> int:
    uv = Path(sys.executable).with_name('uv')
    cmd = [str(uv if uv.exists() else 'uv'), 'pip', 'compile', '-', '-o', str(ROOT / 'requirements.lock'),
           '--python-version', PYTHON, '--python-platform', PLATFORM, '--no-header', '--annotation-style', 'line', '--quiet',
           *sys.argv[1:]]
    for fl in os.environ.get('DNR_TORCH_FIND_LINKS', '').split(): cmd += ['--find-links', fl]
    if idx := os.environ.get('DNR_TORCH_INDEX'): cmd += ['--extra-index-url', idx, '--index-strategy', 'unsafe-best-match']
    p = subprocess.run(cmd, input='\n'.join(requirements()) + '\n', text=True)
    if p.returncode: return p.returncode
    lock = ROOT / 'requirements.lock'
    head = ("# The default install of dnr, every package pinned: `make setup` installs exactly this (CPython 3.11, x86-64 Linux, CPU torch).\n"
            "# Generated from settings.ini by `make lock` (dev/lock.py, uv pip compile); do not edit by hand.\n")
    lock.write_text(head + lock.read_text())
    return 0

if __name__ == '__main__':
    sys.exit(main())
