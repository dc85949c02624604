"""A mosquitto that only speaks TLS and wants a password, for the security tests.

:func:`start_secure_broker` makes a throwaway CA and a server certificate for
127.0.0.1 (the ``openssl`` command line, P-256 keys, valid one day), a
password file (``mosquitto_passwd``) and a mosquitto with one TLS listener
and ``allow_anonymous false``.  Shared by the replay and the bridge tests.

>>> SecureBroker.__name__
'SecureBroker'
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from iotcast.stack import ManagedProcess, require, start_mosquitto

__all__ = ["SecureBroker", "make_test_ca", "start_secure_broker"]


def make_test_ca(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for IP 127.0.0.1 in ``d``: (ca.pem, server.pem, server.key)."""
    d.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run([require("openssl"), *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=iotcast test CA")  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "ext.cnf")  # fmt: skip
    (d / "server.key").chmod(0o644)  # mosquitto may run as its own user
    return d / "ca.pem", d / "server.pem", d / "server.key"


@dataclass
class SecureBroker:
    """A running TLS + password mosquitto: its process, CA file and users."""

    process: ManagedProcess
    ca_file: Path
    users: dict[str, str]

    @property
    def port(self) -> int:
        return self.process.port

    def url(self, user: str, password: str | None = None) -> str:
        """``mqtts://user:password@127.0.0.1:port`` (the user's own password by default)."""
        secret = self.users[user] if password is None else password
        return f"mqtts://{quote(user, safe='')}:{quote(secret, safe='')}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.stop()


def start_secure_broker(workdir: Path, users: dict[str, str]) -> SecureBroker:
    """mosquitto on 127.0.0.1 with TLS only (certificate from a throwaway CA) and these users."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca, cert, key = make_test_ca(workdir / "tls")
    passwd = workdir / "passwd"
    for i, (user, password) in enumerate(users.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run(
            [require("mosquitto_passwd"), "-b", *create, str(passwd), user, password],
            check=True,
            capture_output=True,
        )
    passwd.chmod(0o644)
    conf = f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\npassword_file {passwd}\n"
    proc = start_mosquitto(workdir / "broker", extra_conf=conf, allow_anonymous=False)
    return SecureBroker(proc, ca, dict(users))
