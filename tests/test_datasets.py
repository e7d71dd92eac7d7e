"""keramic.datasets: the shipped digits and MNIST's download path (served locally, no network)."""

import functools
import hashlib
import http.server
import inspect
import os
import socket
import threading

import numpy as np
import pytest

from keramic import datasets
from keramic.datasets import digits, mnist
from keramic.errors import DataDownloadError


def test_digits_shapes_and_values():
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    assert x_train.shape == (1437, 8, 8) and x_test.shape == (360, 8, 8)
    assert y_train.shape == (1437,) and y_test.shape == (360,)
    for array in (x_train, y_train, x_test, y_test):
        assert array.dtype == np.uint8
    assert x_train.max() == 16 and x_train.min() == 0
    labels = np.concatenate([y_train, y_test])
    assert sorted(np.unique(labels)) == list(range(10))
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    images, ordered_labels = digits._read()
    # The first sample of the UCI test file is a zero with this top row.
    assert images[0, 0].tolist() == [0, 0, 5, 13, 9, 1, 0, 0] and ordered_labels[0] == 0


def test_digits_split_is_deterministic_and_complete():
    (a_train, a_labels), (a_test, _) = digits.load_data(seed=113)
    (b_train, b_labels), _ = digits.load_data(seed=113)
    np.testing.assert_array_equal(a_train, b_train)
    np.testing.assert_array_equal(a_labels, b_labels)
    (c_train, _), _ = digits.load_data(seed=1)
    assert not np.array_equal(a_train, c_train)
    images, _ = digits._read()
    rebuilt = np.concatenate([a_train, a_test]).reshape(len(images), -1)
    np.testing.assert_array_equal(np.unique(rebuilt, axis=0), np.unique(images.reshape(len(images), -1), axis=0))
    (all_train, _), (empty_test, _) = digits.load_data(test_split=0.0)
    assert len(all_train) == 1797 and len(empty_test) == 0
    with pytest.raises(ValueError):
        digits.load_data(test_split=1.0)


def test_digits_license_ships_next_to_the_data():
    with open(os.path.join(os.path.dirname(digits.__file__), "data", "digits.LICENSE.txt")) as f:
        text = f.read()
    assert "CC BY 4.0" in text and "Alpaydin" in text and "Kaynak" in text


def test_package_exposes_every_dataset():
    assert datasets.mnist is mnist and datasets.digits is digits


