"""DINOv3's routes to Meta's files (issue 18 items 2-3): the hash prefix in the file name, and the signed link from
Meta's e-mail, served in the official layout by a real Range-capable server on 127.0.0.1 with a signed-looking query
whose ``Policy`` is real CloudFront base64.

The catalog's DINOv3 rows are another module's work: these tests build rows with ``dataclasses.replace`` of a DINOv2
row and put them in ``dinovault.catalog.CATALOG`` (monkeypatched) where ``fetch_model`` needs them by name. The files
are random bytes named with the first 8 hex digits of their SHA-256, so the smoke test is off.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import pytest

from dinovault import catalog, sources
from dinovault.errors import DownloadError, SignedLinkError, VerificationError
from dinovault.pipeline import fetch_model
from dinovault.registry import load_pins
from dinovault.sources.prefix import PREFIX, name_prefix
from dinovault.sources.signed import SignedLink
from tests.support.httpserver import SMALL_SIZE, random_bytes, start_server

_DIGEST = hashlib.sha256(b"dinovault test signature").hexdigest()
SIGNATURE = f"{_DIGEST[:30]}~-_{_DIGEST[30:]}"  # computed: no file (this one included) holds it
KEY_PAIR = "K2JCJMDEHXQW5F"
WEEK = 7 * 24 * 3600


def policy(resource: str, expires: float) -> str:
    """A CloudFront custom policy, base64 with CloudFront's URL-safe substitutions (-_~ for +=/)."""
    doc = {"Statement": [{"Resource": resource, "Condition": {"DateLessThan": {"AWS:EpochTime": int(expires)}}}]}
    raw = base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()
    return raw.translate(str.maketrans("+=/", "-_~"))


def signed(url: str, resource: str | None = None, expires: float | None = None, signature: str = SIGNATURE) -> str:
    expires = time.time() + WEEK if expires is None else expires
    return f"{url}?Policy={policy(resource or url, expires)}&Signature={signature}&Key-Pair-Id={KEY_PAIR}"


def dinov3_row(arch: str, file: str):
    return dataclasses.replace(
        catalog.get_spec("dinov2_vits14"), name=arch, family="dinov3", arch=arch, upstream_file=file,
        upstream_path=f"{arch}/{file}", base_url="https://dl.fbaipublicfiles.com/dinov3", license="DINOv3 License",
        hub_repos=(("hf", f"facebook/{arch.replace('_', '-')}-pretrain-lvd1689m"),
                   ("ms", f"facebook/{arch.replace('_', '-')}-pretrain-lvd1689m")))


@dataclasses.dataclass
class Site:
    server: object
    rows: dict
    data: dict
    tmp: Path

    def url(self, name: str) -> str:
        return f"{self.server.origin}/dinov3/{self.rows[name].upstream_path}"

    def queries(self) -> list[str]:
        return [rec.path for rec in self.server.log]


@pytest.fixture
def site(tmp_path, torch_home_dir, monkeypatch):
    """Two DINOv3-like files in the official layout (``/dinov3/<arch>/<arch>_pretrain_lvd1689m-<hash8>.pth``), an
    empty registry (prefix only), the rows in the catalog, and any official request kept on loopback."""
    server = start_server(tmp_path / "www")
    rows, data = {}, {}
    for i, arch in enumerate(("dinov3_vits16", "dinov3_vitb16")):
        blob = random_bytes(SMALL_SIZE + 1000 * i, seed=30 + i)
        file = f"{arch}_pretrain_lvd1689m-{hashlib.sha256(blob).hexdigest()[:8]}.pth"
        rows[arch], data[arch] = dinov3_row(arch, file), blob
        server.add(f"dinov3/{arch}/{file}", blob)
        monkeypatch.setitem(catalog.CATALOG, arch, rows[arch])
    registry = tmp_path / "registry.txt"
    registry.write_text("# no DINOv3 pins\n", encoding="utf-8")
    monkeypatch.setenv("DINOVAULT_REGISTRY", str(registry))
    monkeypatch.setenv("DINOV3_BASE_URL", "http://127.0.0.1:9/dinov3")  # port 9 refuses: never the real site
    monkeypatch.delenv("DINOV3_URL", raising=False)
    monkeypatch.delenv("DINOVAULT_SOURCES", raising=False)
    try:
        yield Site(server, rows, data, tmp_path)
    finally:
        server.close()


