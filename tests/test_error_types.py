"""Issue 22 "errors by type": a failure is told by the class, errno or code its library gives it, never by words
that happen to be in its message: a remote folder named like an error does not change what the user is told."""

from __future__ import annotations

import errno

from dinovault.errors import RemoteError
from dinovault.repo.dvc import explain


def test_a_remote_path_that_reads_like_an_error_is_not_taken_for_one(tmp_path):
    """A full disk under a team folder whose name holds "403" and "timed out" is a full disk, not a refusal."""
    folder = tmp_path / "backup-403 timed out 模型" / "files" / "md5" / "ab"
    err = OSError(errno.ENOSPC, "No space left on device", str(folder / "cdef0123"))
    explained = explain(err, "push", "remote 'team'")
    assert isinstance(explained, RemoteError) and explained.cause == "space", explained
    assert "no space left / 空间不足" in explained.message and not explained.transient, explained
