"""``python -m bench.variants``: decoding speed of model variants, side by side in one run.

Compares, without HTTP, on the same sentences and in interleaved rounds (so drifting load on
a shared machine hits every variant alike):

- the bundle's fp32 and shipped int8 (static, batch-invariant) variants;
- dynamic int8 (``quantize_dynamic``, one activation scale per batch), built here from the
  same fp32 graphs: the method the static one replaces;
- optionally another bundle (``--old``), e.g. the previously shipped model.

    python -m bench.variants --bundle work/bundle-full --old work/old-bundle [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic

from bench.measure import ROOT, TEN
from service.bundle import MANIFEST, VARIANT_FILES, hash_files, verify_bundle
from service.translator import DecodeOptions, Translator


def with_dynamic_int8(bundle: Path, workdir: Path) -> Path:
    """A copy of ``bundle`` with a ``dynamic`` variant quantized from its fp32 graphs."""
    manifest = verify_bundle(bundle)
    for name in manifest.files:
        shutil.copy(bundle / name, workdir / name)
    files = {}
    for part, fp32 in zip(("encoder", "decoder"), VARIANT_FILES["fp32"], strict=True):
        files[part] = f"{part}.dynamic.onnx"
        quantize_dynamic(workdir / fp32, workdir / files[part], weight_type=QuantType.QInt8)
    manifest = replace(manifest, variants={**manifest.variants, "dynamic": files})
    manifest = replace(manifest, files=hash_files(workdir))
    (workdir / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    return workdir


def sentences_per_second(translator: Translator, texts: list[str], batch: int, beam: int
                         ) -> float:
    """One round: ``texts`` decoded in batches of ``batch`` (1 = one request at a time)."""
    rows = translator.prepare(texts)
    options = DecodeOptions(beam_size=beam)
    started = time.perf_counter()
    for at in range(0, len(rows), batch):
        translator.translate_prepared(rows[at : at + batch], options)
    return len(rows) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.variants")
    parser.add_argument("--bundle", type=Path, default=ROOT / "work" / "bundle-full")
    parser.add_argument("--old", type=Path, help="another bundle to compare (its auto variant)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--out", type=Path, help="write the table (markdown) and JSON here")
    args = parser.parse_args()

    texts = (TEN * (args.sentences // len(TEN) + 1))[: args.sentences]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = with_dynamic_int8(args.bundle, Path(tmp))
        translators = {f"new {v}": Translator(bundle, v) for v in ("fp32", "int8", "dynamic")}
        if args.old:
            translators["old " + Translator(args.old).variant] = Translator(args.old)
        cases = [(beam, batch) for beam in (1, 4) for batch in (1, 64)]
        rates: dict[str, dict[str, list[float]]] = {n: {} for n in translators}
        for translator in translators.values():  # warm-up: first runs allocate
            translator.translate(TEN[:2], DecodeOptions(beam_size=4))
        for _ in range(args.rounds):
            for beam, batch in cases:
                for name, translator in translators.items():
                    rate = sentences_per_second(translator, texts, batch, beam)
                    rates[name].setdefault(f"beam {beam}, batch {batch}", []).append(rate)
    medians = {n: {case: statistics.median(r) for case, r in by.items()}
               for n, by in rates.items()}
    header = list(next(iter(medians.values())))
    lines = ["| variant | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    lines += [f"| {n} | " + " | ".join(f"{m[c]:.1f}" for c in header) + " |"
              for n, m in medians.items()]
    base = medians["new dynamic"]
    lines += ["", "Ratio to dynamic int8 (same model):", ""]
    lines += [f"- {n}: " + ", ".join(f"{c} {m[c] / base[c]:.2f}×" for c in header)
              for n, m in medians.items() if n != "new dynamic"]
    table = "\n".join(lines)
    print(f"sentences/s, median of {args.rounds} interleaved rounds of {len(texts)} sentences\n")
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(rates, indent=1))


if __name__ == "__main__":
    main()
