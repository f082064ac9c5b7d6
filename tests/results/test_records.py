from __future__ import annotations

from rolechain.results.records import COLUMNS, Record, RecordError, from_row, to_row

OK = Record(
    "inv",
    "r1",
    "audit@222222222222",
    "222222222222",
    "arn:aws:iam::222222222222:role/audit",
    "us-east-1",
    "s3.list_buckets",
    "ok",
    {"buckets": [{"name": "b"}], "count": 1},
    None,
    "2026-01-01T00:00:00.000Z",
    12,
)
BAD = Record(
    "inv",
    "r1",
    "audit@333333333333",
    "333333333333",
    "arn:aws:iam::333333333333:role/audit",
    None,
    None,
    "error",
    None,
    RecordError("AccessDenied", "no", "hub -> audit@333333333333"),
    "2026-01-01T00:00:00.000Z",
    3,
)


def test_rows_round_trip() -> None:
    for record in (OK, BAD):
        row = to_row(record)
        assert tuple(row) == COLUMNS
        assert from_row(row) == record


def test_row_flattens_error_and_data() -> None:
    row = to_row(BAD)
    assert (row["error_code"], row["error_message"], row["error_hop"]) == (
        "AccessDenied",
        "no",
        "hub -> audit@333333333333",
    )
    assert row["data"] is None
    assert to_row(OK)["data"] == '{"buckets":[{"name":"b"}],"count":1}'


def test_record_dict_round_trip() -> None:
    assert Record.from_dict(BAD.to_dict()) == BAD
    assert OK.ok
    assert not BAD.ok
