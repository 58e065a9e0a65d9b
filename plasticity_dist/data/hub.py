"""`hf:` sources: a `datasets` dataset streamed from the hub or read from a local folder, split into contiguous
pieces, with retries for the hub's passing failures.

A stream's pieces are its data-source shards after `IterableDataset.reshard()` where `datasets` has it (a
parquet row group each, else a file each); a share of the stream is a run of whole pieces, read with
`IterableDataset.shard(num_shards, index, contiguous=True)`. A folder written by `save_to_disk` is split by
rows. The hub reads `HF_TOKEN` (or the token `hf auth login` saved) for gated datasets.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from plasticity_dist.common.logging import get_logger
from plasticity_dist.data.local_files import text_of
from plasticity_dist.data.shares import ReadCount, share_bounds

log = get_logger()
T = TypeVar("T")

HUB_ATTEMPTS = 6  # tries of one hub call or piece before giving up
HUB_FIRST_DELAY_S = 2.0  # then 4, 8, 16, 32 s: about a minute in all
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Connection failures of the HTTP stacks under `datasets` (requests, httpx, aiohttp), by class name
TRANSIENT_ERRORS = frozenset({"ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "TimeoutException",
                              "RemoteProtocolError", "ReadError", "ChunkedEncodingError", "ClientConnectionError",
                              "ClientPayloadError", "ServerDisconnectedError", "IncompleteRead"})


class HubError(RuntimeError):
    """The hub kept failing after every retry."""


def is_transient(error: BaseException) -> bool:
    """True for failures worth retrying: HTTP 408/429/5xx and dropped or timed-out connections, here or in the
    errors this one was raised from."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        status = getattr(response, "status_code", None) or getattr(current, "status", None)
        if status in TRANSIENT_STATUS or isinstance(current, (ConnectionError, TimeoutError)):
            return True
        if any(cls.__name__ in TRANSIENT_ERRORS for cls in type(current).__mro__):
            return True
        current = current.__cause__ or current.__context__
    return False


def _wait_or_give_up(error: BaseException, failures: int, what: str, attempts: int, first_delay_s: float) -> None:
    if not is_transient(error):
        raise error
    if failures >= attempts:
        raise HubError(f"{what}: still failing after {attempts} attempts over about "
                       f"{first_delay_s * (2 ** (attempts - 1) - 1):.0f} s ({type(error).__name__}: {error}); "
                       f"the hub may be down or rate-limiting you (set HF_TOKEN), or pre-download the dataset "
                       f"with `hf download --repo-type dataset` and pass hf:<local folder>") from error
    delay = first_delay_s * 2 ** (failures - 1)
    log.warning(f"{what}: {type(error).__name__}: {error}; retry {failures} of {attempts - 1} in {delay:.0f} s")
    time.sleep(delay)


def with_retries(call: Callable[[], T], what: str, attempts: int = HUB_ATTEMPTS,
                 first_delay_s: float = HUB_FIRST_DELAY_S) -> T:
    """`call()`, retried with exponential backoff while it fails transiently."""
    failures = 0
    while True:
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - sorted by is_transient
            failures += 1
            _wait_or_give_up(error, failures, what, attempts, first_delay_s)


def retried_records(open_records: Callable[[], Iterable[T]], what: str, attempts: int = HUB_ATTEMPTS,
                    first_delay_s: float = HUB_FIRST_DELAY_S) -> Iterator[T]:
    """The records of `open_records()`; after a transient failure it is opened again and the records already
    yielded are skipped (a piece reads the same records in the same order). Progress resets the count."""
    yielded, failures = 0, 0
    while True:
        try:
            for number, record in enumerate(open_records()):
                if number >= yielded:
                    yield record
                    yielded, failures = yielded + 1, 0
            return
        except Exception as error:  # noqa: BLE001 - sorted by is_transient
            failures += 1
            _wait_or_give_up(error, failures, what, attempts, first_delay_s)


@functools.lru_cache(maxsize=8)
def load_hf(source: str, dataset_name: str, config: str | None, split: str) -> Any:
    """A local `save_to_disk` folder, else `datasets.load_dataset(..., streaming=True)` resharded into its
    finest pieces; loaded once per process (every shard job of a worker reads the same dataset)."""
    import datasets

    path = Path(dataset_name).expanduser()
    if dataset_name.startswith(("/", ".", "~")) and not path.exists():
        raise FileNotFoundError(f"source {source!r}: folder {path} does not exist")
    if path.is_dir():
        try:
            saved = datasets.load_from_disk(str(path))
        except FileNotFoundError:  # not written by save_to_disk: a folder of data files
            pass
        else:
            if config is not None:
                raise ValueError(f"source {source!r}: a dataset saved with save_to_disk has no configs")
            if isinstance(saved, datasets.DatasetDict):
                if split not in saved:
                    raise ValueError(f"source {source!r}: no split {split!r}; splits: {', '.join(saved)}")
                return saved[split]
            return saved
    try:
        stream = with_retries(lambda: datasets.load_dataset(dataset_name, name=config, split=split, streaming=True),
                              f"loading {source!r}")
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot load source {source!r}: {error}") from None
    if hasattr(stream, "reshard"):  # newer datasets: a piece per parquet row group instead of per file
        stream = with_retries(stream.reshard, f"splitting {source!r} into row groups")
    return stream


def hf_documents(source: str, dataset: Any, text_field: str, partitions: range, num_partitions: int,
                 count: ReadCount) -> Iterator[str]:
    """The documents of the share `partitions` of `dataset`: a run of rows of a saved dataset, a run of whole
    pieces of a stream."""
    import datasets

    if dataset.column_names is not None:
        dataset = dataset.select_columns([text_field])
    where = f"source {source!r}"
    if isinstance(dataset, datasets.Dataset):
        lo, hi = share_bounds(partitions, num_partitions, len(dataset))
        records: Iterable[dict[str, Any]] = dataset.select(range(lo, hi)) if lo < hi else ()
    else:
        first, stop = share_bounds(partitions, num_partitions, dataset.num_shards)
        records = (record for piece in range(first, stop) for record in retried_records(
            lambda piece=piece: dataset.shard(num_shards=dataset.num_shards, index=piece, contiguous=True),
            f"{where}, piece {piece} of {dataset.num_shards}"))
    for record in records:
        count.records += 1
        yield text_of(record, text_field, where)
