#!/usr/bin/env python3
"""The mutation score of hostsyncd/core/, per module and in total, from mutmut's results.

`make mutation` runs this after `mutmut run`. It reads the `.meta` files mutmut 3 leaves
under mutants/ (one per mutated module, mutant name -> the test run's exit code), so it
needs nothing but the standard library, and prints:

    module                killed/total   score   survived
    hostsyncd.core.graph      400/420    95.2%         20
    ...

A mutant counts as killed when the tests failed on it (exit 1, or 3 for pytest's internal
error) or it timed out (an endless loop the tests caught); as surviving when they passed.
Anything else (not checked, no tests, suspicious) counts against the score, and is listed
with the survivors by `--survivors`. Exits 1 when the total is under `--fail-under`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "mutants" / "hostsyncd" / "core"

KILLED = frozenset({1, 3})
# mutmut's timeout codes (its own, SIGXCPU as seen by the parent, and a killed child).
TIMEOUT = frozenset({36, 24, -24, 152, 255})
SURVIVED = 0


def status(code: int | None) -> str:
    if code in KILLED or code in TIMEOUT:
        return "killed"
    if code == SURVIVED:
        return "survived"
    return "not checked" if code is None else f"other (exit {code})"


def load(core: Path) -> dict[str, dict[str, int | None]]:
    """Per module (dotted name), mutant name -> exit code."""
    out: dict[str, dict[str, int | None]] = {}
    for meta in sorted(core.glob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            out[f"hostsyncd.core.{meta.name.removesuffix('.py.meta')}"] = codes
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survivors", action="store_true",
                        help="also list every mutant not killed")
    parser.add_argument("--fail-under", type=float, default=0.0, metavar="PERCENT",
                        help="exit 1 when the total score is below this")
    parser.add_argument("--core", type=Path, default=CORE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    modules = load(args.core)
    if not modules:
        print(f"no mutmut results under {args.core}: run `make mutation` first",
              file=sys.stderr)
        return 2
    width = max(len(name) for name in modules)
    print(f"{'module':<{width}}  {'killed/total':>12}  {'score':>6}  {'survived':>8}")
    killed_all = total_all = 0
    left: list[tuple[str, str]] = []
    for name, codes in modules.items():
        counts = Counter(status(code) for code in codes.values())
        killed, total = counts["killed"], len(codes)
        killed_all += killed
        total_all += total
        print(f"{name:<{width}}  {f'{killed}/{total}':>12}  {100 * killed / total:5.1f}%  "
              f"{total - killed:>8}")
        left += [(mutant, status(code)) for mutant, code in codes.items()
                 if status(code) != "killed"]
    score = 100 * killed_all / total_all
    print(f"{'total':<{width}}  {f'{killed_all}/{total_all}':>12}  {score:5.1f}%  "
          f"{total_all - killed_all:>8}")
    if args.survivors:
        for mutant, why in left:
            print(f"  {mutant}: {why}")
    if score < args.fail_under:
        print(f"mutation score {score:.1f}% is under {args.fail_under:g}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
