"""On-disk torchvision formats, written here in tmp_path exactly as torchvision lays them out."""

import os
import pickle
import pickletools
import shutil
import struct

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets.utils as tv_utils
from PIL import Image

from analysis.data import build_dataset
from analysis.errors import CollabError

CIFAR10_NAMES = [
    b"airplane",
    b"automobile",
    b"bird",
    b"cat",
    b"deer",
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]


def _cifar_rows(n, offset):
    """(n, 3072) uint8 rows whose pixel values encode (image, position) so layout errors show."""
    rows = (np.arange(n * 3072).reshape(n, 3072) + offset) % 251
    return rows.astype(np.uint8)


def _write_cifar10(root, *, protocol=2):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": 2 for i in range(1, 6)} | {"test_batch": 3}
    for k, (name, n) in enumerate(batches.items()):
        entry = {
            b"batch_label": name.encode(),
            b"labels": [(k + j) % 10 for j in range(n)],
            b"data": _cifar_rows(n, 7 * k),
            b"filenames": [b"x.png"] * n,
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=protocol))
    meta = {b"num_cases_per_batch": 10000, b"label_names": CIFAR10_NAMES, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return folder


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_folder_loads_with_correct_pixels_and_labels(tmp_path, protocol):
    _write_cifar10(tmp_path, protocol=protocol)
    b = build_dataset("cifar10", root=str(tmp_path))
    assert (len(b.train), len(b.test), b.num_classes, b.in_chans, b.image_size) == (
        10,
        3,
        10,
        3,
        32,
    )
    assert b.class_names[:2] == ["airplane", "automobile"] and b.mean[0] == pytest.approx(0.4914)
    rows = _cifar_rows(2, 7 * 1)  # data_batch_2 holds train items 2 and 3
    x, y = b.train[3]
    assert y == (1 + 1) % 10 and x.dtype == torch.float32
    # CIFAR rows are channel-major: 1024 red values, then green, then blue, each row-major.
    expected = torch.from_numpy(rows[1].reshape(3, 32, 32).astype(np.float32) / 255)
    assert torch.equal(x, expected)
    assert x[1, 0, 5] == pytest.approx(rows[1][1024 + 5] / 255)
    assert b.test[2][1] == (5 + 2) % 10


def _py2_str(b):
    """A Python-2 ``str`` opcode, as in the distributed CIFAR files (read back with latin1)."""
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)


def _py2_uint8_array(a):
    """Hand-assembled cPickle protocol-2 bytes of a uint8 ndarray under numpy 1's module names."""
    shape = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in a.shape) + b"t"
    dtype = b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R(K\x03" + _py2_str(b"|")
    dtype += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    head = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + _py2_str(b"b")
        + b"\x87R"
    )
    return head + b"(K\x01" + shape + dtype + b"\x89" + _py2_str(a.tobytes()) + b"tb"


def test_python2_cifar_pickle_as_distributed_loads(tmp_path):
    folder = _write_cifar10(tmp_path)
    rows = _cifar_rows(2, 99)
    labels = b"](K\x03K\x07e"
    blob = (
        b"\x80\x02}("
        + _py2_str(b"data")
        + _py2_uint8_array(rows)
        + _py2_str(b"labels")
        + labels
        + b"u."
    )
    (folder / "data_batch_1").write_bytes(blob)
    b = build_dataset("cifar10", root=str(tmp_path))
    assert [b.train[0][1], b.train[1][1]] == [3, 7]
    assert torch.equal(b.train[1][0], torch.from_numpy(rows[1].reshape(3, 32, 32) / 255).float())


def test_cifar_image_size_option_resizes(tmp_path):
    _write_cifar10(tmp_path)
    b = build_dataset("cifar10", root=str(tmp_path), image_size=16)
    assert b.image_size == 16 and b.train[0][0].shape == (3, 16, 16)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickle_that_calls_os_system_is_refused_and_not_run(tmp_path):
    folder = _write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Exploit(marker), b"labels": [0]}, protocol=2)
    # The file really asks for os.system (posix.system on Linux).
    globals_used = [arg for op, arg, _ in pickletools.genops(payload) if op.name == "GLOBAL"]
    assert any(str(g).endswith(" system") for g in globals_used)
    (folder / "data_batch_3").write_bytes(payload)
    with pytest.raises(
        CollabError, match=r"data_batch_3 is not a CIFAR batch: it asks to load \w+\.system"
    ):
        build_dataset("cifar10", root=str(tmp_path))
    assert not marker.exists()


