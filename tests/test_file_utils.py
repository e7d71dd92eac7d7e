"""keramic.utils.get_file against a local HTTP server: download, cache, checksum, failures."""

import hashlib
import http.server
import os
import socket
import threading

import numpy as np
import pytest

from keramic.errors import DataDownloadError
from keramic.utils import file_utils, get_file, to_categorical

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB: more than one read chunk
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.routes[path] = (status, body, declared_length)` and counts requests."""

    def do_GET(self):
        self.server.requests.append(self.path)
        status, body, length = self.server.routes.get(self.path, (404, b"not found", None))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes = {"/data.bin": (200, PAYLOAD, None)}
    httpd.requests = []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_downloads_then_serves_from_cache(server, tmp_path):
    path = get_file("data.bin", origin=f"{server.url}/data.bin", file_hash=SHA256, cache_dir=tmp_path)
    assert path == os.path.join(tmp_path, "datasets", "data.bin")
    with open(path, "rb") as f:
        assert f.read() == PAYLOAD
    assert os.listdir(tmp_path / "datasets") == ["data.bin"]  # no temporary file left behind

    server.shutdown()  # the second call must not need the network
    again = get_file("data.bin", origin=f"{server.url}/data.bin", file_hash=SHA256, cache_dir=tmp_path)
    assert again == path
    assert server.requests == ["/data.bin"]


def test_bad_checksum_leaves_nothing(server, tmp_path):
    with pytest.raises(DataDownloadError, match="sha256") as info:
        get_file("data.bin", origin=f"{server.url}/data.bin", file_hash="0" * 64, cache_dir=tmp_path)
    assert "nothing was written" in str(info.value)
    assert os.listdir(tmp_path / "datasets") == []


def test_server_down_gives_a_clear_error(tmp_path):
    origin = f"http://127.0.0.1:{_closed_port()}/mnist.npz"
    with pytest.raises(DataDownloadError) as info:
        get_file("mnist.npz", origin=origin, file_hash=SHA256, cache_dir=tmp_path)
    message = str(info.value)
    assert origin in message
    assert os.path.join(str(tmp_path), "datasets", "mnist.npz") in message
    assert SHA256 in message
    assert os.listdir(tmp_path / "datasets") == []


def test_http_error_and_truncated_body(server, tmp_path):
    with pytest.raises(DataDownloadError, match="404"):
        get_file("missing.bin", origin=f"{server.url}/missing.bin", cache_dir=tmp_path)
    server.routes["/short.bin"] = (200, PAYLOAD[:1000], 5000)
    with pytest.raises(DataDownloadError):
        get_file("short.bin", origin=f"{server.url}/short.bin", cache_dir=tmp_path)
    assert os.listdir(tmp_path / "datasets") == []


def test_corrupted_cache_is_downloaded_again(server, tmp_path):
    target = tmp_path / "datasets" / "data.bin"
    target.parent.mkdir()
    target.write_bytes(b"stale")
    path = get_file("data.bin", origin=f"{server.url}/data.bin", file_hash=SHA256, cache_dir=tmp_path)
    with open(path, "rb") as f:
        assert f.read() == PAYLOAD
    assert server.requests == ["/data.bin"]


def test_md5_hash_and_name_from_origin(server, tmp_path):
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    path = get_file(origin=f"{server.url}/data.bin", file_hash=md5, cache_dir=tmp_path, cache_subdir="other")
    assert path == os.path.join(tmp_path, "other", "data.bin")


def test_keramic_home_sets_the_default_cache(server, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAMIC_HOME", str(tmp_path / "home"))
    assert file_utils.keramic_home() == str(tmp_path / "home")
    path = get_file("data.bin", origin=f"{server.url}/data.bin", file_hash=SHA256)
    assert path == os.path.join(tmp_path, "home", "datasets", "data.bin")
    monkeypatch.delenv("KERAMIC_HOME")
    assert file_utils.keramic_home() == os.path.expanduser(os.path.join("~", ".keramic"))


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="origin"):
        get_file("x.bin", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="bare file name"):
        get_file("sub/x.bin", origin="http://127.0.0.1/x.bin", cache_dir=tmp_path)
    with pytest.raises(DataDownloadError, match="http"):
        get_file("x.bin", origin="file:///etc/hostname", cache_dir=tmp_path)


def test_to_categorical():
    np.testing.assert_array_equal(to_categorical([0, 2, 1]), np.eye(3)[[0, 2, 1]])
    assert to_categorical([[1], [3]]).shape == (2, 4)
    assert to_categorical(np.array([[0, 1], [1, 0]]), num_classes=3).shape == (2, 2, 3)
    assert to_categorical([1]).dtype == np.float64