@pytest.fixture
def mnist_server(tmp_path, monkeypatch):
    """A local HTTP server with a small archive shaped like Keras's mnist.npz."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    rng = np.random.default_rng(0)
    served = tmp_path / "served"
    served.mkdir()
    np.savez_compressed(
        served / "mnist.npz",
        x_train=rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 60, dtype=np.uint8),
        x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, 10, dtype=np.uint8),
    )
    np.savez(served / "wrong.npz", images=np.zeros(3, np.uint8))
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()
    thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mnist_downloads_checks_and_caches(mnist_server, tmp_path):
    url, served = mnist_server
    cache = tmp_path / "cache"
    kwargs = {"origin": f"{url}/mnist.npz", "file_hash": _sha256(served / "mnist.npz"), "cache_dir": cache}
    (x_train, y_train), (x_test, y_test) = mnist.load_data(**kwargs)
    assert x_train.shape == (60, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60,) and y_train.dtype == np.uint8
    assert x_test.shape == (10, 28, 28) and y_test.shape == (10,)
    assert (cache / "datasets" / "mnist.npz").exists()

    (served / "mnist.npz").unlink()  # served no more: the cached copy must be used
    (again, _), _ = mnist.load_data(**kwargs)
    np.testing.assert_array_equal(again, x_train)


def test_mnist_rejects_a_wrong_archive(mnist_server, tmp_path):
    url, served = mnist_server
    with pytest.raises(DataDownloadError, match="sha256"):
        mnist.load_data(origin=f"{url}/wrong.npz", cache_dir=tmp_path)
    assert not (tmp_path / "datasets" / "mnist.npz").exists()
    with pytest.raises(DataDownloadError, match="x_train"):
        mnist.load_data(origin=f"{url}/wrong.npz", file_hash=_sha256(served / "wrong.npz"), cache_dir=tmp_path)


def test_mnist_offline_error_names_url_and_place(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        origin = f"http://127.0.0.1:{s.getsockname()[1]}/mnist.npz"
    with pytest.raises(DataDownloadError) as info:
        mnist.load_data(origin=origin, cache_dir=tmp_path)
    assert origin in str(info.value)
    assert os.path.join(str(tmp_path), "datasets", "mnist.npz") in str(info.value)


@pytest.mark.interop
def test_mnist_source_and_hash_are_keras(keras):
    from keras.src.datasets import mnist as keras_mnist

    source = inspect.getsource(keras_mnist.load_data)
    assert mnist.SHA256 in source
    assert mnist.ORIGIN.rsplit("/", 1)[0] in source


# --- The other keras.datasets: small files in the real archive formats, served on 127.0.0.1 ----
# Where Keras's own loader can run on the same local file (its `get_file` redirected to it), the
# results must be identical; otherwise shapes, dtypes and values are checked against the file.

import gzip  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402
import tarfile  # noqa: E402

from keramic.datasets import (  # noqa: E402
    boston_housing,
    california_housing,
    cifar10,
    cifar100,
    fashion_mnist,
    imdb,
    reuters,
)
from keramic.datasets.safe_pickle import UnsafeArchiveError, load_npz, read_pickled_arrays  # noqa: E402


@pytest.fixture
def served(tmp_path, monkeypatch):
    """(base URL, folder it serves): a local HTTP server for generated dataset files."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _keras_reads(monkeypatch, module, files):
    """Point Keras's loader `module` at local files: `files` maps the name it asks for to a path."""
    monkeypatch.setattr(module, "get_file", lambda fname=None, *args, **kwargs: str(files[fname]))


def _assert_same_splits(got, expected):
    got_parts = [part for split in got for part in split]
    expected_parts = [part for split in expected for part in split]
    assert len(got_parts) == len(expected_parts) == 4
    for got_part, expected_part in zip(got_parts, expected_parts):
        assert got_part.shape == expected_part.shape
        assert got_part.dtype == expected_part.dtype
        if got_part.dtype == object:
            assert [list(x) for x in got_part] == [list(x) for x in expected_part]
        else:
            np.testing.assert_array_equal(got_part, expected_part)


@pytest.mark.interop
@pytest.mark.parametrize("module", [boston_housing, california_housing])
def test_housing_matches_keras(keras, served, tmp_path, monkeypatch, module):
    from keras.src.datasets import boston_housing as keras_boston
    from keras.src.datasets import california_housing as keras_california

    url, folder = served
    name = module.ORIGIN.rsplit("/", 1)[1]
    rng = np.random.default_rng(4)
    features = 13 if module is boston_housing else 8
    np.savez(folder / name, x=rng.normal(size=(650, features)), y=rng.uniform(1, 50, 650))
    options = {"origin": url + name, "file_hash": _sha256(folder / name), "cache_dir": tmp_path / "cache"}
    keras_module = keras_boston if module is boston_housing else keras_california
    _keras_reads(monkeypatch, keras_module, {name: folder / name})
    variants = [{}, {"test_split": 0.3, "seed": 7}]
    if module is california_housing:
        variants.append({"version": "small"})
    for kwargs in variants:
        _assert_same_splits(module.load_data(**kwargs, **options), keras_module.load_data(**kwargs))
    with pytest.raises(ValueError, match="test_split"):
        module.load_data(test_split=1.0, **options)


def _py2_str(data):
    """A Python 2 `str` as cPickle protocol 2 writes it (SHORT_BINSTRING or BINSTRING)."""
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<i", len(data)) + data


