"""Every string of the analysis page, in English and Spanish: the one place to change them.

:data:`TEXT` maps a key to its English and Spanish text; ``{name}`` fields are filled by
:func:`t`. Horizons, targets and scenarios have plain words of their own; the models'
one-line descriptions come from the catalog (``online_models/models.toml``), with a
Spanish translation here for the built-in ones (used only while the catalog's English
text is the one translated).

>>> t("es", "run")
'Calcular'
>>> t("en", "rows_of", done="1,000", total="2,000", pct=50)
'1,000 of 2,000 rows (50 %)'
>>> horizon_words("es", 3600), horizon_words("en", 0), horizon_words("en", 120)
('en 1 hora', 'now (virtual sensor)', 'in 120 seconds')
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ANOMALIES",
    "EVENTS",
    "LANGUAGES",
    "anomaly_words",
    "RESET_REASONS",
    "TEXT",
    "event_words",
    "horizon_words",
    "horizon_ahead",
    "model_description",
    "row_reason_words",
    "scenario_words",
    "sensor_words",
    "t",
    "target_words",
    "value_reason_words",
    "values_words",
]

LANGUAGES = ("en", "es")

TEXT: dict[str, tuple[str, str]] = {
    # header
    "title": ("iotcast: sensor data and forecasts", "iotcast: datos de sensores y previsiones"),
    "subtitle": (
        "Open a file of readings, ask a question, and see how well each model would have "
        "forecast it.",
        "Abra un archivo de lecturas, haga una pregunta y vea qué tan bien lo habría "
        "previsto cada modelo.",
    ),
    "language": ("Language", "Idioma"),
    "units": ("Temperature in", "Temperatura en"),
    # 1. data
    "data": ("1. Data", "1. Datos"),
    "data_help": (
        "A telemetry CSV file (the public format, or what `iotcast data generate` writes).",
        "Un archivo CSV de telemetría (el formato público, o el que escribe "
        "`iotcast data generate`).",
    ),
    "upload": (
        "Drop a CSV file here, or click to choose one",
        "Suelte aquí un archivo CSV, o haga clic para elegirlo",
    ),
    "path": ("…or a path on this computer", "…o una ruta en este equipo"),
    "open": ("Open", "Abrir"),
    "sample": (
        "Use a generated sample (three devices)",
        "Usar una muestra generada (tres dispositivos)",
    ),
    "reading": ("Reading the file", "Leyendo el archivo"),
    "rows_of": ("{done} of {total} rows ({pct} %)", "{done} de {total} filas ({pct} %)"),
    "loaded": (
        "{name}: {rows} readings of {devices} devices.",
        "{name}: {rows} lecturas de {devices} dispositivos.",
    ),
    "loaded_1": (
        "{name}: {rows} readings of one device.",
        "{name}: {rows} lecturas de un dispositivo.",
    ),
    "bad_rows": (
        "{n} rows could not be used and were skipped (first: line {line}, {reason}).",
        "{n} filas no se pudieron usar y se omitieron (primera: línea {line}, {reason}).",
    ),
    "err_nothing_usable": (
        "None of the file's {rows} rows holds a usable reading: {reasons}. The first is line "
        "{line}. A reading needs a time, a device name and at least one sensor value.",
        "Ninguna de las {rows} filas del archivo contiene una lectura utilizable: {reasons}. "
        "La primera es la línea {line}. Una lectura necesita una hora, un nombre de "
        "dispositivo y al menos un valor de sensor.",
    ),
    "err_empty": (
        "The file is empty: there is nothing to analyse.",
        "El archivo está vacío: no hay nada que analizar.",
    ),
    "err_no_rows": (
        "The file has the right columns but no readings.",
        "El archivo tiene las columnas correctas pero ninguna lectura.",
    ),
    "err_not_csv": (
        "This is not a CSV file of readings ({name}). Choose a .csv file in the telemetry format.",
        "Esto no es un archivo CSV de lecturas ({name}). Elija un archivo .csv en el formato de telemetría.",
    ),
    "err_columns": (
        "The file's columns are {found}; a telemetry file has {expected}.",
        "Las columnas del archivo son {found}; un archivo de telemetría tiene {expected}.",
    ),
    "err_no_file": ("No file at {path}.", "No hay ningún archivo en {path}."),
    "err_read": ("The file could not be read: {error}", "No se pudo leer el archivo: {error}"),
    "large": (
        "This file has {rows} rows: reading all of them takes a while, and so does every run.",
        "Este archivo tiene {rows} filas: leerlas todas lleva un rato, y también cada cálculo.",
    ),
    "large_limit": ("Use only the first", "Usar solo las primeras"),
    "large_rows": ("rows", "filas"),
    "large_ok": ("Use these rows", "Usar estas filas"),
    "large_all": ("Read the whole file", "Leer el archivo entero"),
    "summary": ("What the file holds", "Qué contiene el archivo"),
    "col_device": ("device", "dispositivo"),
    "col_rows": ("readings", "lecturas"),
    "col_span": ("from – to (UTC)", "desde – hasta (UTC)"),
    "col_hours": ("hours", "horas"),
    "col_cadence": ("one reading every", "una lectura cada"),
    "col_gaps": ("gaps (> 5 min)", "huecos (> 5 min)"),
    "col_dups": ("duplicates", "duplicadas"),
    "col_late": ("out of order", "fuera de orden"),
    "col_glitches": ("glitches", "fallos del sensor"),
    "col_light": ("light on", "luz encendida"),
    "col_motion": ("motion", "movimiento"),
    "col_sensors": ("sensors", "sensores"),
    "no_sensor": ("no sensor", "sin sensor"),
    "share": ("{sensor} ({pct} % of readings)", "{sensor} ({pct} % de las lecturas)"),
    "left_out": ("What was left out", "Qué se dejó fuera"),
    "left_nothing": (
        "Nothing: every value of every row was read as it is.",
        "Nada: cada valor de cada fila se leyó tal cual.",
    ),
    "left_rows": (
        "{n} rows were refused whole, as nothing usable was left in them: {reasons}. The first "
        "is line {line}.",
        "{n} filas se rechazaron enteras, porque no quedaba nada utilizable en ellas: "
        "{reasons}. La primera es la línea {line}.",
    ),
    "left_dropped": ("dropped {what}", "se descartaron {what}"),
    "left_clipped": ("{what} set to the sensor's limit", "{what} llevados al límite del sensor"),
    "n_value": ("{n} {sensor} value", "{n} valor de {sensor}"),
    "n_values": ("{n} {sensor} values", "{n} valores de {sensor}"),
    "left_note": (
        "A dropped value is left out and the rest of its reading is kept. A value a little "
        "beyond what a sensor can measure (humidity up to 105 %) is a saturated sensor, as in "
        "fog: it is kept, at the limit (100 %). A row is refused whole only when nothing "
        "usable is left in it.",
        "Un valor descartado se deja fuera y el resto de su lectura se conserva. Un valor un "
        "poco más allá de lo que un sensor puede medir (humedad hasta 105 %) es un sensor "
        "saturado, como en la niebla: se conserva, en el límite (100 %). Una fila se rechaza "
        "entera solo cuando no queda nada utilizable en ella.",
    ),
    "summary_note": (
        "Duplicates, out-of-order readings and glitches (temperature 0 with humidity near "
        "1 %) are skipped by the models, as the live system does.",
        "Las lecturas duplicadas, fuera de orden y los fallos del sensor (temperatura 0 con "
        "humedad cerca del 1 %) no se usan para aprender, igual que en el sistema en vivo.",
    ),
    "seconds": ("{s} s", "{s} s"),
    "no_data": (
        "Open a file first (or use the sample).",
        "Abra primero un archivo (o use la muestra).",
    ),
    # 2. question
    "question": ("2. Question", "2. Pregunta"),
    "devices": ("Devices", "Dispositivos"),
    "target": ("What to predict", "Qué predecir"),
    "horizons": ("When", "Cuándo"),
    "models": ("Models", "Modelos"),
    "baseline": ("baseline", "referencia"),
    "target_some": ("{sensor} ({n} of {total} devices)", "{sensor} ({n} de {total} dispositivos)"),
    "no_target": (
        "The chosen devices measure nothing that can be predicted (temperature, humidity, CO, "
        "LPG or smoke).",
        "Los dispositivos elegidos no miden nada que se pueda predecir (temperatura, humedad, "
        "CO, GLP o humo).",
    ),
    "nowcast_none": (
        "“Now (virtual sensor)” estimates {sensor} from a device's other sensors: the chosen "
        "devices have no other sensor, so it is not offered.",
        "«Ahora (sensor virtual)» estima el valor de {sensor} a partir de los otros sensores de un "
        "dispositivo: los dispositivos elegidos no tienen otro sensor, así que no se ofrece.",
    ),
    "target_none": (
        "None of the chosen devices measures {sensor}: choose another device or something "
        "else to predict.",
        "Ninguno de los dispositivos elegidos mide {sensor}: elija otro dispositivo u otra cosa "
        "que predecir.",
    ),
    "target_left_out": (
        "Left out, as they have no {sensor} sensor: {devices}.",
        "Se dejan fuera, porque no tienen sensor de {sensor}: {devices}.",
    ),
    "cost": ("≈ {us} µs per reading", "≈ {us} µs por lectura"),
    "cost_unknown": ("cost: measuring…", "coste: midiendo…"),
    "cost_note": (
        "Costs: CPU per reading (predict and learn, a nowcast and a 15-minute forecast), "
        "measured on this computer over an hour of generated readings; the batch forest's "
        "training after its first day is not included.",
        "Coste: CPU por lectura (predecir y aprender, un sensor virtual y una previsión a 15 "
        "minutos), medido en este equipo sobre una hora de lecturas generadas; no incluye el "
        "entrenamiento del bosque tras su primer día.",
    ),
    "references": (
        "Also score the reference models (seasonal naive, the forest trained on the first "
        "day): shown, never served",
        "Evaluar también los modelos de referencia (el de hace 24 h, el bosque entrenado el "
        "primer día): se muestran, nunca se sirven",
    ),
    "run": ("Run", "Calcular"),
    "cancel": ("Cancel", "Cancelar"),
    "running": ("Evaluating", "Evaluando"),
    "cancelled": ("Cancelled.", "Cancelado."),
    "failed": ("The run failed: {error}", "El cálculo falló: {error}"),
    "need_choice": (
        "Pick at least one device, one horizon and one model.",
        "Elija al menos un dispositivo, un horizonte y un modelo.",
    ),
    "cached": (
        "Same question as before: the answer is reused.",
        "La misma pregunta que antes: se reutiliza la respuesta.",
    ),
    "done": ("Done: {rows} readings in {secs} s.", "Hecho: {rows} lecturas en {secs} s."),
    # 3. results
    "results": ("3. Results", "3. Resultados"),
    "show_device": ("Device", "Dispositivo"),
    "show_horizon": ("Horizon", "Horizonte"),
    "leaderboard": ("Leaderboard", "Clasificación"),
    "col_model": ("model", "modelo"),
    "col_mae": ("average error (MAE)", "error medio (MAE)"),
    "col_rmse": ("RMSE", "RMSE"),
    "col_vs": ("vs assuming no change", "frente a suponer que no cambia"),
    "col_n": ("forecasts scored", "previsiones evaluadas"),
    "served": ("served (what the system publishes)", "servida (lo que publica el sistema)"),
    "best_mark": ("best", "mejor"),
    "actual": ("actual", "real"),
    "chart_actual": ("Actual and predicted", "Real y previsto"),
    "chart_rolling": ("Recent error over time", "Error reciente a lo largo del tiempo"),
    "chart_hour": ("Error by hour of day (UTC)", "Error según la hora del día (UTC)"),
    "chart_scenarios": ("Error by situation", "Error según la situación"),
    "axis_time": ("time (UTC)", "hora (UTC)"),
    "axis_hour": ("hour of day (UTC)", "hora del día (UTC)"),
    "axis_error": ("average error", "error medio"),
    "toggle_hint": (
        "Click a name in a legend to hide or show it; drag to zoom, double-click to zoom out.",
        "Haga clic en un nombre de la leyenda para ocultarlo o mostrarlo; arrastre para ampliar, doble clic para volver.",
    ),
    "s_best": (
        "{when}, the best model ({model}) is off by {mae} on average; assuming no change is off by {pers} ({pct} % worse).",
        "{when}, el mejor modelo ({model}) se equivoca en {mae} de media; suponer que no cambia se equivoca en {pers} ({pct} % peor).",
    ),
    "s_best_is_pers": (
        "{when}, no model beats assuming no change, which is off by {pers} on average.",
        "{when}, ningún modelo mejora a suponer que no cambia, que se equivoca en {pers} de media.",
    ),
    "s_served": (
        "The forecast the system would have served is off by {mae}.",
        "La previsión que el sistema habría servido se equivoca en {mae}.",
    ),
    "s_scored_ahead": (
        "Readings here come less often than that: each forecast was checked against the next "
        "reading, {lead} ahead on average.",
        "Aquí las lecturas llegan con menos frecuencia: cada previsión se comprobó con la "
        "lectura siguiente, {lead} después de media.",
    ),
    "s_nothing": (
        "{when}: no forecast could be scored yet (too few readings).",
        "{when}: todavía no se pudo evaluar ninguna previsión (pocas lecturas).",
    ),
    "s_actual": (
        "The black line is what the sensor measured; each other line is what a model had predicted for that moment, {ahead}.",
        "La línea negra es lo que midió el sensor; cada otra línea es lo que un modelo había previsto para ese momento, {ahead}.",
    ),
    "s_rolling": (
        "Lower is better. At the end, the best model's recent error is {best}; assuming no change: {pers}.",
        "Más bajo es mejor. Al final, el error reciente del mejor modelo es {best}; suponiendo que no cambia: {pers}.",
    ),
    "s_hour": (
        "For the best model ({model}), forecasts made at {worst}:00 UTC are the hardest (off by {worst_mae}) and those made at {easy}:00 the easiest ({easy_mae}).",
        "Para el mejor modelo ({model}), las previsiones hechas a las {worst}:00 UTC son las más difíciles (error {worst_mae}) y las de las {easy}:00 las más fáciles ({easy_mae}).",
    ),
    "s_scenarios": (
        "The best model ({model}) errs most {worst} ({worst_mae}) and least {easy} ({easy_mae}).",
        "El mejor modelo ({model}) se equivoca más {worst} ({worst_mae}) y menos {easy} ({easy_mae}).",
    ),
    "band": ("served: {level} range", "servida: margen del {level}"),
    "s_interval": (
        "The served forecast comes with ranges, shaded around its line. Over {n} forecasts scored: {levels}.",
        "La previsión servida viene con márgenes, sombreados alrededor de su línea. En {n} previsiones evaluadas: {levels}.",
    ),
    "s_interval_level": (
        "the {level} range held the measured value {cov} of the time, {width} wide on average",
        "el margen del {level} contuvo el valor medido el {cov} de las veces, con {width} de ancho medio",
    ),
    "s_interval_none": (
        "No range around the served forecast could be scored yet: it needs a few forecasts first.",
        "Todavía no se pudo evaluar ningún margen de la previsión servida: necesita antes unas cuantas previsiones.",
    ),
    "anomalies": ("Unusual readings", "Lecturas anómalas"),
    "s_anomalies": (
        "{n} unusual event(s) of this device, times in UTC; each is marked on the chart above.",
        "{n} evento(s) anómalo(s) de este dispositivo, horas en UTC; cada uno está marcado en el gráfico de arriba.",
    ),
    "s_anomalies_more": ("The first {shown} are listed.", "Se listan los {shown} primeros."),
    "s_anomalies_none": (
        "Nothing unusual was found for this device: no spike, stuck value, silence, lasting shift or rising gas.",
        "No se encontró nada anómalo en este dispositivo: ni picos, ni valores atascados, ni silencios, ni cambios duraderos, ni gas en aumento.",
    ),
    "col_kind": ("what", "qué"),
    "col_start": ("start (UTC)", "inicio (UTC)"),
    "col_end": ("end (UTC)", "fin (UTC)"),
    "col_value": ("value", "valor"),
    "col_expected": ("expected", "esperado"),
    "ongoing": ("still going on", "todavía en curso"),
    "expected_change": ("a value that changes", "un valor que cambia"),
    "anomaly_hover": ("value {value}, expected {expected}", "valor {value}, esperado {expected}"),
    "download_html": ("Download the report (HTML)", "Descargar el informe (HTML)"),
    "download_csv": ("Download the figures (CSV)", "Descargar las cifras (CSV)"),
    "no_result": (
        "Press Run to see the results here.",
        "Pulse Calcular para ver aquí los resultados.",
    ),
    # 4. fleet
    "fleet": ("4. Live fleet", "4. Flota en vivo"),
    "fleet_help": (
        "The devices the running processors checkpoint to S3, and their champion models now.",
        "Los dispositivos que los procesadores en marcha guardan en S3, y sus modelos campeones ahora.",
    ),
    "refresh": ("Refresh", "Actualizar"),
    "fleet_none": (
        "No running stack or AWS account answers at {where} ({error}). Start one with `iotcast demo --hold`, or configure AWS, then Refresh.",
        "Ninguna pila local ni cuenta de AWS responde en {where} ({error}). Inicie una con `iotcast demo --hold`, o configure AWS, y pulse Actualizar.",
    ),
    "fleet_empty": (
        "The stack answers, but no device has a checkpoint yet.",
        "La pila responde, pero ningún dispositivo tiene aún un punto de control.",
    ),
    "col_shard": ("shard", "fragmento"),
    "col_version": ("version", "versión"),
    "col_samples": ("readings learned", "lecturas aprendidas"),
    "col_champion": ("champion per horizon", "campeón por horizonte"),
    "promote": ("Promote…", "Promover…"),
    "rollback": ("Roll back…", "Revertir…"),
    "reason": ("Why (kept with the command)", "Por qué (se guarda con la orden)"),
    "to_version": ("to version (empty: the one before)", "a la versión (vacío: la anterior)"),
    "all_horizons": ("every horizon", "todos los horizontes"),
    "confirm_promote": (
        "Make {model} the champion of {device} at {horizon}? The running processor applies it within seconds.",
        "¿Hacer de {model} el campeón de {device} en {horizon}? El procesador en marcha lo aplica en segundos.",
    ),
    "confirm_rollback": (
        "Restore an earlier version of {device}'s models ({version})? Readings learned since are not learned again.",
        "¿Restaurar una versión anterior de los modelos de {device} ({version})? Las lecturas aprendidas desde entonces no se vuelven a aprender.",
    ),
    "the_one_before": ("the one before the current one", "la anterior a la actual"),
    "pick_device_model": (
        "Pick a device and a model first.",
        "Elija primero un dispositivo y un modelo.",
    ),
    "command_ok": ("Done (exit 0):", "Hecho (salida 0):"),
    "events_today": ("What happened today", "Qué pasó hoy"),
    "batch_current": (
        "Batch model (iotcast retrain): version {version} is current; {said}",
        "Modelo por lotes (iotcast retrain): la versión {version} es la actual; {said}",
    ),
    "batch_in_shadow": (
        "in shadow: scored beside the others, not yet weighed.",
        "en sombra: se puntúa junto a los demás, aún sin peso.",
    ),
    "batch_accepted": (
        "accepted after its shadow, weighed with each device's model at {serves}.",
        "aceptada tras su sombra, con peso junto al modelo de cada dispositivo a {serves}.",
    ),
    "batch_refused": (
        "refused after its shadow ({reason}); the version before it stays.",
        "rechazada tras su sombra ({reason}); sigue la versión anterior.",
    ),
    "events_pick": (
        "Choose a device above to see what happened to it today.",
        "Elija arriba un dispositivo para ver qué le pasó hoy.",
    ),
    "events_none": (
        "Nothing was recorded for {device} today (UTC): no first reading, new champion, drift, reset or silence.",
        "No se registró nada para {device} hoy (UTC): ni primera lectura, ni nuevo campeón, ni cambio de régimen, ni reinicio, ni silencio.",
    ),
    "events_error": (
        "The events of {device} could not be read from {where} ({error}). Refresh to try again.",
        "No se pudieron leer los sucesos de {device} en {where} ({error}). Pulse Actualizar para reintentar.",
    ),
    "events_of": (
        "{n} event(s) of {device} today, times in UTC:",
        "{n} suceso(s) de {device} hoy, horas en UTC:",
    ),
    "command_failed": ("Refused (exit {code}):", "Rechazado (salida {code}):"),
}

# What happened to a device (stream.events), as a sentence; {model}, {horizon}, {old}, {why}
EVENTS: dict[str, tuple[str, str]] = {
    "first_reading": (
        "First reading: its models start learning.",
        "Primera lectura: sus modelos empiezan a aprender.",
    ),
    "promotion": (
        "{model} became the champion, {horizon} (before: {old}).",
        "{model} pasó a ser el campeón, {horizon} (antes: {old}).",
    ),
    "drift": (
        "The error of the champion {model} changed, {horizon}: a drift.",
        "El error del campeón {model} cambió, {horizon}: un cambio de régimen.",
    ),
    "model_reset": (
        "{model} was started afresh, {horizon}: {why}.",
        "{model} se reinició desde cero, {horizon}: {why}.",
    ),
    "quiet": (
        "The device went quiet: no reading for much longer than its usual interval.",
        "El dispositivo se quedó en silencio: sin lecturas durante mucho más de lo habitual.",
    ),
}
# Why the guard reset a model (online_models.guard), after "was started afresh: "
RESET_REASONS: dict[str, tuple[str, str]] = {
    "exception": ("it failed with an error", "falló con un error"),
    "non_finite": (
        "it forecast a value that is not a number",
        "previó un valor que no es un número",
    ),
    "out_of_range": (
        "it forecast a value far outside what the device has measured",
        "previó un valor muy lejos de lo que el dispositivo ha medido",
    ),
}

HORIZONS: dict[int, tuple[str, str]] = {
    0: ("now (virtual sensor)", "ahora (sensor virtual)"),
    60: ("in 1 minute", "en 1 minuto"),
    900: ("in 15 minutes", "en 15 minutos"),
    3600: ("in 1 hour", "en 1 hora"),
    21600: ("in 6 hours", "en 6 horas"),
}
AHEAD: dict[int, tuple[str, str]] = {
    0: ("as a virtual sensor (now)", "como sensor virtual (ahora)"),
    60: ("1 minute ahead", "1 minuto antes"),
    900: ("15 minutes ahead", "15 minutos antes"),
    3600: ("1 hour ahead", "1 hora antes"),
    21600: ("6 hours ahead", "6 horas antes"),
}
WHEN: dict[int, tuple[str, str]] = {
    0: ("As a virtual sensor (now)", "Como sensor virtual (ahora)"),
    60: ("1 minute ahead", "A 1 minuto vista"),
    900: ("15 minutes ahead", "A 15 minutos vista"),
    3600: ("1 hour ahead", "A 1 hora vista"),
    21600: ("6 hours ahead", "A 6 horas vista"),
}
TARGETS: dict[str, tuple[str, str]] = {
    "temp": ("temperature", "temperatura"),
    "humidity": ("humidity", "humedad"),
    "co": ("carbon monoxide (CO)", "monóxido de carbono (CO)"),
    "lpg": ("liquefied gas (LPG)", "gas licuado (GLP)"),
    "smoke": ("smoke", "humo"),
}
# Sensors in a list ("temperature, humidity, CO"): short words
SENSOR_WORDS: dict[str, tuple[str, str]] = {
    "temp": ("temperature", "temperatura"),
    "humidity": ("humidity", "humedad"),
    "co": ("CO", "CO"),
    "lpg": ("LPG", "GLP"),
    "smoke": ("smoke", "humo"),
    "light": ("light", "luz"),
    "motion": ("motion", "movimiento"),
}
# The kinds of anomaly event (online_models.anomaly)
ANOMALIES: dict[str, tuple[str, str]] = {
    "spike": ("spike (one reading far off)", "pico (una lectura muy desviada)"),
    "stuck": (
        "stuck sensor (the same value too long)",
        "sensor atascado (el mismo valor demasiado tiempo)",
    ),
    "silent": ("silent device (no readings)", "dispositivo en silencio (sin lecturas)"),
    "level_shift": ("lasting shift of level", "cambio de nivel duradero"),
    "gas_rise": ("gas level rising", "nivel de gas en aumento"),
}
# Why a value was dropped (telemetry.reading.FIELD_REASONS), after a count: "10 unreadable"
VALUE_REASONS: dict[str, tuple[str, str]] = {
    "wrong_type": ("unreadable", "ilegibles"),
    "not_finite": ("infinite or not a number", "infinitos o no numéricos"),
    "out_of_range": (
        "beyond what the sensor can measure",
        "más allá de lo que el sensor puede medir",
    ),
}
# Why a row was refused whole (telemetry.reading.REASONS, and the CSV's own)
ROW_REASONS: dict[str, tuple[str, str]] = {
    "no_sensor": ("no usable sensor value", "ningún valor de sensor utilizable"),
    "bad_timestamp": ("an impossible time", "una hora imposible"),
    "bad_device_id": ("a device name that is not valid", "un nombre de dispositivo no válido"),
    "wrong_field_count": ("the wrong number of cells", "un número de celdas incorrecto"),
    "wrong_type": ("an unreadable time or device name", "una hora o un dispositivo ilegible"),
    "not_finite": ("a time that is not a number", "una hora que no es un número"),
    "missing_field": ("no time or no device name", "sin hora o sin nombre de dispositivo"),
}
SCENARIOS: dict[str, tuple[str, str]] = {
    "day": ("by day (06-18 h UTC)", "de día (06-18 h UTC)"),
    "night": ("at night", "de noche"),
    "light_on": ("with the light on", "con la luz encendida"),
    "light_off": ("with the light off", "con la luz apagada"),
    "motion": ("after motion (10 min)", "tras un movimiento (10 min)"),
    "no_motion": ("without motion", "sin movimiento"),
    "after_gap": ("in the hour after a gap", "en la hora tras un hueco"),
    "after_drift": ("in the hour after a drift", "en la hora tras un cambio de régimen"),
    "after_first_day": ("after the first day", "después del primer día"),
}
# The built-in catalog's descriptions, in Spanish: (the English text translated, Spanish).
MODELS_ES: dict[str, tuple[str, str]] = {
    "persistence": ("last value", "último valor (suponer que no cambia)"),
    "rolling_mean": ("10-minute time-weighted mean", "media de los últimos 10 minutos"),
    "seasonal_naive": (
        "value 24 h before the target time (after a day of history)",
        "el valor de 24 h antes (tras un día de historia)",
    ),
    "linear": (
        "scaled linear regression on the reading's sensors, SGD lr 0.005",
        "regresión lineal sobre los sensores de la lectura",
    ),
    "ridge": (
        "least squares on the horizon features, 14-day forgetting, ridge prior",
        "mínimos cuadrados sobre las tendencias del horizonte, memoria de 14 días",
    ),
    "ensemble": (
        "the other models weighted by their recent absolute error (3-day memory)",
        "los demás modelos, ponderados por su error reciente (memoria de 3 días)",
    ),
    "snarimax": (
        "SNARIMAX(3,1,1) on bins fit to the cadence, anchored at the reading now (opt-in)",
        "SNARIMAX(3,1,1) sobre intervalos ajustados a la cadencia (opcional)",
    ),
    "holt_winters": (
        "additive Holt-Winters on bins fit to the cadence, 24 h season (opt-in)",
        "Holt-Winters aditivo con estación de 24 h (opcional)",
    ),
    "hoeffding_tree": (
        "scaled Hoeffding adaptive tree (opt-in: hundreds of µs)",
        "árbol de Hoeffding adaptativo (opcional: cientos de µs)",
    ),
    "arf": (
        "scaled adaptive random forest, 5 trees (opt-in: ms per reading)",
        "bosque aleatorio adaptativo de 5 árboles (opcional: ms por lectura)",
    ),
    "knn": (
        "scaled KNN, lazy search over the last 1,000 readings (opt-in)",
        "vecinos más cercanos entre las últimas 1.000 lecturas (opcional)",
    ),
    "batch_forest": (
        "scikit-learn random forest trained on the first day, then frozen",
        "bosque aleatorio entrenado el primer día y luego congelado",
    ),
}


def _pick(pair: tuple[str, str], lang: str) -> str:
    return pair[1] if lang == "es" else pair[0]


def t(lang: str, key: str, **fields: object) -> str:
    """The text of ``key`` in ``lang`` (``en`` or ``es``), its ``{fields}`` filled."""
    text = _pick(TEXT[key], lang)
    return text.format(**fields) if fields else text


def horizon_words(lang: str, seconds: int) -> str:
    """A horizon in plain words ("in 1 hour"), for choosing it."""
    if seconds in HORIZONS:
        return _pick(HORIZONS[seconds], lang)
    return f"{'en' if lang == 'es' else 'in'} {seconds} {'segundos' if lang == 'es' else 'seconds'}"


def horizon_ahead(lang: str, seconds: int, capital: bool = False) -> str:
    """A horizon as the start of a sentence ("1 hour ahead") or inside one."""
    table = WHEN if capital else AHEAD
    if seconds in table:
        return _pick(table[seconds], lang)
    return f"{seconds} s"


def duration_words(lang: str, seconds: float) -> str:
    """A span of time in plain words, in the largest unit it nearly fills, to a tenth.

    >>> duration_words("en", 3601), duration_words("es", 300.0), duration_words("en", 5400)
    ('1 hour', '5 minutos', '1.5 hours')
    >>> duration_words("en", 45)
    '45 seconds'
    """
    units = ((3600, "hour", "hora"), (60, "minute", "minuto"), (1, "second", "segundo"))
    size, en, es = next(u for u in units if seconds >= 0.95 * u[0] or u[0] == 1)
    n = round(seconds / size, 1)
    number = f"{n:g}" if n != int(n) else f"{int(n)}"
    number = number.replace(".", ",") if lang == "es" else number
    return f"{number} {es if lang == 'es' else en}{'' if number == '1' else 's'}"


def target_words(lang: str, target: str) -> str:
    return _pick(TARGETS[target], lang) if target in TARGETS else target


def sensor_words(lang: str, sensor: str) -> str:
    """A sensor's short name in a list; an extra field (``pressure``) as it is named."""
    return _pick(SENSOR_WORDS[sensor], lang) if sensor in SENSOR_WORDS else sensor


