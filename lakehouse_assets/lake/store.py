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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

# The default lake is this directory in the PROJECT ROOT, wherever a command runs (``default_lake_dir``).
DEFAULT_STORAGE = "lakehouse_data"

_HOST = socket.gethostname().replace(".", "_").replace("-", "_")
_WRITER = f"{_HOST}-{os.getpid()}"
_FOREIGN_TEMP_MAX_AGE_SECONDS = 24 * 3600
_FSYNC_THREADS = 64  # fsyncs of one batch in flight at once (the disk queues them; a lone fsync waits ~2 ms)


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


class LakeError(RuntimeError):
    """Something about the lake itself: storage failed, or a table lacks what a read needs."""


class LakeStorageError(LakeError):
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

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """``put_bytes`` of each item, in order: the first failure stops the batch (raised), the items before it
        stay written, the ones after it are never tried. Backends may overlap the work, never the order in
        which objects become visible."""
        for key, data in items:
            self.put_bytes(key, data)

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
        tmp = _temp_path(final)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise LakeStorageError(f"could not write {final}: {exc}") from exc

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """As ``put_bytes`` for each item, with the fsyncs of the batch overlapping.

        Why: a universe run writes tens of thousands of small files, and one fsync at a time cost ~2 ms each on
        this VM (73,000 files in a 100-symbol year). Here every temp file is written, all are fsynced on
        threads, then renamed one by one in order: each file is still durable before it is visible, a killed
        writer still leaves whole files (a prefix of the batch) plus dot-temps the next write sweeps, and a
        failure still stops the batch at the failing item.
        """
        staged: list[tuple[Any, Path, Path]] = []  # (open handle, temp, final)
        error: LakeStorageError | None = None
        ok = len(items)  # how many leading items are written whole (a failure lowers it)
        renamed = 0
        try:
            for key, data in items:
                final = self._path(key)
                tmp = _temp_path(final)
                try:
                    try:  # the directory usually exists (a re-run, a day's second instrument): no mkdir call then
                        fh = open(tmp, "wb")  # noqa: SIM115 - closed below, after its fsync
                    except FileNotFoundError:
                        final.parent.mkdir(parents=True, exist_ok=True)
                        fh = open(tmp, "wb")  # noqa: SIM115
                except OSError as exc:
                    error, ok = LakeStorageError(f"could not write {final}: {exc}"), len(staged)
                    break
                staged.append((fh, tmp, final))
                try:
                    fh.write(data)
                    fh.flush()
                except OSError as exc:
                    error, ok = LakeStorageError(f"could not write {final}: {exc}"), len(staged) - 1
                    break
            with ThreadPoolExecutor(max_workers=max(1, min(_FSYNC_THREADS, ok))) as pool:
                synced = list(pool.map(_fsync_or_error, [fh for fh, _, _ in staged[:ok]]))
            for i, problem in enumerate(synced):
                if problem is not None:
                    error = LakeStorageError(f"could not write {staged[i][2]}: {problem}")
                    ok = i
                    break
            for fh, _, _ in staged:
                fh.close()
            for _, tmp, final in staged[:ok]:
                try:
                    os.replace(tmp, final)
                except OSError as exc:
                    error = LakeStorageError(f"could not write {final}: {exc}")
                    break
                renamed += 1
        finally:
            for fh, tmp, _ in staged[renamed:]:
                fh.close()
                tmp.unlink(missing_ok=True)
        if error is not None:
            raise error

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


def s3_session(
    profile_name: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
) -> Any:
    """A boto3 session; unset arguments fall back to boto3's own chain (AWS_PROFILE, env keys, ~/.aws, roles)."""
    import boto3

    return boto3.session.Session(
        profile_name=profile_name or None,
        aws_access_key_id=aws_access_key_id or None,
        aws_secret_access_key=aws_secret_access_key or None,
        aws_session_token=aws_session_token or None,
    )


def s3_region(session: Any, region_name: str | None = None) -> str:
    return (
        region_name
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or session.region_name
        or "us-east-1"
    )


def s3_client(
    session: Any,
    *,
    region: str,
    endpoint_url: str | None,
    max_attempts: int,
    timeout_seconds: float,
    use_ssl: bool = True,
    verify: bool | None = None,
    unsigned: bool = False,
) -> Any:
    """The lake's S3 client: ``max_attempts`` attempts in all per request, a connect and read timeout.

    botocore's "standard" mode retries 5xx, throttling and connection errors with backoff.
    """
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=min(10.0, timeout_seconds),
        read_timeout=timeout_seconds,
    )
    client = session.client(
        "s3", endpoint_url=endpoint_url, region_name=region, use_ssl=use_ssl, verify=verify, config=config
    )
    if unsigned:
        from botocore.handlers import disable_signing

        client.meta.events.register("choose-signer.s3.*", disable_signing)
    return client


