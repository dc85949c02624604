"""The loader reads the public file exactly as published, judging each cell on its own (an empty
cell is an absent sensor, a bad one is dropped and noted); the writer writes that format byte for
byte, an absent sensor as an empty cell."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import telemetry.csvfile
from telemetry.csvfile import (
    HEADER,
    BadRow,
    BadRows,
    CsvFormatError,
    format_row,
    java_double,
    read_csv,
    write_csv,
)
from telemetry.reading import REASONS, SENSORS, Reading, decode_payload, encode

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


ROW = '"1.5945121E9","b8:27:eb:bf:9d:51","0.005","{hum}","{light}","0.007","false","0.02","{temp}"'
GOOD = {"co": 0.005, "humidity": 51.0, "light": False, "lpg": 0.007, "motion": False,
        "smoke": 0.02, "temp": 22.7}  # fmt: skip

# A bad cell drops that field, noted, and the row goes on: (line text, field, note, value kept).
DROPPED_CELLS = [
    (ROW.format(hum="hot", light="false", temp="22.7"), "humidity", "wrong_type", None),
    (ROW.format(hum="51.0", light="1", temp="22.7"), "light", "wrong_type", None),
    (ROW.format(hum="51.0", light="False", temp="22.7"), "light", "wrong_type", None),
    (ROW.format(hum="51.0", light="false", temp="NaN"), "temp", "not_finite", None),
    (ROW.format(hum="51.0", light="false", temp="Infinity"), "temp", "not_finite", None),
    (ROW.format(hum="51.0", light="false", temp="125.5"), "temp", "out_of_range", None),
    (ROW.format(hum="105.1", light="false", temp="22.7"), "humidity", "out_of_range", None),
    (ROW.format(hum="100.5", light="false", temp="22.7"), "humidity", "clipped", 100.0),
    (ROW.format(hum="102", light="false", temp="22.7"), "humidity", "clipped", 100.0),
    (ROW.format(hum="-0.5", light="false", temp="22.7"), "humidity", "clipped", 0.0),
]  # fmt: skip

# Rows refused whole: (line text, reason, words in the message)
BAD_LINES = [
    ('"1.5945121E12","b8:27:eb:bf:9d:51","0.005","51.0","false","0.007","false","0.02","22.7"',
     "bad_timestamp", "looks like milliseconds"),
    ('"-5.0","b8:27:eb:bf:9d:51","0.005","51.0","false","0.007","false","0.02","22.7"',
     "bad_timestamp", "is not a plausible epoch in seconds"),
    ('"","b8:27:eb:bf:9d:51","0.005","51.0","false","0.007","false","0.02","22.7"',
     "wrong_type", "field 'ts' must be a number (epoch seconds), got str ''"),
    ('"1.5945121E9","bad device","0.005","51.0","false","0.007","false","0.02","22.7"',
     "bad_device_id", "device 'bad device' must be 1..64 characters"),
    ('"1.5945121E9","b8:27:eb:bf:9d:51","0.005","51.0","false"',
     "wrong_field_count", "row has 5 fields; expected 9"),
    ('"1.5945121E9","b8:27:eb:bf:9d:51","0.005","51.0","false","0.007","false","0.02","22.7","x"',
     "wrong_field_count", "row has 10 fields; expected 9"),
    ('"1.5945121E9","b8:27:eb:bf:9d:51","","","","","","",""',
     "no_sensor", "no usable sensor value: the reading holds none of co, humidity"),
    ('"1.5945121E9","b8:27:eb:bf:9d:51","","hot","","","","","130.0"',
     "no_sensor", "field 'humidity' must be a number, got str 'hot'; field 'temp' = 130.0 is outside [-55, 125]"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "field", "note", "kept"), DROPPED_CELLS)
def test_a_bad_cell_drops_that_field_noted_and_the_row_goes_on(
    tmp_path: Path, text: str, field: str, note: str, kept: float | None
) -> None:
    reported: list[BadRow] = []
    (r,) = read_csv(write(tmp_path, HEADER + "\n" + text + "\n"), on_bad_row=reported.append)
    assert reported == []
    assert getattr(r, field) == kept and r.notes == ((field, note),)
    for name in SENSORS:
        if name != field:
            assert getattr(r, name) == GOOD[name], name


def test_bad_rows_are_reported_with_line_and_reason_and_reading_goes_on(tmp_path: Path) -> None:
    lines = [ROWS[0], ROWS[1]]
    for text, _, _ in BAD_LINES:
        lines.append(text)
    lines.append("")  # a blank line is not a bad row
    lines.append(DROPPED_CELLS[0][0])  # a dropped cell is not a bad row either
    lines.append(ROWS[2])
    reported: list[BadRow] = []
    readings = list(read_csv(write(tmp_path, "\n".join(lines) + "\n"), on_bad_row=reported.append))
    assert [r.ts for r in readings] == [1594512094.3859746, 1594512100.0, 1594512094.7355676]
    assert len(reported) == len(BAD_LINES)
    for bad, (text, reason, words), line in zip(reported, BAD_LINES, range(3, 100), strict=False):
        assert bad.line == line
        assert bad.reason == reason and reason in REASONS + ("wrong_field_count",), text
        assert words in bad.message, (bad.message, words)
        assert bad.text.startswith('"')


def test_bad_rows_counter_counts_by_reason(tmp_path: Path) -> None:
    text = PUBLIC + "\n".join(t for t, _, _, _ in DROPPED_CELLS + [(*b, None) for b in BAD_LINES])
    counter = BadRows(keep=3)
    readings = list(read_csv(write(tmp_path, text + "\n"), on_bad_row=counter))
    assert len(readings) == 5 + len(DROPPED_CELLS)
    assert counter.count == len(BAD_LINES)
    assert dict(counter.by_reason) == {
        "bad_timestamp": 2, "wrong_type": 1, "bad_device_id": 1, "wrong_field_count": 2,
        "no_sensor": 2,
    }  # fmt: skip
    assert len(counter.examples) == 3


def test_bad_rows_are_logged_by_default(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = PUBLIC + BAD_LINES[0][0] + "\n"
    assert len(list(read_csv(write(tmp_path, text)))) == 5
    assert "line 7 (bad_timestamp)" in caplog.text


# The first rows of the real temperature-only device (NAB ambient temperature), as shipped in
# ../shared/data/real/nab_ambient_temperature.csv: every cell but ts, device and temp is empty.
TEMP_ONLY = """\
"ts","device","co","humidity","light","lpg","motion","smoke","temp"
"1372896000.0","4e:41:42:00:00:01","","","","","","","21.045"
"1372899600.0","4e:41:42:00:00:01","","","","","","","21.789"
"1372903200.0","4e:41:42:00:00:01","","","","","","","21.599"
"""
REAL_TEMP_ONLY = Path(__file__).parents[2] / "shared/data/real/nab_ambient_temperature.csv"


def test_empty_cells_are_absent_sensors_of_a_temperature_only_device(tmp_path: Path) -> None:
    bad = BadRows()
    readings = list(read_csv(write(tmp_path, TEMP_ONLY), on_bad_row=bad))
    assert bad.count == 0
    assert readings[0] == Reading(1372896000.0, "4e:41:42:00:00:01", temp=21.045)
    assert [r.temp for r in readings] == [21.045, 21.789, 21.599]
    assert all(r.sensors() == ("temp",) and r.notes == () for r in readings)


@pytest.mark.skipif(not REAL_TEMP_ONLY.exists(), reason="the real series are kept beside the repo")
def test_the_real_temperature_only_file_loads_whole() -> None:
    bad = BadRows()
    readings = list(read_csv(REAL_TEMP_ONLY, on_bad_row=bad))
    assert bad.count == 0 and len(readings) == 7267
    assert {r.device for r in readings} == {"4e:41:42:00:00:01"}
    assert all(r.sensors() == ("temp",) and r.notes == () for r in readings)
    assert all(-55.0 <= r.temp <= 125.0 for r in readings)  # type: ignore[operator]


def test_a_temperature_and_humidity_device_and_a_changing_set_of_sensors(tmp_path: Path) -> None:
    text = HEADER + "\n" + "\n".join([
        '"1.5945121E9","a1","","40.0","","","","","21.5"',
        '"1.5945122E9","a1","","","","","","","21.6"',  # the humidity sensor died
        '"1.5945123E9","a1","0.01","","true","","","","21.7"',  # a gas sensor and a light came
    ]) + "\n"  # fmt: skip
    readings = list(read_csv(write(tmp_path, text), on_bad_row=pytest.fail))
    assert readings == [
        Reading(1594512100.0, "a1", humidity=40.0, temp=21.5),
        Reading(1594512200.0, "a1", temp=21.6),
        Reading(1594512300.0, "a1", co=0.01, light=True, temp=21.7),
    ]
    out = io.StringIO()
    write_csv(out, readings)
    assert out.getvalue() == text  # absent sensors written as empty cells: the file round-trips


def test_full_rows_take_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def careful(*args: object) -> None:
        raise AssertionError("a full, valid row went through the careful path")

    monkeypatch.setattr(telemetry.csvfile, "_parse_row", careful)
    assert len(list(read_csv(write(tmp_path, PUBLIC)))) == 5


def test_format_row_writes_an_absent_sensor_as_an_empty_cell() -> None:
    r = Reading(1594512094.0, "a1", humidity=40.0, motion=False, temp=-0.0001)
    assert format_row(r) == '"1.594512094E9","a1","","40.0","","","false","","-1.0E-4"\n'
    full = Reading(1594512094.0, "a1", 0.0049, 51.0, False, 0.0076, True, 0.0204, 22.7)
    assert format_row(full) == (
        '"1.594512094E9","a1","0.0049","51.0","false","0.0076","true","0.0204","22.7"\n'
    )


WITH_EXTRAS = """\
"ts","device","co","humidity","light","lpg","motion","smoke","temp","pressure","co2"
"1.5945121E9","a1","","40.0","","","","","21.5","1013.25","412.0"
"1.5945122E9","a1","","41.0","","","","","21.6","","415.0"
"1.5945123E9","a1","","","","","","","","1013.5",""
"""


def test_extra_numeric_columns_become_extras_and_round_trip(tmp_path: Path) -> None:
    readings = list(read_csv(write(tmp_path, WITH_EXTRAS), on_bad_row=pytest.fail))
    assert readings == [
        Reading(1594512100.0, "a1", humidity=40.0, temp=21.5,
                extra=(("co2", 412.0), ("pressure", 1013.25))),
        Reading(1594512200.0, "a1", humidity=41.0, temp=21.6, extra=(("co2", 415.0),)),
        Reading(1594512300.0, "a1", extra=(("pressure", 1013.5),)),  # an extra alone is a reading
    ]  # fmt: skip
    out = io.StringIO()
    assert write_csv(out, readings, extra=["pressure", "co2"]) == 3
    assert out.getvalue() == WITH_EXTRAS
    plain = io.StringIO()
    write_csv(plain, readings[:2])  # without extra=: the public nine columns
    assert plain.getvalue().splitlines()[0] == HEADER and plain.getvalue().count(",") == 2 * 8 + 8
    # the MQTT path carries them alike
    assert decode_payload(encode(readings[0])) == readings[0]


def test_extra_cells_that_are_not_numbers_are_ignored_and_counts_are_checked(
    tmp_path: Path,
) -> None:
    text = (
        HEADER + ',"pressure"\n'
        '"1.5945121E9","a1","","","","","","","21.5","high"\n'
        '"1.5945122E9","a1","","","","","","","21.6","NaN"\n'
        '"1.5945123E9","a1","","","","","","","21.7"\n'
        '"1.5945124E9","a1","","","","","","","","n/a"\n'
    )
    reported: list[BadRow] = []
    readings = list(read_csv(write(tmp_path, text), on_bad_row=reported.append))
    assert [(r.temp, r.extra, r.notes) for r in readings] == [(21.5, (), ()), (21.6, (), ())]
    assert [(b.line, b.reason) for b in reported] == [(4, "wrong_field_count"), (5, "no_sensor")]
    assert 'expected 10 ("ts","device",' in reported[0].message
    assert reported[0].message.endswith(',"temp","pressure")')


@pytest.mark.parametrize(
    "extra", ['"Pressure"', '"temp"', '"pressure","pressure"', '"2nd"', '""', '"x y"',
              ",".join(f'"x{i}"' for i in range(17))],
)  # fmt: skip
def test_extra_columns_must_be_named_like_a_field(tmp_path: Path, extra: str) -> None:
    with pytest.raises(CsvFormatError, match="extra columns .* must be named like 'pressure'"):
        list(read_csv(write(tmp_path, HEADER + "," + extra + "\n")))


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
    with out.open("a") as f:  # two rows refused whole, one that loses a cell (not a bad row)
        f.write(BAD_LINES[0][0] + "\n" + BAD_LINES[6][0] + "\n" + DROPPED_CELLS[0][0] + "\n")
    assert main(["data", "load", "--csv", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = list(read_csv(out, on_bad_row=lambda bad: None))
    assert report["rows"] == len(rows)
    assert sum(report["devices"].values()) == len(rows) and len(report["devices"]) == 3
    assert report["first_ts"] == min(r.ts for r in rows)
    assert report["last_ts"] == max(r.ts for r in rows)
    assert report["bad_rows"] == 2
    assert report["bad_rows_by_reason"] == {"bad_timestamp": 1, "no_sensor": 1}
    assert report["bad_row_examples"][0]["line"] == len(rows) + 1
    assert rows[-1].humidity is None and rows[-1].notes == (("humidity", "wrong_type"),)
    assert report["fields_dropped_or_clipped"] == {"humidity wrong_type": 1}
    assert set(report["sensors"][rows[0].device]) == {
        "co", "humidity", "light", "lpg", "motion", "smoke", "temp"
    }  # fmt: skip
    assert main(["data", "generate", "--out", str(out), "--days", "0.05", "--seed", "2",
                 "--sensors", "temp+humidity,temp", "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["data", "load", "--csv", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(map(tuple, report["sensors"].values())) == [
        ("humidity", "temp"), ("humidity", "temp"), ("temp",)
    ]  # fmt: skip
    assert main(["data", "load", "--csv", str(tmp_path / "missing.csv")]) == 2


def test_byte_order_mark_and_crlf_line_ends_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "exported.csv"
    path.write_bytes(b"\xef\xbb\xbf" + PUBLIC.replace("\n", "\r\n").encode())
    assert list(read_csv(path)) == list(read_csv(write(tmp_path, PUBLIC)))
