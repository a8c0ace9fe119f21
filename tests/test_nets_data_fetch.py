"""Getting CIFAR as a user would: download (against a local HTTP server), packs, $SIBN_DATA_DIR."""
import hashlib
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from nets.config import TrainConfig
from nets.data import DataError, load_cifar, load_data, write_fake_cifar
from nets.data.download import download_cifar
from nets.data.pack import read_pack, write_pack

ROOT = Path(__file__).resolve().parents[1]


def _tarball(tmp_path, *, drop=None) -> bytes:
    """A tar.gz of a small fake cifar-10-batches-py/ (optionally without the file ``drop``)."""
    folder = write_fake_cifar(tmp_path / "src", "cifar10", n_train=20, n_test=6)
    if drop:
        (folder / drop).unlink()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return buf.getvalue()


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1: ``routes[path] = (body, announced_length)``; yields (base URL, routes)."""
    routes = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path not in routes:
                self.send_error(404)
                return
            body, length = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(body)          # fewer bytes than announced = a truncated transfer

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    httpd.shutdown()
    httpd.server_close()


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def test_download_checks_md5_and_extracts_a_loadable_folder(tmp_path, server):
    base, routes = server
    body = _tarball(tmp_path)
    routes["/c10.tar.gz"] = (body, len(body))
    root = tmp_path / "data"
    folder = download_cifar("cifar10", root, url=base + "/c10.tar.gz", md5=_md5(body), progress=False)
    assert folder == root / "cifar-10-batches-py"
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]     # no temporary left
    data = load_cifar("cifar10", root)
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (6, 3, 32, 32)
    routes.clear()                      # a complete folder is kept: nothing is fetched again
    assert download_cifar("cifar10", root, url=base + "/gone", md5="0" * 32, progress=False) == folder


@pytest.mark.parametrize("case", ["wrong_md5", "truncated", "missing_file", "not_found", "not_a_tarball"])
def test_a_failed_download_leaves_nothing_behind(tmp_path, server, case):
    base, routes = server
    body = _tarball(tmp_path, drop="test_batch" if case == "missing_file" else None)
    if case == "not_a_tarball":
        body = b"<html>a captive portal</html>"
    md5 = _md5(body)
    if case == "wrong_md5":
        md5 = _md5(body + b"x")
    if case == "truncated":
        routes["/f"] = (body[: len(body) // 2], len(body))
        md5 = _md5(body)
    elif case != "not_found":
        routes["/f"] = (body, len(body))
    root = tmp_path / "data"
    root.mkdir()
    needle = {"wrong_md5": "MD5", "truncated": "truncated", "missing_file": "lacks",
              "not_found": "cannot download", "not_a_tarball": "cannot extract"}[case]
    with pytest.raises(DataError, match=needle) as err:
        download_cifar("cifar10", root, url=base + "/f", md5=md5, progress=False)
    assert "\n" not in str(err.value)
    assert list(root.iterdir()) == []


def test_download_refuses_an_incomplete_existing_folder(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataError, match="exists but lacks"):
        download_cifar("cifar10", tmp_path, url="http://127.0.0.1:9/none", progress=False)


@pytest.mark.slow
def test_download_cli_end_to_end(tmp_path, server):
    base, routes = server
    body = _tarball(tmp_path)
    routes["/c.tgz"] = (body, len(body))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "nets.data", *map(str, a)], cwd=ROOT, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    bad = run("download", "cifar10", tmp_path / "d", "--url", base + "/c.tgz", "--md5", "0" * 32, "--quiet")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "MD5" in bad.stderr
    assert not (tmp_path / "d" / "cifar-10-batches-py").exists()
    ok = run("download", "cifar10", tmp_path / "d", "--url", base + "/c.tgz", "--md5", _md5(body), "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert "--data-dir" in ok.stdout and (tmp_path / "d" / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert run("download", "svhn", tmp_path).returncode == 2


def test_pack_is_the_subset_bit_for_bit_and_loads_as_a_data_dir(tmp_path):
    write_fake_cifar(tmp_path, "cifar10", n_train=40, n_test=12, seed=5)
    info = write_pack("cifar10", tmp_path, tmp_path / "p.npz", 25, 7)
    assert info["n_train"] == 25 and sum(info["train_per_class"]) == 25
    full = load_cifar("cifar10", tmp_path)
    packed = load_cifar("cifar10", tmp_path / "p.npz")
    assert torch.equal(packed.x_train, full.x_train[:25]) and torch.equal(packed.y_train, full.y_train[:25])
    assert torch.equal(packed.x_test, full.x_test[:7]) and torch.equal(packed.y_test, full.y_test[:7])
    assert read_pack(tmp_path / "p.npz", "cifar10")[0].dtype == torch.uint8
    # a run on the pack sees exactly the data of --train-subset/--test-subset on the folder
    a = load_data(TrainConfig(dataset="cifar10", data_dir=str(tmp_path / "p.npz"), batch_size=8))
    b = load_data(TrainConfig(dataset="cifar10", data_dir=str(tmp_path), batch_size=8, train_subset=25,
                              test_subset=7))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)


def test_pack_refuses_too_large_too_many_and_foreign_files(tmp_path):
    write_fake_cifar(tmp_path, "cifar10", n_train=40, n_test=12)
    with pytest.raises(DataError, match="exceeds the 40 images"):
        write_pack("cifar10", tmp_path, tmp_path / "p.npz", 41, 0)
    with pytest.raises(DataError, match="over the"):
        write_pack("cifar10", tmp_path, tmp_path / "p.npz", 40, 10, max_mib=0.1)
    with pytest.raises(DataError, match="more than the"):
        write_pack("cifar10", tmp_path, tmp_path / "p.npz", 40, 10, max_mib=0.01)
    assert not (tmp_path / "p.npz").exists() and not list(tmp_path.glob(".p.npz*"))
    write_pack("cifar10", tmp_path, tmp_path / "p.npz", 10, 2)
    with pytest.raises(DataError, match="not cifar100"):
        load_cifar("cifar100", tmp_path / "p.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(DataError, match="not a pack"):
        load_cifar("cifar10", tmp_path / "other.npz")


def test_data_dir_falls_back_to_the_environment_and_missing_data_names_both_ways(tmp_path, monkeypatch):
    write_fake_cifar(tmp_path, "cifar10", n_train=10, n_test=4)
    monkeypatch.setenv("SIBN_DATA_DIR", str(tmp_path))
    assert load_cifar("cifar10").x_train.shape[0] == 10
    from nets.options import config_from_args
    from nets.train import build_parser

    cfg = config_from_args(build_parser().parse_args(["--dataset", "cifar10"]))
    assert cfg.data_dir == str(tmp_path)                 # recorded in config.json as used
    monkeypatch.delenv("SIBN_DATA_DIR")
    with pytest.raises(DataError) as err:
        load_cifar("cifar10")
    msg = str(err.value)
    assert "\n" not in msg and "python -m nets.data download cifar10" in msg and "$SIBN_DATA_DIR" in msg
    assert "--data-dir" in msg