def no_signature_anywhere(*roots: Path, text: str = "", signature: str = SIGNATURE) -> None:
    assert signature not in text
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert signature[:20].encode() not in data and signature[-20:].encode() not in data, path


# ---------------------------------------------------------------------------------------------- the hash prefix


def test_the_name_prefix_follows_torch_hub():
    assert name_prefix("dinov3_vits16_pretrain_lvd1689m-08c60483.pth") == "08c60483"
    assert name_prefix("dinov2_vits14_pretrain.pth") is None
    assert name_prefix("dinov3_vit7b16_pretrain_sat493m-a6675841.pth") == "a6675841"


def test_a_mirror_file_with_only_the_prefix_says_so_on_the_card(site, tmp_path, monkeypatch):
    monkeypatch.setenv("DINOV3_BASE_URL", f"{site.server.origin}/dinov3")
    res = fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False)
    assert res.verified == PREFIX and res.export_path.read_bytes() == site.data["dinov3_vits16"]
    card = json.loads(res.card_path.read_text())
    assert card["verified"] == "prefix" and card["sha256"] == hashlib.sha256(site.data["dinov3_vits16"]).hexdigest()
    assert card["license"] == "DINOv3 License" and card["source"] == "official"
    # what `invoke verify` shows: the card's full SHA-256 is what the file must be, marked prefix-only
    want = sources.get("official").expected(site.rows["dinov3_vits16"], card, load_pins())
    assert (want.size, want.sha256, want.problems) == (card["size"], card["sha256"], ())
    assert "verified: prefix" in want.note and name_prefix(res.spec.upstream_file) in want.note
    # a card whose SHA-256 does not fit the name is a problem for verify
    assert sources.get("official").expected(res.spec, {**card, "sha256": "f" * 64}, load_pins()).problems
    # a second fetch finds it in the torch.hub cache without a request
    site.server.reset_counters()
    again = fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False)
    assert not again.downloaded and again.verified == PREFIX and site.server.log == []


def test_a_full_pin_takes_precedence_and_is_checked_in_full(site, tmp_path, monkeypatch):
    from tests.support.httpserver import write_registry

    file = site.server.files[site.rows["dinov3_vits16"].upstream_file]
    write_registry(Path(site.tmp / "registry.txt"), [file])
    monkeypatch.setenv("DINOV3_BASE_URL", f"{site.server.origin}/dinov3")
    res = fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False)
    assert res.verified is True and json.loads(res.card_path.read_text())["verified"] is True


def wrong_file_under_the_right_name(site) -> bytes:
    """Other bytes of the same size served under the vits16 name (a mirror's mistake, a file swapped on the way)."""
    path = site.server.files[site.rows["dinov3_vits16"].upstream_file]
    wrong = random_bytes(len(site.data["dinov3_vits16"]), seed=99)
    path.write_bytes(wrong)
    return wrong


def test_a_wrong_file_under_a_right_name_is_refused_by_its_prefix(site, tmp_path, monkeypatch):
    wrong_file_under_the_right_name(site)
    monkeypatch.setenv("DINOV3_BASE_URL", f"{site.server.origin}/dinov3")
    spec = site.rows["dinov3_vits16"]
    with pytest.raises(VerificationError, match=f"does not start with {name_prefix(spec.upstream_file)}") as exc:
        fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False)
    assert " / " in exc.value.message and exc.value.hint
    checkpoints = Path(site.tmp / "torch_home" / "hub" / "checkpoints")
    left = [p.name for p in checkpoints.iterdir() if p.name.startswith(spec.upstream_file)]
    assert not [n for n in left if not n.endswith(".lock")], left  # not under its name, nor as .unchecked
    assert not (tmp_path / "models" / "dinov3_vits16.pth").exists()


