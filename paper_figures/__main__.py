"""``python -m paper_figures`` -- regenerate the paper's figures and the theory-vs-experiment report."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from cli import CliParser, catch_interrupts, cli_fail, os_error_line, writable_dir
from paper_figures import EXPERIMENTS, EXTENSIONS, FIGURES

PROG = "python -m paper_figures"


def build_parser() -> CliParser:
    names = "\n".join(f"  {k:14s} {v[1]}" for k, v in {**FIGURES, **EXPERIMENTS}.items())
    extra = "\n".join(f"  {k:14s} {v[1]}" for k, v in EXTENSIONS.items())
    p = CliParser(prog=PROG, description="Regenerate the key figures of Lobacheva et al. (NeurIPS 2021).",
                  epilog=f"figures:\n{names}\n  all            every figure\n  report         every figure "
                         "and report.md with a predicted-vs-measured table\n\n"
                         f"beyond the paper (not in all/report):\n{extra}\n\n"
                         "--quick runs CPU-sized experiments (measured 150 s in all on 2 cores). The full mode sizes the "
                         "network runs for a GPU: with $SIBN_DATA_DIR pointing at CIFAR-10, 750k ConvNet "
                         "iterations; without it, the digits at 16x16 (60k iterations, measured 25 min on 2 CPU "
                         "cores). Network runs are cached under OUT/net_runs and resumed if interrupted.",
                  formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("name", choices=[*FIGURES, *EXPERIMENTS, *EXTENSIONS, "all", "report"], metavar="NAME",
                   help="figure name, 'all' or 'report' (see below)")
    p.add_argument("--data-dir", default=None,
                   help="for 'cifar' and 'precision': folder holding cifar-10-batches-py/ (default $SIBN_DATA_DIR); get it with "
                        "'python -m nets.data download cifar10 DIR'")
    p.add_argument("--quick", action="store_true", help="CPU-sized runs (minutes)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                   help="for 'cifar': compute precision of its runs (default: the preset's, fp32; "
                        "bf16 = autocast, see docs/measurements.md); its runs are cached apart")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default runs/paper_figures[-quick])")
    p.add_argument("--publish", type=Path, default=None,
                   help="also copy each figure's PNG and JSON into this folder (e.g. docs/figures, or "
                        "docs/figures/cifar for 'cifar'); with 'report' the PNGs and report.md")
    return p


def publish_files(result, folder: Path, suffixes) -> None:
    """Copy a result's files with the given suffixes into ``folder`` (e.g. docs/figures/cifar)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for f in result.files:
        if Path(f).suffix in suffixes:
            shutil.copy2(f, folder / Path(f).name)


def main(argv=None) -> int:
    catch_interrupts()
    from nets.data import DataError, cifar_source
    from paper_figures.run_pool import RunFailed

    args = build_parser().parse_args(argv)
    if args.precision is not None and args.name != "cifar":
        cli_fail(PROG, f"--precision applies to 'cifar' only ('precision' runs both; the toy has none), not {args.name!r}")
    try:
        if args.name in EXPERIMENTS:            # the real data: found before any folder is made
            cifar_source("cifar10", args.data_dir)
    except DataError as exc:
        cli_fail(PROG, str(exc))
    if args.publish is not None:
        writable_dir(PROG, args.publish)
    out = writable_dir(PROG, args.out or Path("runs") / ("paper_figures-quick" if args.quick else "paper_figures"))
    names = list(FIGURES) if args.name in ("all", "report") else [args.name]
    results, t0 = [], time.perf_counter()
    try:
        for k, name in enumerate(names, 1):
            t = time.perf_counter()
            print(f"[{k}/{len(names)}] {name} ...", flush=True)
            if name == "cifar" and args.precision is not None:
                res = EXPERIMENTS[name][0].make(out, args.quick, data_dir=args.data_dir, precision=args.precision)
            elif name in EXPERIMENTS:
                res = EXPERIMENTS[name][0].make(out, args.quick, data_dir=args.data_dir)
            else:
                res = {**FIGURES, **EXTENSIONS}[name][0].make(out, args.quick)
            results.append(res)
            print(f"      wrote {', '.join(p.name for p in res.files)} ({time.perf_counter() - t:.1f} s)", flush=True)
        if args.name == "report":
            from paper_figures.report import write_report
            path = write_report(out, args.quick, results, time.perf_counter() - t0, args.publish)
            print(f"report: {path}")
        elif args.publish is not None:
            for res in results:
                publish_files(res, args.publish, (".png", ".json"))
            print(f"published {', '.join(r.name for r in results)} to {args.publish}")
    except KeyboardInterrupt:
        done = ", ".join(r.name for r in results) or "none"
        print(f"\ninterrupted: nothing published; finished figures ({done}) are in {out}; network runs "
              "resume from their checkpoints when the same command runs again", file=sys.stderr)
        return 130
    except RunFailed as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except DataError as exc:             # e.g. SIBN_DATA_DIR pointing nowhere or at a broken pickle
        cli_fail(PROG, str(exc))
    except OSError as exc:               # e.g. the disk filled up while writing
        cli_fail(PROG, os_error_line(exc))
    print(f"output folder: {out}")
    return 0


if __name__ == "__main__":
    status = main()
    from cli import exit_process  # after main(): its Ctrl-C handling covers start-up

    exit_process(status)
