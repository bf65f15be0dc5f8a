"""S3 remotes at the speed of boto3's transfer manager, and no byte sent that does not match its name.

DVC moves S3 objects through s3fs, which cuts uploads into fixed 50 MiB parts (a 346 MB model: 7 streams; an 88 MB
one: a single stream) and downloads in ``default_block_size`` chunks gathered batch by batch. On a long-haul link,
where each connection gets a few MB/s, that is the difference between using the link and using a fraction of it.

- Uploads go through boto3's transfer manager (``s3transfer``; botocore's client with the settings DVC gives s3fs),
  into the remote's own layout (``<prefix>/files/md5/ab/cdef…``), in parts of ``size / jobs``; the bytes are
  hashed as they are read, and a file whose MD5 is not its object's name fails before the upload completes, so a
  damaged object never lands in the remote (the multipart upload is aborted). DVC's own push then finds them there.
- Downloads stay DVC's: s3fs's chunk size is set through fsspec's public configuration to ``size / jobs`` (bounded),
  so one object fills every connection in one batch, with no straggling last batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Iterator

from ..errors import DamagedObjectError

MIN_PART = 8 << 20  # S3's minimum part is 5 MiB; boto3's default is 8 MiB
MAX_PART = 32 << 20  # bounds memory: s3fs and boto3 hold up to ``jobs`` parts in memory
DEFAULT_JOBS = 16  # connections per object: a long-haul link gives each one a few MB/s


def part_size(size: int, jobs: int) -> int:
    """Parts that keep all ``jobs`` connections busy for one object, within S3's and memory's bounds."""
    return min(MAX_PART, max(MIN_PART, math.ceil(size / max(1, jobs))))


@contextlib.contextmanager
def download_chunks(largest: int, jobs: int) -> Iterator[None]:
    """s3fs file systems created inside the block download in chunks fitted to ``largest`` bytes and ``jobs``
    connections (fsspec's configuration is applied to every new S3 file system)."""
    from fsspec.config import conf

    saved = dict(conf.get("s3", {}))
    conf.setdefault("s3", {})["default_block_size"] = part_size(largest, jobs)
    try:
        yield
    finally:
        conf["s3"] = saved


def client_for(fs_args: dict):
    """A botocore S3 client with the settings DVC gives s3fs for this remote (keys, profile, endpoint, region, TLS,
    timeouts), and enough pooled connections for parallel parts. botocore, not boto3: aiobotocore (DVC's S3 layer)
    pins botocore narrowly, and a boto3 beside it makes pip backtrack."""
    from botocore.config import Config
    from botocore.session import Session

    session = Session(profile=fs_args.get("profile"))
    config = {k: v for k, v in (fs_args.get("config_kwargs") or {}).items() if v is not None}
    config["max_pool_connections"] = max(DEFAULT_JOBS, int(config.get("max_pool_connections", 10)))
    client = {k: v for k, v in (fs_args.get("client_kwargs") or {}).items() if v is not None}
    if fs_args.get("use_ssl") is False:
        client["use_ssl"] = False
    return session.create_client(
        "s3", aws_access_key_id=fs_args.get("key"), aws_secret_access_key=fs_args.get("secret"),
        aws_session_token=fs_args.get("token"), config=Config(**config), **client,
    )


class _HashingReader:
    """A read-only, non-seekable view of a file that checks its MD5 when the last byte has been read, so that boto3
    reads it once, in order, and a mismatch stops the upload before it completes."""

    def __init__(self, fh, md5: str, name: str):
        self.fh, self.expected, self.name = fh, md5, name
        self.md5 = hashlib.md5()

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        if data:
            self.md5.update(data)
        elif self.md5.hexdigest() != self.expected:
            raise DamagedObjectError(
                f"{self.name} does not hash to its DVC object name (md5 {self.md5.hexdigest()}, expected "
                f"{self.expected}): not uploaded / 文件内容与其 DVC 对象名不符，未上传",
                "repair it first: invoke verify --repair / 请先运行 invoke verify --repair",
            )
        return data

    def seekable(self) -> bool:
        return False


def upload_verified(client, objects: list[tuple[str, str, str, str]], *, jobs: int = DEFAULT_JOBS,
                    extra_args: dict | None = None) -> list[str]:
    """Upload each ``(path, bucket, key, md5)`` with one boto3 transfer manager (``jobs`` requests in flight in all;
    parts fitted to the largest file). Returns the paths that did not hash to their ``md5``: none of those landed."""
    from s3transfer.manager import TransferConfig, TransferManager

    chunk = part_size(max((os.path.getsize(o[0]) for o in objects), default=0), jobs)
    config = TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk, max_request_concurrency=jobs)
    damaged = []
    with contextlib.ExitStack() as stack:
        manager = stack.enter_context(TransferManager(client, config))
        futures = []
        for path, bucket, key, md5 in objects:
            reader = _HashingReader(stack.enter_context(open(path, "rb", buffering=0)), md5, path)
            futures.append((path, manager.upload(reader, bucket, key, extra_args=extra_args)))
        for path, future in futures:
            try:
                future.result()
            except DamagedObjectError:
                damaged.append(path)
    return damaged


__all__ = ["DEFAULT_JOBS", "client_for", "download_chunks", "part_size", "upload_verified"]
