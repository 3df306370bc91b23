"""Each chapter's inline tests: every cell run as `nbdev_test` runs it (its skip rules: `tst_flags` such as `#| slow`,
`#| eval: false`, the `nbdev_export()` call), one process per notebook so no state leaks. The execution is the docs
build's (`dev/render_docs.py`, which also renders the chapter's page from it, checked by `tests/test_docs.py`): each
chapter is executed once per test run. A failing cell fails this test with the chapter, the cell and its traceback.
While writing a chapter, `nbdev_test --path nbs/NN_x.ipynb --do_print` runs it alone.
"""
import pytest
from conftest import ROOT, chapter_param, rendered_chapter

NOTEBOOKS = sorted(p.stem for p in (ROOT / 'nbs').glob('*.ipynb') if not p.name.startswith('_'))


@pytest.mark.parametrize('nb', [chapter_param(c) for c in NOTEBOOKS])
def test_notebook(nb):
    """Every cell of the chapter runs without an error.

    Budget: a chapter runs all its cells; the long ones train and evaluate (07b_mini: every method of the miniature
    Table 1, 07a_demo: the demo pipeline, 06_eval and 05*: training on the tiny model)."""
    e = rendered_chapter(nb)
    print(f"{nb}: {e['seconds']:.1f}s")
    assert e['status'] == 'ok', f"nbs/{nb}.ipynb: {e['error']}\n{e.get('traceback') or ''}"[-6000:]
