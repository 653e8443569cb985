"""Compare the container's answer (container-check's log) with this checkout's translator.

    python scripts/compare-container.py docs/container-check.txt

Reads the request and the JSON answer container-check printed, translates the same text with
the same bundle and options locally, and exits non-zero unless the texts are equal and the
scores agree within 1e-3 (the int8 model is batch-invariant and its integer products are the
same on every x86 CPU, so only float rounding may differ).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from service.settings import DEFAULT_BUNDLE
from service.translator import DecodeOptions, Translator

REQUEST = {"text": "Could not save the file %s.", "beam_size": 4}


def main() -> None:
    log = Path(sys.argv[1]).read_text(encoding="utf-8", errors="replace")
    match = re.search(r"^POST /translate -> 200\n(\{.*\})$", log, re.MULTILINE)
    if match is None:
        sys.exit(f"{sys.argv[1]}: no successful POST /translate answer found")
    container = json.loads(match.group(1))["translations"][0]
    local = Translator(DEFAULT_BUNDLE).translate(
        [str(REQUEST["text"])], DecodeOptions(beam_size=int(REQUEST["beam_size"])))[0].best
    print(f"container: {container['text']!r} ({container['score']})")
    print(f"local:     {local.text!r} ({local.score:.4f})")
    if container["text"] != local.text or abs(container["score"] - local.score) > 1e-3:
        sys.exit("the container answers differently from this checkout")
    print("same answer")


if __name__ == "__main__":
    main()