def value_reason_words(lang: str, reason: str) -> str:
    return _pick(VALUE_REASONS[reason], lang) if reason in VALUE_REASONS else reason


def row_reason_words(lang: str, reason: str) -> str:
    """Why a row was refused whole, in words ("an impossible time").

    >>> row_reason_words("en", "no_sensor"), row_reason_words("es", "bad_timestamp")
    ('no usable sensor value', 'una hora imposible')
    """
    return _pick(ROW_REASONS[reason], lang) if reason in ROW_REASONS else reason.replace("_", " ")


def values_words(lang: str, n: int, sensor: str) -> str:
    """``n`` values of ``sensor``: "1 humidity value", "12 valores de humedad"."""
    return t(
        lang, "n_value" if n == 1 else "n_values", n=f"{n:,}", sensor=sensor_words(lang, sensor)
    )


def anomaly_words(lang: str, kind: str) -> str:
    """An anomaly event's kind in words.

    >>> anomaly_words("en", "stuck"), anomaly_words("es", "gas_rise")
    ('stuck sensor (the same value too long)', 'nivel de gas en aumento')
    """
    return _pick(ANOMALIES[kind], lang) if kind in ANOMALIES else kind.replace("_", " ")


def scenario_words(lang: str, scenario: str) -> str:
    return _pick(SCENARIOS[scenario], lang) if scenario in SCENARIOS else scenario


