"""Secrets stay out of what the code shows: repr, config errors, CLI errors, broker messages.

The end-to-end scan of a whole run's logs is in tests/test_security_iam.py;
these are the places a secret could slip into a message without a run.
"""

from __future__ import annotations

import logging

import pytest

from iotcast.cli import main
from iotcast.settings import ConfigError, Settings
from telemetry.broker import BadMqttUrl, parse_mqtt_url, redact_url

PASSWORD = "Pw-n3ver-shown"
HMAC_KEY = "hmac-n3ver-shown"
AWS_SECRET = "aws-secret-n3ver-shown"


def test_settings_repr_masks_the_mqtt_password_and_leaves_keys_out(caplog) -> None:
    s = Settings(
        mqtt_url=f"mqtts://bridge:{PASSWORD}@broker.example:8883",
        hmac_key=HMAC_KEY,
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key=AWS_SECRET,
    )
    caplog.set_level(logging.INFO)
    logging.getLogger("test").info("settings: %s / %r", s, s)
    for shown in (repr(s), str(s), caplog.text, repr(s.mqtt)):
        assert PASSWORD not in shown and HMAC_KEY not in shown and AWS_SECRET not in shown
    assert "mqtts://bridge:***@broker.example:8883" in repr(s)  # still says where
    assert s.mqtt.password == PASSWORD  # the value itself is intact


@pytest.mark.parametrize(
    "url",
    [
        f"mqtts://bridge:{PASSWORD}/x@broker:8883",  # unencoded "/" in the password
        f"mqtts://bridge:{PASSWORD}#x@broker:8883",  # unencoded "#"
        f"mqtts://bridge:{PASSWORD}@broker:88a3",  # a bad port
        f"http://bridge:{PASSWORD}@broker:8883",  # a wrong scheme
        f"mqtts://bridge:{PASSWORD}@:8883",  # no host
    ],
)
def test_config_errors_about_the_mqtt_url_do_not_show_the_password(url: str, capsys) -> None:
    with pytest.raises(BadMqttUrl) as exc:
        parse_mqtt_url(url)
    assert PASSWORD not in str(exc.value) and "bridge:***@" in str(exc.value)
    with pytest.raises(ConfigError) as resolved:  # the settings say it the same way
        Settings.resolve(env={}, toml={}, flags={"mqtt_url": url})
    assert str(resolved.value) == str(exc.value)
    # The command line reports it the same way (argparse error, exit status 2).
    with pytest.raises(SystemExit) as stop:
        main(["status", "--mqtt-url", url])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--mqtt-url" in err and PASSWORD not in err


def test_an_at_sign_in_the_password_is_masked_encoded_or_not() -> None:
    assert parse_mqtt_url("mqtts://u:p%40ss@h:8883").password == "p@ss"
    assert redact_url("mqtts://u:p%40ss@h:8883") == "mqtts://u:***@h:8883"
    # Unencoded, the last "@" ends the user part (for the parser and the mask alike).
    target = parse_mqtt_url("mqtts://u:p@ss@h:8883")
    assert (target.host, target.password) == ("h", "p@ss") and "p@ss" not in repr(target)
    assert redact_url("mqtts://u:p@ss@h:8883") == "mqtts://u:***@h:8883"
