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


def test_package_exposes_both_datasets():
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
