"""What makes a checkpoint trustworthy: hashes, HMAC signatures, and the error of a failed check.

A pickle runs code when it is loaded, so nothing read back from S3 is unpickled
before its bytes match the sha256 that a verified document recorded for them: the
shard manifest (HMAC-SHA256 signed when a key is set) records each device's
hash, a bundle's version records hash their predecessors' (:mod:`stream.checkpoint`).
Every failed check raises :class:`TamperedCheckpoint`, whose ``reason`` names it.

>>> raw = signed_json({"sequence": "42"}, "k")
>>> verified_body(raw, "k", "manifest")
{'sequence': '42'}
>>> try:
...     verified_body(raw.replace(b"42", b"43"), "k", "manifest")
... except TamperedCheckpoint as e:
...     print("refused:", e.reason)
refused: bad_signature
"""

from __future__ import annotations

import hashlib
import hmac
from typing import cast

import orjson

__all__ = ["TamperedCheckpoint", "sha256_hex", "sign", "signed_json", "verified_body"]


class TamperedCheckpoint(RuntimeError):
    """A manifest or artifact that fails verification; ``reason`` says which check failed.

    >>> TamperedCheckpoint("bad_sha256", "artifact x does not match").reason
    'bad_sha256'
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``.

    >>> sha256_hex(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def sign(body: bytes, key: str) -> str:
    """The hex HMAC-SHA256 of ``body`` under ``key``."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def signed_json(body: dict[str, object], hmac_key: str | None, *, indent: bool = True) -> bytes:
    """``body`` as JSON (indented unless ``indent`` is false), with an HMAC-SHA256
    ``signature`` of its canonical form when a key is set.

    >>> verified_body(signed_json({"a": 1}, "k", indent=False), "k", "doc")
    {'a': 1}
    """
    if hmac_key:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        body = {**body, "signature": {"alg": "HMAC-SHA256", "value": sign(canonical, hmac_key)}}
    option = orjson.OPT_SORT_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(body, option=option)


def verified_body(raw: bytes, hmac_key: str | None, what: str) -> dict[str, object]:
    """Parse a document written by :func:`signed_json`; with a key, check its signature.

    ``what`` names the document in the :class:`TamperedCheckpoint` raised on failure; the
    caller checks the fields it reads.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise TamperedCheckpoint("unreadable", f"{what} is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise TamperedCheckpoint("malformed", f"{what} is not a JSON object")
    signature = body.pop("signature", None)
    if hmac_key:
        if not signature:
            raise TamperedCheckpoint(
                "unsigned", f"{what} carries no signature but an HMAC key is configured"
            )
        expected = sign(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), hmac_key)
        if not hmac.compare_digest(expected, str(signature.get("value", ""))):
            raise TamperedCheckpoint(
                "bad_signature",
                f"{what} fails its HMAC-SHA256 signature (tampered, or written with another key)",
            )
    return cast("dict[str, object]", body)
