"""S3 remotes at the speed of boto3's transfer manager, and no byte sent that does not match its name.

DVC moves S3 objects through s3fs, which cuts uploads into fixed 50 MiB parts (a 346 MB model: 7 streams; an 88 MB
one: a single stream) and downloads in ``default_block_size`` chunks gathered batch by batch. On a long-haul link,
where each connection gets a few MB/s, that is the difference between using the link and using a fraction of it.
Only public interfaces are used: the remote's settings from DVC, its object layout, botocore's events, s3transfer.

- Uploads go through boto3's transfer manager (``s3transfer``; botocore's client with the settings DVC gives s3fs),
  into the remote's own layout (``<prefix>/files/md5/ab/cdef…``), in parts of ``size / jobs``; each file is hashed
  while it uploads, and one whose MD5 is not its object's name fails before the upload completes, so a damaged
  object never lands in the remote (the multipart upload is aborted).
- Downloads the same way, into a temporary file beside their place in the local DVC cache; each is MD5-checked (from
  the page cache) before it is renamed into place, read-only as DVC keeps its cache, so a damaged or tampered remote
  object is never placed. DVC then only checks the files out.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import DamagedObjectError
from ..files import hash_file, replace, temp_beside

MIN_PART = 8 << 20  # S3's minimum part is 5 MiB; boto3's default is 8 MiB
MAX_PART = 32 << 20  # bounds memory: the transfer manager holds up to ``jobs`` parts in memory
DEFAULT_JOBS = 16  # connections per object: a long-haul link gives each one a few MB/s


def part_size(size: int, jobs: int) -> int:
    """Parts that keep all ``jobs`` connections busy for one object, within S3's and memory's bounds."""
    return min(MAX_PART, max(MIN_PART, math.ceil(size / max(1, jobs))))


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


def _manager(client, largest: int, jobs: int):
    """One boto3 transfer manager: ``jobs`` requests in flight in all, parts fitted to the ``largest`` object."""
    from s3transfer.manager import TransferConfig, TransferManager

    chunk = part_size(largest, jobs)
    return TransferManager(client, TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk,
                                                  max_request_concurrency=jobs))


def upload_verified(client, objects: list[tuple[str, str, str, str]], *, jobs: int = DEFAULT_JOBS,
                    extra_args: dict | None = None) -> list[str]:
    """Upload each ``(path, bucket, key, md5)`` with one boto3 transfer manager (``jobs`` requests in flight in all,
    parts fitted to the largest file, read in parallel). Each file is hashed on a thread meanwhile, and the request
    that would make its object appear (PutObject, CompleteMultipartUpload) first waits for that hash: a file that
    does not hash to its ``md5`` fails there, its multipart upload is aborted and nothing lands. Returns those
    paths."""
    largest = max((os.path.getsize(o[0]) for o in objects), default=0)
    with ThreadPoolExecutor(2, thread_name_prefix="dinovault-md5") as hashers:
        digests = {(b, k): (hashers.submit(lambda p: hash_file(Path(p), md5=True, sha256=False).md5, p), md5, p)
                   for p, b, k, md5 in objects}

        def gate(params, **_):
            digest, md5, path = digests.get((params.get("Bucket"), params.get("Key")), (None, None, None))
            if digest is not None and digest.result() != md5:
                raise DamagedObjectError(f"{path} does not hash to {md5} / 文件内容与其 DVC 对象名不符")

        events = ("before-parameter-build.s3.PutObject", "before-parameter-build.s3.CompleteMultipartUpload")
        for event in events:
            client.meta.events.register(event, gate)
        damaged = []
        try:
            with _manager(client, largest, jobs) as manager:
                futures = [(p, manager.upload(p, b, k, extra_args=extra_args)) for p, b, k, _ in objects]
                for path, future in futures:
                    try:
                        future.result()
                    except DamagedObjectError:
                        damaged.append(path)
        finally:
            for event in events:
                client.meta.events.unregister(event, gate)
    return damaged


def download_verified(client, objects: list[tuple[str, str, str, str]], *, jobs: int = DEFAULT_JOBS,
                      largest: int = 0) -> list[str]:
    """Download each ``(dest, bucket, key, md5)`` with one boto3 transfer manager (``jobs`` ranged requests in
    flight in all, parts fitted to ``largest``, the size of the largest as dvc.lock records it): into a temporary
    file beside ``dest``, renamed to ``dest`` (read-only) only when it hashes to ``md5``. Returns the keys that did
    not: none of those was placed."""
    temps = {dest: temp_beside(Path(dest), "pull") for dest, _, _, _ in objects}
    damaged = []
    try:
        with _manager(client, largest, jobs) as manager:
            futures = []
            for dest, bucket, key, md5 in objects:
                Path(dest).parent.mkdir(parents=True, exist_ok=True)
                futures.append((key, dest, md5, manager.download(bucket, key, str(temps[dest]))))
            for _, _, _, future in futures:
                future.result()
        for key, dest, md5, _ in futures:
            if hash_file(temps[dest], md5=True, sha256=False).md5 != md5:
                damaged.append(key)
                continue
            os.chmod(temps[dest], 0o444)
            replace(Path(temps[dest]), Path(dest))
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return damaged


__all__ = ["DEFAULT_JOBS", "client_for", "download_verified", "part_size", "upload_verified"]
