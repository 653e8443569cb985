"""Translate many texts through ``POST /translate``, in batches the server accepts.

The client does not know the server's limits (``SERVICE_MAX_TEXTS``, the request cost cap):
a 413 halves the batch and retries it, down to one text, and a text refused on its own is
reported, not fatal. A 429 waits (exponential backoff) and retries with a smaller batch;
503 and connection failures are the client's to retry (:mod:`service.client`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from service.client import Client, TranslateError
from service.glossary import MAX_ENTRIES, Glossary

MAX_BUSY_RETRIES = 6  # consecutive 429 answers before giving up


@dataclass
class Outcome:
    translations: dict[str, str] = field(default_factory=dict)  # source text -> translation
    refused: dict[str, str] = field(default_factory=dict)  # source text -> the server's reason
    requests: int = 0  # POST /translate calls, refused ones included


def terms_in(glossary: Glossary | None, texts: Sequence[str]) -> dict[str, str] | None:
    """The glossary entries the texts hold: what a request sends (a catalog's glossary may
    be larger than a request's limit)."""
    if glossary is None:
        return None
    return {t.source: t.target for text in texts for t in glossary.find(text)}


def translate_all(client: Client, texts: Sequence[str], batch_size: int = 32,
                  beam_size: int | None = None, progress: Callable[[int], None] = lambda n: None,
                  sleep: Callable[[float], None] = time.sleep, backoff_s: float = 0.5,
                  model: str | None = None, glossary: Glossary | None = None) -> Outcome:
    """Translate each distinct text once; ``progress(n)`` after every n texts done.

    Raises :class:`TranslateError` for any other refusal (401, 422, 5xx after retries).
    """
    outcome = Outcome()
    queue = deque(dict.fromkeys(texts))
    size, busy = max(1, batch_size), 0
    while queue:
        batch = [queue.popleft() for _ in range(min(size, len(queue)))]
        terms = terms_in(glossary, batch)
        while terms is not None and len(terms) > MAX_ENTRIES and len(batch) > 1:
            queue.extendleft(reversed(batch[len(batch) // 2:]))  # fewer texts, fewer terms
            batch = batch[: len(batch) // 2]
            terms = terms_in(glossary, batch)
        outcome.requests += 1
        try:
            result = client.translate(batch, beam_size=beam_size, model=model, glossary=terms)
        except TranslateError as exc:
            if exc.status == 429 and busy < MAX_BUSY_RETRIES:
                sleep(backoff_s * 2**busy)
                busy += 1
            elif exc.status == 413 and len(batch) > 1:
                pass
            elif exc.status == 413:
                outcome.refused[batch[0]] = exc.message
                progress(1)
                continue
            else:
                raise
            size = max(1, len(batch) // 2)
            queue.extendleft(reversed(batch))
            continue
        busy = 0
        for text, translation in zip(batch, result.translations, strict=True):
            outcome.translations[text] = translation.text
        progress(len(batch))
    return outcome
