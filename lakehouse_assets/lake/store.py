"""Byte-level access to the lake root, on local disk or any S3-compatible store.

Everything that lands in the lake (raw archive zips, Parquet partitions) goes through
``put_bytes``, which is atomic on both backends: a temp file plus ``os.replace`` on disk, a
single PUT on S3. A reader therefore sees the old object or the new one, never a torn one,
even if the writer is killed mid-write.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

DEFAULT_STORAGE = "lakehouse_data"

_HOST = socket.gethostname().replace(".", "_").replace("-", "_")
_WRITER = f"{_HOST}-{os.getpid()}"
_FOREIGN_TEMP_MAX_AGE_SECONDS = 24 * 3600


def _writer_is_gone(tmp: Path) -> bool:
    """True when the process that created ``tmp`` can no longer rename it into place."""
    parts = tmp.name.rsplit(".", 3)  # ['.<name>', '<host>-<pid>', '<uuid>', 'tmp']
    host, _, pid = parts[1].rpartition("-") if len(parts) == 4 else ("", "", "")
    if host == _HOST and pid.isdigit():
        if int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    try:
        return time.time() - tmp.stat().st_mtime > _FOREIGN_TEMP_MAX_AGE_SECONDS
    except FileNotFoundError:
        return False


class LakeStorageError(RuntimeError):
    """A storage operation failed for good (after the backend's own retries)."""


class LakeObjectNotFound(LakeStorageError):
    pass


class LakeStore(ABC):
    """Keys are '/'-separated paths relative to the lake root, e.g. ``silver/klines/date=2020-01-01/spot-BTCUSDT.parquet``."""

    root_uri: str

    @abstractmethod
    def uri(self, key: str) -> str:
        """The address a reader (Polars, DuckDB, a person) uses for ``key``."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """All keys under ``prefix`` (recursive), sorted."""

    @abstractmethod
    def list_dirs(self, prefix: str) -> list[str]:
        """Names of the immediate 'sub-directories' under ``prefix``."""

    @abstractmethod
    def delete_keys(self, keys: list[str]) -> None: ...

    @property
    def polars_storage_options(self) -> dict[str, str] | None:
        return None

    def sweep_temporaries(self, prefix: str) -> list[str]:
        """Remove what killed writers left under ``prefix``; returns the removed names.

        Only local disks have temporaries: an S3 object appears with its single PUT or not at all.
        """
        return []


@dataclass
class LocalStore(LakeStore):
    root: Path

    def __post_init__(self) -> None:
        self.root = self.root.expanduser().resolve()
        self.root_uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def put_bytes(self, key: str, data: bytes) -> None:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        # A dot-prefixed temp name: invisible to '*.parquet' globs, Hive/Spark/Trino and DuckDB. It names
        # the writer (host, pid) so a later run can tell a dead writer's leftover from a live one's.
        tmp = final.parent / f".{final.name}.{_WRITER}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise LakeStorageError(f"could not write {final}: {exc}") from exc

    def sweep_temporaries(self, prefix: str) -> list[str]:
        """Delete temp files whose writer is gone: a dead pid on this host, or older than a day elsewhere.

        A writer killed between its write and its rename leaves a hidden ``.<name>.<host>-<pid>.<id>.tmp``.
        Readers never see it, but it would pile up; a concurrent writer's live temp file is left alone.
        """
        base = self._path(prefix)
        if not base.is_dir():
            return []
        removed = []
        for tmp in base.glob(".*.tmp"):
            if _writer_is_gone(tmp):
                tmp.unlink(missing_ok=True)
                removed.append(tmp.name)
        return removed

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise LakeObjectNotFound(f"no object at {self._path(key)}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def list_dirs(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))

    def delete_keys(self, keys: list[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)


@dataclass
class S3Store(LakeStore):
    bucket: str
    prefix: str
    endpoint_url: str | None = None
    max_attempts: int = 8
    read_timeout: float = 60.0
    _client_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prefix = self.prefix.strip("/")
        self.root_uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @cached_property
    def _session(self) -> Any:
        import boto3

        return boto3.session.Session()

    @cached_property
    def region(self) -> str:
        return (
            os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or self._session.region_name
            or "us-east-1"
        )

    @cached_property
    def client(self) -> Any:
        from botocore.config import Config

        # botocore's "standard" mode retries 5xx, throttling and connection errors with backoff.
        config = Config(
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
            connect_timeout=min(10.0, self.read_timeout),
            read_timeout=self.read_timeout,
        )
        return self._session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _fail(self, op: str, key: str, exc: Exception) -> LakeStorageError:
        return LakeStorageError(f"S3 {op} of {self.uri(key)} failed: {exc}")

    def put_bytes(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            # One PUT: S3 makes the object visible only once it is complete.
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("PUT", key, exc) from exc

    def get_bytes(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise LakeObjectNotFound(f"no object at {self.uri(key)}") from exc
            raise self._fail("GET", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("GET", key, exc) from exc

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise self._fail("HEAD", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("HEAD", key, exc) from exc

    def _list(self, prefix: str, delimiter: str | None) -> tuple[list[str], list[str]]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(prefix.rstrip("/") + "/") if prefix else (self.prefix + "/" if self.prefix else "")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        keys: list[str] = []
        dirs: list[str] = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
                dirs.extend(cp["Prefix"][len(full) :].rstrip("/") for cp in page.get("CommonPrefixes", []))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("LIST", prefix, exc) from exc
        return sorted(keys), sorted(dirs)

    def list_keys(self, prefix: str) -> list[str]:
        return self._list(prefix, None)[0]

    def list_dirs(self, prefix: str) -> list[str]:
        return self._list(prefix, "/")[1]

    def delete_keys(self, keys: list[str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            try:
                self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self._key(k)} for k in chunk], "Quiet": True},
                )
            except (BotoCoreError, ClientError) as exc:
                raise self._fail("DELETE", chunk[0], exc) from exc

    @cached_property
    def _credentials(self) -> Any:
        creds = self._session.get_credentials()
        return creds.get_frozen_credentials() if creds else None

    @property
    def polars_storage_options(self) -> dict[str, str]:
        options = {"aws_region": self.region}
        if self.endpoint_url:
            options["aws_endpoint_url"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                options["aws_allow_http"] = "true"
        creds = self._credentials
        if creds is not None:
            options["aws_access_key_id"] = creds.access_key
            options["aws_secret_access_key"] = creds.secret_key
            if creds.token:
                options["aws_session_token"] = creds.token
        return options

    def pyarrow_filesystem(self) -> Any:
        """A pyarrow S3 filesystem: lets DuckDB read the lake without its httpfs extension."""
        from pyarrow import fs

        kwargs: dict[str, Any] = {"region": self.region}
        if self.endpoint_url:
            parsed = urlparse(self.endpoint_url)
            kwargs["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
            kwargs["scheme"] = parsed.scheme or "https"
        creds = self._credentials
        if creds is not None:
            kwargs.update(access_key=creds.access_key, secret_key=creds.secret_key)
            if creds.token:
                kwargs["session_token"] = creds.token
        return fs.S3FileSystem(**kwargs)

    def pyarrow_path(self, key: str) -> str:
        return f"{self.bucket}/{self._key(key)}"


def open_store(
    storage: str | None = None,
    s3_endpoint_url: str | None = None,
    *,
    s3_max_attempts: int | None = None,
    s3_timeout_seconds: float | None = None,
) -> LakeStore:
    """``storage`` is a local path (relative to the working directory) or ``s3://bucket/prefix``.

    ``s3_max_attempts`` / ``s3_timeout_seconds`` tune botocore's retries (5xx, throttling, resets,
    timeouts) and its connect/read timeout; unset = the S3Store defaults (8 attempts, 60 s).
    """
    storage = storage or DEFAULT_STORAGE
    if storage.startswith("s3://"):
        parsed = urlparse(storage)
        if not parsed.netloc:
            raise ValueError(f"LAKEHOUSE_STORAGE={storage!r} has no bucket; expected s3://bucket/prefix")
        tuning: dict[str, Any] = {}
        if s3_max_attempts:
            tuning["max_attempts"] = int(s3_max_attempts)
        if s3_timeout_seconds:
            tuning["read_timeout"] = float(s3_timeout_seconds)
        return S3Store(bucket=parsed.netloc, prefix=parsed.path, endpoint_url=s3_endpoint_url or None, **tuning)
    if "://" in storage and not storage.startswith("file://"):
        raise ValueError(f"LAKEHOUSE_STORAGE={storage!r}: only local paths and s3:// URIs are supported")
    return LocalStore(Path(storage.removeprefix("file://")))


def store_from_env() -> LakeStore:
    """The lake as configured by LAKEHOUSE_STORAGE / LAKEHOUSE_S3_* (for notebooks and the CLI).

    Only the lake's own settings are checked here (a bad cron string must not stop a SQL query);
    a bad one raises ``settings.ConfigError`` naming the variable, its value and what is expected.
    """
    from lakehouse_assets import settings

    current = settings.load()
    names = ("LAKEHOUSE_STORAGE", "LAKEHOUSE_S3_ENDPOINT_URL", "LAKEHOUSE_S3_MAX_ATTEMPTS", "LAKEHOUSE_S3_TIMEOUT_SECONDS")
    problems = [error for name in names if (error := current.values[name].error)]
    if problems:
        raise settings.ConfigError(problems)
    return open_store(
        current["LAKEHOUSE_STORAGE"],
        current["LAKEHOUSE_S3_ENDPOINT_URL"],
        s3_max_attempts=current["LAKEHOUSE_S3_MAX_ATTEMPTS"],
        s3_timeout_seconds=current["LAKEHOUSE_S3_TIMEOUT_SECONDS"],
    )
