"""Offline experiment tracking: `--report-to tensorboard` and `--report-to trackio` log SFT, T-DPO and MAGDi on the tiny
student, and the pipeline's debate numbers go to the same trackers (`dnr.train.log_metrics`). The trackers are optional
dependencies (`dnr[track]`)."""
import json, os, sqlite3, subprocess, sys
from pathlib import Path
import pytest

SCRIPT = r'''
import json, sys
from pathlib import Path
from dnr.debate import offline_config, debate_into, run_sync, load_debate_config
from dnr.distill import build_sft, build_tdpo
from dnr.magdi import build_magdi
from dnr.magdi_train import train_magdi
from dnr.tiny import tiny_model
from dnr.train import train_sft, train_tdpo, log_metrics
run, report_to = Path(sys.argv[1]), sys.argv[2].split(',')
s = run_sync(debate_into(load_debate_config(offline_config('physics', limit=6)), run / 'debate', progress=False))
student = str(tiny_model('trained'))
build_sft(run / 'debate', run / 'build' / 'sft'); build_tdpo(run / 'debate', run / 'build' / 'tdpo', tokenizer=student)
build_magdi(run / 'debate', run / 'build' / 'magdi')
args = dict(max_steps=2, logging_steps=1, per_device_train_batch_size=2, gradient_accumulation_steps=1, save_strategy='no',
            disable_tqdm=True, report_to=report_to)
lora = dict(r=4, lora_alpha=8, lora_dropout=0.0)
c = lambda d, o, **kw: dict(model=student, data=str(run / 'build' / d), output_dir=str(run / o), **kw)
train_sft(c('sft', 'sft', lora=lora, args={**args, 'run_name': 'sft', 'max_length': 768}))
train_tdpo(c('tdpo', 'tdpo', adapter=str(run / 'sft'), args={**args, 'run_name': 'tdpo', 'max_length': 768, 'max_prompt_length': 640}))
train_magdi(c('magdi', 'magdi', lora=lora, args={**args, 'run_name': 'magdi', 'gcn_hidden': 8}))
print(json.dumps(log_metrics(report_to, run / 'debate', 'debate', s)))
'''

def _tb_scalars(folder: Path) -> set:
    "Tags of the scalars in the tensorboard event files under `folder`."
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = set()
    for f in folder.rglob('events.out.tfevents.*'):
        ea = EventAccumulator(str(f)); ea.Reload(); tags |= set(ea.Tags()['scalars'])
    return tags

def test_tensorboard_and_trackio_log_every_trainer_and_the_debate(tmp_path):
    """Trains SFT, T-DPO and MAGDi 2 steps each with both trackers and reads their logs back.

    Budget: a fresh process (trackio reads $TRACKIO_DIR when imported) importing the training stack, a 6-question replayed debate, three trainers."""
    import tensorboard, trackio  # the `track` extra, in requirements.lock: missing, the test fails rather than skips
    env = {**os.environ, 'TRACKIO_DIR': str(tmp_path / 'trackio')}
    p = subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path / 'run'), 'tensorboard,trackio'], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == ['tensorboard', 'trackio']
    run = tmp_path / 'run'
    assert {'train/loss'} <= _tb_scalars(run / 'sft' / 'runs')
    assert {'train/loss', 'train/rewards/accuracies', 'train/rewards/margins'} <= _tb_scalars(run / 'tdpo' / 'runs')
    assert {'train/nll', 'train/node', 'train/mr'} <= _tb_scalars(run / 'magdi' / 'runs')
    assert 'questions' in _tb_scalars(run / 'debate' / 'runs')
    db = sqlite3.connect(tmp_path / 'trackio' / 'huggingface.db')
    logged = {}
    for name, metrics in db.execute('select run_name, metrics from metrics'):
        logged.setdefault(name, set()).update(json.loads(metrics))
    assert 'train/loss' in logged['sft'] and 'train/rewards/accuracies' in logged['tdpo'], logged
    assert {'train/nll', 'train/node', 'train/mr'} <= logged['magdi'] and 'questions' in logged['debate'], logged

def test_log_metrics_skips_none_and_keeps_numbers(tmp_path):
    from dnr.train import _numbers_of, log_metrics, trackers_of
    assert trackers_of('none') == [] and trackers_of(['tensorboard', 'none']) == ['tensorboard']
    assert log_metrics('none', tmp_path, 'x', {'a': 1}) == []
    assert _numbers_of({'a': 1, 'b': {'c': 2.5, 'd': 'text', 'e': True}}) == {'a': 1.0, 'b/c': 2.5}
