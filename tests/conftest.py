"""Shared test helpers and the suite's mechanisms (they apply to every test, including ones added later):

- `rendered_chapter(chapter)`: each chapter is executed once per test run (every cell, as `nbdev_test`) and rendered to
  its docs page; `tests/test_notebooks.py` and `tests/test_docs.py` both read that one execution.
- `built_once(name, key, build)`: an expensive fixture (a trained student, a finished run) built once per test run and
  per key, shared read-only by every test and every pytest-xdist worker (a file lock; the folder is under `.cache/`).
- A time budget: a test (its setup, call and teardown) or a fixture over `BUDGET_S` seconds must say why in its
  docstring, in a line `Budget: <why it needs the time>`; the run ends with the list of the tests over budget, and
  fails when one of them gives no reason. Measured seconds go to `.cache/test-durations.json`, and the next run
  starts the longest tests (and xdist groups) first so that the two workers finish together.
"""
import json, os, re, resource, sys, time, uuid
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('DNR_DATA_DIR', str((ROOT / '..' / 'shared' / 'data').resolve()))
os.environ.setdefault('DNR_CACHE_DIR', str(ROOT / '.cache'))
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ['HF_DATASETS_OFFLINE'] = '1'
# one id per test run, inherited by pytest-xdist's workers (started after this module is imported): what is built
# "once per run" is keyed on it
os.environ.setdefault('DNR_TEST_RUN', uuid.uuid4().hex)
# Each pytest-xdist worker gets its share of the cores for torch's (OpenMP, MKL) threads. Left at torch's default, every
# worker starts as many threads as the machine has cores, and two workers training at once on 2 cores spin-wait for
# each other: measured on this 2-core machine, 07a_demo beside 07b_mini took 197 s and 182 s (373 CPU-s); with one
# thread each, 70 s and 52 s (113 CPU-s), the miniature's bit-exact check unchanged. Set before any test imports torch;
# a value the user set is kept, and the subprocesses tests start inherit it.
if (_workers := int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', 0))) > 1:
    os.environ.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // _workers)))
BIN = Path(sys.executable).parent  # the venv's bin: dnr, nbdev_test, transformers
BUDGET_S = float(os.environ.get('DNR_TEST_BUDGET_S', 30))
BUILDS = ROOT / '.cache' / 'test-builds'
DURATIONS = ROOT / '.cache' / 'test-durations.json'


def dnr(cmd, *args, check=True, timeout=300):
    "Run `dnr <cmd> ...` (the venv's console script) in a subprocess from the repository root."
    import subprocess
    p = subprocess.run([str(BIN / 'dnr'), cmd, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and p.returncode != 0: raise AssertionError(f"rc={p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def dnr_in_process(cmd, *args):
    """`dnr <cmd> ...` run by the console script's own entry point (`dnr.cli.main`) in this process, its stdout and stderr
    captured: for the tests of a refused input, which a subprocess would make pay a fresh import of the training stack
    (15 s of CPU) for an error found before any work. The exit status is main's (or argparse's `SystemExit`)."""
    import contextlib, io, subprocess
    from dnr.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: rc = main([cmd, *map(str, args)])
        except SystemExit as e: rc = e.code if isinstance(e.code, int) else 2
    return subprocess.CompletedProcess(['dnr', cmd, *map(str, args)], rc, out.getvalue(), err.getvalue())


def last_json(p):
    "The JSON summary a `dnr` command prints as its last line."
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---- built once per run ------------------------------------------------------------------------------------------

def built_once(name: str, key, build) -> Path:
    """The folder `build(folder)` filled, built once per test run and `key` (any JSON-able value: the build's inputs)
    and shared read-only by every test, on every xdist worker: the first caller builds under a file lock, the others
    wait and reuse it. A build that raised is not reused (the next caller builds again and sees the error)."""
    import hashlib, shutil
    from filelock import FileLock
    h = hashlib.sha256(json.dumps([os.environ['DNR_TEST_RUN'], key], sort_keys=True, default=str).encode()).hexdigest()[:16]
    out = BUILDS / f'{name}-{h}'
    BUILDS.mkdir(parents=True, exist_ok=True)
    with FileLock(str(BUILDS / f'{name}.lock')):
        if (out / '.built').exists(): return out
        for old in BUILDS.glob(f'{name}-*'): shutil.rmtree(old, ignore_errors=True)  # earlier runs' builds
        out.mkdir()
        build(out)
        (out / '.built').touch()
    return out


# ---- each chapter executed once -----------------------------------------------------------------------------------

SITE = ROOT / '_site_fallback'
sys.path.insert(0, str(ROOT / 'dev'))
from render_docs import build_inputs, read_entries  # noqa: E402


def stale(entry: dict | None, inputs: str, run: str | None, reuse: bool = False) -> str | None:
    """Why a chapter's rendered page must be rendered again (None: it is this run's, or with `reuse`, it was rendered
    without a failure from these notebooks, modules, data and packages in an earlier run)."""
    if entry is None: return 'not rendered'
    if entry.get('inputs') != inputs: return 'rendered from other notebooks, modules, data or packages'
    if reuse: return None if entry['status'] == 'ok' else 'failed in that build'
    return None if entry.get('run') == run else 'rendered in another test run'


_renderer: dict = {}


def _render(chapter: str, timeout: float = 900) -> tuple[int, str]:
    """Render one chapter in a child of this process's renderer (`dev/render_docs.py --serve`, started on first use: it
    imports the heavy libraries once and forks a fresh process per chapter); returns (exit status, the child's log).
    The child's CPU seconds count in the current test's (`_cpu`)."""
    import atexit, select, signal, subprocess
    z = _renderer.get('p')
    if z is None or z.poll() is not None:
        z = _renderer['p'] = subprocess.Popen([sys.executable, str(ROOT / 'dev' / 'render_docs.py'), '--serve'], cwd=ROOT, text=True,
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        atexit.register(lambda: z.poll() is None and (z.stdin.close(), z.wait(timeout=60)))
    z.stdin.write(f'nbs/{chapter}.ipynb\n'); z.stdin.flush()
    line = z.stdout.readline() if select.select([z.stdout], [], [], timeout)[0] else ''
    log = SITE / 'chapters' / f'{chapter}.log'
    log = log.read_text(errors='replace')[-6000:] if log.exists() else ''
    if not line.startswith(f'{chapter} '):  # hung past the timeout, or the renderer died: end it (and the chapter's process)
        try: os.killpg(z.pid, signal.SIGKILL)
        except ProcessLookupError: pass
        z.wait(); _renderer.clear()
        return -1, f"no result in {timeout:.0f}s (renderer said {line!r})\n{log}"
    _, rc, cpu = line.split()
    _children_cpu[0] += float(cpu)
    return int(rc), log


def rendered_chapter(chapter: str, reuse: bool = False) -> dict:
    """The manifest entry of `chapter` executed (every cell, `nbdev_test`'s skip rules) and rendered by
    `dev/render_docs.py` once in this test run: the first test that asks renders it in a fresh process (one per
    notebook, so no state leaks between chapters), under a lock; later ones, on any xdist worker, read its result."""
    from filelock import FileLock
    locks = ROOT / '.cache' / 'locks'; locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f'chapter-{chapter}.lock')):
        why = stale(read_entries(SITE).get(chapter), build_inputs(), os.environ['DNR_TEST_RUN'], reuse)
        if why:
            rc, log = _render(chapter)
            entry = read_entries(SITE).get(chapter)
            print(f"{chapter}: rendered ({why}), exit status {rc}")
            if rc not in (0, 1) or stale(entry, build_inputs(), os.environ['DNR_TEST_RUN'], reuse):
                raise AssertionError(f"dev/render_docs.py {chapter}: exit status {rc}, no entry of this run\n{log}")
    return read_entries(SITE)[chapter]


def chapter_param(chapter: str):
    "A pytest parameter for a chapter's tests: in xdist group `chapter`, so they run on the worker that renders it."
    return pytest.param(chapter, marks=pytest.mark.xdist_group(chapter), id=chapter)


# ---- the time budget and the order -------------------------------------------------------------------------------

_BUDGET_LINE = re.compile(r'^\s*Budget:\s*(\S.*)$', re.M)


def budget_reason(doc: str | None) -> str | None:
    "The reason a test or fixture docstring gives for taking more than the budget (`Budget: ...` line), if any."
    m = _BUDGET_LINE.search(doc or '')
    return m.group(1).strip() if m else None


_children_cpu: list = [0.0]  # CPU seconds of processes that are not this one's waited children (the renderer's)


def _cpu() -> float:
    "CPU seconds of this process and its finished children (torchrun, `dnr` subprocesses, chapters rendered for it)."
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime + _children_cpu[0]


_current: list = [None]  # the test being run: a fixture's setup time is counted against it


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    item._budget_t0 = (time.time(), _cpu())
    _current[0] = item
    yield
    _current[0] = None


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    t0, c0 = time.time(), _cpu()
    yield
    wall, cpu = time.time() - t0, _cpu() - c0
    if wall > BUDGET_S and cpu > BUDGET_S and _current[0] is not None:
        slow = _current[0].stash.setdefault(_SLOW_FIXTURES, [])
        slow.append(dict(fixture=fixturedef.argname, wall=round(wall, 1), cpu=round(cpu, 1),
                         reason=budget_reason(getattr(fixturedef.func, '__doc__', None))))


_SLOW_FIXTURES = pytest.StashKey[list]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if call.when == 'teardown' and hasattr(item, '_budget_t0'):
        t0, c0 = item._budget_t0
        fn = getattr(item, 'function', None)
        rep.user_properties.append(('budget', json.dumps(dict(
            wall=round(time.time() - t0, 1), cpu=round(_cpu() - c0, 1), reason=budget_reason(getattr(fn, '__doc__', None)),
            group=next((m.args[0] for m in item.iter_markers('xdist_group')), None),
            fixtures=item.stash.get(_SLOW_FIXTURES, [])))))


_timings: dict = {}


def _test_id(nodeid: str) -> str:
    "The test's id without the `@group` pytest-xdist's loadgroup appends to it."
    return re.sub(r'@[^\]/:]*$', '', nodeid)


def pytest_runtest_logreport(report):
    for k, v in report.user_properties:
        if k == 'budget': _timings[_test_id(report.nodeid)] = json.loads(v)


def over_budget(timings: dict, budget: float = BUDGET_S) -> list:
    """(nodeid, wall, cpu, reason) of each test over the budget, slowest first. Over budget: both its wall-clock and
    its CPU seconds exceed the budget (a test only slowed by a busy machine, or only waiting, is not counted as over).
    A fixture over budget is listed under the test that built it, with the fixture's own reason; the test needs none."""
    out = []
    for nodeid, t in timings.items():
        fixture_wall = sum(f['wall'] for f in t.get('fixtures', []))
        fixture_cpu = sum(f['cpu'] for f in t.get('fixtures', []))
        for f in t.get('fixtures', []):
            out.append((f"{nodeid} (fixture {f['fixture']})", f['wall'], f['cpu'], f['reason']))
        wall, cpu = t['wall'] - fixture_wall, t['cpu'] - fixture_cpu
        if wall > budget and cpu > budget: out.append((nodeid, round(wall, 1), round(cpu, 1), t['reason']))
    return sorted(out, key=lambda r: -r[1])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _timings or hasattr(config, 'workerinput'): return
    tr = terminalreporter
    over = over_budget(_timings)
    tr.section(f'tests over the {BUDGET_S:g} s budget (wall, CPU seconds)')
    for nodeid, wall, cpu, reason in over:
        tr.write_line(f"{wall:7.1f} {cpu:7.1f}  {nodeid}  -- {reason or 'NO REASON: add a line `Budget: <why>` to its docstring'}")
    if not over: tr.write_line('none')
    slowest = sorted(_timings.items(), key=lambda kv: -kv[1]['wall'])[:10]
    tr.section('ten slowest tests (wall, CPU seconds, setup + call + teardown)')
    for nodeid, t in slowest: tr.write_line(f"{t['wall']:7.1f} {t['cpu']:7.1f}  {nodeid}")
    if missing := [r[0] for r in over if not r[3]]:
        tr.write_line(f"{len(missing)} over budget without a reason: {missing}", red=True)


def pytest_sessionfinish(session, exitstatus):
    if not _timings or hasattr(session.config, 'workerinput'): return
    try:  # the order of the next run
        old = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
        old.update({k: v['wall'] for k, v in _timings.items()})
        DURATIONS.parent.mkdir(parents=True, exist_ok=True); DURATIONS.write_text(json.dumps(old, indent=0, sort_keys=True))
    except (OSError, ValueError): pass
    if any(not r[3] for r in over_budget(_timings)) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def expected_seconds() -> dict:
    "nodeid -> seconds, measured in the last run here (`.cache/test-durations.json`), else as committed (`tests/durations.json`)."
    for f in (DURATIONS, ROOT / 'tests' / 'durations.json'):
        try: return json.loads(f.read_text())
        except (OSError, ValueError): continue
    return {}


def pytest_collection_modifyitems(session, config, items):
    """Longest first: tests (an xdist group counts as one, with the sum of its tests' seconds) in decreasing expected
    time, so that with `-n 2 --dist loadgroup` the last to start are short and the workers finish together. Only under
    xdist: a plain run keeps each module's tests together (module-scoped fixtures are built once)."""
    if not (hasattr(config, 'workerinput') or getattr(config.option, 'numprocesses', None)): return
    secs = expected_seconds()
    group = lambda it: next((m.args[0] for m in it.iter_markers('xdist_group')), it.nodeid)
    total: dict = {}
    for it in items: total[group(it)] = total.get(group(it), 0) + secs.get(_test_id(it.nodeid), 1.0)
    pos = {it.nodeid: i for i, it in enumerate(items)}
    first = lambda it: 0 if it.nodeid.startswith('tests/test_notebooks.py') else 1  # a chapter's own test executes it
    items.sort(key=lambda it: (-total[group(it)], group(it), first(it), pos[it.nodeid]))
    if getattr(config.option, 'loadgroup', False):
        # pytest-xdist marks a grouped test by appending `@group` to its id (`item._nodeid`); pytest 9 keeps the id in
        # `item._id`, so that is lost and a group's tests go to any worker: append it where pytest 9 reads it
        from _pytest.nodeid import coerce_node_id
        for it in items:
            if (g := group(it)) != it.nodeid and not it.nodeid.endswith(f'@{g}'): it._id = coerce_node_id(f'{it.nodeid}@{g}')
