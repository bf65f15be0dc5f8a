"""Damage that reached the remote is found and undone: a flipped byte in a fetched model, sent by the README's plain
`dvc push`; a teammate's `invoke pull` says "corrupted" (not "missing"); `invoke verify --remote NAME` names the
corrupt object; after `invoke verify --repair`, `invoke push` replaces the remote's corrupt copy with good bytes and
the teammate's pull succeeds. Real `invoke`/`dvc` CLIs, a local-folder remote, the small files of ``faulty_server``.
"""

from __future__ import annotations

import hashlib
import os

from tests.support.clones import Machine, snapshot_worktree

VITS = "dinov2_vits14"


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def flip_byte_in_place(path, offset: int = 1000) -> None:
    """Bit rot: every hard link of the inode (workspace, DVC cache, torch.hub cache) sees it, and the modification
    time stays, so DVC's state database still vouches for the old hash."""
    st = os.stat(path)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.chmod(path, st.st_mode)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_corrupt_remote_object_found_and_replaced(tmp_path, faulty_server):
    machine = Machine(tmp_path / "machine", faulty_server.env, snapshot_worktree(tmp_path / "source"),
                      DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5", DINOVAULT_RETRIES="1")
    a = machine.clone("a")
    a.select()
    a.skip_smoke_test()
    a.invoke("fetch", "--model", VITS)
    a.commit("fetched")
    good = md5(a.weights(VITS))
    assert good == a.lock_md5(VITS)
    flip_byte_in_place(a.weights(VITS))
    a.dvc("push")  # the README's old day-to-day: DVC sends the damaged object
    remote_object = machine.default_remote / "files" / "md5" / good[:2] / good[2:]
    assert md5(remote_object) != good

    b = machine.clone("b", source=a.path)
    res = b.invoke("pull", ok=False)
    assert f"models/dinov2/{VITS}.pth corrupted on the remote" in res.stderr, res.text
    assert "lacks" not in res.stderr and "invoke verify --remote home" in res.stderr
    assert not b.weights(VITS).exists()

    res = a.invoke("verify", "--remote", "home", ok=False)
    assert f"FAIL models/dinov2/{VITS}.pth (remote 'home'" in res.stdout, res.text
    assert "corrupted on the remote" in res.text

    a.invoke("verify", "--repair")  # all three local copies are the damaged inode: good bytes from the pinned source
    assert md5(a.weights(VITS)) == good
    res = a.invoke("push")
    assert "1 corrupt object(s) on the remote replaced by good bytes" in res.stdout, res.text
    assert md5(remote_object) == good
    res = a.invoke("verify", "--remote", "home")
    assert "intact on the remote" in res.stdout
    res = a.invoke("push")  # checked once: nothing left to re-read
    assert "corrupt object" not in res.stdout and "sent 0 object(s)" in res.stdout, res.text

    b.invoke("pull")
    assert md5(b.weights(VITS)) == good