def _py2_int(value):
    return b"K" + bytes([value]) if value < 256 else b"M" + struct.pack("<H", value)


def _cifar_batch_bytes(entries):
    """A CIFAR batch exactly as the published files hold it: a Python 2 protocol-2 pickle of a dict
    of byte-string keys to a uint8 `numpy.ndarray`, lists of ints and byte strings."""
    out = bytearray(b"\x80\x02}q\x01(")
    for key, value in entries.items():
        out += _py2_str(key.encode())
        if isinstance(value, np.ndarray):
            rows, columns = value.shape
            out += b"cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03K\x00\x85U\x01b\x87R("
            out += b"K\x01" + _py2_int(rows) + _py2_int(columns) + b"\x86"
            out += b"cnumpy\ndtype\nq\x04U\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
            out += b"\x89" + _py2_str(value.astype(np.uint8).tobytes()) + b"tb"
        elif isinstance(value, list):
            out += b"](" + b"".join(_py2_str(v) if isinstance(v, bytes) else _py2_int(v) for v in value) + b"e"
        else:
            out += _py2_str(value)
    return bytes(out + b"u.")


def _cifar_batch(rng, count, label_keys):
    labels = {key: [int(v) for v in rng.integers(0, classes, count)] for key, classes in label_keys.items()}
    return {
        "batch_label": b"training batch",
        **labels,
        "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png".encode() for i in range(count)],
    }


