"""Remote storage: fsspec URLs (`s3://`, `gs://`, `memory://`, `file://`) for every save and load.

Formats only ever see local paths. A load first downloads the file or folder into a private temp
directory (sizes checked against the listing and the free disk), so every local check of the
loaders applies; a save writes into a temp directory, then uploads and commits. `file://` URLs are
plain local paths and take the local atomic writers. On other stores a file is uploaded under a
temporary key and moved into place; a folder is uploaded under a temporary prefix, copied into
place and committed by a marker written last (`.keramic-commit.json`, listing every file and its
size): loaders read only committed folders and check the marker again after downloading, so a
reader never mixes two versions. Temporary keys a crashed save left are removed by a later save
beside them once stale. Under keras.distribution each process stages in a folder of its own and
uploads its own files; rank 0 commits once all are up (no shared disk needed). What each store
guarantees is in docs/remote_storage.md.

fsspec (and s3fs / gcsfs for their stores) is optional and imported only when a URL is used.

>>> model.save("s3://bucket/models/model.keras")
>>> keras.models.load_model("s3://bucket/models/model.keras")
"""

import contextlib
import json
import os
import posixpath
import re
import secrets
import shutil
import tempfile
import time
import urllib.parse
import weakref
from datetime import datetime
from typing import Any, Callable, Iterator, TypeGuard

from keramic.distribution import collectives
from keramic.distribution.steps import active
from keramic.errors import FileFormatError, KeramicError
from keramic.saving import deferred
from keramic.saving.stores import atomic

MARKER = ".keramic-commit.json"
MARKER_FORMAT = "keramic.remote-commit"
MAX_MARKER_BYTES = 64 * 2**20
MAX_FILES = 100_000  # per folder: far above any checkpoint or artifact, refuses hostile markers
DISK_MARGIN_BYTES = 64 * 2**20  # left free on the disk holding the temp directory
STALE_TEMPORARY_SECONDS = 24 * 3600  # leftover temporary keys older than this are removed by the next save beside them
_TEMPORARY = re.compile(r"\.[^/]+\.keramic-[0-9a-f]+\.tmp")
_URL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs", "hf": "huggingface_hub"}


# ---------------------------------------------------------------- URLs
def is_url(path: object) -> TypeGuard[str]:
    """True for `protocol://...` strings: the paths this module handles."""
    return isinstance(path, str) and _URL.match(path) is not None


def _is_file_url(url: str) -> bool:
    return url.lower().startswith("file://")


def _file_url_path(url: str) -> str:
    """The local path of a `file://` URL (`file:///data/m.keras` -> `/data/m.keras`)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise KeramicError(f"{url}: a file:// URL must name a local path (file:///path), not the host {parsed.netloc!r}.")
    return urllib.parse.unquote(parsed.path)


def resolve(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path within it) for `url`; a clear error names what to install.

    Options for a store (an S3 endpoint, credentials) come from fsspec's own configuration
    (`fsspec.config.conf`, `FSSPEC_S3_ENDPOINT_URL`, ...) and the store's usual environment.
    """
    match = _URL.match(url)
    if match is None:
        raise KeramicError(f"{url}: not a URL (protocol://path).")
    protocol = match.group(1).lower()
    package = _PACKAGES.get(protocol)
    extra = f" and `pip install {package}`" if package else ""
    try:
        import fsspec
    except ImportError:
        raise KeramicError(f"{url}: remote URLs need fsspec: `pip install keramic[remote]` (or `pip install fsspec`){extra}.") from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as error:
        raise KeramicError(f"{url}: the {protocol}:// store needs another package: `pip install {package or protocol}` ({error}).") from None
    except ValueError as error:
        raise KeramicError(f"{url}: fsspec knows no store for {protocol}:// ({error}).") from None


def _join(path: str, *names: str) -> str:
    return posixpath.join(path.rstrip("/"), *names)


def _split(path: str) -> tuple[str, str]:
    path = path.rstrip("/")
    return posixpath.dirname(path), posixpath.basename(path)


