"""What rolechain prints: ${env:} values redacted, control characters escaped."""

from __future__ import annotations

from rolechain.errors import (
    escape_controls,
    forget_env_values,
    printable,
    redact,
    redact_data,
    remember_env_value,
)


def test_env_values_are_redacted_in_every_form() -> None:
    remember_env_value("EXT", "s3cr3t!#")
    remember_env_value("ESC", "a\x1bb")
    remember_env_value("SHORT", "ab")
    shown = "the value from ${env:EXT}"
    assert (
        redact("unknown principal 's3cr3t!#'; valid: x") == f"unknown principal {shown}; valid: x"
    )
    assert redact('is "s3cr3t!#"') == f"is {shown}"
    assert redact("prefix-s3cr3t!#-suffix") == f"prefix-{shown}-suffix"
    assert redact("repr: 'a\\x1bb'") == "repr: the value from ${env:ESC}"
    # Short values only where a message quotes them: 'ab' is not hunted inside words.
    assert redact("about 'ab' and abc") == "about the value from ${env:SHORT} and abc"
    assert redact_data({"k": ["ab", "x s3cr3t!# y", 3]}) == {
        "k": ["the value from ${env:SHORT}", f"x {shown} y", 3]
    }
    forget_env_values()
    assert redact("'s3cr3t!#'") == "'s3cr3t!#'"


def test_control_characters_are_escaped() -> None:
    assert escape_controls("a\x1b]0;x\x07b\x1b[2J") == "a\\x1b]0;x\\x07b\\x1b[2J"
    assert escape_controls("line\nnext\ttab") == "line\nnext\ttab"
    assert escape_controls("line\nnext\ttab", newlines=True) == "line\\x0anext\\x09tab"
    assert escape_controls("\u202eevil\x9b\x7f") == "\\u202eevil\\x9b\\x7f"
    assert escape_controls("caf\udce9") == "caf\\xe9"  # a byte that was not UTF-8
    assert escape_controls("Überprüfung 監査") == "Überprüfung 監査"


def test_printable_redacts_before_escaping() -> None:
    remember_env_value("ESC", "x\x1b[31my")
    assert printable("from x\x1b[31my and \x1b[0m") == "from the value from ${env:ESC} and \\x1b[0m"


def test_run_records_never_show_an_env_value_in_an_error_message() -> None:
    import io

    from rolechain.executor.records import Record, RecordError
    from rolechain.results.formatters import writer_for
    from rolechain.results.records import to_row

    remember_env_value("EXT", "ext-7f3a9c-secret")
    message = "Value 'ext-7f3a9c-secret' at 'externalId' failed to satisfy constraint"
    record = Record(
        "j", "r", "t", "111111111111", "arn:aws:iam::111111111111:role/t", "us-east-1",
        "s3.list_buckets", "error", data={"kept": "ext-7f3a9c-secret"},
        error=RecordError("ValidationError", message),
    )  # fmt: skip
    for fmt in ("jsonl", "json", "csv", "table"):
        stream = io.StringIO()
        writer = writer_for(fmt, stream, color=False)
        writer.write(record)
        writer.close()
        text = stream.getvalue()
        assert "'ext-7f3a9c-secret' at" not in text, fmt
        assert "${env:EXT}" in text, fmt
    assert "secret" not in to_row(record)["error_message"]
    assert to_row(record)["data"] == '{"kept":"ext-7f3a9c-secret"}'  # data is the task's own
