"""Start-up time of the console commands: ``--help``, against importing the code each command runs.

The commands (ganforge.cli) let Hydra compose their config before importing torch and Lightning, so ``--help`` and a
refused option pay only for Hydra; a real start still imports the command's module. For each command this prints
the median wall time of ``ganforge-<command> --help`` and of ``python -c "import <its module>"`` (what every start,
``--help`` included, imported before), and the imports that take longest (``python -X importtime``, cumulative).

    .venv/bin/python benchmarks/startup.py                 # ~2 min on 2 cores; run it on an otherwise idle machine
    .venv/bin/python benchmarks/startup.py --repeats 3 --commands sample
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
#: Command -> the module it runs.
COMMANDS = {
    "train": "ganforge.train",
    "sample": "ganforge.sample",
    "eval": "ganforge.evaluate",
    "encode": "ganforge.encode",
    "translate": "ganforge.translate",
    "train-classifier": "ganforge.train_classifier",
}


def wall_time(command: list[str]) -> float:
    """Seconds ``command`` takes to exit (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def median_time(command: list[str], repeats: int) -> float:
    return statistics.median(wall_time(command) for _ in range(repeats))


def slowest_imports(module: str, top: int) -> list[tuple[str, float]]:
    """The ``top`` packages other than ganforge that importing ``module`` spends most time in: each package's first
    import, cumulative seconds (they overlap: torch's includes numpy's)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], check=True, capture_output=True, text=True
    )
    totals: dict[str, float] = {}
    for line in result.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[1].strip().isdigit():  # the header
            continue
        package = fields[2].strip().split(".")[0]
        if package != "ganforge":
            totals[package] = max(totals.get(package, 0.0), int(fields[1]) / 1e6)
    return sorted(totals.items(), key=lambda item: -item[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--commands", nargs="+", choices=list(COMMANDS), default=list(COMMANDS))
    parser.add_argument("--top", type=int, default=6, help="how many of the slowest imports to list")
    args = parser.parse_args()

    print(f"median of {args.repeats} runs, seconds\n")
    print("| command | `--help` | `import` of its module | slowest imports of that module (cumulative s) |")
    print("|---|---:|---:|---|")
    for command in args.commands:
        module = COMMANDS[command]
        help_s = median_time([str(BIN / f"ganforge-{command}"), "--help"], args.repeats)
        import_s = median_time([sys.executable, "-c", f"import {module}"], args.repeats)
        slowest = ", ".join(f"{name} {seconds:.2f}" for name, seconds in slowest_imports(module, args.top))
        print(f"| ganforge-{command} | {help_s:.2f} | {import_s:.2f} | {slowest} |")


if __name__ == "__main__":
    main()
