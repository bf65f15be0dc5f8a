"""HTTP transfers of one file: one stream (stream.py), segments over mirrors (segments.py, ranges.py, rangeget.py,
crosscheck.py), retries (retry.py), and the locked, verified, resumable whole (download.py)."""
