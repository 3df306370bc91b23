"""Throughput of dnr.agents against a local endpoint with injected latency.

N requests, each answered after L seconds by a local OpenAI-compatible server (dnr.servers.ScriptedServer, run in
its own process so it does not share the client's GIL). Measured in one run:

- dnr: AgentPool (async, one process) at concurrency C. Ideal wall time = N·L/C; we print achieved / ideal
  throughput (goal >= 0.9).
- baseline, in the style of the original D&R scripts: `datasets.Dataset.map(fn, num_proc=P)` where every worker
  process makes its own blocking `openai.OpenAI` client and sends its share of the requests one at a time.
  Its ideal is N·L/P.

Prints a table and, last, one JSON line with the ratios.
Usage: python bench/agents_throughput.py [--n 640] [--latency 1.0] [--concurrency 64] [--procs 16] [--quick]
"""
import argparse, json, multiprocessing as mp, os, sys, time

os.environ.setdefault('HF_DATASETS_OFFLINE', '1'); os.environ.setdefault('HF_HUB_OFFLINE', '1')


def _serve(latency, q, stop):
    from dnr.servers import ScriptedServer
    with ScriptedServer(latency=latency) as srv:
        q.put(srv.openai_url)
        stop.wait()
        q.put(srv.model_calls)


_client = None
def _blocking_call(row, base_url):
    "One request with a per-process blocking client, as the original scripts did."
    global _client
    from openai import OpenAI
    if _client is None: _client = OpenAI(base_url=base_url, api_key='EMPTY', max_retries=0)
    r = _client.chat.completions.create(model='m', messages=[{'role': 'user', 'content': row['q']}], max_tokens=50, temperature=0.3)
    return {'a': r.choices[0].message.content}


def run_dnr(url, n, c):
    from dnr.agents import AgentPool
    spec = dict(name='s', provider='openai_compatible', model='m', base_url=url, max_tokens=50)
    reqs = [{'agent': 's', 'messages': [{'role': 'user', 'content': f'dnr question {i}'}]} for i in range(n)]
    with AgentPool([spec], concurrency=c, progress=False) as pool:
        pool.complete('s', [{'role': 'user', 'content': 'warm-up'}])  # open the connection pool outside the timing
        t = time.perf_counter(); rs = pool.complete_many(reqs); wall = time.perf_counter() - t
    assert all(r.ok for r in rs), [r.error for r in rs if not r.ok][:3]
    return wall


def run_process_pool(url, n, procs):
    import datasets
    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_list([{'q': f'pool question {i}'} for i in range(n)])
    t = time.perf_counter()
    out = ds.map(_blocking_call, fn_kwargs={'base_url': url}, num_proc=procs, load_from_cache_file=False)
    wall = time.perf_counter() - t
    assert len(out) == n and all(out['a'])
    return wall


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=640); p.add_argument('--latency', type=float, default=1.0)
    p.add_argument('--concurrency', type=int, default=64); p.add_argument('--procs', type=int, default=16)
    p.add_argument('--quick', action='store_true', help='small run for the test suite (< 20 s)')
    a = p.parse_args(argv)
    if a.quick: a.n, a.latency, a.concurrency, a.procs = 48, 0.4, 12, 4
    ctx = mp.get_context('spawn')
    q, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(a.latency, q, stop), daemon=True); server.start()
    try:
        url = q.get(timeout=60)
        dnr_wall = run_dnr(url, a.n, a.concurrency)
        pool_wall = run_process_pool(url, a.n, a.procs)
        stop.set(); calls = q.get(timeout=30)
    finally:
        stop.set(); server.join(10)
        if server.is_alive(): server.kill()
    ideal, ideal_pool = a.n * a.latency / a.concurrency, a.n * a.latency / a.procs
    res = {'n': a.n, 'latency_s': a.latency, 'concurrency': a.concurrency, 'procs': a.procs, 'server_calls': calls,
           'ideal_s': round(ideal, 3), 'dnr_wall_s': round(dnr_wall, 3), 'ratio_vs_ideal': round(ideal / dnr_wall, 3),
           'dnr_req_per_s': round(a.n / dnr_wall, 1), 'process_pool_wall_s': round(pool_wall, 3),
           'process_pool_ratio_vs_its_ideal': round(ideal_pool / pool_wall, 3),
           'process_pool_req_per_s': round(a.n / pool_wall, 1), 'speedup_vs_process_pool': round(pool_wall / dnr_wall, 2)}
    print(f"{'':34}{'wall s':>9}{'req/s':>9}{'ideal s':>9}{'ratio':>8}")
    print(f"{'dnr AgentPool, concurrency ' + str(a.concurrency):34}{dnr_wall:9.2f}{res['dnr_req_per_s']:9.1f}{ideal:9.2f}{res['ratio_vs_ideal']:8.3f}")
    print(f"{'datasets.map num_proc=' + str(a.procs):34}{pool_wall:9.2f}{res['process_pool_req_per_s']:9.1f}{ideal_pool:9.2f}"
          f"{res['process_pool_ratio_vs_its_ideal']:8.3f}")
    print(f"dnr vs process pool: {res['speedup_vs_process_pool']:.2f}x faster; dnr achieved {res['ratio_vs_ideal']:.3f} of ideal N*L/C")
    print(json.dumps(res))
    return 0


if __name__ == '__main__': sys.exit(main())
