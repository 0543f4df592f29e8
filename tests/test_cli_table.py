"""The ``--results`` table writer alone: where its header goes and what it holds."""

from __future__ import annotations

from asynctasklib._cli._table import Table


def _rows(table: Table, order: list[int], args: dict[int, list[str]]) -> None:
    for seq in order:
        table.row(seq, 0.0, 1.0, 2, 0, 0, "echo", args[seq], b"out\n", b"")


def test_with_keep_order_the_header_goes_before_the_first_job_even_if_it_ends_last() -> None:
    written: list[bytes] = []
    table = Table("csv", written.append, keep_order=True)
    _rows(table, [2, 1], {1: ["a", "b"], 2: ["c"]})
    text = b"".join(written)
    lines = text.splitlines()
    assert lines[0].startswith(b"Seq,Host,Starttime")
    assert lines[0].endswith(b"V1,V2,Stdout,Stderr")  # (job 1's two values, not job 2's one)
    assert lines[1].startswith(b"1,:,")
    assert lines[3].startswith(b"2,:,")
    assert text.count(b"Seq,") == 1


def test_without_keep_order_the_header_goes_with_the_first_job_to_end() -> None:
    written: list[bytes] = []
    table = Table("tsv", written.append, keep_order=False)
    _rows(table, [2, 1], {1: ["a", "b"], 2: ["c"]})
    lines = b"".join(written).splitlines()
    assert lines[0].endswith(b"\tV1\tStdout\tStderr")
    assert lines[1].startswith(b"2\t:\t")
    assert lines[3].startswith(b"1\t:\t")


def test_a_skipped_first_job_passes_the_header_to_the_next_row() -> None:
    written: list[bytes] = []
    table = Table("csv", written.append, keep_order=True)
    table.row(2, 0.0, 1.0, 0, 0, 0, "echo", ["c"], b"", b"")
    assert written == []
    table.skip(1)
    lines = b"".join(written).splitlines()
    assert lines[0].startswith(b"Seq,")
    assert lines[1].startswith(b"2,:,")


def test_json_has_no_header() -> None:
    written: list[bytes] = []
    table = Table("json", written.append, keep_order=True)
    _rows(table, [1], {1: ["a"]})
    assert written[0].startswith(b'{ "Seq": 1, "Host": ":"')
