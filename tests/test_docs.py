"""The documents' commands parse with the current command lines, and their figures exist.

Every ``python -m <module> ...`` line in a code block of the READMEs and docs/ is parsed
by that module's own parser (nothing is run), and a nets command's flags must also make a valid
:class:`nets.TrainConfig`; so a renamed or removed flag fails here, not in a user's shell.
"""
import re
import shlex
from pathlib import Path

import pytest

import paper_figures.__main__ as paper_figures_cli
import simulate.toy
from nets import options, paper_check, regimes, sweep, train
from nets.data import __main__ as nets_data_cli
from nets.monitor import demo as monitor_demo
from nets.training.regime_sweep import regime_configs
from nets.training.sweep import sweep_configs

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "nets" / "README.md", ROOT / "docs" / "theory.md", ROOT / "docs" / "measurements.md",
        ROOT / "docs" / "nets.md"]
PARSERS = {"simulate.toy": simulate.toy.build_parser, "nets.train": train.build_parser,
           "nets.sweep": sweep.build_parser, "nets.regimes": regimes.build_parser,
           "paper_figures": paper_figures_cli.build_parser,
           "nets.monitor": monitor_demo.build_parser, "nets.data": nets_data_cli.build_parser,
           "nets.paper_check": paper_check.build_parser}


def _code_lines(text: str):
    """Lines of fenced blocks and of 4-space indented blocks, continuations joined."""
    lines, fenced, out = text.splitlines(), False, []
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            if out and out[-1].endswith("\\"):
                out[-1] = out[-1][:-1] + " " + line.strip()
            else:
                out.append(line.strip())
    return out


def _commands(docs=None):
    """(module, argv, id) of every known ``python -m`` command in the code blocks of ``docs``
    (name -> text; default the READMEs); ``[optional parts]`` and ``# comments`` dropped."""
    docs = docs or {str(d.relative_to(ROOT)): d.read_text() for d in DOCS}
    found = []
    for name, text in docs.items():
        for line in _code_lines(text):
            m = re.search(r"python -m (\S+)(.*)", line)
            if not m or m.group(1) not in PARSERS:
                continue
            args = re.sub(r"\[[^\]]*\]", "", m.group(2).split("  #")[0].split(" # ")[0])
            found.append((m.group(1), shlex.split(args), f"{name}: python -m {m.group(1)}{args}".strip()))
    return found


def _check(module, args):
    ns = PARSERS[module]().parse_args(args)
    if module == "nets.train" and not ns.resume:
        options.config_from_args(ns).validate()
    if module == "nets.regimes":
        for cfg in regime_configs(options.config_from_args(ns, fixed_elr=min(ns.elrs)), ns.elrs):
            cfg.validate()
    if module == "nets.sweep":
        for cfg in sweep_configs(options.config_from_args(ns, lr=max(ns.lrs)), ns.lrs, ns.wds):
            cfg.validate()


COMMANDS = [pytest.param(m, a, id=i) for m, a, i in _commands()]


def test_the_readmes_show_commands_of_every_entry_point():
    assert {c.values[0] for c in COMMANDS} == set(PARSERS)
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("module,args", COMMANDS)
def test_readme_command_parses(module, args):
    _check(module, args)


@pytest.mark.parametrize("line", ["python -m nets.train --sharpnes-every 5   # typo",
                                  "python -m nets.sweep --lrs 2 \\\n    --wd 0.6",     # lr*wd >= 1
                                  "python -m simulate.toy --lamda 1e-3"])
def test_a_wrong_command_in_a_readme_is_caught(line):
    (module, args, _), = _commands({"fake.md": f"text\n\n```bash\n{line}\n```\n"})
    with pytest.raises((SystemExit, ValueError)):
        _check(module, args)


def test_every_linked_figure_and_file_exists():
    for doc in DOCS:
        text = doc.read_text()
        targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) + re.findall(r"`(docs/figures/[^`]+)`", text)
        assert targets, doc
        for t in targets:
            if "://" in t:
                continue
            path = (doc.parent / t) if (doc.parent / t).exists() else ROOT / t
            assert path.exists(), f"{doc.name} links {t}"


