"""Data of nets/: CIFAR pickles (fake copies), digits, synthetic, augmentation, batch sampler."""
import pickle

import numpy as np
import pytest
import torch

from nets.config import TrainConfig
from nets.data import CIFAR_MEAN, DataError, load_cifar, load_data, load_digits, write_fake_cifar
from nets.data.augment import EpochSampler, random_crop_flip


@pytest.mark.parametrize("name,classes,label_key", [("cifar10", 10, b"labels"),
                                                    ("cifar100", 100, b"fine_labels")])
def test_fake_cifar_loads_with_right_shapes_and_labels(tmp_path, name, classes, label_key):
    folder = write_fake_cifar(tmp_path, name, n_train=23, n_test=7, seed=3)
    data = load_cifar(name, tmp_path)
    assert data.x_train.shape == (23, 3, 32, 32) and data.x_test.shape == (7, 3, 32, 32)
    assert data.x_train.dtype == torch.float32 and data.num_classes == classes
    assert 0 <= data.x_train.min() and data.x_train.max() <= 1
    assert data.mean == CIFAR_MEAN
    # pixel layout: row-major 3 x 32 x 32 planes, as in the CIFAR files
    test_file = "test_batch" if name == "cifar10" else "test"
    with open(folder / test_file, "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    assert torch.equal(data.y_test, torch.tensor(raw[label_key]))
    expect = torch.from_numpy(raw[b"data"][2].reshape(3, 32, 32).astype(np.float32) / 255)
    assert torch.allclose(data.x_test[2], expect)
    # the extracted folder itself is accepted too
    assert load_cifar(name, folder).x_train.shape[0] == 23


def test_cifar_resized_for_other_input_sizes(tmp_path):
    write_fake_cifar(tmp_path, "cifar10", n_train=10, n_test=5)
    assert load_cifar("cifar10", tmp_path, image_size=16).x_train.shape == (10, 3, 16, 16)


def test_missing_cifar_dir_gives_one_line_actionable_message(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar("cifar10", tmp_path / "nowhere")
    msg = str(err.value)
    assert "\n" not in msg
    for needed in ("data_batch_1", "test_batch", "batches.meta", "cifar-10-batches-py",
                   "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar.html"):
        assert needed in msg
    with pytest.raises(DataError, match="needs --data-dir"):
        load_cifar("cifar100", None)


def test_malformed_cifar_files_are_reported(tmp_path):
    folder = write_fake_cifar(tmp_path, "cifar10", n_train=10, n_test=5)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3") as err:
        load_cifar("cifar10", tmp_path)
    assert "\n" not in str(err.value)
    with open(folder / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, fh)
    with pytest.raises(DataError, match="N x 3072"):
        load_cifar("cifar10", tmp_path)
    (folder / "batches.meta").unlink()
    with pytest.raises(DataError, match="missing batches.meta"):
        load_cifar("cifar10", tmp_path)


def test_unpickler_refuses_arbitrary_objects(tmp_path):
    folder = write_fake_cifar(tmp_path, "cifar10", n_train=10, n_test=5)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": print}, fh)
    with pytest.raises(DataError, match="unexpected object"):
        load_cifar("cifar10", tmp_path)


def test_digits_resized_split_fixed_and_normalised():
    a, b = load_digits(16, seed=0), load_digits(16, seed=0)
    assert a.x_train.shape[1:] == (1, 16, 16) and a.x_train.shape[0] + a.x_test.shape[0] == 1797
    assert torch.equal(a.y_test, b.y_test) and not torch.equal(a.y_test, load_digits(16, seed=1).y_test)
    assert a.x_test.shape[0] == 359 and a.num_classes == 10
    scale, shift = a.normaliser()
    z = a.x_train * scale + shift
    assert abs(z.mean().item()) < 1e-4 and abs(z.std().item() - 1) < 1e-3
    assert load_digits(8).x_train.shape[-1] == 8


def test_load_data_subset_and_batch_check():
    cfg = TrainConfig(dataset="synthetic", batch_size=16, train_subset=40)
    assert load_data(cfg).x_train.shape == (40, 3, 8, 8)
    with pytest.raises(DataError, match="fewer than one batch"):
        load_data(TrainConfig(dataset="synthetic", batch_size=64, train_subset=40))


def test_random_crop_flip_shapes_and_windows():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5) + 1
    g = torch.Generator().manual_seed(0)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for _ in range(20):
        out = random_crop_flip(x, 2, g, flip=True)
        assert out.shape == x.shape
        for i in range(2):
            windows = [padded[i, :, r:r + 5, c:c + 5] for r in range(5) for c in range(5)]
            assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(2)) for w in windows)


def test_flip_only_flips_some_images_exactly():
    x = torch.randn(64, 3, 4, 4)
    out = random_crop_flip(x, 0, torch.Generator().manual_seed(1), flip=True)
    same = [torch.equal(o, a) for o, a in zip(out, x)]
    flipped = [torch.equal(o, a.flip(2)) for o, a in zip(out, x)]
    assert all(s or f for s, f in zip(same, flipped))
    assert 10 < sum(flipped) < 54
    assert torch.equal(random_crop_flip(x, 0, flip=False), x)


def test_epoch_sampler_covers_each_image_once_per_epoch_and_restores_state():
    x = torch.arange(50, dtype=torch.float32).view(50, 1, 1, 1)
    y = torch.arange(50)
    one, zero = torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)
    s = EpochSampler(x, y, 10, one, zero, generator=torch.Generator().manual_seed(0))
    seen, starts = [], []
    for _ in range(5):
        xb, yb, new = s.next()
        assert torch.equal(xb.view(-1), yb.float())
        seen += yb.tolist()
        starts.append(new)
    assert sorted(seen) == list(range(50)) and starts == [True, False, False, False, False]
    s.next()
    state = s.state_dict()
    ahead = [s.next()[1] for _ in range(7)]
    s2 = EpochSampler(x, y, 10, one, zero, generator=torch.Generator().manual_seed(99))
    s2.load_state_dict(state)
    assert all(torch.equal(a, s2.next()[1]) for a in ahead)
