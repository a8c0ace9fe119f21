"""``python -m nets.data`` -- get CIFAR once, or pack a subset of it into one file.

  download NAME DIR   fetch the official python-version archive of NAME (cifar10, cifar100),
                      check its published MD5, extract it atomically to DIR/<folder>/; then pass
                      --data-dir DIR (or set $SIBN_DATA_DIR=DIR) to the training commands
  pack OUT.npz        the first --train / --test images of a data folder as one uint8 file
                      (<= 50 MiB), loadable as --data-dir OUT.npz (e.g. to carry to a GPU machine)
"""
from __future__ import annotations

import argparse
import sys

from cli import CliParser, cli_fail

PROG = "python -m nets.data"

__all__ = ["build_parser", "main"]


def _count(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s!r}")
    return v


def build_parser() -> CliParser:
    from nets.data import CIFAR_SETS, DATA_DIR_ENV
    from nets.data.pack import DEFAULT_MAX_MIB

    p = CliParser(prog=PROG, description=__doc__.split("\n\n", 1)[1],
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{download,pack}", parser_class=CliParser)
    d = sub.add_parser("download", help="fetch, check (MD5) and extract CIFAR into DIR")
    d.add_argument("name", choices=list(CIFAR_SETS), help="data set")
    d.add_argument("dir", help="folder to extract into (it gets <folder>/, e.g. cifar-10-batches-py/)")
    d.add_argument("--url", default=None, help="archive URL (default: the official one; for a mirror)")
    d.add_argument("--md5", default=None, help="expected MD5 of the archive (default: the published one)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    k = sub.add_parser("pack", help="the first --train/--test images of a data folder as one .npz")
    k.add_argument("out", help="the .npz to write (put it in packs/, which git ignores)")
    k.add_argument("--dataset", choices=list(CIFAR_SETS), default="cifar10", help="default %(default)s")
    k.add_argument("--data-dir", default=None,
                   help=f"folder holding the extracted python version (default ${DATA_DIR_ENV})")
    k.add_argument("--train", type=_count, required=True, help="number of training images (the first N)")
    k.add_argument("--test", type=_count, default=1000, help="number of test images (default %(default)s)")
    k.add_argument("--max-mib", type=float, default=DEFAULT_MAX_MIB,
                   help="refuse to write a larger file (default %(default)s MiB)")
    return p


def main(argv=None) -> int:
    from nets.data import DataError

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "download":
            from nets.data.download import download_cifar

            folder = download_cifar(args.name, args.dir, url=args.url, md5=args.md5,
                                    progress=False if args.quiet else None)
            print(f"{args.name}: {folder} is ready; use --data-dir {args.dir} (or export SIBN_DATA_DIR={args.dir})")
        else:
            if not args.out.endswith(".npz"):
                cli_fail(PROG, f"the pack must be a .npz file, got {args.out!r}")
            from nets.data.pack import write_pack

            info = write_pack(args.dataset, args.data_dir, args.out, args.train, args.test, max_mib=args.max_mib)
            print(f"{info['path']}: {info['n_train']} train + {info['n_test']} test images of {info['dataset']}, "
                  f"{info['bytes'] / 2**20:.1f} MiB (train images per class {info['train_per_class']}); "
                  f"use --dataset {info['dataset']} --data-dir {info['path']}")
    except DataError as exc:
        cli_fail(PROG, str(exc))
    except KeyboardInterrupt:
        cli_fail(PROG, "interrupted; nothing half-made was left behind", 130)
    return 0


if __name__ == "__main__":
    status = main()
    from cli import exit_process  # after main(): its Ctrl-C handling covers start-up

    exit_process(status)
