"""The S3 fast path (dinovault/remotes/s3.py) against a real S3 store (Ceph RGW on 127.0.0.1): a verified upload
lands byte-identical; a file that does not hash to its object name is refused with nothing landing (single put and
multipart, no multipart upload left open) while the good files of the same push land; a verified download places
only objects that hash to their name."""

from __future__ import annotations

import hashlib
import os

import pytest

from dinovault.remotes import s3 as s3_speed

MiB = 1 << 20


@pytest.fixture(scope="module")
def bucket(s3_server):
    return s3_server.create_bucket("speed-test")


@pytest.fixture(scope="module")
def client(s3_server):
    return s3_speed.client_for(
        {"key": s3_server.access_key, "secret": s3_server.secret_key, "client_kwargs": {
            "endpoint_url": s3_server.endpoint, "region_name": "us-east-1"}}
    )


def _file(tmp_path, size: int) -> tuple[str, str]:
    path = tmp_path / f"obj-{size}"
    data = os.urandom(size)
    path.write_bytes(data)
    return str(path), hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("size", [1 * MiB, 20 * MiB], ids=["single-put", "multipart"])
def test_verified_upload_lands_identical(s3_server, bucket, client, tmp_path, size):
    path, md5 = _file(tmp_path, size)
    key = f"files/md5/{md5[:2]}/{md5[2:]}"
    assert s3_speed.upload_verified(client, [(path, bucket, key, md5)], jobs=4) == []
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.md5(body).hexdigest() == md5 and len(body) == size


@pytest.mark.parametrize("size", [1 * MiB, 20 * MiB], ids=["single-put", "multipart"])
def test_damaged_file_is_refused_and_nothing_lands(s3_server, bucket, client, tmp_path, size):
    path, md5 = _file(tmp_path, size)
    wrong = hashlib.md5(b"the name of other bytes").hexdigest()
    key = f"files/md5/{wrong[:2]}/{wrong[2:]}"
    good, good_md5 = _file(tmp_path, 3 * MiB)
    good_key = f"files/md5/{good_md5[:2]}/{good_md5[2:]}"
    objects = [(path, bucket, key, wrong), (good, bucket, good_key, good_md5)]
    assert s3_speed.upload_verified(client, objects, jobs=4) == [path]
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix=key)
    assert client.head_object(Bucket=bucket, Key=good_key)["ContentLength"] == 3 * MiB  # the good one landed
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_part_size_fills_every_connection_within_bounds():
    assert s3_speed.part_size(346_378_731, 16) == 21_648_671  # one batch of 16 equal parts
    assert s3_speed.part_size(1 * MiB, 16) == s3_speed.MIN_PART
    assert s3_speed.part_size(4_546_108_579, 16) == s3_speed.MAX_PART


def test_verified_download_places_good_objects_read_only_and_refuses_damaged_ones(s3_server, bucket, client, tmp_path):
    good, good_md5 = _file(tmp_path, 20 * MiB)
    other, other_md5 = _file(tmp_path, 1 * MiB)
    client.put_object(Bucket=bucket, Key="pull/good", Body=open(good, "rb").read())
    client.put_object(Bucket=bucket, Key="pull/tampered", Body=open(other, "rb").read())
    cache = tmp_path / "cache"
    wrong = hashlib.md5(b"what the name promised").hexdigest()
    objects = [(str(cache / "ab" / "good"), bucket, "pull/good", good_md5),
               (str(cache / "cd" / "tampered"), bucket, "pull/tampered", wrong)]
    assert s3_speed.download_verified(client, objects, jobs=4, largest=20 * MiB) == ["pull/tampered"]
    placed = cache / "ab" / "good"
    assert hashlib.md5(placed.read_bytes()).hexdigest() == good_md5 and oct(placed.stat().st_mode & 0o777) == "0o444"
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == ["good"]  # nothing else, no temporary file
