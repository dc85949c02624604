"""The loader reads the public file exactly as published; the writer writes that format byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry.csvfile import (
    HEADER,
    BadRow,
    BadRows,
    CsvFormatError,
    java_double,
    read_csv,
    write_csv,
)
from telemetry.reading import Reading, decode_payload, encode

# The first rows of iot_telemetry_data.csv as published (one per device), then more in that format.
PUBLIC = """\
"ts","device","co","humidity","light","lpg","motion","smoke","temp"
"1.5945120943859746E9","b8:27:eb:bf:9d:51","0.004955938648391245","51.0","false","0.00765082227055719","false","0.02041127012241292","22.7"
"1.5945120947355676E9","00:0f:00:70:91:0a","0.0028400886071015706","76.0","false","0.005114383400977071","false","0.013274836704851536","19.700000762939453"
"1.5945120980735729E9","b8:27:eb:bf:9d:51","0.004976012340421658","50.9","false","0.007673227406398091","false","0.02046561328970358","22.6"
"1.5945121017367394E9","1c:bf:ce:15:ec:4d","0.004403026829699689","76.80000305175781","true","0.007023337145877314","false","0.01862852570730583","27.0"
"1.594512104E9","1c:bf:ce:15:ec:4d","4.4E-4","76.8","true","0.007","true","0.0186","27.0"
"""

ROWS = PUBLIC.splitlines()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "iot_telemetry_data.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_the_public_format_as_published(tmp_path: Path) -> None:
    bad = BadRows()
    readings = list(read_csv(write(tmp_path, PUBLIC), on_bad_row=bad))
    assert bad.count == 0
    assert len(readings) == 5
    first = readings[0]
    assert first == Reading(
        1594512094.3859746, "b8:27:eb:bf:9d:51", 0.004955938648391245, 51.0, False,
        0.00765082227055719, False, 0.02041127012241292, 22.7,
    )  # fmt: skip
    assert readings[1].temp == 19.700000762939453  # float32 artefacts of the real file survive
    assert readings[3].light is True and readings[3].motion is False
    assert readings[4].ts == 1594512104.0 and readings[4].co == 0.00044 and readings[4].motion
    assert [r.device for r in readings] == [
        "b8:27:eb:bf:9d:51", "00:0f:00:70:91:0a", "b8:27:eb:bf:9d:51",
        "1c:bf:ce:15:ec:4d", "1c:bf:ce:15:ec:4d",
    ]  # fmt: skip


def test_writer_reproduces_the_published_bytes(tmp_path: Path) -> None:
    readings = list(read_csv(write(tmp_path, PUBLIC)))
    out = tmp_path / "out.csv"
    assert write_csv(out, readings) == 5
    assert out.read_bytes() == PUBLIC.encode()


def test_loaded_rows_are_valid_payloads(tmp_path: Path) -> None:
    # The CSV path and the MQTT path accept the same readings.
    for r in read_csv(write(tmp_path, PUBLIC)):
        assert decode_payload(encode(r), f"iot/{r.device}/telemetry") == r


BAD_LINES = [
    # (line text, reason, words in the message)
    ('"1.5945121E9","b8:27:eb:bf:9d:51","0.005","hot","false","0.007","false","0.02","22.7"',
     "wrong_type", "field 'humidity' must be a number, got 'hot'"),
    ('"1.5945121E9","b8:27:eb:bf:9d:51","0.005","51.0","1","0.007","false","0.02","22.7"',
     "wrong_type", "field 'light' must be \"true\" or \"false\", got '1'"),
    ('"1.5945121E9","b8:27:eb:bf:9d:51","0.005","51.0","false","0.007","false","0.02","NaN"',
     "not_finite", "field 'temp' is nan; it must be finite"),
    ('"1.5945121E9","b8:27:eb:bf:9d:51","0.005","51.0","false","0.007","false","0.02","Infinity"',
     "not_finite", "field 'temp' is inf"),
    ('"1.5945121E9","b8:27:eb:bf:9d:51","0.005","51.0","false","0.007","false","0.02","95.5"',
     "out_of_range", "field 'temp' = 95.5 is outside [-40, 80]"),
    ('"1.5945121E9","b8:27:eb:bf:9d:51","0.005","101.0","false","0.007","false","0.02","22.5"',
     "out_of_range", "field 'humidity' = 101.0 is outside [0, 100]"),
    ('"1.5945121E12","b8:27:eb:bf:9d:51","0.005","51.0","false","0.007","false","0.02","22.7"',
     "bad_timestamp", "looks like milliseconds"),
    ('"-5.0","b8:27:eb:bf:9d:51","0.005","51.0","false","0.007","false","0.02","22.7"',
     "bad_timestamp", "is not a plausible epoch in seconds"),
    ('"1.5945121E9","bad device","0.005","51.0","false","0.007","false","0.02","22.7"',
     "bad_device_id", "device 'bad device' must be 1..64 characters"),
    ('"1.5945121E9","b8:27:eb:bf:9d:51","0.005","51.0","false"',
     "wrong_field_count", "row has 5 fields; expected 9"),
    ('"1.5945121E9","b8:27:eb:bf:9d:51","0.005","51.0","false","0.007","false","0.02","22.7","x"',
     "wrong_field_count", "row has 10 fields; expected 9"),
]  # fmt: skip


def test_bad_rows_are_reported_with_line_and_reason_and_reading_goes_on(tmp_path: Path) -> None:
    lines = [ROWS[0], ROWS[1]]
    for text, _, _ in BAD_LINES:
        lines.append(text)
    lines.append("")  # a blank line is not a bad row
    lines.append(ROWS[2])
    reported: list[BadRow] = []
    readings = list(read_csv(write(tmp_path, "\n".join(lines) + "\n"), on_bad_row=reported.append))
    assert [r.ts for r in readings] == [1594512094.3859746, 1594512094.7355676]
    assert len(reported) == len(BAD_LINES)
    for bad, (text, reason, words), line in zip(reported, BAD_LINES, range(3, 100), strict=False):
        assert bad.line == line
        assert bad.reason == reason, text
        assert words in bad.message, (bad.message, words)
        assert bad.text.startswith('"')


def test_bad_rows_counter_counts_by_reason(tmp_path: Path) -> None:
    text = PUBLIC + "\n".join(t for t, _, _ in BAD_LINES) + "\n"
    counter = BadRows(keep=3)
    assert sum(1 for _ in read_csv(write(tmp_path, text), on_bad_row=counter)) == 5
    assert counter.count == len(BAD_LINES)
    assert counter.by_reason["wrong_field_count"] == 2 and counter.by_reason["wrong_type"] == 2
    assert len(counter.examples) == 3


def test_bad_rows_are_logged_by_default(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = PUBLIC + BAD_LINES[0][0] + "\n"
    assert len(list(read_csv(write(tmp_path, text)))) == 5
    assert "line 7 (wrong_type)" in caplog.text


def test_wrong_header_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(CsvFormatError, match="is not the public format"):
        list(read_csv(write(tmp_path, "\n".join(ROWS[1:]) + "\n")))
    with pytest.raises(CsvFormatError):
        list(read_csv(write(tmp_path, '"ts","device","temp"\n')))


def test_empty_file_yields_nothing(tmp_path: Path) -> None:
    assert list(read_csv(write(tmp_path, ""))) == []
    assert list(read_csv(write(tmp_path, HEADER + "\n"))) == []


def test_reader_streams(tmp_path: Path) -> None:
    # A generator: the first reading comes before the rest of the file is read (and a bad
    # row further down has not been seen yet).
    reported: list[BadRow] = []
    it = read_csv(write(tmp_path, PUBLIC + BAD_LINES[0][0] + "\n"), on_bad_row=reported.append)
    assert next(it).device == "b8:27:eb:bf:9d:51"
    assert reported == []


@pytest.mark.parametrize(
    ("value", "java"),
    [
        (1594512094.3859746, "1.5945120943859746E9"),
        (1594512104.0, "1.594512104E9"),
        (1.5e9, "1.5E9"),
        (51.0, "51.0"),
        (22.7, "22.7"),
        (0.004955938648391245, "0.004955938648391245"),
        (0.001, "0.001"),
        (0.00044, "4.4E-4"),
        (1e-5, "1.0E-5"),
        (9999999.0, "9999999.0"),
        (1e7, "1.0E7"),
        (123456789.0, "1.23456789E8"),
        (1e22, "1.0E22"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (-22.5, "-22.5"),
        (-1.5e9, "-1.5E9"),
        (-0.0005, "-5.0E-4"),
    ],
)
def test_java_double_matches_javas_double_to_string(value: float, java: str) -> None:
    assert java_double(value) == java
    assert float(java) == value


def test_data_commands_generate_then_load_with_a_report(tmp_path: Path, capsys) -> None:
    import json

    from iotcast.cli import main

    out = tmp_path / "day.csv"
    assert (
        main(["data", "generate", "--out", str(out), "--days", "0.05", "--seed", "2", "--quiet"])
        == 0
    )
    assert "readings of 3 devices" in capsys.readouterr().out
    with out.open("a") as f:
        f.write(BAD_LINES[0][0] + "\n" + BAD_LINES[4][0] + "\n")
    assert main(["data", "load", "--csv", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = list(read_csv(out, on_bad_row=lambda bad: None))
    assert report["rows"] == len(rows)
    assert sum(report["devices"].values()) == len(rows) and len(report["devices"]) == 3
    assert report["first_ts"] == min(r.ts for r in rows)
    assert report["last_ts"] == max(r.ts for r in rows)
    assert report["bad_rows"] == 2
    assert report["bad_rows_by_reason"] == {"out_of_range": 1, "wrong_type": 1}
    assert report["bad_row_examples"][0]["line"] == len(rows) + 2
    assert main(["data", "load", "--csv", str(tmp_path / "missing.csv")]) == 2


def test_byte_order_mark_and_crlf_line_ends_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "exported.csv"
    path.write_bytes(b"\xef\xbb\xbf" + PUBLIC.replace("\n", "\r\n").encode())
    assert list(read_csv(path)) == list(read_csv(write(tmp_path, PUBLIC)))
