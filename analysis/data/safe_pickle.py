"""Read torchvision's CIFAR pickles without ever running code from the file.

CIFAR batches are Python pickles, and an ordinary ``pickle.load`` of a user file can run
anything. :class:`CifarUnpickler` resolves only the handful of globals that a dict of numpy
arrays needs and refuses every other one, before it could be called.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from analysis.errors import CollabError

try:  # numpy 2 renamed numpy.core to numpy._core; files written under either name must load.
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy < 2
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

_FIX = "re-download it with data.download=true or point data.root at an untouched copy"


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What Python-3 protocol-2 pickles call to rebuild ``bytes``, minus the other codecs."""
    if encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"refusing codec {encoding!r}")
    return codecs.encode(text, "latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _prefix in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_prefix}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(f"{_prefix}.numeric", "_frombuffer")] = _numeric._frombuffer


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that admits numpy array reconstruction and plain containers only.

    Args:
        file: Binary file object positioned at the pickle.
        path: The file's path, named in error messages.
    """

    def __init__(self, file: Any, *, path: Path) -> None:
        # latin1 is how the original Python-2 CIFAR pickles must be read (as torchvision does).
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise CollabError(
                f"{self.path} is not a CIFAR batch: it asks to load {module}.{name}; {_FIX}"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise CollabError(f"{self.path} is not a CIFAR batch: it uses persistent ids; {_FIX}")


def load_cifar_pickle(path: Path) -> dict[str, Any]:
    """Safely unpickle a CIFAR file into a dict with ``str`` keys.

    Raises:
        CollabError: if the file asks for anything but numpy arrays or is not a dict pickle.
    """
    try:
        with open(path, "rb") as f:
            obj = CifarUnpickler(f, path=path).load()
    except CollabError:
        raise
    except Exception as err:
        raise CollabError(
            f"{path} is not a readable CIFAR pickle ({type(err).__name__}: {err}); {_FIX}"
        ) from err
    if not isinstance(obj, dict):
        raise CollabError(
            f"{path} is not a CIFAR batch: it holds a {type(obj).__name__}, not a dict; {_FIX}"
        )
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar_batch(path: Path, *, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR batch file.

    Args:
        path: e.g. ``cifar-10-batches-py/data_batch_1`` or ``cifar-100-python/train``.
        label_key: ``"labels"`` (CIFAR-10) or ``"fine_labels"`` (CIFAR-100).

    Returns:
        ``images`` uint8 (N, 3, 32, 32) and ``labels`` int64 (N,).
    """
    entry = load_cifar_pickle(path)
    data, labels = entry.get("data"), entry.get(label_key)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
    ):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CollabError(
            f"{path} is not a CIFAR batch: 'data' must be uint8 (N, 3072), got {got}; {_FIX}"
        )
    labels = np.asarray(labels) if isinstance(labels, (list, np.ndarray)) else None
    if (
        labels is None
        or labels.ndim != 1
        or labels.dtype.kind not in "iu"
        or len(labels) != len(data)
    ):
        raise CollabError(
            f"{path} is not a CIFAR batch: {label_key!r} must be {len(data)} integers; {_FIX}"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar_meta(path: Path, *, key: str) -> list[str]:
    """Read the class names stored under ``key`` (``label_names`` or ``fine_label_names``)."""
    names = load_cifar_pickle(path).get(key)
    if not isinstance(names, list) or not all(isinstance(n, (str, bytes)) for n in names):
        raise CollabError(
            f"{path} is not a CIFAR meta file: {key!r} must be a list of names; {_FIX}"
        )
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
