"""Passing hub failures (HTTP 429 and 5xx, dropped connections) are retried with backoff and end in one clear
error; other failures are not retried; a piece that failed mid-way goes on where it stopped."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from plasticity_dist.data.hub import HubError, is_transient, retried_records, with_retries


class HTTPError(OSError):
    """Shaped like requests' and huggingface_hub's HTTP errors: the response carries the status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"{status} error")
        self.response = SimpleNamespace(status_code=status)


def test_rate_limits_server_errors_and_dropped_connections_are_transient_and_client_errors_are_not() -> None:
    assert all(is_transient(HTTPError(status)) for status in (429, 500, 502, 503, 504))
    assert is_transient(ConnectionResetError("reset by peer"))
    try:
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as cause:
            raise RuntimeError("while reading a parquet file") from cause
    except RuntimeError as wrapped:
        assert is_transient(wrapped)
    assert not any(is_transient(error) for error in (HTTPError(401), HTTPError(404), ValueError("bad config")))


def failing_then(results: list, failures: list[BaseException]):
    calls = []

    def call():
        calls.append(1)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return results

    return call, calls


def test_a_call_is_retried_through_transient_failures_and_gives_up_with_a_clear_error() -> None:
    call, calls = failing_then(["ok"], [HTTPError(429), HTTPError(503)])
    assert with_retries(call, "loading x", attempts=3, first_delay_s=0.001) == ["ok"] and len(calls) == 3

    call, calls = failing_then(["ok"], [HTTPError(502)] * 3)
    with pytest.raises(HubError, match=r"loading x: still failing after 3 attempts .*HTTPError: 502 error.*HF_TOKEN"):
        with_retries(call, "loading x", attempts=3, first_delay_s=0.001)
    assert len(calls) == 3

    call, calls = failing_then(["ok"], [HTTPError(404)])
    with pytest.raises(HTTPError, match="404"):
        with_retries(call, "loading x", attempts=3, first_delay_s=0.001)
    assert len(calls) == 1


def test_a_piece_that_fails_mid_way_is_reopened_and_goes_on_after_the_records_it_yielded() -> None:
    opened = []

    def open_piece() -> Iterator[int]:
        opened.append(1)
        for record in range(10):
            if (len(opened), record) in {(1, 4), (2, 7)}:  # the connection drops twice, at different places
                raise ConnectionResetError("reset by peer")
            yield record

    assert list(retried_records(open_piece, "piece 0", attempts=2, first_delay_s=0.001)) == list(range(10))
    assert len(opened) == 3  # progress between the failures: each gets its own attempts
