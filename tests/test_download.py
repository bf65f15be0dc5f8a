"""The download side of the fetch core against a real loopback HTTP server with injected faults.

Small random files stand in for checkpoints here (smoke test off), so every fault case runs in well under a second
or two; tests/test_fetch.py covers real checkpoints, the CLI and cross-process behaviour.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest

from dinovault.cache import cache_path, check_file, read_stamp, torch_home, verify_file
from dinovault.catalog import get_spec
from dinovault.errors import DinovaultError, DownloadError, RegistryError, VerificationError
from dinovault.pipeline import fetch_model
from dinovault.progress import LineProgress
from dinovault.registry import load_registry
from dinovault.sources.official import OFFICIAL_BASE_URL, base_urls, official_url, source_urls
from dinovault.transport.download import RetryPolicy, part_paths
from tests.support.httpserver import SMALL_SIZE, start_server, write_registry

S14 = get_spec("dinov2_vits14")
FILE = S14.upstream_file


@pytest.fixture
def served(faulty_server, torch_home_dir, monkeypatch):
    """faulty_server as the only source, its registry as the pins, a private TORCH_HOME."""
    for k, v in faulty_server.env.items():
        monkeypatch.setenv(k, v)
    return faulty_server


def fetch(**kw):
    kw.setdefault("smoke_test", False)
    kw.setdefault("progress", False)
    return fetch_model("dinov2_vits14", **kw)


def served_bytes(server, name=FILE) -> bytes:
    return server.files[name].read_bytes()


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.glob(dest.name + ".part*"))


# ------------------------------------------------------------------ sources and paths


def test_base_urls_from_env(monkeypatch):
    monkeypatch.delenv("DINOV2_BASE_URL", raising=False)
    assert base_urls() == [OFFICIAL_BASE_URL]
    assert base_urls(" http://a/x/, http://b/y \n http://c  http://a/x") == ["http://a/x", "http://b/y", "http://c"]
    monkeypatch.setenv("DINOV2_BASE_URL", "http://m1/dinov2,http://m2/dinov2")
    reg = get_spec("dinov2_vitg14_reg")
    assert source_urls(reg) == [
        "http://m1/dinov2/dinov2_vitg14/dinov2_vitg14_reg4_pretrain.pth",
        "http://m2/dinov2/dinov2_vitg14/dinov2_vitg14_reg4_pretrain.pth",
    ]
    assert official_url(S14) == "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth"


@pytest.mark.parametrize("torch_home_env,xdg", [(None, None), (None, "/tmp/xdg-x"), ("~/th", "/tmp/xdg-y")])
def test_torch_home_matches_torch(monkeypatch, torch_home_env, xdg):
    import torch.hub

    for var, value in (("TORCH_HOME", torch_home_env), ("XDG_CACHE_HOME", xdg)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    assert str(torch_home() / "hub") == torch.hub.get_dir()
    assert cache_path(FILE) == Path(torch.hub.get_dir()) / "checkpoints" / FILE


# ------------------------------------------------------------------ the happy path and the verified stamp


def test_download_verifies_and_stamps(served):
    res = fetch()
    dest = cache_path(FILE)
    assert res.cache_path == dest and dest.read_bytes() == served_bytes(served)
    assert res.downloaded and res.verified and res.hashed and res.transferred == SMALL_SIZE
    assert served.hits(FILE) == 1 and served.sent(FILE) == SMALL_SIZE
    assert leftovers(dest) == []
    assert read_stamp(dest) == res.sha256

    again = fetch()  # verified once: no request, no re-hash
    assert not again.downloaded and not again.hashed and again.sha256 == res.sha256
    assert served.hits(FILE) == 1


def test_changed_cache_file_is_reported_and_fetched_again(served, caplog):
    fetch()
    dest = cache_path(FILE)
    data = bytearray(dest.read_bytes())
    data[1000] ^= 1
    dest.write_bytes(bytes(data))  # same size, new mtime: the stamp no longer vouches for it
    res = fetch()
    assert res.downloaded and served.hits(FILE) == 2
    assert dest.read_bytes() == served_bytes(served)
    assert "fails verification" in caplog.text


def test_a_tampered_file_with_its_mtime_set_back_is_not_trusted(served):
    """Issue 9: the stamp also holds the inode's ctime, which no user can set back, so restoring the mtime after
    changing a byte does not forge 'verified'."""
    fetch()
    dest = cache_path(FILE)
    pin = load_registry()[FILE]
    assert verify_file(dest, pin) and read_stamp(dest) == pin.sha256  # unchanged: the stamp vouches for it
    st = dest.stat()
    with open(dest, "r+b") as fh:  # silent corruption that keeps size and mtime
        fh.seek(5)
        fh.write(b"\x00")
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert dest.stat().st_mtime_ns == st.st_mtime_ns and read_stamp(dest) is None
    check = check_file(dest, pin)
    assert not check.ok and check.hashed and "differs from the pinned" in check.reason
    assert not verify_file(dest, pin, rehash=True)


def test_hard_links_share_the_stamp(served, tmp_path):
    res = fetch()
    link = tmp_path / "link.pth"
    os.link(res.cache_path, link)  # a new link moves the inode's ctime: hashed once more, then stamped again
    first = check_file(link, load_registry()[FILE])
    assert first.ok and first.hashed
    assert read_stamp(res.cache_path) == res.sha256  # one stamp per inode, whatever the name
    check = check_file(res.cache_path, load_registry()[FILE])
    assert check.ok and not check.hashed


# ------------------------------------------------------------------ faults


def test_cut_connection_resumes_with_range(served):
    served.fault(FILE, cut_after=2_500_000, times=1)
    res = fetch()
    assert res.cache_path.read_bytes() == served_bytes(served)
    ranges = [r.range for r in served.log]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    resumed_at = int(ranges[1][6:-1])
    assert 0 < resumed_at <= 2_500_000
    # the second request sent exactly the rest: nothing received was downloaded twice
    assert served.log[1].sent == SMALL_SIZE - resumed_at and served.log[1].status == 206


def test_one_wrong_byte_is_refused(served):
    served.fault(FILE, wrong_byte_at=SMALL_SIZE // 2)
    with pytest.raises(DownloadError) as exc:
        fetch()
    msg = str(exc.value)
    assert "do not match the pin" in msg and "sha256" in msg and served.base_url in msg
    dest = cache_path(FILE)
    assert not dest.exists() and leftovers(dest) == []


def test_503_with_retry_after_is_honoured(served):
    served.fault(FILE, status=503, retry_after="1", times=1)
    res = fetch()
    assert res.verified and served.hits(FILE) == 2
    # the server got the retry no sooner than 1 s after it answered 503 (the tests' backoff alone is 0.05 s)
    assert served.log[1].at - served.log[0].at >= 1.0


def test_retry_after_longer_than_max_wait_skips_the_source(served, monkeypatch):
    monkeypatch.setenv("DINOVAULT_MAX_WAIT", "2")
    served.fault(FILE, status=429, retry_after="3600")
    with pytest.raises(DownloadError, match="asked to retry after 3600s"):
        fetch()
    assert served.hits(FILE) == 1


def test_500_is_retried_then_reported(served, monkeypatch):
    monkeypatch.setenv("DINOVAULT_RETRIES", "3")
    served.fault(FILE, status=500)
    with pytest.raises(DownloadError, match=r"HTTP 500 .*after 3 attempts"):
        fetch()
    assert served.hits(FILE) == 3
    assert not cache_path(FILE).exists()


def test_404_is_not_retried(served):
    served.fault(FILE, status=404)
    with pytest.raises(DownloadError) as exc:
        fetch()
    assert "HTTP 404" in str(exc.value) and served.hits(FILE) == 1
    assert exc.value.hint  # says what to do


@pytest.mark.parametrize("sniff_only", [False, True], ids=["content-type", "body"])
def test_html_with_200_is_refused(served, sniff_only):
    served.fault(FILE, html=True, html_sniff_only=sniff_only)
    with pytest.raises(DownloadError, match="HTML"):
        fetch()
    dest = cache_path(FILE)
    assert not dest.exists() and leftovers(dest) == []


def test_stall_times_out_and_resumes(served, monkeypatch):
    monkeypatch.setenv("DINOVAULT_TIMEOUT", "0.5")
    served.fault(FILE, stall=60, stall_after=2_000_000, times=1)
    res = fetch()
    assert res.cache_path.read_bytes() == served_bytes(served)
    # the stall was cut short by the 0.5 s timeout, not waited out (then the first response would have brought the
    # whole file): it sent nothing after the stall began, and a second request resumed from what had arrived
    assert [rec.status for rec in served.log] == [200, 206] and served.log[0].sent == 2_000_000
    resumed_at = int(served.log[1].range[len("bytes="):].rstrip("-"))
    assert 0 < resumed_at <= 2_000_000


def test_persistent_stall_is_reported(served, monkeypatch):
    monkeypatch.setenv("DINOVAULT_TIMEOUT", "0.3")
    monkeypatch.setenv("DINOVAULT_RETRIES", "2")
    served.fault(FILE, stall=5)
    with pytest.raises(DownloadError, match="timed out"):
        fetch()
    assert not cache_path(FILE).exists()


def test_server_ignoring_range_restarts_from_zero(served):
    served.fault(FILE, cut_after=1_500_000, times=1)
    served.fault(None, ignore_range=True)
    res = fetch()
    assert res.cache_path.read_bytes() == served_bytes(served)
    assert served.log[1].range is not None and served.log[1].status == 200
    assert served.log[1].sent == SMALL_SIZE


def test_mirror_failover(served, tmp_path, monkeypatch):
    bad = start_server(tmp_path / "bad")
    try:
        bad.add(f"dinov2/{S14.upstream_path}", served_bytes(served))
        bad.fault(FILE, wrong_byte_at=10)
        monkeypatch.setenv("DINOV2_BASE_URL", f"{bad.base_url}, http://127.0.0.1:9/none {served.base_url}")
        res = fetch(save_dir=tmp_path / "out")
        assert res.source_url == f"{served.base_url}/{S14.upstream_path}"
        assert bad.hits(FILE) == 1 and served.hits(FILE) == 1
        card = json.loads((tmp_path / "out" / "dinov2_vits14.json").read_text())
        assert card["url"] == official_url(S14)  # never the mirror's
    finally:
        bad.close()


def test_final_error_names_every_source(served, tmp_path, monkeypatch):
    monkeypatch.setenv("DINOVAULT_RETRIES", "2")
    other = start_server(tmp_path / "other")
    try:
        other.add(f"dinov2/{S14.upstream_path}", b"x")
        other.fault(None, status=500)
        served.fault(FILE, status=404)
        dead = "http://127.0.0.1:9/dinov2"  # discard port: connection refused
        monkeypatch.setenv("DINOV2_BASE_URL", f"{served.base_url},{other.base_url},{dead}")
        with pytest.raises(DownloadError) as exc:
            fetch()
        msg = exc.value.message
        assert "any of the 3 sources" in msg
        for base, why in ((served.base_url, "HTTP 404"), (other.base_url, "HTTP 500"), (dead, "connection failed")):
            assert f"{base}/{S14.upstream_path}: {why}" in msg
        assert "\n" not in msg
    finally:
        other.close()


def test_wrong_size_is_refused_before_downloading(served, tmp_path, monkeypatch):
    pin = load_registry()[FILE]
    reg = tmp_path / "reg.txt"
    reg.write_text(f"{FILE} {pin.size + 1} sha256:{pin.sha256}\n")
    monkeypatch.setenv("DINOVAULT_REGISTRY", str(reg))
    with pytest.raises(DownloadError, match=f"serves {pin.size} bytes, the pin says {pin.size + 1}"):
        fetch()


# ------------------------------------------------------------------ partials


def _plant_partial(dest: Path, data: bytes, **meta):
    part, sidecar = part_paths(dest)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data)
    if meta:
        sidecar.write_text(json.dumps(meta))


def test_trusted_partial_is_resumed(served):
    data, pin = served_bytes(served), load_registry()[FILE]
    _plant_partial(cache_path(FILE), data[:1234567], url="http://elsewhere/x", total=pin.size, sha256=pin.sha256)
    res = fetch()
    assert res.transferred == SMALL_SIZE - 1234567 == served.sent(FILE)
    assert served.log[0].range == "bytes=1234567-"
    assert res.cache_path.read_bytes() == data


@pytest.mark.parametrize("meta", [{}, {"total": 1, "sha256": "0" * 64}], ids=["no-sidecar", "other-pin"])
def test_untrusted_partial_is_discarded(served, meta, caplog):
    data = served_bytes(served)
    _plant_partial(cache_path(FILE), data[:1000000], **meta)
    res = fetch()
    assert served.log[0].range is None and served.sent(FILE) == SMALL_SIZE
    assert res.cache_path.read_bytes() == data
    assert "discarding partial download" in caplog.text


def test_corrupt_partial_is_dropped_and_the_source_retried_from_zero(served):
    data, pin = served_bytes(served), load_registry()[FILE]
    bad = bytearray(data[:2000000])
    bad[100] ^= 0xFF
    _plant_partial(cache_path(FILE), bytes(bad), url=served.base_url, total=pin.size, sha256=pin.sha256)
    res = fetch()
    assert res.cache_path.read_bytes() == data
    assert [r.range for r in served.log] == ["bytes=2000000-", None]


def test_complete_partial_is_verified_without_a_request(served):
    data, pin = served_bytes(served), load_registry()[FILE]
    _plant_partial(cache_path(FILE), data, url=served.base_url, total=pin.size, sha256=pin.sha256)
    res = fetch()
    assert served.hits(FILE) == 0 and res.cache_path.read_bytes() == data


# ------------------------------------------------------------------ pins and registry


def test_unpinned_model_needs_allow_unverified(served, tmp_path, monkeypatch):
    spec_b = get_spec("dinov2_vitb14")
    reg = tmp_path / "only_s14.txt"
    reg.write_text(next(line for line in served.registry.read_text().splitlines() if line.startswith(FILE)) + "\n")
    monkeypatch.setenv("DINOVAULT_REGISTRY", str(reg))
    with pytest.raises(VerificationError, match="no pinned SHA-256") as exc:
        fetch_model("dinov2_vitb14", smoke_test=False, progress=False)
    assert "--allow-unverified" in exc.value.hint
    assert served.hits(spec_b.upstream_file) == 0
    res = fetch_model("dinov2_vitb14", tmp_path / "out", allow_unverified=True, smoke_test=False, progress=False)
    assert not res.verified and res.downloaded
    card = json.loads((tmp_path / "out" / "dinov2_vitb14.json").read_text())
    assert card["verified"] is False and card["sha256"] == res.sha256
    again = fetch_model("dinov2_vitb14", allow_unverified=True, smoke_test=False, progress=False)
    assert not again.downloaded and not again.hashed


def test_malformed_registry_names_file_and_line(served, tmp_path, monkeypatch):
    reg = tmp_path / "bad_registry.txt"
    reg.write_text("# pins\n\n" + served.registry.read_text().splitlines()[1] + "\nfoo.pth 12 md5:abc\n")
    monkeypatch.setenv("DINOVAULT_REGISTRY", str(reg))
    with pytest.raises(RegistryError, match=rf"{reg}:4: hash 'md5:abc'"):
        fetch()


@pytest.mark.parametrize(("line", "problem"), [
    ("hf:facebook/dinov2-small@ed25f3a/model.safetensors 1 sha256:" + "a" * 64, "40-hex commit"),
    ("hf:facebook/dinov2-small@" + "a" * 40 + "/model.safetensors x sha256:" + "a" * 64, "not a whole number"),
    ("hf:dinov2-small@" + "a" * 40 + "/model.safetensors - sha256:" + "a" * 64, "<owner>/<repo>"),
])
def test_malformed_hf_pin_names_the_line(line, problem):
    from dinovault.registry import parse_pins

    with pytest.raises(RegistryError, match=f"r.txt:2: .*{re.escape(problem)}"):
        parse_pins("# pins\n" + line + "\n", "r.txt")


def test_hub_pins_are_keyed_by_hub_and_repo_and_size_may_be_unknown():
    from dinovault.registry import parse_pins, parse_registry

    text = (f"hf:facebook/dinov2-base@{'b' * 40}/model.safetensors - sha256:{'c' * 64}\n"
            f"ms:facebook/dinov2-base@master/model.safetensors 12 sha256:{'d' * 64}\n")
    pins = parse_pins(text)
    assert pins.hub("ms", "facebook/dinov2-base").ref == "ms:facebook/dinov2-base@master/model.safetensors"
    assert pins.hub("ms", "facebook/dinov2-base").size == 12
    pin = pins.hub("hf", "facebook/dinov2-base")
    assert (pin.revision, pin.file, pin.size, pin.sha256) == ("b" * 40, "model.safetensors", None, "c" * 64)
    assert pin.ref == f"hf:facebook/dinov2-base@{'b' * 40}/model.safetensors" and parse_registry(text) == {}


# ------------------------------------------------------------------ progress and policy


def test_line_progress_is_plain_and_periodic():
    out = io.StringIO()
    p = LineProgress(out, interval=0)
    p.start("x.pth", 4 << 20, initial=1 << 20)
    p.update(1 << 20)
    p.close()
    text = out.getvalue()
    assert "\r" not in text and "resuming at 1.0 MiB" in text and "2.0 MiB / 4.0 MiB (50%)" in text


def test_retry_policy_from_env(monkeypatch):
    monkeypatch.setenv("DINOVAULT_RETRIES", "2")
    monkeypatch.setenv("DINOVAULT_BACKOFF", "0.5")
    monkeypatch.setenv("DINOVAULT_TIMEOUT", "3")
    p = RetryPolicy.from_env()
    assert (p.attempts, p.read_timeout, p.connect_timeout) == (2, 3.0, 3.0)
    assert [p.wait(i, None) for i in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert p.wait(1, 7) == 7 and p.wait(1, 1e6) is None
    monkeypatch.setenv("DINOVAULT_TIMEOUT", "soon")
    with pytest.raises(DinovaultError, match="DINOVAULT_TIMEOUT"):
        RetryPolicy.from_env()


def test_a_checkpoint_starting_with_lt_is_no_html_page(served, tmp_path, monkeypatch):
    """One stream: a safetensors-like body whose first byte is 0x3C ('<', its header length's low byte)."""
    header = b'{"__metadata__":{"format":"pt"}}'.ljust(0x003C)
    body = (0x003C).to_bytes(8, "little") + header + served_bytes(served)[: SMALL_SIZE - 8 - len(header)]
    served.add(f"dinov2/{S14.upstream_path}", body)
    monkeypatch.setenv("DINOVAULT_REGISTRY", str(write_registry(tmp_path / "lt.txt", [served.files[FILE]])))
    res = fetch()
    assert res.verified and res.cache_path.read_bytes() == body and served.log[-1].status == 200


@pytest.mark.parametrize("head", [b"<!DOCTYPE html>", b"\xef\xbb\xbf \n<html lang=en>", b"<HEAD>", b"<body>",
                                  b"\r\n<?xml version='1.0'?><Error>", b"  <!doctype   HTML>"])
def test_markup_is_recognised(head):
    from dinovault.transport.retry import looks_like_markup

    assert looks_like_markup(head + b"<title>Sign in</title>")


@pytest.mark.parametrize("head", [b"<\x01\x00\x00\x00\x00\x00\x00{", b"<\x00", b"PK\x03\x04", b"<htmlx", b"< html>"])
def test_binary_is_not_markup(head):
    from dinovault.transport.retry import looks_like_markup

    assert not looks_like_markup(head + bytes(100))
