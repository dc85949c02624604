"""The analysis page's strings: every key in both languages, with the same fields to fill,
and every key the page's code names is there."""

from __future__ import annotations

import re
import string
from pathlib import Path

from iotcast.ui import text
from stream.events import EVENT_KINDS
from telemetry.reading import FIELD_REASONS, SENSORS

UI = Path(text.__file__).parent


def fields(s: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(s) if name}


def test_every_string_has_english_and_spanish_with_the_same_fields() -> None:
    for key, (en, es) in text.TEXT.items():
        assert en.strip() and es.strip(), key
        assert fields(en) == fields(es), key
    for table in (
        text.HORIZONS,
        text.AHEAD,
        text.WHEN,
        text.TARGETS,
        text.SCENARIOS,
        text.MODELS_ES,
        text.SENSOR_WORDS,
        text.VALUE_REASONS,
        text.ROW_REASONS,
        text.EVENTS,
        text.RESET_REASONS,
    ):
        assert all(len(pair) == 2 and all(p.strip() for p in pair) for pair in table.values())


def test_every_key_the_page_names_is_in_the_one_place() -> None:
    source = "\n".join(p.read_text() for p in UI.glob("*.py") if p.name != "text.py")
    named = set(re.findall(r"""\bt\(\s*lang,\s*["']([a-z_]+)["']""", source))
    named |= set(re.findall(r"""\blabel\(\s*["']([a-z_]+)""", source))
    named |= set(re.findall(r"""_msg\(\s*["']([a-z_]+)["']""", source))
    assert named and named <= set(text.TEXT), sorted(named - set(text.TEXT))


def test_every_sensor_and_every_reason_a_file_row_can_get_has_words() -> None:
    assert set(SENSORS) <= set(text.SENSOR_WORDS)
    assert set(FIELD_REASONS) <= set(text.VALUE_REASONS)
    # why a CSV row is refused whole: a bad ts or device, its cells, or no sensor left
    row_reasons = {"no_sensor", "bad_timestamp", "bad_device_id", "wrong_field_count", "wrong_type"}
    assert row_reasons <= set(text.ROW_REASONS)


def test_every_kind_of_event_and_every_reset_reason_has_words() -> None:
    assert set(EVENT_KINDS) <= set(text.EVENTS)
    assert all(fields(en) <= {"model", "horizon", "old", "why"} for en, _ in text.EVENTS.values())
    guard = (Path(text.__file__).parents[2] / "online_models" / "guard.py").read_text()
    reasons = set(re.findall(r'"(exception|non_finite|out_of_range)"', guard))
    assert reasons == set(text.RESET_REASONS)


def test_a_forecast_scored_further_ahead_than_chosen_is_said_beside_the_leaderboard() -> None:
    """Hourly readings: "1 minute ahead" was checked against the next reading, an hour
    later, and the page says so in both languages; "1 hour ahead" needs no such words."""
    import math

    from iotcast.ui import charts
    from online_models.analysis import analyse
    from telemetry.reading import Reading

    start = 1_700_000_000.0
    readings = [
        Reading(start + 3600 * i, "d", temp=20 + 4 * math.sin(2 * math.pi * i / 24))
        for i in range(24 * 3)
    ]
    a = analyse(readings, horizons=(60, 3600))
    said = charts.sentences(a, "d", 60, "en", "C")["leaderboard"]
    assert "checked against the next reading, 1 hour ahead on average" in said, said
    spanish = charts.sentences(a, "d", 60, "es", "C")["leaderboard"]
    assert "la lectura siguiente, 1 hora después de media" in spanish, spanish
    assert "next reading" not in charts.sentences(a, "d", 3600, "en", "C")["leaderboard"]
