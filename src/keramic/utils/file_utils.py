"""Fetch a file once into keramic's cache: streamed, hash-checked, and committed by an atomic rename.

A failed or interrupted download never leaves a partial file where a later call would trust it.

>>> path = get_file("mnist.npz", origin=keramic.datasets.mnist.ORIGIN, file_hash=keramic.datasets.mnist.SHA256)
"""

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from keramic.errors import DataDownloadError

_CHUNK_SIZE = 1 << 20
_TIMEOUT_S = 60


def keramic_home():
    """`$KERAMIC_HOME` when set, else `~/.keramic`: the root of keramic's caches."""
    return os.path.expanduser(os.environ.get("KERAMIC_HOME") or os.path.join("~", ".keramic"))


def _hash_name(file_hash, hash_algorithm):
    if hash_algorithm == "auto":
        return "sha256" if len(file_hash) == 64 else "md5"
    if hash_algorithm not in ("sha256", "md5"):
        raise ValueError(f"hash_algorithm must be 'auto', 'sha256' or 'md5', got {hash_algorithm!r}.")
    return hash_algorithm


def hash_file(path, algorithm="sha256"):
    """The hex digest of a file, read in chunks."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_SIZE):
            hasher.update(chunk)
    return hasher.hexdigest()


def get_file(
    fname=None,
    origin=None,
    file_hash=None,
    cache_dir=None,
    cache_subdir="datasets",
    hash_algorithm="auto",
    force_download=False,
):
    """Return the local path of `origin`, downloading it into `cache_dir/cache_subdir/fname` if needed.

    A cached file whose hash no longer matches `file_hash` is downloaded again. `cache_dir`
    defaults to `keramic_home()`; an absolute `cache_subdir` is used as is.
    """
    if not origin:
        raise ValueError('Please specify the "origin" argument (the URL of the file to download).')
    fname = os.fspath(fname) if fname else os.path.basename(urllib.parse.urlsplit(origin).path)
    if not fname:
        raise ValueError(f"Cannot take a file name from origin {origin!r}; pass `fname`.")
    if os.sep in fname or (os.altsep and os.altsep in fname):
        raise ValueError(f"`fname` must be a bare file name (use `cache_dir` for the folder), got {fname!r}.")
    directory = os.path.join(os.path.expanduser(cache_dir or keramic_home()), cache_subdir)
    target = os.path.join(directory, fname)
    algorithm = _hash_name(file_hash, hash_algorithm) if file_hash else None
    if not force_download and os.path.exists(target):
        if file_hash is None or hash_file(target, algorithm) == file_hash.lower():
            return target
        print(f"The cached file {target} does not match its expected {algorithm}; downloading it again.")
    os.makedirs(directory, exist_ok=True)
    _download(origin, target, file_hash.lower() if file_hash else None, algorithm)
    return target


def _download(origin, target, file_hash, algorithm):
    scheme = urllib.parse.urlsplit(origin).scheme
    if scheme not in ("http", "https"):
        raise DataDownloadError(f"Only http and https downloads are supported, got {origin!r}.")
    print(f"Downloading data from {origin}")
    directory, name = os.path.split(target)
    fd, partial = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            received, expected_size, digest = _stream(origin, out, algorithm)
            out.flush()
            os.fsync(out.fileno())
        if expected_size is not None and received != expected_size:
            raise DataDownloadError(
                f"The download of {origin} stopped after {received} of {expected_size} bytes; "
                f"nothing was written to {target}. Try again."
            )
        if file_hash is not None and digest != file_hash:
            raise DataDownloadError(
                f"The file downloaded from {origin} failed its {algorithm} check (expected {file_hash}, "
                f"got {digest}); nothing was written to {target}."
            )
        os.replace(partial, target)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as error:
        _remove_quietly(partial)
        check = f" and check that its {algorithm} is {file_hash}" if file_hash else ""
        raise DataDownloadError(
            f"Could not download {origin}: {_reason(error)}. If this machine is offline, fetch that URL "
            f"elsewhere, copy the file to {target}{check}."
        ) from error
    except BaseException:
        _remove_quietly(partial)
        raise


def _stream(origin, out, algorithm):
    """Copy the response body to `out`; return (bytes received, announced size or None, hex digest)."""
    hasher = hashlib.new(algorithm or "sha256")
    show_progress = sys.stderr.isatty()
    received = 0
    with urllib.request.urlopen(origin, timeout=_TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        expected_size = int(length) if length and length.isdigit() else None
        while chunk := response.read(_CHUNK_SIZE):
            out.write(chunk)
            hasher.update(chunk)
            received += len(chunk)
            if show_progress:
                total = f" / {expected_size / 1e6:.1f}" if expected_size else ""
                sys.stderr.write(f"\r{received / 1e6:.1f}{total} MB")
    if show_progress:
        sys.stderr.write("\n")
    return received, expected_size, hasher.hexdigest()


def _reason(error):
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    return str(getattr(error, "reason", error))


def _remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
