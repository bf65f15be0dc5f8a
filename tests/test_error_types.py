"""Issue 22 "errors by type": a failure is told by the class, errno or code its library gives it, never by words
that happen to be in its message: a remote folder named like an error does not change what the user is told."""

from __future__ import annotations

import errno
import warnings

from dinovault.errors import RemoteError
from dinovault.repo.dvc import explain


def test_a_remote_path_that_reads_like_an_error_is_not_taken_for_one(tmp_path):
    """A full disk under a team folder whose name holds "403" and "timed out" is a full disk, not a refusal."""
    folder = tmp_path / "backup-403 timed out 模型" / "files" / "md5" / "ab"
    err = OSError(errno.ENOSPC, "No space left on device", str(folder / "cdef0123"))
    explained = explain(err, "push", "remote 'team'")
    assert isinstance(explained, RemoteError) and explained.cause == "space", explained
    assert "no space left / 空间不足" in explained.message and not explained.transient, explained


def test_an_sftp_connection_lost_in_the_middle_of_a_push_is_a_lost_connection():
    """A push whose SSH server stopped: the SFTP requests in flight fail with SFTPConnectionLost, later ones with
    SFTPNoConnection (sshfs passes both on unchanged), beside DVC's "failed to transfer" lines: one clear cause, which
    a rerun resolves (test_remotes' stopped-server push once ended with only the log lines and no cause)."""
    with warnings.catch_warnings():  # asyncssh's import warns about DSA keys (cryptography's deprecation)
        warnings.simplefilter("ignore")
        import asyncssh

    for lost in (asyncssh.SFTPConnectionLost("Connection lost"), asyncssh.SFTPNoConnection("Connection not open")):
        explained = explain(None, "push", "remote 'flaky'", also=[lost], log="failed to transfer 'ab12'")
        assert isinstance(explained, RemoteError) and explained.cause == "lost", explained
        assert "connection lost / 连接中断" in explained.message and explained.transient, explained