@dataclass
class S3Store(LakeStore):
    bucket: str
    prefix: str
    endpoint_url: str | None = None
    max_attempts: int = 8
    read_timeout: float = 60.0
    region_name: str | None = None
    #: boto3 Session arguments: profile_name, aws_access_key_id, aws_secret_access_key, aws_session_token.
    session_options: dict[str, Any] = field(default_factory=dict)
    #: Client arguments beyond the above: use_ssl, verify, unsigned.
    client_options: dict[str, Any] = field(default_factory=dict)
    #: Builds the client instead of ``s3_client`` (the Dagster resource passes dagster-aws's ``S3Resource.get_client``).
    client_factory: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        self.prefix = self.prefix.strip("/")
        self.root_uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @cached_property
    def _session(self) -> Any:
        return s3_session(**self.session_options)

    @cached_property
    def region(self) -> str:
        return s3_region(self._session, self.region_name)

    @cached_property
    def client(self) -> Any:
        if self.client_factory is not None:
            return self.client_factory()
        return s3_client(
            self._session,
            region=self.region,
            endpoint_url=self.endpoint_url,
            max_attempts=self.max_attempts,
            timeout_seconds=self.read_timeout,
            **self.client_options,
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
        if self.client_options.get("unsigned"):
            options["aws_skip_signature"] = "true"
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
        if self.client_options.get("unsigned"):
            kwargs["anonymous"] = True
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


def project_root() -> Path:
    """The directory the default lake lives in, whatever the working directory is.

    1. The project checkout: the directory holding ``pyproject.toml`` beside the ``lakehouse_assets``
       package (a clone, ``pip install -e``, ``make install``).
    2. Else (the package installed from a wheel, e.g. in a container) the parent of ``DAGSTER_HOME``,
       which ``make`` sets to ``<project>/.dagster_home``.
    3. Else the working directory, as before.
    """
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "lakehouse_assets").is_dir():
        return checkout
    home = os.environ.get("DAGSTER_HOME", "").strip()
    if home:
        return Path(home).expanduser().resolve().parent
    return Path.cwd()


def default_lake_dir() -> Path:
    """Where the lake is when LAKEHOUSE_STORAGE is unset (or set to the default name ``lakehouse_data``)."""
    return project_root() / DEFAULT_STORAGE


def local_lake_path(storage: str) -> Path:
    """A local LAKEHOUSE_STORAGE value as a path: the default name in the project root, any other
    relative path relative to the working directory (as it always was), ``file://`` stripped."""
    path = storage.removeprefix("file://")
    if path == DEFAULT_STORAGE:
        return default_lake_dir()
    return Path(path)


def open_store(
    storage: str | None = None,
    s3_endpoint_url: str | None = None,
    *,
    s3_max_attempts: int | None = None,
    s3_timeout_seconds: float | None = None,
    s3_options: dict[str, Any] | None = None,
) -> LakeStore:
    """``storage`` is a local path or ``s3://bucket/prefix``; unset = ``default_lake_dir()``.

    ``s3_max_attempts`` / ``s3_timeout_seconds`` tune botocore's retries (5xx, throttling, resets,
    timeouts) and its connect/read timeout; unset = the S3Store defaults (8 attempts, 60 s).
    ``s3_options``: further ``S3Store`` fields (region_name, session_options, client_options, client_factory).
    """
    storage = storage or DEFAULT_STORAGE
    if storage.startswith("s3://"):
        parsed = urlparse(storage)
        if not parsed.netloc:
            raise ValueError(f"LAKEHOUSE_STORAGE={storage!r} has no bucket; expected s3://bucket/prefix")
        tuning: dict[str, Any] = dict(s3_options or {})
        if s3_max_attempts:
            tuning["max_attempts"] = int(s3_max_attempts)
        if s3_timeout_seconds:
            tuning["read_timeout"] = float(s3_timeout_seconds)
        return S3Store(bucket=parsed.netloc, prefix=parsed.path, endpoint_url=s3_endpoint_url or None, **tuning)
    if "://" in storage and not storage.startswith("file://"):
        raise ValueError(f"LAKEHOUSE_STORAGE={storage!r}: only local paths and s3:// URIs are supported")
    return LocalStore(local_lake_path(storage))


def _temp_path(final: Path) -> Path:
    """Where ``final`` is written before its rename: a dot-prefixed name, invisible to '*.parquet' globs,
    Hive/Spark/Trino and DuckDB, naming the writer (host, pid) so a later run can tell a dead writer's
    leftover from a live one's (``_writer_is_gone``)."""
    return final.parent / f".{final.name}.{_WRITER}.{uuid.uuid4().hex}.tmp"


def _fsync_or_error(handle: Any) -> OSError | None:
    try:
        os.fsync(handle.fileno())
    except OSError as exc:
        return exc
    return None
