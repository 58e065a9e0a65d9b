"""A range of a source's partitions as one contiguous share of it, and the count of what a reader read.

Partition p of n holds the positions x (bytes of local files, pieces of a stream, rows of a saved dataset) of
`total` with floor(x * n / total) == p: a range of partitions is one contiguous run of positions, and the
ranges of a plan tile the source, so each record is read by the one share it lies in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReadCount:
    """Records a reader took from its source: lines, paragraphs, parquet rows decoded, stream records."""

    records: int = 0


def share_bounds(partitions: range, num_partitions: int, total: int) -> tuple[int, int]:
    """The positions [lo, hi) of `total` that `partitions` (of `num_partitions`) hold."""
    return -(-partitions.start * total // num_partitions), -(-partitions.stop * total // num_partitions)