def _tracked_text_files():
    import subprocess
    try:
        names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()]
    return [ROOT / n for n in names if n.endswith((".py", ".md", ".toml", ".cfg"))]


def test_sources_cite_only_documents_in_the_repository():
    """Facts come from docs/paper_setup.md (in the repository), never from a notes file outside it."""
    bad = [str(p.relative_to(ROOT)) for p in _tracked_text_files()
           if p.exists() and "REFERENCE" + ".md" in p.read_text(errors="ignore")]
    assert not bad
    cited = {str(p.relative_to(ROOT)) for p in _tracked_text_files()
             if p.exists() and "paper_setup.md" in p.read_text(errors="ignore")}
    assert {"nets/data/__init__.py", "nets/models.py", "nets/data/augment.py", "nets/monitor/si.py",
            "theory/invariance.py"} <= cited


def test_paper_setup_states_the_constants_the_code_uses():
    from nets.config import TrainConfig
    from nets.data import CIFAR_MEAN, CIFAR_STD
    text = (ROOT / "docs" / "paper_setup.md").read_text()
    mean = re.search(r"mean \(([^)]*)\)", text).group(1)
    std = re.search(r"std\s+\(([^)]*)\)", text).group(1)
    assert tuple(float(v) for v in mean.split(",")) == CIFAR_MEAN
    assert tuple(float(v) for v in std.split(",")) == CIFAR_STD
    assert f"Frobenius norm {TrainConfig().last_layer_norm:g}" in text.replace("\n", " ")


def test_ci_runs_exactly_the_readme_test_command():
    """README opens with the install+main-job command and the test command; .ci/run runs the latter."""
    block = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    install, tests = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert install.startswith("pip install -e '.[dev]'") and "python -m simulate.toy" in install
    assert tests in ci and tests.startswith("python -m pytest")


def _small_setup():
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-3)
    g = torch.Generator().manual_seed(1)
    loader = DataLoader(TensorDataset(torch.randn(480, 6, generator=g), torch.randint(0, 3, (480,), generator=g)),
                        batch_size=16)
    return {"model": model, "optimizer": optimizer, "x": next(iter(loader))[0], "loader": loader, "F": F}


def _example(doc: str, marker: str) -> str:
    """The code block (fenced, or indented by 4) of ``doc`` that holds ``marker``, dedented."""
    import textwrap

    paragraph = next(p for p in (ROOT / doc).read_text().split("\n\n") if marker in p)
    return textwrap.dedent("\n".join(line for line in paragraph.splitlines() if not line.startswith("```")))


@pytest.mark.parametrize("doc", ["README.md", "docs/nets.md"])
def test_the_simonitor_example_runs_as_written(doc, tmp_path, monkeypatch):
    """The copy-paste example of SIMonitor, run on a small BN network and loader of its own."""
    monkeypatch.chdir(tmp_path)
    exec(_example(doc, "out=\"runs/mine\") as mon"), _small_setup())
    written = {p.name for p in (tmp_path / "runs" / "mine").iterdir()}
    assert {"metrics.csv", "metrics.npz", "periods.json", "layers.csv", "SHA256SUMS"} <= written


def test_the_readme_tensorboard_example_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed: pip install -e '.[tensorboard]'")
    monkeypatch.chdir(tmp_path)
    exec(_example("README.md", "TensorBoardSink(\"runs/tb\")"), _small_setup())
    assert list((tmp_path / "runs" / "tb").glob("events.out.tfevents.*"))


def test_the_readme_lightning_example_runs_as_written(tmp_path, monkeypatch):
    lightning = pytest.importorskip("lightning", reason="the lightning extra is not installed: "
                                                        "pip install -e '.[lightning]'")
    import torch.nn.functional as F

    setup = _small_setup()

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = setup["model"]

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return setup["optimizer"]

    monkeypatch.chdir(tmp_path)
    exec(_example("README.md", "SIMonitorCallback(out="), {"module": Module(), "loader": setup["loader"]})
    assert (tmp_path / "runs" / "lightning" / "periods.json").is_file()
