"""Extraction + grading throughput on real data, so grading never dominates a run.

Prints answers/s for extraction and grading of the 24,407 recorded MMLU-Pro answers and the 5,000 MATH test
solutions, and the ratio of `grade_many` (worker processes) to grading in one process, measured in this run.
Usage: python bench/grading.py [--quick]   (needs DNR_DATA_DIR)
"""
import argparse, json, re, time
from dnr.data import load_math, load_mmlu_pro, load_recorded_answers
from dnr.grading import extract_mmlu_pro, extract_answer, grade, grade_many

def rate(n, t): return n / t if t > 0 else float('inf')

def main(argv=None):
    ap = argparse.ArgumentParser(); ap.add_argument('--quick', action='store_true', help='1/10 of the data')
    a = ap.parse_args(argv)
    rec, mp = load_recorded_answers(), {q.id: q for q in load_mmlu_pro()}
    math = load_math('test')
    if a.quick: rec, math = rec.iloc[::10], math[::10]
    t = time.perf_counter(); ex = [extract_answer(r) for r in rec.response]; t_ex = time.perf_counter() - t
    t = time.perf_counter(); ok = [grade(e.answer, mp[i].gold) for e, i in zip(ex, rec.question_id)]; t_gr = time.perf_counter() - t
    print(f"MMLU-Pro recorded answers: {len(ex)}  extract {rate(len(ex), t_ex):,.0f}/s  grade {rate(len(ex), t_gr):,.0f}/s  accuracy {sum(ok)/len(ok):.3f}")
    # MMLU-Pro's official chain, its own regexes (quadratic on long answers) against dnr's linear-time extract_mmlu_pro
    p1, p2 = re.compile(r"answer is \(?([A-J])\)?"), re.compile(r'.*[aA]nswer:\s*([A-J])')
    p3 = re.compile(r"\b[A-J]\b(?!.*\b[A-J]\b)", re.DOTALL)
    def official(t):
        for p in (p1, p2):
            if m := p.search(t): return m.group(1)
        return m.group(0) if (m := p3.search(t)) else None
    t = time.perf_counter(); off = [official(r) for r in rec.response]; t_off = time.perf_counter() - t
    t = time.perf_counter(); ours = [extract_mmlu_pro(r).answer for r in rec.response]; t_ours = time.perf_counter() - t
    assert off == ours, sum(a != b for a, b in zip(off, ours))
    print(f"MMLU-Pro chain on {len(ours)} answers: identical letters; official regexes {rate(len(ours), t_off):,.0f}/s, "
          f"extract_mmlu_pro {rate(len(ours), t_ours):,.0f}/s ({t_off / t_ours:.0f}x)")
    t = time.perf_counter(); mex = [extract_answer(q.solution, 'math') for q in math]; t_mex = time.perf_counter() - t
    items = [(e.answer, q.gold, 'math') for e, q in zip(mex, math)]
    t = time.perf_counter(); seq = grade_many(items, processes=0); t_seq = time.perf_counter() - t
    t = time.perf_counter(); par = grade_many(items); t_par = time.perf_counter() - t
    assert seq == par
    print(f"MATH test solutions: {len(items)}  extract {rate(len(items), t_mex):,.0f}/s  "
          f"grade 1 process {rate(len(items), t_seq):,.0f}/s  grade_many {rate(len(items), t_par):,.0f}/s  "
          f"correct {sum(par)}/{len(par)}")
    # Wrong answers take math-verify's full sympy path (no string match): pair each gold with the next problem's gold
    wrong = [(math[i - 1].gold, q.gold, 'math') for i, q in enumerate(math)]
    t = time.perf_counter(); wseq = grade_many(wrong, processes=0); t_wseq = time.perf_counter() - t
    t = time.perf_counter(); wpar = grade_many(wrong); t_wpar = time.perf_counter() - t
    assert wseq == wpar
    print(f"MATH mismatched answers (sympy path): {len(wrong)}  grade 1 process {rate(len(wrong), t_wseq):,.0f}/s  "
          f"grade_many {rate(len(wrong), t_wpar):,.0f}/s  ratio {t_wseq / t_wpar:.2f}x  judged equal {sum(wpar)}")
    summary = {'mmlu_pro_extract_per_s': rate(len(ex), t_ex), 'mmlu_pro_grade_per_s': rate(len(ex), t_gr),
               'math_extract_per_s': rate(len(items), t_mex), 'math_grade_per_s': rate(len(items), t_par),
               'math_wrong_grade_per_s': rate(len(wrong), t_wpar),
               'grade_many_vs_one_process': t_wseq / t_wpar if t_wpar else float('inf'),
               'mmlu_pro_chain_linear_vs_official': t_off / t_ours if t_ours else float('inf')}
    print(json.dumps(summary))

if __name__ == '__main__': main()
