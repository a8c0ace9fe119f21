"""``python -m nets.regimes`` -- the three regimes of a network trained on the sphere, over fixed ELRs.

Kodryan et al. (NeurIPS 2022) train the SI weights at a fixed norm with a fixed effective LR
(``--fixed-elr``, :mod:`theory.sphere`) and find convergence, a chaotic equilibrium and
divergence as the ELR grows. Each ELR is one :func:`nets.run_training` run in its own
sub-directory of the sweep directory; each run is labelled by the rule of
:mod:`analysis.regimes` (the same code that labels the toy runs) from its recorded train loss
and effective gradient norm, with a random guess ln(classes) as the reference loss. With
``--sharpness-every`` the runs also measure eta*lambda_max = ELR x sphere sharpness, the
destabilisation condition's left-hand side (:mod:`nets.monitor.sharpness`, :mod:`theory.stability`).

Writes ``regimes.json`` (rows, boundaries, the rule's parameters), ``regimes.csv`` and
``regimes.png``. Re-running the same command with the same ``--sweep-dir`` skips finished runs
and resumes an interrupted one.
"""
from __future__ import annotations

import math
import sys
from datetime import datetime
from pathlib import Path

from cli import CliParser, catch_interrupts, cli_fail

PROG = "python -m nets.regimes"

__all__ = ["build_parser", "main"]


def build_parser() -> CliParser:
    from cli import pos_float
    from nets.options import add_config_arguments
    from nets.presets import preset_parser

    p = preset_parser(prog=PROG, description=__doc__.split("\n\n", 1)[0].split("--", 1)[1].strip())
    p.add_argument("--elrs", type=pos_float, nargs="+", required=True, metavar="ETA_TILDE",
                   help="fixed effective learning rates to compare (one run each)")
    p.add_argument("--sweep-dir", default=None,
                   help="sweep directory (default: <out>/regimes-<dataset>-<model>-<time>); an existing one "
                        "is continued")
    add_config_arguments(p)
    return p


def main(argv=None) -> int:
    catch_interrupts()
    from nets.data import DataError, check_data
    from nets.options import config_from_args
    from nets.training.regime_sweep import regime_configs, run_regime_sweep

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.fixed_elr is not None:
            raise ValueError("give the effective LRs with --elrs, not --fixed-elr")
        base = config_from_args(args, fixed_elr=min(args.elrs))
        configs = regime_configs(base, args.elrs, per_layer=args.fixed_elr_per_layer)
        check_data(base)                    # before any folder is made
        sweep_dir = args.sweep_dir or (Path(base.out) /
                                       f"regimes-{base.dataset}-{base.model}-{datetime.now():%Y%m%d-%H%M%S}")
        rows, bounds, completed = run_regime_sweep(configs, sweep_dir)
    except (DataError, ValueError, FileNotFoundError) as exc:
        cli_fail(PROG, str(exc))
    except KeyboardInterrupt:
        cli_fail(PROG, "aborted; run the same command with --sweep-dir to continue", 130)
    print(f"{sweep_dir}: {sum(r['completed'] for r in rows)}/{len(configs)} runs completed")
    for r in rows:
        print(f"  ELR {r['fixed_elr']:g}{' per layer' if r['per_layer'] else ''}: {r['regime']:11s} "
              f"loss {r['final_loss']:.3g} ({r['level']:.2g} x chance), {r['angle']:.2g} rad/step, trends: "
              f"loss t^{r['loss_trend']:+.2f} "
              f"G t^{r['grad_trend']:+.2f}, train acc {r['final_train_acc']:.2f}"
              + (f", ELR x sharpness {r['eff_lr_sharpness']:.3g}" if math.isfinite(r["eff_lr_sharpness"]) else ""))
    for variant, b in bounds.items():
        print(f"  boundaries ({variant}): convergence up to ~{_fmt(b['convergence_upper'])}, divergence from "
              f"~{_fmt(b['divergence_lower'])}{'' if b['ordered'] else ' (labels not monotone in the ELR)'}")
    if not completed:
        print(f"interrupted; continue with the same command and --sweep-dir {sweep_dir}")
        return 130
    return 0


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}"


if __name__ == "__main__":
    status = main()
    from cli import exit_process  # after main(): its Ctrl-C handling covers start-up

    exit_process(status)
