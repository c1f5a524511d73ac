from dataclasses import astuple

import numpy as np
import pytest

from flows.stats import p99, summarize, summarize_blocks


@pytest.mark.parametrize("n", [*range(1, 130), 999, 1000, 1001, 4321, 9999, 10_000])
def test_p99_equals_numpy_percentile_exactly(n):
    rng = np.random.default_rng(n)
    values = rng.normal(1013.0, 0.7, n)
    assert p99(values) == np.percentile(values, 99)


def test_p99_is_exact_on_large_windows_and_odd_values():
    rng = np.random.default_rng(1)
    for values in (
        rng.exponential(3.0, 25_000),
        np.round(rng.normal(0, 1, 12_345), 1),  # many ties
        np.concatenate([np.zeros(5000), [1e9]]),
        rng.uniform(-1e6, 1e6, 777) * 1e-3,
    ):
        assert p99(values) == np.percentile(values, 99)


def test_summary_matches_numpy_on_unsorted_values():
    rng = np.random.default_rng(2)
    values = rng.normal(21.0, 2.0, 613)
    s = summarize(values)
    assert s.count == 613
    assert s.avg == pytest.approx(np.mean(values), rel=1e-12)
    assert (s.min, s.max, s.p99) == (np.min(values), np.max(values), np.percentile(values, 99))


def test_single_value_window_is_that_value_everywhere():
    s = summarize(np.array([21.5]))
    assert (s.count, s.avg, s.min, s.max, s.p99) == (1, 21.5, 21.5, 21.5, 21.5)


def test_constant_window_has_the_constant_as_every_aggregate():
    s = summarize(np.full(50, 1013.25))
    assert (s.avg, s.min, s.max, s.p99) == (1013.25,) * 4


def test_empty_window_has_no_aggregates():
    with pytest.raises(ValueError, match="empty"):
        summarize(np.array([]))


def test_summary_does_not_depend_on_value_order():
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, 1000)
    assert summarize(values) == summarize(values[::-1]) == summarize(rng.permutation(values))


def test_rows_are_summarised_as_each_row_alone():
    rng = np.random.default_rng(4)
    rows = rng.normal(0, 1, (3, 257)) * np.array([[1.0], [100.0], [0.01]])
    assert summarize_blocks([rows])[0] == [astuple(summarize(r)) for r in rows]


def test_rows_of_a_column_major_array_are_summarised_the_same():
    rng = np.random.default_rng(5)
    rows = np.asfortranarray(rng.normal(0, 1, (3, 1001)))
    assert summarize_blocks([rows])[0] == [astuple(summarize(r)) for r in np.ascontiguousarray(rows)]


def _row_reference(row):
    return (
        row.size,
        summarize(row).avg,
        float(np.min(row)),
        float(np.max(row)),
        float(np.percentile(row, 99)),
    )


def test_blocks_of_many_windows_are_summarised_as_each_row_alone():
    rng = np.random.default_rng(6)
    sizes = [1, 2, 7, 8, 9, 20, 20, 21, 99, 100, 101, 120, 120, 127, 128, 129, 255, 256, 257, 1001, 4097, 20]
    blocks = []
    for i, n in enumerate(sizes):
        block = rng.normal(0, 1, (3, n)) * np.array([[0.3], [1.0], [0.5]]) + np.array(
            [[21.0], [45.0], [1013.0]]
        )
        if i % 3 == 1:
            block = np.round(block, 1)  # ties
        if i % 4 == 2:
            block = np.asfortranarray(block)  # strided rows, as concatenated panes may be
        blocks.append(block)
    got = summarize_blocks(blocks)
    assert len(got) == len(blocks)
    for block, rows in zip(blocks, got, strict=True):
        assert rows == [_row_reference(r) for r in np.ascontiguousarray(block)]


def test_a_block_summary_does_not_depend_on_the_blocks_beside_it():
    rng = np.random.default_rng(7)
    block = rng.exponential(2.0, (3, 613))
    alone = summarize_blocks([block])[0]
    stacked = summarize_blocks([block, block[:, :100], block * 2.0])
    assert stacked[0] == alone == [astuple(summarize(r)) for r in block]


def test_blocks_need_values():
    with pytest.raises(ValueError, match="non-empty"):
        summarize_blocks([np.zeros((3, 2)), np.zeros((3, 0))])
    assert summarize_blocks([]) == []
