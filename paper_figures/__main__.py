"""``python -m paper_figures`` -- regenerate the paper's figures and the theory-vs-experiment report."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from nets.data import DataError
from simulate.io import CliParser, cli_fail

from . import EXTENSIONS, FIGURES

PROG = "python -m paper_figures"


def build_parser() -> CliParser:
    names = "\n".join(f"  {k:14s} {v[1]}" for k, v in FIGURES.items())
    extra = "\n".join(f"  {k:14s} {v[1]}" for k, v in EXTENSIONS.items())
    p = CliParser(prog=PROG, description="Regenerate the key figures of Lobacheva et al. (NeurIPS 2021).",
                  epilog=f"figures:\n{names}\n  all            every figure\n  report         every figure "
                         "and report.md with a predicted-vs-measured table\n\n"
                         f"beyond the paper (not in all/report):\n{extra}\n\n"
                         "--quick runs CPU-sized experiments (about 1 min in all on 2 cores). The full mode sizes the "
                         "network runs for a GPU: with $SIBN_DATA_DIR pointing at CIFAR-10, 750k ConvNet "
                         "iterations; without it, the digits at 16x16 (60k iterations, measured 25 min on 2 CPU "
                         "cores). Network runs are cached under OUT/net_runs and resumed if interrupted.",
                  formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("name", choices=[*FIGURES, *EXTENSIONS, "all", "report"], metavar="NAME",
                   help="figure name, 'all' or 'report' (see below)")
    p.add_argument("--quick", action="store_true", help="CPU-sized runs (minutes)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default runs/paper_figures[-quick])")
    p.add_argument("--publish", type=Path, default=None,
                   help="with 'report': also copy report.md and the PNGs to this folder (e.g. docs/figures)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or Path("runs") / ("paper_figures-quick" if args.quick else "paper_figures")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        cli_fail(PROG, f"cannot create output folder {out}: {exc.strerror}")
    names = list(FIGURES) if args.name in ("all", "report") else [args.name]
    results, t0 = [], time.perf_counter()
    try:
        for k, name in enumerate(names, 1):
            t = time.perf_counter()
            print(f"[{k}/{len(names)}] {name} ...", flush=True)
            res = {**FIGURES, **EXTENSIONS}[name][0].make(out, args.quick)
            results.append(res)
            print(f"      wrote {', '.join(p.name for p in res.files)} ({time.perf_counter() - t:.1f} s)", flush=True)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished figures are in {out}; network runs resume from their checkpoints",
              file=sys.stderr)
        return 130
    except (FileNotFoundError, DataError) as exc:     # e.g. SIBN_DATA_DIR pointing nowhere
        cli_fail(PROG, str(exc))
    if args.name == "report":
        from .report import write_report
        path = write_report(out, args.quick, results, time.perf_counter() - t0, args.publish)
        print(f"report: {path}")
    print(f"output folder: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
