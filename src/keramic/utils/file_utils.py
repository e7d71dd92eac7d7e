"""Fetch a file once into keramic's cache: streamed, hash-checked, and committed by an atomic rename.

A failed or interrupted download never leaves a partial file where a later call would trust it.

>>> path = get_file("mnist.npz", origin=keramic.datasets.mnist.ORIGIN, file_hash=keramic.datasets.mnist.SHA256)
"""

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile

from keramic.errors import DataDownloadError

_CHUNK_SIZE = 1 << 20
_TIMEOUT_S = 60


def keramic_home():
    """`$KERAMIC_HOME` when set, else `~/.keramic`: the root of keramic's caches."""
    return os.path.expanduser(os.environ.get("KERAMIC_HOME") or os.path.join("~", ".keramic"))


def keras_home():
    """`$KERAS_HOME` when set, else `~/.keras`: Keras's own cache, shared so that files Keras already
    fetched (application weights) are reused rather than downloaded twice."""
    return os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))


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
    untar=False,
    md5_hash=None,
    file_hash=None,
    cache_subdir="datasets",
    hash_algorithm="auto",
    extract=False,
    archive_format="auto",
    cache_dir=None,
    force_download=False,
):
    """Return the local path of `origin`, downloading it into `cache_dir/cache_subdir/fname` if needed.

    A cached file whose hash no longer matches `file_hash` is downloaded again. `cache_dir`
    defaults to `keramic_home()`; an absolute `cache_subdir` is used as is. With `extract` (or
    `untar`), the tar or zip archive is unpacked next to it (named as Keras names it) and the
    folder's path is returned; members that would land outside that folder are refused.
    """
    if not origin:
        raise ValueError('Please specify the "origin" argument (the URL of the file to download).')
    if md5_hash is not None and file_hash is None:
        file_hash, hash_algorithm = md5_hash, "md5"
    named = bool(fname)
    fname = os.fspath(fname) if fname else os.path.basename(urllib.parse.urlsplit(origin).path)
    if not fname:
        raise ValueError(f"Cannot take a file name from origin {origin!r}; pass `fname`.")
    if os.sep in fname or (os.altsep and os.altsep in fname):
        raise ValueError(f"`fname` must be a bare file name (use `cache_dir` for the folder), got {fname!r}.")
    directory = os.path.join(os.path.expanduser(cache_dir or keramic_home()), cache_subdir)
    extraction_dir = None
    if extract or untar:
        if named and "." in fname:
            extraction_dir = os.path.join(directory, fname[: fname.find(".")] + "_extracted")
        else:
            extraction_dir = os.path.join(directory, fname)
            fname = f"{fname}_archive"
    target = os.path.join(directory, fname)
    algorithm = _hash_name(file_hash, hash_algorithm) if file_hash else None
    cached = not force_download and os.path.exists(target)
    if cached and file_hash is not None and hash_file(target, algorithm) != file_hash.lower():
        print(f"The cached file {target} does not match its expected {algorithm}; downloading it again.")
        cached = False
    if not cached:
        os.makedirs(directory, exist_ok=True)
        _download(origin, target, file_hash.lower() if file_hash else None, algorithm)
    if extraction_dir is None:
        return target
    if not cached or not os.path.isdir(extraction_dir):
        extract_archive(target, extraction_dir, "tar" if untar else archive_format)
    return extraction_dir


def extract_archive(archive, destination, archive_format="auto"):
    """Unpack a tar (any compression) or zip `archive` into the folder `destination`, replacing it.

    Unpacked into a temporary folder first and renamed into place, so an interrupted extraction is
    never mistaken for a complete one. Members with absolute paths, `..` or links out are refused.
    """
    formats = ("tar", "zip") if archive_format in ("auto", None) else tuple(
        [archive_format] if isinstance(archive_format, str) else archive_format
    )
    unknown = set(formats) - {"tar", "zip"}
    if unknown:
        raise ValueError(f"archive_format must be 'auto', 'tar', 'zip' or a list of them; got {archive_format!r}.")
    parent = os.path.dirname(os.path.abspath(destination))
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(destination)}.", suffix=".part")
    try:
        if "tar" in formats and tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                try:
                    tar.extractall(staging, filter="data")
                except tarfile.FilterError as error:
                    raise DataDownloadError(f"{archive}: refused to extract {error}.") from error
        elif "zip" in formats and zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as archive_file:
                for member in archive_file.namelist():
                    resolved = os.path.realpath(os.path.join(staging, member))
                    if os.path.isabs(member) or not resolved.startswith(os.path.realpath(staging) + os.sep):
                        raise DataDownloadError(f"{archive}: refused to extract {member!r}, which points outside.")
                archive_file.extractall(staging)
        else:
            raise DataDownloadError(f"{archive} is not a {' or '.join(formats)} archive; nothing was extracted.")
        if os.path.isdir(destination):
            shutil.rmtree(destination)
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


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
