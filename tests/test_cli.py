"""One error convention for every `dnr` command: bad input gives one line `dnr CMD: error: ...` naming the file (or
argument/field), exit status 2, no traceback; `--debug` shows the traceback."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
from conftest import BIN, ROOT


def run(capsys, *argv):
    "`dnr.cli.main(argv)` in this process; returns (exit status, stderr). argparse errors exit through SystemExit."
    from dnr.cli import main
    capsys.readouterr()
    try: rc = main([str(a) for a in argv])
    except SystemExit as e: rc = e.code
    return rc, capsys.readouterr().err


def one_error_line(err, cmd):
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert 'Traceback' not in err and lines[-1].startswith(f'dnr {cmd}') and ': error: ' in lines[-1], err  # `dnr build sft: error:` too
    return lines[-1]


def test_every_command_reports_bad_input_on_one_line(tmp_path, capsys):
    bad_jsonl = tmp_path / 'bad.jsonl'; bad_jsonl.write_text('{"id": 1}\n{oops\n')
    bad_yaml = tmp_path / 'bad.yaml'; bad_yaml.write_text('agents: [\n')
    missing = tmp_path / 'no' / 'such'
    cases = {  # command: (argv, what the line must name)
        'data': (['--data-dir', missing], str(missing)),
        'grade': (['--dataset', 'mmlu_pro', '--in', bad_jsonl, '--out', tmp_path / 'g.jsonl'], f'{bad_jsonl}:1'),
        'chat': (['--agent', bad_yaml, '--in', bad_jsonl, '--out', tmp_path / 'o.jsonl'], str(bad_yaml)),
        'debate': (['--config', bad_yaml, '--out', tmp_path / 'run'], str(bad_yaml)),
        'build': (['sft', '--run', missing, '--out', tmp_path / 'b'], str(missing)),
        'train': (['sft', '--config', missing], str(missing)),
        'bench': (['tdpo', '--nope'], '--nope'),
        'eval': (['--model', missing, '--dataset', 'mmlu_pro:physics', '--out', tmp_path / 'e'], str(missing)),
        'figures': ([missing, '--out', tmp_path / 'f'], str(missing)),
        'run': (['--config', bad_yaml], str(bad_yaml)),
        'demo': (['--questions', 0, '--out', tmp_path / 'demo'], '--questions'),
        'show': ([missing], str(missing)),
        'repair': ([missing], str(missing)),
        'export': (['mags', missing, tmp_path / 'x'], str(missing)),
    }
    from dnr.cli import COMMANDS
    assert set(cases) == set(COMMANDS)
    for cmd, (argv, name) in cases.items():
        rc, err = run(capsys, cmd, *argv)
        line = one_error_line(err, cmd)
        assert rc == 2 and name in line, (cmd, rc, err)
    assert not (tmp_path / 'run').exists() and not (tmp_path / 'demo').exists()
    rc, err = run(capsys, 'bench', 'tdpo', '--nodes', 0)  # numbers that must be positive say which argument
    assert rc == 2 and 'argument --nodes: must be at least 1, got 0' in one_error_line(err, 'bench')


def test_debug_shows_the_traceback_and_help_documents_exit_codes(tmp_path):
    p = subprocess.run([str(BIN / 'dnr'), 'repair', str(tmp_path / 'none'), '--debug'], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 1 and 'Traceback' in p.stderr and 'no such MAG file' in p.stderr
    p = subprocess.run([str(BIN / 'dnr'), 'repair', str(tmp_path / 'none')], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and p.stderr == f"dnr repair: error: {tmp_path / 'none'}: no such MAG file\n"
    h = subprocess.run([str(BIN / 'dnr'), '--help'], capture_output=True, text=True, cwd=ROOT).stdout
    assert all(f'  {k}  ' in h for k in range(5)) and '--debug' in h
    h = subprocess.run([str(BIN / 'dnr'), 'debate', '--help'], capture_output=True, text=True, cwd=ROOT).stdout
    assert 'exit status' in h and '3 some questions stopped at the budget' in ' '.join(h.split())


def test_a_missing_model_folder_is_named_the_same_way_everywhere(tmp_path, capsys):
    "One check (`dnr.providers.check_model_path`) for `dnr eval --model`, `dnr train --model` and an `hf` agent's `model`."
    import yaml
    missing = tmp_path / 'no' / 'model'
    (tmp_path / 'sft').mkdir()
    (tmp_path / 'sft' / 'sft.jsonl').write_text(json.dumps({'prompt': [{'role': 'user', 'content': 'What is 2 + 3?'}],
                                                            'completion': [{'role': 'assistant', 'content': 'The answer is 5.'}]}) + '\n')
    cfg = yaml.safe_load((ROOT / 'configs' / 'debate_offline.yaml').read_text())
    cfg['agents'][-1] = dict(name='student', role='student', provider='hf', model=str(missing))
    (tmp_path / 'debate.yaml').write_text(yaml.safe_dump(cfg))
    cases = {'eval': (['--model', missing, '--dataset', 'mmlu_pro:physics', '--out', tmp_path / 'e'], f'--model {missing}'),
             'train': (['sft', '--config', ROOT / 'configs' / 'sft_tiny.yaml', '--model', missing, '--data', tmp_path / 'sft',
                        '--output-dir', tmp_path / 't'], f"sft_tiny.yaml: field 'model' {missing}"),
             'debate': (['--config', tmp_path / 'debate.yaml', '--out', tmp_path / 'd', '--limit', 1], f"agent 'student': model {missing}")}
    for cmd, (argv, name) in cases.items():
        rc, err = run(capsys, cmd, *argv)
        assert rc == 2 and f'{name}: not found locally, and not a hub id' in one_error_line(err, cmd), (cmd, err)
    assert not [d for d in ('e', 't', 'd') if (tmp_path / d).exists()], "validate, then write: nothing created for a bad model"