def _tar_gz(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.interop
def test_cifar_batches_parse_as_keras_parses_them(keras, tmp_path):
    from keras.src.datasets.cifar import load_batch as keras_load_batch

    from keramic.datasets._cifar import load_batch

    batch = _cifar_batch(np.random.default_rng(5), 300, {"fine_labels": 100, "coarse_labels": 20})
    path = tmp_path / "train"
    path.write_bytes(_cifar_batch_bytes(batch))
    for label_key in ("fine_labels", "coarse_labels"):
        data, labels = load_batch(path, label_key=label_key)
        expected_data, expected_labels = keras_load_batch(str(path), label_key=label_key)
        np.testing.assert_array_equal(data, expected_data)
        assert labels == expected_labels == batch[label_key]


def test_cifar10_downloads_extracts_and_loads(served, tmp_path):
    url, folder = served
    rng = np.random.default_rng(6)
    batches = {f"data_batch_{i}": _cifar_batch(rng, 4, {"labels": 10}) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(rng, 3, {"labels": 10})
    _tar_gz(folder / "cifar-10.tar.gz", {f"cifar-10-batches-py/{k}": _cifar_batch_bytes(v) for k, v in batches.items()})
    options = {"origin": url + "cifar-10.tar.gz", "file_hash": _sha256(folder / "cifar-10.tar.gz"), "cache_dir": tmp_path}
    (x_train, y_train), (x_test, y_test) = cifar10.load_data(**options)
    assert x_train.shape == (20, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.shape == (20, 1) and y_train.dtype == np.uint8
    assert x_test.shape == (3, 32, 32, 3) and y_test.shape == (3, 1) and y_test.dtype == np.uint8
    first = batches["data_batch_1"]
    np.testing.assert_array_equal(x_train[0], first["data"][0].reshape(3, 32, 32).transpose(1, 2, 0))
    assert y_train[:4, 0].tolist() == first["labels"]
    assert y_test[:, 0].tolist() == batches["test_batch"]["labels"]
    assert (tmp_path / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py" / "test_batch").exists()


@pytest.mark.interop
def test_cifar100_matches_keras(keras, served, tmp_path, monkeypatch):
    from keras.src.datasets import cifar100 as keras_cifar100

    url, folder = served
    rng = np.random.default_rng(7)
    members = {
        f"cifar-100-python/{split}": _cifar_batch_bytes(_cifar_batch(rng, n, {"fine_labels": 100, "coarse_labels": 20}))
        for split, n in (("train", 6), ("test", 2))
    }
    _tar_gz(folder / "cifar-100.tar.gz", members)
    options = {"origin": url + "cifar-100.tar.gz", "file_hash": _sha256(folder / "cifar-100.tar.gz"), "cache_dir": tmp_path}
    extracted = tmp_path / "datasets" / "cifar-100-python-target"
    _keras_reads(monkeypatch, keras_cifar100, {"cifar-100-python-target": extracted})
    for label_mode in ("fine", "coarse"):
        _assert_same_splits(cifar100.load_data(label_mode, **options), keras_cifar100.load_data(label_mode))
    with pytest.raises(ValueError, match="label_mode"):
        cifar100.load_data("medium", **options)


def _idx_gz(path, array):
    magic = 2049 if array.ndim == 1 else 2051
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.mark.interop
def test_fashion_mnist_matches_keras(keras, served, tmp_path, monkeypatch):
    from keras.src.datasets import fashion_mnist as keras_fashion

    url, folder = served
    rng = np.random.default_rng(8)
    arrays = [rng.integers(0, 10, 12), rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 10, 5), rng.integers(0, 256, (5, 28, 28))]
    for name, array in zip(fashion_mnist.FILES, arrays):
        _idx_gz(folder / name, array)
    _keras_reads(monkeypatch, keras_fashion, {name: folder / name for name in fashion_mnist.FILES})
    got = fashion_mnist.load_data(base_url=url, cache_dir=tmp_path)
    _assert_same_splits(got, keras_fashion.load_data())
    assert (tmp_path / "datasets" / "fashion-mnist" / fashion_mnist.FILES[0]).exists()
    (folder / fashion_mnist.FILES[1]).write_bytes(gzip.compress(b"not an idx file"))
    with pytest.raises(DataDownloadError, match="IDX"):
        fashion_mnist.load_data(base_url=url, cache_dir=tmp_path / "other")


def _ragged(rng, count, vocabulary):
    sequences = np.empty(count, dtype=object)
    for i in range(count):
        sequences[i] = [int(w) for w in rng.integers(1, vocabulary, rng.integers(2, 30))]
    return sequences


SEQUENCE_OPTIONS = [
    {},
    {"num_words": 40, "skip_top": 3},
    {"maxlen": 15, "seed": 3},
    {"start_char": None, "oov_char": None, "num_words": 30},
    {"start_char": None, "index_from": 0},
]


@pytest.mark.interop
def test_imdb_matches_keras(keras, served, tmp_path, monkeypatch):
    from keras.src.datasets import imdb as keras_imdb

    url, folder = served
    rng = np.random.default_rng(9)
    # numpy writes object arrays into .npz as pickles: this is the real archive's layout.
    np.savez(
        folder / "imdb.npz",
        x_train=_ragged(rng, 40, 80),
        y_train=rng.integers(0, 2, 40),
        x_test=_ragged(rng, 30, 80),
        y_test=rng.integers(0, 2, 30),
    )
    options = {"origin": url + "imdb.npz", "file_hash": _sha256(folder / "imdb.npz"), "cache_dir": tmp_path}
    _keras_reads(monkeypatch, keras_imdb, {"imdb.npz": folder / "imdb.npz"})
    for kwargs in SEQUENCE_OPTIONS:
        _assert_same_splits(imdb.load_data(**kwargs, **options), keras_imdb.load_data(**kwargs))


@pytest.mark.interop
def test_reuters_matches_keras(keras, served, tmp_path, monkeypatch):
    from keras.src.datasets import reuters as keras_reuters

    url, folder = served
    rng = np.random.default_rng(10)
    np.savez(folder / "reuters.npz", x=_ragged(rng, 50, 90), y=rng.integers(0, 46, 50))
    options = {"origin": url + "reuters.npz", "file_hash": _sha256(folder / "reuters.npz"), "cache_dir": tmp_path}
    _keras_reads(monkeypatch, keras_reuters, {"reuters.npz": folder / "reuters.npz"})
    for kwargs in SEQUENCE_OPTIONS + [{"test_split": 0.5}]:
        _assert_same_splits(reuters.load_data(**kwargs, **options), keras_reuters.load_data(**kwargs))
    assert reuters.get_label_names() == keras_reuters.get_label_names()


@pytest.mark.parametrize("module", [imdb, reuters])
def test_word_index_downloads_with_md5(served, tmp_path, module):
    url, folder = served
    words = {"the": 1, "and": 2, "über": 3}
    (folder / "index.json").write_text(json.dumps(words), encoding="utf-8")
    md5 = hashlib.md5((folder / "index.json").read_bytes()).hexdigest()
    assert module.get_word_index(origin=url + "index.json", file_hash=md5, cache_dir=tmp_path) == words
    with pytest.raises(DataDownloadError, match="md5"):
        module.get_word_index("other.json", origin=url + "index.json", file_hash="0" * 32, cache_dir=tmp_path)


def test_pickled_code_is_refused_not_run(tmp_path):
    # GLOBAL os.system, then a call: what a malicious "dataset" would hold.
    hostile = b"\x80\x02cos\nsystem\nq\x00U\x04trueq\x01\x85q\x02Rq\x03."
    with pytest.raises(UnsafeArchiveError, match="os.system"):
        read_pickled_arrays(hostile)
    batch = _cifar_batch_bytes(_cifar_batch(np.random.default_rng(0), 2, {"labels": 10}))
    # numpy's reconstructor called with other arguments is refused too.
    bent = batch.replace(b"cnumpy\nndarray\nq\x03K\x00\x85U\x01b\x87R", b"cnumpy\ndtype\nq\x03K\x00\x85U\x01b\x87R", 1)
    with pytest.raises(UnsafeArchiveError):
        read_pickled_arrays(bent)
    with pytest.raises(DataDownloadError, match="truncated"):
        read_pickled_arrays(batch[:-200])
    # An object array in an .npz whose pickle reaches for another global.
    npz = tmp_path / "hostile.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    import zipfile

    with zipfile.ZipFile(npz, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + hostile)
    with pytest.raises(UnsafeArchiveError, match="os.system"):
        load_npz(npz)


def test_archive_members_outside_the_folder_are_refused(served, tmp_path):
    url, folder = served
    _tar_gz(folder / "evil.tar.gz", {"../escaped.txt": b"x"})
    from keramic.utils import get_file

    with pytest.raises(DataDownloadError, match="refused"):
        get_file("evil", origin=url + "evil.tar.gz", cache_dir=tmp_path, extract=True)
    assert not (tmp_path / "datasets" / "escaped.txt").exists()
    assert not (tmp_path / "datasets" / "evil").exists()


@pytest.mark.interop
def test_sources_and_hashes_are_keras(keras):
    from keras.src.datasets import boston_housing as kb
    from keras.src.datasets import california_housing as kc
    from keras.src.datasets import cifar10 as k10
    from keras.src.datasets import cifar100 as k100
    from keras.src.datasets import fashion_mnist as kf
    from keras.src.datasets import imdb as ki
    from keras.src.datasets import reuters as kr

    pairs = [(boston_housing, kb), (california_housing, kc), (cifar10, k10), (cifar100, k100), (imdb, ki), (reuters, kr)]
    for ours, theirs in pairs:
        source = inspect.getsource(theirs)
        assert ours.SHA256 in source, ours.__name__
        assert ours.ORIGIN.rsplit("/", 1)[0] in source, ours.__name__
    for ours, theirs in ((imdb, ki), (reuters, kr)):
        source = inspect.getsource(theirs.get_word_index)
        assert ours.WORD_INDEX_MD5 in source and ours.WORD_INDEX_ORIGIN.rsplit("/", 1)[1] in source
    fashion_source = inspect.getsource(kf)
    assert fashion_mnist.BASE_URL in fashion_source and all(name in fashion_source for name in fashion_mnist.FILES)