def test_a_wrong_file_under_a_right_name_is_refused_by_its_pin(site, tmp_path, monkeypatch):
    from tests.support.httpserver import write_registry

    spec = site.rows["dinov3_vits16"]
    right = site.tmp / "right" / spec.upstream_file
    right.parent.mkdir()
    right.write_bytes(site.data["dinov3_vits16"])
    write_registry(site.tmp / "registry.txt", [right])
    wrong_file_under_the_right_name(site)
    monkeypatch.setenv("DINOV3_BASE_URL", f"{site.server.origin}/dinov3")
    with pytest.raises(DownloadError, match="do not match the pin"):
        fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False)
    assert not (site.tmp / "torch_home" / "hub" / "checkpoints" / spec.upstream_file).exists()
    assert not (tmp_path / "models" / "dinov3_vits16.pth").exists()


def test_a_registry_pin_that_contradicts_the_name_is_refused_before_any_request(site, tmp_path, monkeypatch):
    spec = site.rows["dinov3_vits16"]
    wrong = wrong_file_under_the_right_name(site)
    (site.tmp / "registry.txt").write_text(
        f"{spec.upstream_file} {len(wrong)} sha256:{hashlib.sha256(wrong).hexdigest()}\n", encoding="utf-8")
    monkeypatch.setenv("DINOV3_BASE_URL", f"{site.server.origin}/dinov3")
    with pytest.raises(VerificationError, match="contradicts its name"):
        fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False)
    assert site.server.log == []


# ---------------------------------------------------------------------------------------------- the signed link


def test_the_policy_is_read_from_cloudfront_base64():
    url = "https://dinov3.llamameta.net/dinov3_vits16/dinov3_vits16_pretrain_lvd1689m-08c60483.pth"
    link = SignedLink.parse(signed(url, "https://dinov3.llamameta.net/*", 1755800000))
    assert link.base == url and link.resource == "https://dinov3.llamameta.net/*" and link.expires == 1755800000
    assert link.expiry() == "2025-08-21 18:13 UTC" and SIGNATURE in link.query and "?" not in link.base
    b16 = dinov3_row("dinov3_vitb16", "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth")
    assert link.url_for(b16) == "https://dinov3.llamameta.net/dinov3_vitb16/dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth"


def test_a_signed_link_fetches_and_its_signature_is_nowhere(site, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # urllib3 logs every URL at DEBUG: those lines are checked too
    res = fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False, url=signed(site.url("dinov3_vits16")))
    assert res.export_path.read_bytes() == site.data["dinov3_vits16"] and res.verified == PREFIX
    assert res.source_url == site.url("dinov3_vits16")  # without the query
    assert site.queries() and all(SIGNATURE in q for q in site.queries())  # the server saw the credential
    card = json.loads(res.card_path.read_text())
    assert card["url"] == res.spec.url and card["source"] == "official"  # the same card as any official fetch
    assert any("GET /dinov3/" in r.getMessage() for r in caplog.records if r.name.startswith("urllib3"))
    no_signature_anywhere(site.tmp / "torch_home", tmp_path / "models", text=caplog.text)


def test_the_link_from_the_environment_is_used(site, tmp_path, monkeypatch):
    monkeypatch.setenv("DINOV3_URL", signed(site.url("dinov3_vits16")))
    res = fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False)
    assert res.export_path.read_bytes() == site.data["dinov3_vits16"] and all(SIGNATURE in q for q in site.queries())


