"""CPU per CAPTCHA image, in process, for two or more checkouts side by side.

    .venv/bin/python -m bench.captcha_cpu --tree now=. --tree before=/path/to/other/checkout

For each round runs every tree in turn in its own process: that tree's
services.captcha.render_jpegs (the text drawn, then the JPEG at quality 70, 160×60) over
`--images` random texts in batches of 8, as the render process does, after one warm-up batch.
Reports that process's CPU per image (`time.process_time()`): no server, no IPC, no HTTP.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time

ALPHABET = "ACEFHJKMNPRTUVWXY34679"
BATCH = 8


def measure(images: int) -> float:
    """In the tree of the current directory: CPU ms per image."""
    sys.path.insert(0, os.getcwd())
    from services.captcha.service import render_jpegs

    batches = [
        ["".join(secrets.choice(ALPHABET) for _ in range(4)) for _ in range(BATCH)]
        for _ in range(images // BATCH)
    ]
    render_jpegs(batches[0], 160, 60)  # fonts and caches loaded
    start = time.process_time()
    for texts in batches:
        render_jpegs(texts, 160, 60)
    return (time.process_time() - start) * 1000 / (len(batches) * BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=DIR")
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(f"{measure(args.images):.4f}")
        return
    trees = dict(tree.split("=", 1) for tree in args.tree)
    rounds: dict[str, list[float]] = {name: [] for name in trees}
    for round_no in range(1, args.rounds + 1):
        for name, tree in trees.items():
            # This file run by path in the tree's directory: it measures that tree's code.
            child = [sys.executable, __file__, "--tree", "x=.", "--child"]
            child += ["--images", str(args.images)]
            out = subprocess.run(child, cwd=tree, capture_output=True, text=True, check=True)
            rounds[name].append(float(out.stdout.strip()))
            print(f"round {round_no} {name:>10}: {rounds[name][-1]:.3f} ms CPU per image")
    for name, values in rounds.items():
        print(f"{name:>10}: median {statistics.median(values):.3f} ms CPU per image")


if __name__ == "__main__":
    main()
