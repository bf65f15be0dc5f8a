"""Issue 18's done-when, with the real `dvc` and `invoke` in a fresh clone: `invoke fetch --model dinov3_vits16
--url '<signed link>'` against a loopback server in Meta's layout gives models/dinov3/dinov3_vits16.pth,
byte-identical, recorded in dvc.lock (stage fetch_dinov3@dinov3_vits16), with the link's signature nowhere on disk
and in no output; then a teammate's `invoke pull` and an offline `torch.hub.load(..., source='local')`.

The served file is an official-format DINOv3 ViT-S/16 with random weights, so its SHA-256 does not start with the
real file's ``08c60483``: the clone's catalog row carries this file's prefix instead (the only change to the code
under test; a file's name carries its prefix, and the prefix is always checked)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dinovault.catalog import get_spec
from tests.support.clones import Machine, snapshot_worktree
from tests.support.dinov3_checkpoints import make_state_dict
from tests.support.httpserver import start_server
from tests.test_signed_links import SIGNATURE, signed

MODEL = "dinov3_vits16"
REAL_PREFIX = get_spec(MODEL).hash_prefix


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("dinov3_site")
    ckpt = base / "ckpt.pth"
    torch.save(make_state_dict(get_spec(MODEL), seed=5, bias_mask="released"), ckpt)
    data = ckpt.read_bytes()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    server = start_server(base / "www")
    file = get_spec(MODEL).upstream_file.replace(REAL_PREFIX, prefix)
    server.add(f"dinov3/{MODEL}/{file}", data)
    server.data, server.prefix, server.file = data, prefix, file
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def machine(tmp_path_factory, site):
    source = snapshot_worktree(tmp_path_factory.mktemp("source"), prefixes={MODEL: site.prefix})
    return Machine(tmp_path_factory.mktemp("machine"), {"HF_ENDPOINT": "http://127.0.0.1:9"}, source,
                   DINOVAULT_SOURCES="official")


def _everything_under(*folders: Path) -> bytes:
    out = b""
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and not path.is_symlink() and path.stat().st_size < (64 << 20):
                out += str(path).encode() + b"\n" + path.read_bytes()
    return out


def test_fetch_with_the_signed_link_then_pull_and_load_offline(machine, site):
    link = signed(f"{site.origin}/dinov3/{MODEL}/{site.file}", resource=f"{site.origin}/*")
    a = machine.clone("a")
    a.select()  # no DINOv2 model: the pipeline is this one stage
    a.commit("DINOv3 only")
    res = a.invoke("fetch", "--model", MODEL, "--url", link)
    weights = a.path / "models" / "dinov3" / f"{MODEL}.pth"
    assert weights.read_bytes() == site.data
    lock = a.lock()["stages"][f"fetch_dinov3@{MODEL}"]
    assert any(o["path"] == f"models/dinov3/{MODEL}.pth" and o["md5"] == hashlib.md5(site.data).hexdigest()
               for o in lock["outs"])
    card = (a.path / "models" / "dinov3" / f"{MODEL}.json").read_text()
    assert '"license": "DINOv3 License"' in card and hashlib.sha256(site.data).hexdigest() in card
    # the link is a credential: not in any output, nor in any file of the clone, its DVC cache or the torch.hub cache
    assert SIGNATURE not in res.text and "Signature=" not in res.text, res.text
    assert SIGNATURE.encode() not in _everything_under(a.path, Path(a.env["TORCH_HOME"]))
    assert "Data and pipelines are up to date" in a.dvc("status").text
    a.commit("dinov3")
    a.invoke("push")

    b = machine.clone("b", source=a.path)  # a teammate: no link, no request to the server
    before = len(site.log)
    b.invoke("pull")
    pulled = b.path / "models" / "dinov3" / f"{MODEL}.pth"
    assert pulled.read_bytes() == site.data and len(site.log) == before
    # linked into the torch.hub cache as DINOv2 weights are (issue 21 item 6): torch.hub finds it, no second copy
    assert (b.torch_cache / site.file).stat().st_ino == pulled.stat().st_ino
    b.invoke("verify")
    code = (f"import torch; m = torch.hub.load({str(b.path)!r}, {MODEL!r}, source='local'); "
            "print(tuple(m(torch.zeros(1, 3, 224, 224)).shape))")
    out = subprocess.run([sys.executable, "-c", code], cwd=b.path, env=b.env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "(1, 384)" in out.stdout, out.stderr