# ---------------------------------------------------------------- commit markers
def _read_marker(fs: Any, path: str, where: str) -> dict | None:
    """The commit marker of the folder `path`, validated; None when it has none."""
    marker = _join(path, MARKER)
    try:
        size = fs.info(marker)["size"]
    except (FileNotFoundError, NotADirectoryError):  # the latter: `path` is a file, on a store with real folders
        return None
    if size > MAX_MARKER_BYTES:
        raise FileFormatError(f"{where}: entry '{MARKER}': {size} bytes, more than the {MAX_MARKER_BYTES} a commit marker may have.")
    document = atomic.parse_json(fs.cat_file(marker), f"{where}: entry '{MARKER}'")
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, dict) or document.get("format") != MARKER_FORMAT or not isinstance(document.get("token"), str):
        raise FileFormatError(f"{where}: entry '{MARKER}': not a keramic commit marker (needs format '{MARKER_FORMAT}', a token and files).")
    if len(files) > MAX_FILES:
        raise FileFormatError(f"{where}: entry '{MARKER}': lists {len(files)} files, more than {MAX_FILES}.")
    for name, size in files.items():
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts) or name == MARKER:
            raise FileFormatError(f"{where}: entry '{MARKER}': file name {name!r} is not a plain relative path inside the folder.")
        if type(size) is not int or size < 0:
            raise FileFormatError(f"{where}: entry '{MARKER}': file {name!r} has size {size!r}, expected a byte count.")
    return document


def _write_marker(fs: Any, path: str, state: str, token: str, files: dict[str, int]) -> None:
    document = {"format": MARKER_FORMAT, "version": 1, "state": state, "token": token, "files": files}
    fs.pipe_file(_join(path, MARKER), json.dumps(document, indent=1, sort_keys=True).encode())


def _committed(marker: dict | None) -> TypeGuard[dict]:
    return marker is not None and marker.get("state") == "committed"


def mark_committed(url: str) -> None:
    """Write the commit marker of a folder uploaded by other means (once its upload is complete),
    so that keramic loads it. The marker lists the folder's files as they are now.

    >>> mark_committed("s3://bucket/models/1")
    """
    fs, path = resolve(url)
    fs.invalidate_cache(path)
    files = {posixpath.relpath(name, path): int(info["size"]) for name, info in fs.find(path, detail=True).items()}
    files.pop(MARKER, None)
    if not files:
        raise FileNotFoundError(f"No folder with files found at {url}")
    _write_marker(fs, path, "committed", secrets.token_hex(8), files)


# ---------------------------------------------------------------- downloads
def _check_space(total: int, into: str, url: str) -> None:
    free = shutil.disk_usage(into).free
    if total + DISK_MARGIN_BYTES > free:
        raise KeramicError(f"{url}: downloading it needs {total} bytes; the temp directory {into} has {free} free (set TMPDIR elsewhere).")


def _download(fs: Any, pairs: list[tuple[str, str, int]], into: str, url: str) -> None:
    """Download [(remote path, local path, expected size)], checking every size before and after."""
    _check_space(sum(size for _, _, size in pairs), into, url)
    for remote_path, local_path, size in pairs:
        os.makedirs(os.path.dirname(local_path), exist_ok=True)
        fs.get_file(remote_path, local_path)
        if os.path.getsize(local_path) != size:
            name = os.path.relpath(local_path, into).replace(os.sep, "/")
            raise FileFormatError(f"{url}: entry '{name}': downloaded {os.path.getsize(local_path)} bytes, expected {size} (changed while reading?).")


def _download_folder(fs: Any, path: str, marker: dict, target: str, url: str, only: tuple[str, ...] | None = None) -> None:
    """Download the files a committed folder's marker lists (or `only` those of them) into `target`,
    then check that the folder was not replaced meanwhile."""
    files = marker["files"] if only is None else {name: marker["files"][name] for name in only if name in marker["files"]}
    os.makedirs(target, exist_ok=True)
    _download(fs, [(_join(path, name), os.path.join(target, *name.split("/")), size) for name, size in files.items()], target, url)
    again = _read_marker(fs, path, url)
    if again is None or again.get("token") != marker["token"]:
        raise KeramicError(f"{url}: the folder was replaced while it was being downloaded; try again.")


def _is_plain_name(name: str) -> bool:
    """A name that stays inside the directory it is joined to, on every OS."""
    return name not in ("", ".", "..") and not any(separator in name for separator in ("/", "\\", os.sep))