def test_the_query_survives_ranges_and_a_resume_with_a_new_link(site, tmp_path, monkeypatch, caplog):
    """A full pin makes the download segmented: every range carries the query. The link expires mid-download (cut
    ranges, then 403): the partial's sidecar holds no signature, and a fresh link (another signature) resumes it
    instead of starting over."""
    from tests.support.httpserver import write_registry

    spec = site.rows["dinov3_vits16"]
    write_registry(site.tmp / "registry.txt", [site.server.files[spec.upstream_file]])
    monkeypatch.setenv("DINOVAULT_SEGMENT_SIZE", str(256 * 1024))
    monkeypatch.setenv("DINOVAULT_CONNECTIONS", "4")
    site.server.fault(spec.upstream_file, cut_after=300_000, times=4)  # more than one 256 KiB read each
    site.server.fault(None, status=403)  # then: expired
    with pytest.raises(SignedLinkError) as exc:
        fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False, url=signed(site.url("dinov3_vits16")),
                    sources=("signed",))
    assert "HTTP 403" in exc.value.message and SIGNATURE not in str(exc.value)
    sidecar = site.tmp / "torch_home" / "hub" / "checkpoints" / f"{spec.upstream_file}.part.json"
    assert sidecar.is_file() and site.url("dinov3_vits16") in sidecar.read_text()
    no_signature_anywhere(site.tmp / "torch_home", text=caplog.text)
    ranged = [rec for rec in site.server.log if rec.range]
    assert len(ranged) >= 4 and all(SIGNATURE in rec.path for rec in ranged)

    site.server.clear_faults()
    site.server.reset_counters()
    fresh = SIGNATURE[::-1]
    res = fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False,
                      url=signed(site.url("dinov3_vits16"), signature=fresh))
    assert res.export_path.read_bytes() == site.data["dinov3_vits16"] and res.verified is True
    assert res.transferred < len(site.data["dinov3_vits16"])  # resumed, not started over
    assert all(fresh in rec.path and rec.range for rec in site.server.log)
    for sig in (SIGNATURE, fresh):
        no_signature_anywhere(site.tmp / "torch_home", tmp_path / "models", text=caplog.text, signature=sig)


def test_an_expired_link_is_refused_before_any_request(site, tmp_path):
    expired = signed(site.url("dinov3_vits16"), expires=1755800000)
    with pytest.raises(SignedLinkError) as exc:
        fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False, url=expired, sources=("signed",))
    assert "expired on 2025-08-21 18:13 UTC" in exc.value.message and "request a new link" in exc.value.message
    assert "过期" in exc.value.message and "dvc pull" in exc.value.hint
    assert site.server.log == [] and SIGNATURE not in str(exc.value)


def test_a_403_says_the_link_is_expired_or_not_for_this_file(site, tmp_path, caplog):
    site.server.fault(site.rows["dinov3_vits16"].upstream_file, status=403)
    with pytest.raises(SignedLinkError) as exc:
        fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False, url=signed(site.url("dinov3_vits16")),
                    sources=("signed",))
    assert "HTTP 403" in exc.value.message and "expired or is not for this file" in exc.value.message
    assert "request a new link" in exc.value.hint and " / " in exc.value.hint
    no_signature_anywhere(site.tmp / "torch_home", text=caplog.text + str(exc.value))


def test_a_wildcard_link_serves_every_model_of_the_family(site, tmp_path):
    link = signed(site.url("dinov3_vits16"), resource=f"{site.server.origin}/dinov3/*")
    for arch in ("dinov3_vits16", "dinov3_vitb16"):
        res = fetch_model(arch, tmp_path / "models", smoke_test=False, url=link, sources=("signed",))
        assert res.export_path.read_bytes() == site.data[arch]
    assert {q.split("?")[0] for q in site.queries()} == {f"/dinov3/{r.upstream_path}" for r in site.rows.values()}
    assert all(SIGNATURE in q for q in site.queries())


def test_a_link_for_one_file_is_refused_for_another_before_any_request(site, tmp_path):
    with pytest.raises(SignedLinkError, match="is for .*dinov3_vits16.*not for dinov3_vitb16"):
        fetch_model("dinov3_vitb16", tmp_path / "models", smoke_test=False, url=signed(site.url("dinov3_vits16")),
                    sources=("signed",))
    assert site.server.log == []


def test_a_wrong_file_behind_a_signed_link_is_refused(site, tmp_path):
    wrong_file_under_the_right_name(site)
    with pytest.raises(VerificationError, match="does not start with"):
        fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False, url=signed(site.url("dinov3_vits16")))
    assert not (tmp_path / "models" / "dinov3_vits16.pth").exists()


def test_without_a_link_the_signed_source_is_left_out(site, tmp_path):
    with pytest.raises(DownloadError, match="no configured source can serve dinov3_vits16") as exc:
        fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False, sources=("signed",))
    assert "DINOV3_URL" in exc.value.hint