def test_cifar_pickle_asking_for_eval_or_other_codecs_is_refused(tmp_path):
    folder = _write_cifar10(tmp_path)
    evil = b"cbuiltins\neval\n(S'1+1'\ntR."
    (folder / "batches.meta").write_bytes(evil)
    with pytest.raises(CollabError, match="builtins.eval"):
        build_dataset("cifar10", root=str(tmp_path))
    sneaky = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00zlib\x86R."
    (folder / "batches.meta").write_bytes(sneaky)
    with pytest.raises(CollabError, match="not a readable CIFAR pickle"):
        build_dataset("cifar10", root=str(tmp_path))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "uint8 \\(N, 3072\\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8 \\(N, 3072\\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "'labels' must be 2 integers"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "'labels' must be 2 integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, "labels outside 0..9"),
        ([1, 2, 3], "holds a list, not a dict"),
    ],
)
def test_malformed_cifar_batches_are_errors(tmp_path, entry, message):
    folder = _write_cifar10(tmp_path)
    (folder / "data_batch_5").write_bytes(pickle.dumps(entry))
    with pytest.raises(CollabError, match=message):
        build_dataset("cifar10", root=str(tmp_path))


def test_garbage_and_wrong_meta_are_errors(tmp_path):
    folder = _write_cifar10(tmp_path)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}))
    with pytest.raises(CollabError, match="lists 2 classes"):
        build_dataset("cifar10", root=str(tmp_path))
    (folder / "test_batch").write_bytes(b"\x00not a pickle at all")
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": CIFAR10_NAMES}))
    with pytest.raises(CollabError, match="test_batch is not a readable CIFAR pickle"):
        build_dataset("cifar10", root=str(tmp_path))


def test_cifar100_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 4), ("test", 2)):
        entry = {
            b"data": _cifar_rows(n, 3),
            b"fine_labels": [99 - j for j in range(n)],
            b"coarse_labels": [0] * n,
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    names = [f"class{i}".encode() for i in range(100)]
    (folder / "meta").write_bytes(
        pickle.dumps({b"fine_label_names": names, b"coarse_label_names": []})
    )
    b = build_dataset("cifar100", root=str(tmp_path))
    assert (len(b.train), len(b.test), b.num_classes) == (4, 2, 100)
    assert b.train[1][1] == 98 and b.class_names[98] == "class98"


def test_missing_root_and_missing_file_name_path_and_fix(tmp_path):
    absent = tmp_path / "nowhere"
    with pytest.raises(
        CollabError, match=f"{absent}.*does not exist.*data_batch_1 missing.*data.download=true"
    ):
        build_dataset("cifar10", root=str(absent))
    folder = _write_cifar10(tmp_path)
    (folder / "data_batch_4").unlink()
    with pytest.raises(
        CollabError, match=r"\(cifar-10-batches-py/data_batch_4 missing\); pass --set data.root=DIR"
    ):
        build_dataset("cifar10", root=str(tmp_path))


def test_download_only_when_asked(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, **kwargs):
        calls.append(url)
        _write_cifar10(tmp_path / "fresh")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    with pytest.raises(CollabError, match="data.download=true"):
        build_dataset("cifar10", root=str(tmp_path / "fresh"))
    assert calls == []
    b = build_dataset("cifar10", root=str(tmp_path / "fresh"), download=True)
    assert len(b.train) == 10 and calls == [
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    ]

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(
        CollabError, match="downloading CIFAR-100 files .* failed \\(network unreachable\\)"
    ):
        build_dataset("cifar100", root=str(tmp_path / "other"), download=True)


def test_svhn_mat_files(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train_32x32.mat", 5), ("test_32x32.mat", 3)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [9], [10]][:n], dtype=np.uint8)
        scipy.io.savemat(tmp_path / name, {"X": x, "y": y})
        if name.startswith("train"):
            train_x = x
    b = build_dataset("svhn", root=str(tmp_path))
    assert (len(b.train), len(b.test), b.in_chans) == (5, 3, 3)
    assert [b.train[i][1] for i in range(5)] == [0, 1, 2, 9, 0]
    img = b.train[3][0]
    # MATLAB order is (H, W, C, N): pixel (h=4, w=7) of channel 2 of image 3.
    assert img[2, 4, 7] == pytest.approx(train_x[4, 7, 2, 3] / 255)
    scipy.io.savemat(
        tmp_path / "test_32x32.mat",
        {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.zeros((2, 1))},
    )
    with pytest.raises(CollabError, match="labels in 1..10"):
        build_dataset("svhn", root=str(tmp_path))


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = (np.arange(6 * 28 * 28) % 256).reshape(6, 28, 28)
    for prefix, n in (("train", 6), ("t10k", 4)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images[:n])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) + 3)
    b = build_dataset("mnist", root=str(tmp_path))
    assert (len(b.train), len(b.test), b.in_chans, b.image_size, b.mean) == (6, 4, 1, 28, (0.1307,))
    x, y = b.train[2]
    assert y == 5 and torch.equal(x, torch.from_numpy(images[2][None].astype(np.float32) / 255))
    (raw / "t10k-labels-idx1-ubyte").write_bytes((raw / "t10k-labels-idx1-ubyte").read_bytes()[:-1])
    with pytest.raises(CollabError, match="truncated"):
        build_dataset("mnist", root=str(tmp_path))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(CollabError, match="not an idx file"):
        build_dataset("mnist", root=str(tmp_path))


