"""Where the registry keeps its objects: a local directory or an ``s3://`` prefix.

Keys are ``/``-separated paths under the root. Two writes matter for correctness:

* :meth:`Store.create` writes an object only if the key does not exist yet, atomically (a
  reader sees the whole object or nothing). Locally that is a temporary file hard-linked to
  its final name (``link`` fails when the name exists); on S3 a ``PUT`` with
  ``If-None-Match: *`` (S3 conditional writes, honoured by AWS and moto).
* :meth:`Store.put_tree` uploads a directory under a fresh prefix. Locally the files go to a
  temporary directory that is renamed into place; on S3 the objects are uploaded one by one,
  and the registry only points at the prefix once every object is there.

S3-compatible stores other than AWS are reached with ``AWS_ENDPOINT_URL`` (as in automl.data).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from automl.exceptions import ConfigError

logger = logging.getLogger(__name__)


class Store:
    """The operations the registry needs; see :class:`LocalStore` and :class:`S3Store`."""

    root: str

    def read_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write (or replace) one object atomically."""
        raise NotImplementedError

    def create(self, key: str, data: bytes) -> bool:
        """Write one object atomically unless ``key`` exists; returns False when it existed."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def listdir(self, prefix: str) -> list[str]:
        """Names of the direct children of ``prefix`` (files and folders); [] when absent."""
        raise NotImplementedError

    def put_tree(self, local: Path, files: list[str], prefix: str) -> None:
        """Copy ``files`` (paths relative to ``local``) to ``prefix`` (which must not exist)."""
        raise NotImplementedError

    def get_tree(self, prefix: str, files: list[str], local: Path) -> None:
        """Copy ``files`` (relative to ``prefix``) into the local directory ``local``."""
        raise NotImplementedError

    def local_dir(self, prefix: str) -> Path | None:
        """The local directory holding ``prefix`` when the store is local (no copy needed)."""
        return None

    def remove_tree(self, prefix: str) -> None:
        raise NotImplementedError

    def uri(self, key: str = "") -> str:
        return f"{self.root.rstrip('/')}/{key}" if key else self.root


class LocalStore(Store):
    def __init__(self, root: str | Path) -> None:
        self.path = Path(
            str(root)[len("file://") :] if str(root).startswith("file://") else root
        ).expanduser()
        self.root = str(self.path)

    def _p(self, key: str) -> Path:
        return self.path / key

    def read_bytes(self, key: str) -> bytes:
        return self._p(key).read_bytes()

    def _temp_file(self, key: str, data: bytes) -> Path:
        target = self._p(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def write_bytes(self, key: str, data: bytes) -> None:
        tmp = self._temp_file(key, data)
        os.replace(tmp, self._p(key))

    def create(self, key: str, data: bytes) -> bool:
        tmp = self._temp_file(key, data)
        try:
            os.link(tmp, self._p(key))  # atomic, and fails if the name exists
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._p(key).exists()

    def listdir(self, prefix: str) -> list[str]:
        p = self._p(prefix)
        return sorted(c.name for c in p.iterdir() if not c.name.startswith(".tmp-")) if p.is_dir() else []

    def put_tree(self, local: Path, files: list[str], prefix: str) -> None:
        final = self._p(prefix)
        tmp = final.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            for rel in files:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(local / rel, tmp / rel)
            os.rename(tmp, final)  # a reader never sees a half-copied directory
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def get_tree(self, prefix: str, files: list[str], local: Path) -> None:
        for rel in files:
            (local / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._p(prefix) / rel, local / rel)

    def local_dir(self, prefix: str) -> Path | None:
        return self._p(prefix)

    def remove_tree(self, prefix: str) -> None:
        shutil.rmtree(self._p(prefix), ignore_errors=True)


class S3Store(Store):
    def __init__(self, root: str) -> None:
        import s3fs

        from automl.data import storage_options

        self.root = root.rstrip("/")
        self.base = self.root[len("s3://") :]
        if not self.base:
            raise ConfigError(f"registry root {root!r} names no bucket; use s3://BUCKET[/PREFIX]")
        # listings must never come from a cache: concurrent writers add versions at any time
        self.fs = s3fs.S3FileSystem(
            **(storage_options(root) or {}), use_listings_cache=False, skip_instance_cache=True
        )

    def _k(self, key: str) -> str:
        return f"{self.base}/{key}" if key else self.base

    def read_bytes(self, key: str) -> bytes:
        return self.fs.cat_file(self._k(key))

    def write_bytes(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._k(key), data)  # a single PUT: atomic

    def create(self, key: str, data: bytes) -> bool:
        try:
            self.fs.pipe_file(self._k(key), data, mode="create")  # PUT with If-None-Match: *
            return True
        except FileExistsError:
            return False

    def exists(self, key: str) -> bool:
        return self.fs.exists(self._k(key))

    def listdir(self, prefix: str) -> list[str]:
        try:
            entries = self.fs.ls(self._k(prefix), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def put_tree(self, local: Path, files: list[str], prefix: str) -> None:
        try:
            for rel in files:
                self.fs.put_file(str(local / rel), self._k(f"{prefix}/{rel}"))
        except (FileNotFoundError, PermissionError) as exc:
            bucket = self.base.split("/", 1)[0]
            raise ConfigError(
                f"cannot write to the registry {self.root!r}: {exc}. Check that the bucket {bucket!r} "
                "exists and that the AWS credentials (and AWS_ENDPOINT_URL) allow writing to it"
            ) from exc

    def get_tree(self, prefix: str, files: list[str], local: Path) -> None:
        for rel in files:
            (local / rel).parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(self._k(f"{prefix}/{rel}"), str(local / rel))

    def remove_tree(self, prefix: str) -> None:
        try:
            self.fs.rm(self._k(prefix), recursive=True)
        except FileNotFoundError:
            pass


def open_store(root: str | Path) -> Store:
    """A store for a local directory (path or ``file://``) or an ``s3://bucket/prefix`` URI."""
    text = str(root)
    if text.startswith("s3://"):
        return S3Store(text)
    if "://" in text and not text.startswith("file://"):
        raise ConfigError(f"registry root {text!r}: only local directories and s3:// URIs are supported")
    return LocalStore(text)


def walk_files(directory: Path) -> Iterator[str]:
    """Relative paths of the regular files under ``directory``, sorted."""
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            yield p.relative_to(directory).as_posix()
