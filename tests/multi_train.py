"""Run several `dnr` commands in one process per rank: `torchrun ... tests/multi_train.py CMD1 -- CMD2 -- ...`.

Each CMD goes through `dnr.cli.main`, the entry point of `python -m dnr.cli` and of the `dnr` script; one launch
instead of one per command keeps the CPU test of multi-process training short (each launch imports torch,
transformers and TRL in every process)."""
import sys
from dnr.cli import main

if __name__ == '__main__':
    cmds, cur = [], []
    for a in sys.argv[1:]:
        if a == '--': cmds.append(cur); cur = []
        else: cur.append(a)
    cmds.append(cur)
    for c in cmds:
        if rc := main(c): sys.exit(rc)