def _write_folder(root, split, colours):
    for cls, colour in colours.items():
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (10, 14), colour).save(root / split / cls / "a.png")
        Image.new("L", (20, 6), 128).save(root / split / cls / "b.png")
        (root / split / cls / "notes.txt").write_text("not an image")


def test_imagefolder_with_val_split(tmp_path):
    _write_folder(tmp_path, "train", {"dog": (0, 255, 0), "cat": (255, 0, 51)})
    _write_folder(tmp_path, "val", {"cat": (255, 0, 51)})
    b = build_dataset("imagefolder", root=str(tmp_path), image_size=16)
    assert b.class_names == ["cat", "dog"] and (len(b.train), len(b.test)) == (4, 2)
    x, y = b.train[0]  # cat/a.png: a flat colour stays exactly that colour when resized
    assert y == 0 and x.shape == (3, 16, 16)
    assert torch.equal(x, torch.tensor([1.0, 0.0, 0.2]).view(3, 1, 1).expand(3, 16, 16))
    grey, _ = b.train[1]  # grey-scale file becomes 3 equal channels
    assert torch.allclose(grey, torch.full((3, 16, 16), 128 / 255))
    assert build_dataset("imagefolder", root=str(tmp_path)).train[2][0].shape == (3, 64, 64)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(CollabError, match="no train/ folder"):
        build_dataset("imagefolder", root=str(tmp_path))
    _write_folder(tmp_path, "train", {"cat": (1, 2, 3)})
    with pytest.raises(CollabError, match="no test/ \\(or val/\\) folder"):
        build_dataset("imagefolder", root=str(tmp_path))
    _write_folder(tmp_path, "test", {"cat": (1, 2, 3), "emu": (4, 5, 6)})
    with pytest.raises(CollabError, match="class folders \\['emu'\\] that the train split lacks"):
        build_dataset("imagefolder", root=str(tmp_path))
    shutil.rmtree(tmp_path / "test" / "emu")
    (tmp_path / "test" / "cat" / "a.png").write_bytes(b"broken")
    b = build_dataset("imagefolder", root=str(tmp_path))
    with pytest.raises(CollabError, match="cannot read image .*a.png"):
        b.test[0]