def test_a_hand_downloaded_file_is_recognised_by_the_prefix_in_its_name(site, tmp_path):
    from dinovault.sources.imported import import_file

    spec = site.rows["dinov3_vits16"]
    mine = tmp_path / "downloads" / "whatever-name.pth"  # the user's name; the bytes tell which file it is
    mine.parent.mkdir()
    mine.write_bytes(site.data["dinov3_vits16"])
    name, line = import_file(mine)
    assert name == "dinov3_vits16" and "verified: prefix" in line
    placed = site.tmp / "torch_home" / "hub" / "checkpoints" / spec.upstream_file
    assert placed.read_bytes() == site.data["dinov3_vits16"] and placed.stat().st_ino == mine.stat().st_ino
    res = fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False)  # no request: the cache has it
    assert not res.downloaded and res.verified == PREFIX and site.server.log == []


def test_a_teammates_pulled_export_is_taken_by_its_cards_full_sha256(site, tmp_path, monkeypatch):
    """Another machine: `dvc pull` restored <save_dir>/<model>.pth and its card (whose full SHA-256 was recorded at
    the first download); the torch.hub cache is empty and no source is reachable."""
    monkeypatch.setenv("DINOV3_BASE_URL", f"{site.server.origin}/dinov3")
    first = fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False)
    first.cache_path.unlink()
    monkeypatch.setenv("DINOV3_BASE_URL", "http://127.0.0.1:9/dinov3")
    site.server.reset_counters()
    res = fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False)
    assert not res.downloaded and res.verified == PREFIX and res.sha256 == first.sha256
    assert res.cache_path.stat().st_ino == res.export_path.stat().st_ino and site.server.log == []
    # a pulled file that does not match its card is not taken
    res.cache_path.unlink()
    res.export_path.unlink()
    res.export_path.write_bytes(random_bytes(len(site.data["dinov3_vits16"]), seed=7))
    with pytest.raises(DownloadError):
        fetch_model("dinov3_vits16", tmp_path / "models", smoke_test=False, sources=("official",))


# ---------------------------------------------------------------------------------------------- `invoke fetch --url`


def test_invoke_fetch_with_a_link_records_the_model_and_the_signature_is_nowhere(tmp_path, dinov2_server):
    """Through the real `invoke` and `dvc repro` in a fresh clone: the link reaches the stage in the environment
    ($DINOV2_URL here: a DINOv2 model, whose file the test server has), so dvc.yaml, dvc.lock, the card, the caches
    and every printed line are free of it. (DINOv3 rows are not in this branch's catalog; the route is the same.)"""
    from tests.support.clones import Machine, snapshot_worktree

    machine = Machine(tmp_path / "machine", {**dinov2_server.env, "DINOVAULT_SOURCES": "signed"},
                      snapshot_worktree(tmp_path / "source"), DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5")
    clone = machine.clone("a")
    clone.select()
    clone.commit("no model selected")
    link = signed(f"{dinov2_server.base_url}/dinov2_vits14/dinov2_vits14_pretrain.pth")
    mark = len(dinov2_server.log)
    res = clone.invoke("fetch", "--model", "dinov2_vits14", "--url", link)
    asked = [rec.path for rec in dinov2_server.log[mark:]]
    assert asked and all(SIGNATURE in p for p in asked)  # only the signed source was configured
    weights = clone.weights("dinov2_vits14")
    assert weights.read_bytes() == dinov2_server.files["dinov2_vits14_pretrain.pth"].read_bytes()
    assert "dinov2_vits14" in clone.lock()["stages"]["fetch@dinov2_vits14"]["cmd"]
    no_signature_anywhere(clone.path, Path(clone.env["TORCH_HOME"]), machine.home, text=res.text)


def test_a_request_error_quoting_the_url_is_told_without_its_query():
    import requests

    from dinovault.transport.retry import describe

    err = requests.ConnectionError(
        f"HTTPSConnectionPool(host='dinov3.llamameta.net', port=443): Max retries exceeded with url: "
        f"/dinov3_vits16/x.pth?Policy=abc&Signature={SIGNATURE}&Key-Pair-Id={KEY_PAIR} (Caused by "
        "ProxyError('Unable to connect to proxy'))")
    told = describe(err)
    assert "/dinov3_vits16/x.pth" in told and SIGNATURE not in told and KEY_PAIR not in told