def _index_companions(local_index: str, listing: dict[str, int]) -> list[str]:
    """Sibling files a JSON index names (a sharded weights index names its shards): every string in it
    that is the plain name of a file beside it."""
    try:
        document = atomic.read_json_file(local_index, what="an index")
    except FileFormatError:
        return []
    names, stack = set(), [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and value in listing:
            names.add(value)
    return sorted(names)


def _download_file(fs: Any, path: str, into: str, url: str) -> str:
    """Download the file `path` into `into`, and beside it the files it names when it is a JSON index
    (or, for a name that is absent, the indexes that extend it: `m.safetensors` -> `m.safetensors.index.json`)."""
    parent, name = _split(path)
    if not _is_plain_name(name):
        raise FileFormatError(f"{url}: {name!r} is not a plain file name.")
    listing = {}
    with contextlib.suppress(FileNotFoundError):
        entries = fs.ls(parent, detail=True)
        listing = {posixpath.basename(e["name"]): int(e["size"]) for e in entries if e["type"] == "file" and _is_plain_name(posixpath.basename(e["name"]))}
    wanted = [name] if name in listing else sorted(s for s in listing if s.startswith(name + ".") and s.endswith(".json"))
    if not wanted:
        raise FileNotFoundError(f"No file or directory found at {url}")
    _download(fs, [(_join(parent, sibling), os.path.join(into, sibling), listing[sibling]) for sibling in wanted], into, url)
    companions = []
    for sibling in wanted:
        if sibling.endswith(".json"):
            companions += [companion for companion in _index_companions(os.path.join(into, sibling), listing) if companion not in wanted]
    _download(fs, [(_join(parent, companion), os.path.join(into, companion), listing[companion]) for companion in sorted(set(companions))], into, url)
    return os.path.join(into, name)


def fetch(url: str, into: str) -> str:
    """Download what is at `url` (a file, the files a JSON index names beside it, or a committed
    folder) into the local directory `into`; returns the local path standing for `url`."""
    fs, path = resolve(url)
    fs.invalidate_cache()
    name = _split(path)[1]
    marker = _read_marker(fs, path, url)
    if _committed(marker):
        target = os.path.join(into, name)
        _download_folder(fs, path, marker, target, url)
        return target
    if marker is None and fs.isdir(path):
        raise FileFormatError(
            f"{url}: a folder without keramic's commit marker ({MARKER}): it is read only once a keramic save has "
            "committed it. For a folder you uploaded yourself, call keramic.saving.remote.mark_committed(url) once the upload is complete."
        )
    if marker is not None:
        raise FileFormatError(f"{url}: entry '{MARKER}': the folder is being written (state {marker.get('state')!r}); try again once it is committed.")
    return _download_file(fs, path, into, url)


# ---------------------------------------------------------------- uploads
def _upload_file(fs: Any, local: str, path: str, url: str) -> None:
    """Upload under a temporary key beside `path`, then move it into place (one object appears whole)."""
    if fs.isdir(path):
        raise FileFormatError(f"{url}: is a folder; refusing to replace it with a file.")
    parent, name = _split(path)
    remove_stale_temporaries(fs, parent)
    temporary = _join(parent, f".{name}.keramic-{secrets.token_hex(4)}.tmp")
    try:
        fs.put_file(local, temporary)
        fs.mv(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            if fs.exists(temporary):
                fs.rm(temporary)


def _local_files(local: str) -> dict[str, int]:
    files = {}
    for root, _, names in os.walk(local):
        for name in names:
            full = os.path.join(root, name)
            files[os.path.relpath(full, local).replace(os.sep, "/")] = os.path.getsize(full)
    return files


def _temporary_prefix(path: str, token: str) -> str:
    parent, name = _split(path)
    return _join(parent, f".{name}.keramic-{token}.tmp")


def _check_replaceable(fs: Any, path: str, url: str) -> None:
    """Refuse to replace a remote folder keramic did not commit (no marker, not empty) or a file."""
    marker = _read_marker(fs, path, url)
    if marker is None and fs.exists(path):
        if fs.isfile(path) or fs.find(path):
            raise FileFormatError(f"{url}: exists and is not a folder keramic committed (no {MARKER}); refusing to replace it.")


def _put(fs: Any, local: str, names: list[str], temporary: str) -> None:
    if names:
        fs.put([os.path.join(local, *n.split("/")) for n in names], [_join(temporary, n) for n in names])


def _commit_folder(fs: Any, path: str, temporary: str, token: str, files: dict[str, int]) -> None:
    """Steps 2-5 of the protocol: marker 'writing', copy into place, drop stale files, marker 'committed'."""
    names = sorted(files)
    _write_marker(fs, path, "writing", token, {})
    if names:
        fs.copy([_join(temporary, n) for n in names], [_join(path, n) for n in names])
    fs.invalidate_cache(path)
    stale = [entry for entry in fs.find(path) if posixpath.relpath(entry, path) not in files and posixpath.relpath(entry, path) != MARKER]
    if stale:
        fs.rm(stale)
    _write_marker(fs, path, "committed", token, files)


def _remove_temporary(fs: Any, temporary: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if fs.exists(temporary):
            fs.rm(temporary, recursive=True)


def _upload_folder(fs: Any, local: str, path: str, url: str) -> str:
    """Upload a folder under a temporary prefix, then (marker set to 'writing') copy it into place,
    remove files of the old version, and write the 'committed' marker last. Returns its token."""
    _check_replaceable(fs, path, url)
    remove_stale_temporaries(fs, _split(path)[0])
    files = _local_files(local)
    token = secrets.token_hex(8)
    temporary = _temporary_prefix(path, token)
    try:
        _put(fs, local, sorted(files), temporary)
        _commit_folder(fs, path, temporary, token, files)
    finally:
        _remove_temporary(fs, temporary)
    return token


def _upload_folder_together(fs: Any, local: str, path: str, url: str, overwrite: bool = True) -> str:
    """Under keras.distribution: each process uploads the files of its own copy of the folder `local`
    (a file several hold goes up once, from the lowest rank) under one temporary prefix; once all
    uploads are done, rank 0 commits. No shared disk is needed. Returns the commit token."""
    files = _local_files(local) if os.path.isdir(local) else {}
    listings = collectives.all_gather_json(files)
    owners: dict[str, int] = {}
    for rank, listing in enumerate(listings):
        for name in listing:
            owners.setdefault(name, rank)
    merged = {name: listings[rank][name] for name, rank in sorted(owners.items())}
    chief, problem, raised = collectives.is_chief(), "", None
    if chief:
        try:
            if not overwrite and fs.exists(path):
                raise FileExistsError(f"{url} exists and overwrite=False.")
            _check_replaceable(fs, path, url)
            remove_stale_temporaries(fs, _split(path)[0])
        except Exception as error:  # reported to every process
            problem, raised = f"{type(error).__name__}: {error}", error
    token, problem = collectives.broadcast_json([secrets.token_hex(8), problem])
    if problem:
        if raised is not None:
            raise raised
        raise KeramicError(f"{url}: rank 0 refused the save: {problem}")
    temporary = _temporary_prefix(path, token)
    failure = ""
    try:
        _put(fs, local, [name for name, rank in owners.items() if rank == collectives.rank()], temporary)
    except Exception as caught:  # reported to every process: nobody commits
        failure = f"{type(caught).__name__}: {caught}"
    errors = [f"rank {rank}: {e}" for rank, e in enumerate(collectives.all_gather_json(failure)) if e]  # also the barrier
    outcome = "; ".join(errors)
    if chief:
        try:
            if not outcome:
                _commit_folder(fs, path, temporary, token, merged)
        except Exception as caught:
            outcome = f"{type(caught).__name__}: {caught}"
        finally:
            _remove_temporary(fs, temporary)
    outcome = collectives.broadcast_json(outcome)
    if outcome:
        raise KeramicError(f"{url}: the folder was not committed: {outcome}")
    return token


def _upload(fs: Any, local: str, path: str, url: str, overwrite: bool) -> str | None:
    """Upload a local file or folder to `path`; returns the folder's commit token (None for a file)."""
    if not overwrite and fs.exists(path):
        raise FileExistsError(f"{url} exists and overwrite=False.")
    if os.path.isdir(local):
        return _upload_folder(fs, local, path, url)
    _upload_file(fs, local, path, url)
    return None


def _modified(info: dict) -> float | None:
    """A listing entry's modification time (seconds since the epoch), under the names stores use."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def remove_stale_temporaries(fs: Any, parent: str) -> None:
    """Delete temporary keys and prefixes (`.name.keramic-<token>.tmp`) in `parent` that a crashed save
    left, once everything in them is older than `STALE_TEMPORARY_SECONDS` (a save in progress
    elsewhere is younger). Entries without a modification time are left alone."""
    fs.invalidate_cache(parent)
    try:
        entries = fs.ls(parent, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return
    limit = time.time() - STALE_TEMPORARY_SECONDS
    for entry in entries:
        name = entry["name"].rstrip("/")
        if not _TEMPORARY.fullmatch(posixpath.basename(name)):
            continue
        inside = [entry] if entry["type"] == "file" else list(fs.find(name, detail=True).values())
        times = [_modified(info) for info in inside]
        if times and all(t is not None and t <= limit for t in times):
            with contextlib.suppress(FileNotFoundError):
                fs.rm(name, recursive=entry["type"] != "file")


def remove(url: str) -> None:
    """Delete the file or folder at `url` (a folder loses its commit marker first: never half-read)."""
    fs, path = resolve(url)
    fs.invalidate_cache()
    if fs.isfile(path):
        fs.rm(path)
        return
    with contextlib.suppress(FileNotFoundError):
        fs.rm(_join(path, MARKER))
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=True)


# ---------------------------------------------------------------- staging for the entry points
_PRIVATE_ROOTS: set[str] = set()  # staging folders and mirrors: each process has its own


def is_private(path: str) -> bool:
    """True for a path inside a staging folder or mirror of this module: a folder only this process
    sees, so that under keras.distribution each process writes its own copy of a checkpoint there
    (the upload joins them) rather than assuming the processes share a disk."""
    path = os.path.abspath(os.fspath(path))
    return any(path == root or path.startswith(root + os.sep) for root in _PRIVATE_ROOTS)


def _private_directory(prefix: str) -> str:
    directory = os.path.abspath(tempfile.mkdtemp(prefix=prefix))
    _PRIVATE_ROOTS.add(directory)
    return directory


def _remove_private(directory: str) -> None:
    _PRIVATE_ROOTS.discard(directory)
    shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def _staging() -> Iterator[str]:
    directory = _private_directory("keramic-remote-")
    try:
        yield directory
    finally:
        _remove_private(directory)


def _parent_url(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[0]


def _name_url_in(error: BaseException, local: str, url: str) -> None:
    """Let an error raised on the local copy name the URL instead of the temp directory."""
    error.args = tuple(arg.replace(local, url) if isinstance(arg, str) else arg for arg in error.args)


def load_through_local(url: str, load: Callable[[str], Any]) -> Any:
    """`load(local_path)` on a private downloaded copy of `url` (the path itself for `file://`).

    >>> load_through_local("s3://bucket/m.keras", lambda path: load_model(path))
    """
    if _is_file_url(url):
        return load(_file_url_path(url))
    with _staging() as directory:
        local = fetch(url, directory)
        try:
            result = load(local)
        except (KeramicError, OSError, ValueError) as error:
            _name_url_in(error, directory, _parent_url(url))
            raise
        name_url_in_status(result, directory, _parent_url(url))
        return result


def name_url_in_status(status: Any, local: str, url: str) -> None:
    """Let a `LoadStatus` of a local copy name the URL (in its assertions and in the warning it gives
    when dropped with entries unmatched) rather than a temp directory that no longer exists."""
    if not isinstance(status, deferred.LoadStatus) or not isinstance(status.source, (str, os.PathLike)):
        return
    if not os.fspath(status.source).startswith(local):
        return
    status.source = url + os.fspath(status.source)[len(local) :].replace(os.sep, "/")
    status._silenced[0] = True  # the warning registered with the local path
    status._silenced = [False]
    weakref.finalize(status, deferred._warn_unmatched, status.source, status._unmatched, status._silenced)


def save_through_local(url: str, save: Callable[[str], Any], overwrite: bool = True) -> Any:
    """`save(local_path)` into a private temp directory, then upload everything it wrote beside
    `url` (JSON indexes last, so they appear after the files they name). `file://` saves in place.

    >>> save_through_local("s3://bucket/m.keras", lambda path: save_model(model, path))
    """
    if _is_file_url(url):
        return save(_file_url_path(url))
    fs, path = resolve(url)
    fs.invalidate_cache()
    with _staging() as directory:
        result = save(os.path.join(directory, _split(path)[1]))
        written = sorted(os.listdir(directory), key=lambda name: (name.endswith(".json"), name))
        if active() is None:
            _upload_written(fs, directory, written, url, overwrite)
        else:
            _upload_written_together(fs, directory, written, url, overwrite)
        if isinstance(result, str) and result.startswith(directory + os.sep):
            return f"{_parent_url(url)}/" + result[len(directory) + 1 :].replace(os.sep, "/")
        return result


def _upload_written(fs: Any, directory: str, written: list[str], url: str, overwrite: bool) -> None:
    """Upload the entries a save wrote into the staging `directory` beside `url`, in order."""
    parent = _split(resolve(url)[1])[0]
    if not overwrite:
        for name in written:
            if fs.exists(_join(parent, name)):
                raise FileExistsError(f"{_parent_url(url)}/{name} exists and overwrite=False.")
    for name in written:
        _upload(fs, os.path.join(directory, name), _join(parent, name), url, overwrite=True)


def _upload_written_together(fs: Any, directory: str, written: list[str], url: str, overwrite: bool) -> None:
    """Under keras.distribution (every process saved into its own staging folder): when only rank 0
    wrote (a plain save), rank 0 uploads; when several did (a checkpoint), each uploads its files
    and rank 0 commits. Every process returns once the upload is committed, or raises."""
    everyone = collectives.all_gather_json(written)
    name = _split(resolve(url)[1])[1]
    if not any(everyone[1:]):
        outcome, raised = "", None
        if collectives.is_chief():
            try:
                _upload_written(fs, directory, written, url, overwrite)
            except Exception as error:  # reported to every process
                outcome, raised = f"{type(error).__name__}: {error}", error
        outcome = collectives.broadcast_json(outcome)
        if raised is not None:
            raise raised
        if outcome:
            raise KeramicError(f"{url}: rank 0 could not upload the save: {outcome}")
        return
    if any(entries and entries != [name] for entries in everyone):
        raise KeramicError(f"{url}: under keras.distribution the processes wrote {everyone}: only one folder can be saved together.")
    _upload_folder_together(fs, os.path.join(directory, name), resolve(url)[1], url, overwrite)


# ---------------------------------------------------------------- mirrors of remote folders
class Mirror:
    """A private local directory standing for the remote folder `url`, for code that works on a
    directory of many entries (`CheckpointManager`, the model server): it works locally and asks the
    mirror to upload, fetch or delete the remote counterparts of its local paths.

    `files` are downloaded at once; of each committed subfolder only `folder_files` are (an index,
    enough to list it); `fetch_folder` brings a whole subfolder when it is needed.
    """

    def __init__(self, url: str, files: tuple[str, ...] = (), folder_files: tuple[str, ...] = ()):
        self.url = url.rstrip("/")
        self.fs, self.root = resolve(self.url)
        self.local = _private_directory("keramic-mirror-")
        self._tokens: dict[str, str] = {}  # subfolders held whole locally -> their commit token
        self._finalizer = weakref.finalize(self, _remove_private, self.local)
        self.fs.invalidate_cache()
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                size = self.fs.info(_join(self.root, name))["size"]
                _download(self.fs, [(_join(self.root, name), os.path.join(self.local, name), size)], self.local, _join(self.url, name))
        if folder_files:
            for name, marker in self.committed_folders().items():
                self._replace_local(name, marker, folder_files)

    def _remote(self, local_path: str) -> tuple[str, str]:
        relative = os.path.relpath(os.path.abspath(local_path), self.local)
        if relative.startswith(".."):
            raise KeramicError(f"{local_path}: not inside the mirror {self.local} of {self.url}.")
        relative = relative.replace(os.sep, "/")
        return _join(self.root, relative), _join(self.url, relative)

    def committed_folders(self) -> dict[str, dict]:
        """{name: commit marker} of the remote folder's committed subfolders, as listed now."""
        self.fs.invalidate_cache()
        try:
            entries = self.fs.ls(self.root, detail=True)
        except FileNotFoundError:
            return {}
        folders = {}
        for entry in entries:
            name = posixpath.basename(entry["name"].rstrip("/"))
            if entry["type"] == "directory" and not name.startswith(".") and _is_plain_name(name):
                marker = _read_marker(self.fs, _join(self.root, name), _join(self.url, name))
                if _committed(marker):
                    folders[name] = marker
        return folders

    def _replace_local(self, name: str, marker: dict, only: tuple[str, ...] | None = None) -> None:
        """Download committed subfolder `name` (or `only` some files) and swap it into place locally."""
        with _staging() as directory:
            temporary = os.path.join(directory, name)
            _download_folder(self.fs, _join(self.root, name), marker, temporary, _join(self.url, name), only)
            target = os.path.join(self.local, name)
            moved = os.path.join(self.local, atomic.temp_name(name))
            os.rename(temporary, moved)  # same file system as the target, for one rename
            atomic.commit_directory(moved, target, fsync=False)
        if only is None:
            self._tokens[name] = marker["token"]
        else:
            self._tokens.pop(name, None)

    def fetch_folder(self, name: str) -> None:
        """Make local subfolder `name` a whole copy of the committed remote one (no-op when it is)."""
        marker = _read_marker(self.fs, _join(self.root, name), _join(self.url, name))
        if not _committed(marker):
            raise FileNotFoundError(f"No committed folder found at {_join(self.url, name)}")
        if self._tokens.get(name) != marker["token"]:
            self._replace_local(name, marker)

    def sync(self, keep: Callable[[list[str]], list[str]]) -> None:
        """Hold whole local copies of the committed subfolders `keep(names)` picks (fetched again when
        they change remotely); local subfolders whose remote one is gone are deleted."""
        committed = self.committed_folders()
        for name in keep(sorted(committed)):
            if self._tokens.get(name) != committed[name]["token"]:
                self._replace_local(name, committed[name])
        for name in os.listdir(self.local):
            if name not in committed and os.path.isdir(os.path.join(self.local, name)) and not name.startswith("."):
                aside = os.path.join(self.local, atomic.temp_name(name))
                os.rename(os.path.join(self.local, name), aside)
                shutil.rmtree(aside, ignore_errors=True)
                self._tokens.pop(name, None)

    def upload(self, local_path: str) -> None:
        """Upload a local file or subfolder of the mirror to its remote counterpart, committed."""
        path, url = self._remote(local_path)
        token = _upload(self.fs, local_path, path, url, overwrite=True)
        if token is not None:
            self._tokens[os.path.basename(local_path)] = token

    def upload_together(self, local_path: str) -> None:
        """Under keras.distribution, with every process: upload the files of each process's copy of the
        subfolder `local_path` and commit them as one folder (each copy holds only its own part, so
        a later `fetch_folder` downloads the whole)."""
        path, url = self._remote(local_path)
        _upload_folder_together(self.fs, local_path, path, url)
        self._tokens.pop(os.path.basename(local_path), None)

    def remove(self, local_path: str) -> None:
        """Delete the remote counterpart of a local file or subfolder of the mirror."""
        remove(self._remote(local_path)[1])
        self._tokens.pop(os.path.basename(local_path), None)


def local_or_mirror(directory: Any, files: tuple[str, ...] = (), folder_files: tuple[str, ...] = ()) -> tuple[str, Mirror | None]:
    """(local directory to work in, its Mirror or None): a remote URL gets a `Mirror`; a local path
    or `file://` URL is used as it is.

    >>> directory, mirror = local_or_mirror("s3://bucket/run/checkpoints", files=("state.json",))
    """
    if not is_url(directory):
        return os.path.abspath(os.fspath(directory)), None
    if _is_file_url(directory):
        return os.path.abspath(_file_url_path(directory)), None
    mirror = Mirror(directory, files, folder_files)
    return mirror.local, mirror
