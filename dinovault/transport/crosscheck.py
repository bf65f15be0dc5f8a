"""Finding the source that served wrong bytes, when a segmented download does not hash to its pin.

Every range is fetched again from another source and compared with what is on disk; where they differ the other
source's bytes are written. If the file then matches the pin, the first source was wrong; if not, the first
source's bytes are put back and, if the file then matches, the checking source was wrong. The wrong one is named.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import requests

from ..errors import NoRanges, Restart, Retryable, SourceFailed
from ..files import file_sha256
from .ranges import open_part, read_at, write_at

log = logging.getLogger("dinovault")

READ = 256 * 1024


def cross_check(seg, resumed: int) -> str:
    """The file does not hash to the pin: fetch every source's ranges again from another one and compare.
    Where two sources disagree, keep the other's bytes; if the file then matches, the first one was wrong."""
    live = [s for s in seg.sources if s.dead is None]
    if len(live) < 2:
        if resumed:
            raise Restart("the resumed file does not match its pin")
        return file_sha256(seg.part)
    log.warning("%s does not match its pin; comparing the sources range by range to find the bad one / "
                "与固定哈希不符，逐段比较各来源以找出出错者", seg.dest.name)
    diffs: list = []
    for owner, ranges in list(seg.done.items()):
        other = next((s for s in live if s.url != owner), None)
        source = next((s for s in seg.sources if s.url == owner), type(seg.sources[0])(owner))
        jobs = [(a, min(a + seg.segment_size, b)) for a, b in ranges.pairs()
                for a in range(a, b, seg.segment_size)]
        with ThreadPoolExecutor(seg.connections) as pool:
            for found in pool.map(lambda ab, o=other: compare(seg, o, *ab), jobs):
                diffs += [(source, other, a, b) for a, b in found]
    sha = file_sha256(seg.part)
    bad = {id(d[0]): d for d in diffs}
    if sha != seg.pin.sha256 and diffs:  # the checker was the wrong one: put the first source's bytes back
        for owner, _, a, b in diffs:
            compare(seg, owner, a, b)
        sha = file_sha256(seg.part)
        bad = {id(d[1]): (d[1], d[0], d[2], d[3]) for d in diffs}
    if sha == seg.pin.sha256:
        for wrong, right, a, b in bad.values():
            log.warning("%s served wrong bytes: bytes %d-%d differ from %s, whose bytes match the pinned "
                        "SHA-256 / 该来源提供了错误的数据", wrong.url, a, b - 1, right.url)
            wrong.dead = f"served wrong bytes in bytes {a}-{b - 1}"
    return sha


def compare(seg, source, a: int, b: int) -> list[tuple[int, int]]:
    """Fetch a..b-1 from ``source``; where it differs from the partial, write its bytes. The differing spans."""
    session = seg.new_session()
    found, pos = [], a
    try:
        with open_part(seg.part) as fh, seg.request(session, source, a, b) as resp:
            for chunk in resp.iter_content(READ):
                chunk = chunk[: b - pos]
                if read_at(fh, len(chunk), pos) != chunk:
                    write_at(fh, chunk, pos)
                    found.append((pos, pos + len(chunk)))
                pos += len(chunk)
                seg.transferred += len(chunk)
    except (Retryable, SourceFailed, NoRanges, Restart, requests.RequestException) as err:
        log.warning("%s: could not compare bytes %d-%d: %s / 无法比较该段数据", source.url, a, b - 1, err)
    finally:
        session.close()
    return found