def event_words(lang: str, event: dict[str, Any]) -> str:
    """What happened to a device (an event record of :mod:`stream.events`) as a sentence;
    the processor's own reason, in English, stays beside it on the page.

    >>> e = {"event": "promotion", "model": "linear", "horizon": 900,
    ...      "figures": {"old": "persistence"}}
    >>> event_words("en", e)
    'linear became the champion, 15 minutes ahead (before: persistence).'
    >>> event_words("es", {"event": "model_reset", "model": "ridge", "horizon": 0,
    ...                    "figures": {"reason": "exception"}})
    'ridge se reinició desde cero, como sensor virtual (ahora): falló con un error.'
    """
    kind = str(event.get("event"))
    if kind not in EVENTS:
        return kind.replace("_", " ")
    figures = event.get("figures") or {}
    horizon = event.get("horizon")
    when = horizon_ahead(lang, int(horizon), capital=True) if horizon is not None else ""
    why = str(figures.get("reason", ""))
    return _pick(EVENTS[kind], lang).format(
        model=event.get("model") or "",
        horizon=when[:1].lower() + when[1:],
        old=figures.get("old") or "-",
        why=_pick(RESET_REASONS[why], lang) if why in RESET_REASONS else why.replace("_", " "),
    )


def model_description(lang: str, name: str, catalog_text: str) -> str:
    """The catalog's one-line description, in Spanish where this module translates it.

    >>> model_description("es", "persistence", "last value")
    'último valor (suponer que no cambia)'
    >>> model_description("es", "persistence", "changed in the catalog")
    'changed in the catalog'
    """
    if lang == "es" and name in MODELS_ES and MODELS_ES[name][0] == catalog_text:
        return MODELS_ES[name][1]
    return catalog_text
