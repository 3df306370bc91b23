"Every option of every `dnr` command says what it does: a walk over each command's argparse parser and its subcommands."
import argparse, importlib
import pytest
from dnr.cli import COMMANDS

class _Parsed(Exception):
    "Raised instead of parsing: carries the parser the command built."
    def __init__(self, parser): self.parser = parser

def command_parser(name: str, argv: tuple = ('--help',)) -> argparse.ArgumentParser:
    "The parser `dnr NAME ARGV` builds, caught at its first `parse_args` (nothing runs)."
    mod, fn, _ = COMMANDS[name]
    def catch(self, *a, **kw): raise _Parsed(self)
    mp = pytest.MonkeyPatch()
    mp.setattr(argparse.ArgumentParser, 'parse_known_args', catch)
    try: getattr(importlib.import_module(mod), fn)(list(argv))
    except _Parsed as p: return p.parser
    finally: mp.undo()
    raise AssertionError(f"dnr {name}: no argparse parser seen")

def options_without_help(p: argparse.ArgumentParser, prog: str) -> list[str]:
    "'prog --option' for every option (and positional) of `p` and its subcommands that has no help line."
    bad = []
    for a in p._actions:
        if isinstance(a, argparse._HelpAction): continue
        if isinstance(a, argparse._SubParsersAction):
            for n, sp in a.choices.items(): bad += options_without_help(sp, f'{prog} {n}')
        elif not a.help: bad.append(f"{prog} {'/'.join(a.option_strings) or a.dest}")
    return bad

def parsers():
    "(prog, parser) of every command; `dnr build` has one per kind of training data."
    from dnr.methods import data_builders
    for name in COMMANDS:
        if name == 'build':
            for k, d in data_builders().items():
                if d.cli: yield f'dnr build {k}', command_parser(name, (k, '--help'))
        else: yield f'dnr {name}', command_parser(name)

def test_every_option_has_a_help_line():
    """Walks every command's parser; parses nothing.

    Budget: imports every command's chapter (transformers, trl, datasets, the SDKs) in this worker."""
    found = dict(parsers())
    assert {'dnr train', 'dnr build sft', 'dnr build magdi', 'dnr demo'} <= set(found)
    missing = [m for prog, p in found.items() for m in options_without_help(p, prog)]
    assert missing == [], f"{len(missing)} options without help=: {missing}"

def test_the_walk_finds_a_missing_help_line():
    p = argparse.ArgumentParser(prog='x'); sub = p.add_subparsers(dest='c')
    sub.add_parser('a').add_argument('--quiet-one'); p.add_argument('--said', help='says')
    assert options_without_help(p, 'x') == ['x a --quiet-one']
