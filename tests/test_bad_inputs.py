"""Bad input: every case ends in one line on stderr and exit status 2, before any work.

One row per case (command, arguments, a fragment the message must hold), so that a change cannot
regress any of them. The commands run in-process from a scratch folder holding a file ``afile``
(for "a file where a folder is expected"). Warnings (more threads than cores, a run of days) and
the lock on a run directory are tested beside the features they guard.
"""
import importlib
import shlex

import pytest

ENTRY = {"simulate.toy": "simulate.toy", "nets.train": "nets.train", "nets.sweep": "nets.sweep",
         "nets.regimes": "nets.regimes", "paper_figures": "paper_figures.__main__",
         "nets.data": "nets.data.__main__", "nets.monitor": "nets.monitor.demo", "nets.paper_check": "nets.paper_check"}

CASES = [
    ("simulate.toy", "--eta -1", '--eta values must be > 0'),
    ("simulate.toy", "--eta 0", '--eta values must be > 0'),
    ("simulate.toy", "--eta nan", '--eta values must be > 0'),
    ("simulate.toy", "--lam -1e-3", '--lam values must be >= 0'),
    ("simulate.toy", "--eta 2 --lam 0.6", 'eta*lam must be < 1'),
    ("simulate.toy", "--momentum 1", '--momentum values must lie in [0, 1)'),
    ("simulate.toy", "--noise -1", '--noise values must be >= 0'),
    ("simulate.toy", "--steps 0", '--steps'),
    ("simulate.toy", "--steps 1e11", "invalid int value: '1e11'"),
    ("simulate.toy", "--steps 100000000000", 'needs ~'),
    ("simulate.toy", "--seeds 0", '--seeds'),
    ("simulate.toy", "--seeds 100000000", '100,000,000 configuration(s)'),
    ("simulate.toy", "--seed0 -1", '--seed0 >= 0'),
    ("simulate.toy", "--record-every 5000", '--record-every 5000 must be < --steps 3000'),
    ("simulate.toy", "--dim 1", '--dim must be >= 2'),
    ("simulate.toy", "--init-norm 0", '--init-norm > 0'),
    ("simulate.toy", "--optimizer wrs", 'use --lam 0'),
    ("simulate.toy", "--lam 0", 'no weight decay'),
    ("simulate.toy", "--batch-size 8", '--batch-size applies to the data objectives'),
    ("simulate.toy", "--objective mlp --batch-size 0", '--batch-size must be in [2, 250]'),
    ("simulate.toy", "--objective mlp --batch-size 100000", '--batch-size must be in [2, 250]'),
    ("simulate.toy", "--method fast --objective mlp", '--method fast needs --objective quadratic'),
    ("simulate.toy", "--objective nope", "invalid choice: 'nope'"),
    ("simulate.toy", "--out afile/sub", 'cannot write to the output folder'),
    ("simulate.toy", "--bogus", 'unrecognized arguments: --bogus'),
    ("nets.train", "--lr -1", 'argument --lr'),
    ("nets.train", "--lr 0", 'argument --lr'),
    ("nets.train", "--lr 2 --wd 0.6", 'lr*wd must be < 1'),
    ("nets.train", "--wd -1", 'wd must be a finite number >= 0'),
    ("nets.train", "--momentum 1", 'momentum must lie in [0, 1)'),
    ("nets.train", "--width 0", 'argument --width'),
    ("nets.train", "--batch-size 0", 'argument --batch-size'),
    ("nets.train", "--iters 0", 'give a positive number of iterations or epochs'),
    ("nets.train", "--iters -5", 'argument --iters'),
    ("nets.train", "--eval-every -2", 'eval_every must be >= -1'),
    ("nets.train", "--image-size 2", 'image_size must be >= 4'),
    ("nets.train", "--image-size 100000", 'use a smaller --image-size'),
    ("nets.train", "--model vgg", "invalid choice: 'vgg'"),
    ("nets.train", "--norm ln --model resnet18", 'convnet only'),
    ("nets.train", "--optimizer adamw --momentum 0.9", 'SGD options'),
    ("nets.train", "--wrs-norm 1 --exp-lr", 'at most one of wrs_norm, exp_lr and fixed_elr'),
    ("nets.train", "--fixed-elr-per-layer", 'fixed_elr_per_layer needs fixed_elr'),
    ("nets.train", "--exp-lr --wd 0", 'exp_lr replaces weight decay'),
    ("nets.train", "--device tpu9", "not a device: 'tpu9'"),
    ("nets.train", "--dataset cifar10 --data-dir nowhere", 'cifar10 not found in nowhere'),
    ("nets.train", "--dataset cifar10 --data-dir afile", '--data-dir afile is a file'),
    ("nets.train", "--out afile/sub", 'cannot write to the output folder'),
    ("nets.train", "--resume afile", '--resume expects a run directory'),
    ("nets.train", "--resume nowhere", 'nowhere is not there'),
    ("nets.train", "--resume . --lr 0.5", '--lr cannot change'),
    ("nets.train", "--batch-size 100000 --dataset synthetic", 'fewer than one batch'),
    ("nets.sweep", "--lrs -1", 'argument --lrs'),
    ("nets.sweep", "--lrs 2 --wd 0.6", 'lr*wd must be < 1'),
    ("nets.sweep", "", 'required: --lrs'),
    ("nets.regimes", "--elrs 0", 'argument --elrs'),
    ("nets.regimes", "--elrs 1e-3 --fixed-elr 1", 'not --fixed-elr'),
    ("nets.regimes", "--elrs 1e-3 --model resnet18 --norm ln", 'convnet only'),
    ("nets.regimes", "", 'required: --elrs'),
    ("paper_figures", "nope", "invalid choice: 'nope'"),
    ("paper_figures", "cifar --data-dir nowhere", 'cifar10 not found in nowhere'),
    ("paper_figures", "precision --data-dir nowhere", 'cifar10 not found in nowhere'),
    ("nets.train", "--precision fp16", "argument --precision: invalid choice: 'fp16'"),
    ("nets.sweep", "--precision half", "argument --precision: invalid choice: 'half'"),
    ("nets.paper_check", "--out o --precision fp8", "argument --precision: invalid choice: 'fp8'"),
    ("nets.paper_check", "--plan nowhere.json", 'cannot plan from nowhere.json'),
    ("paper_figures", "phase --out afile/sub", 'cannot write to the output folder'),
    ("nets.data", "download cifar7 x", "invalid choice: 'cifar7'"),
    ("nets.data", "pack --data-dir nowhere out.npz", 'required: --train'),
    ("nets.monitor", "", 'give either --demo or RUN_DIRs'),
    ("nets.monitor", "--demo --epochs 0", '--epochs must be >= 1'),
    ("nets.monitor", "nowhere", 'no periods.json'),
    ("nets.paper_check", "--out o --data-dir nowhere", 'cifar10 not found in nowhere'),
    ("nets.paper_check", "--out o --lrs -1", 'argument --lrs'),
    ("paper_figures", "phase --publish afile/sub", "cannot write to the output folder"),
    ("nets.train", "--threads -1", "argument --threads"),
    ("nets.train", "--resume afile --threads 1", "afile is a file"),
]


@pytest.mark.parametrize("module,args,needle", CASES, ids=[f"{m} {a}" for m, a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(module, args, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder\n")
    main = importlib.import_module(ENTRY[module]).main
    with pytest.raises(SystemExit) as exc:
        main(shlex.split(args))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"python -m {module}") and needle in err[0], err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]        # refused before any work


def test_the_table_covers_every_command():
    assert {m for m, _, _ in CASES} == set(ENTRY)
    assert len(CASES) >= 60
