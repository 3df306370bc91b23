"""Benchmark tree-aware T-DPO against TRL's DPOTrainer on one preference tree of the paper's shape.

Usage: python bench/tdpo.py [--quick] [--model PATH] [--nodes 32 --context-tokens 600 --answer-tokens 300] [--share context|responses]
GPU: models load in bf16 where supported; --checkpointing (activation checkpointing in both trainers),
--check-nodes 0 (skip the float32 loss check, which runs on the CPU).
Same as `dnr bench tdpo ...`. Prints pairs/s, tokens and peak memory of both; last line JSON with
pairs_per_s_ratio (ours / TRL) and max_abs_loss_diff.
"""
import sys
from dnr.bench import bench_cli

if __name__ == '__main__': sys.exit(bench_cli(['tdpo', *sys.argv[1:]]))
