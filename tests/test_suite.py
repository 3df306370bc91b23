"""The suite's own mechanisms (tests/conftest.py): the time budget, things built once per run, the longest-first order."""
import json, os, subprocess, sys
from pathlib import Path
from conftest import ROOT, BUDGET_S, budget_reason, built_once, over_budget


def test_budget_lists_slow_tests_and_their_reasons():
    "A test over budget on both clocks is listed, slowest first, with its reason or none; a fixture over budget is listed on its own."
    assert budget_reason('Trains.\n\n    Budget: a real training.\n') == 'a real training.' and budget_reason('Fast.') is None and budget_reason(None) is None
    t = {'a': dict(wall=50.0, cpu=45.0, reason='trains', fixtures=[]),
         'b': dict(wall=80.0, cpu=70.0, reason=None, fixtures=[]),
         'c': dict(wall=60.0, cpu=5.0, reason=None, fixtures=[]),      # waited (a busy machine): not over
         'd': dict(wall=10.0, cpu=10.0, reason=None, fixtures=[]),
         'e': dict(wall=70.0, cpu=66.0, reason=None, fixtures=[dict(fixture='student', wall=65.0, cpu=64.0, reason='builds it')])}
    assert over_budget(t, 30) == [('b', 80.0, 70.0, None), ('e (fixture student)', 65.0, 64.0, 'builds it'), ('a', 50.0, 45.0, 'trains')]
    assert BUDGET_S == float(os.environ.get('DNR_TEST_BUDGET_S', 30))


def test_budget_fails_a_run_with_a_slow_test_without_reason(tmp_path):
    "A pytest run (this conftest) with a test over budget and no `Budget:` line fails and names it; with the line it passes."
    (tmp_path / 'conftest.py').write_text(  # the suite's hooks, loaded from tests/conftest.py
        f"import importlib.util as u\ns = u.spec_from_file_location('suite_conftest', {str(ROOT / 'tests' / 'conftest.py')!r})\n"
        "m = u.module_from_spec(s); s.loader.exec_module(m)\nglobals().update({k: v for k, v in vars(m).items() if k.startswith('pytest_')})\n")
    slow = "import time\ndef test_slow():\n    {doc}t = time.process_time()\n    while time.process_time() - t < 0.5: pass\n"
    env = {**os.environ, 'DNR_TEST_BUDGET_S': '0.2'}
    run = lambda: subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', str(tmp_path / 'test_x.py')],
                                 cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    (tmp_path / 'test_x.py').write_text(slow.format(doc=''))
    r = run()
    assert r.returncode == 1 and 'NO REASON' in r.stdout and 'test_x.py::test_slow' in r.stdout and '1 passed' in r.stdout, r.stdout[-2000:]
    (tmp_path / 'test_x.py').write_text(slow.format(doc='"Spins.\\n\\n    Budget: it spins on purpose."\n    '))
    r = run()
    assert r.returncode == 0 and 'it spins on purpose' in r.stdout, r.stdout[-2000:]


def test_built_once_builds_once_per_run_and_key(tmp_path, monkeypatch):
    "Two callers with the same key share one build; another key or another run builds again; a failed build is not reused."
    import conftest
    monkeypatch.setattr(conftest, 'BUILDS', tmp_path / 'builds')
    calls = []
    def build(out): calls.append(out); (out / 'x').write_text('built')
    a = built_once('thing', {'v': 1}, build); b = built_once('thing', {'v': 1}, build)
    assert a == b and (a / 'x').read_text() == 'built' and len(calls) == 1
    c = built_once('thing', {'v': 2}, build)
    assert c != a and len(calls) == 2 and not a.exists()  # one build of a name kept
    monkeypatch.setenv('DNR_TEST_RUN', 'another run')
    assert built_once('thing', {'v': 2}, build) != c and len(calls) == 3
    def broken(out): raise RuntimeError('no')
    for _ in range(2):
        try: built_once('other', 1, broken)
        except RuntimeError: pass
    assert not any(p.joinpath('.built').exists() for p in (tmp_path / 'builds').glob('other-*'))
