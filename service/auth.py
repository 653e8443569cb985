"""Optional API keys, compared in constant time."""

from __future__ import annotations

import hmac

from service.errors import Forbidden, Unauthorized


def check_key(presented: str | None, keys: list[str]) -> None:
    """Raise :class:`Unauthorized` without a key and :class:`Forbidden` with a wrong one;
    open when ``keys`` is empty.

    Every configured key is compared in constant time, so timing tells nothing about them.
    """
    if not keys:
        return
    if not presented:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or "
                           "'X-API-Key: <key>'")
    given = presented.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode())
    if not matched:
        raise Forbidden("the API key is not valid")
