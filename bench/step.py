"""``python -m bench.step``: what one decoder step costs, by rows, with and without the
vocabulary shortlist, next to the output projection alone (the GEMM floor of a full step);
and what encoding costs, by sentences, with the bundle's graph and as the service runs it
(one bidirectional GRU, :mod:`service.encoder_graph`, over runs of similar lengths).

Real inputs: held-out UI strings (``tests/data/ui-strings.tsv``) are encoded and searched for
a few steps by the engine with its step model wrapped, so every timed call gets the hidden
states, encoder store and (shortlist) candidate union of a real running batch of that many
rows. Each configuration is timed in interleaved rounds on the same inputs; medians.
Writes bench/step.json and bench/step.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bench.measure import ROOT
from service.decoding import EncodedBatch, StepOutput, TokenPenalty, Vocabulary
from service.encoder_graph import fuse_bidirectional, same_encoding
from service.runtime import OnnxSeq2Seq, SessionOptions
from service.shortlist import restrict_output
from service.translator import DecodeOptions, Translator

ROWS = (1, 4, 64, 256)
SENTENCES = (1, 4, 16, 64)
BEAM = 4


class Recorder:
    """Passes steps through, keeping the inputs of the last one."""

    def __init__(self, model: OnnxSeq2Seq) -> None:
        self.model = model
        self.last: tuple[Any, ...] = ()

    def step(self, prev: np.ndarray, hidden: np.ndarray, encoded: EncodedBatch,
             rows: np.ndarray, top_k: int, penalty: TokenPenalty,
             vocab: Vocabulary | None = None, attention: bool = True) -> StepOutput:
        self.last = (prev, hidden, encoded, rows, top_k, penalty, vocab)
        return self.model.step(prev, hidden, encoded, rows, top_k, penalty, vocab, attention)

    def step_log_probs(self, prev: np.ndarray, hidden: np.ndarray, encoded: EncodedBatch,
                       rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.model.step_log_probs(prev, hidden, encoded, rows)


def running_batch(translator: Translator, texts: list[str], rows: int, steps: int = 3
                  ) -> tuple[tuple[Any, ...], Any]:
    """The step inputs of ``rows`` rows (beam 4; greedy for one row) after a few steps, and
    a call that rebuilds that step's vocabulary as the engine does when its sentences
    change."""
    beam = 1 if rows == 1 else BEAM
    prepared = translator.prepare(texts[: max(rows // beam, 1)])
    recorder = Recorder(translator.model)
    engine = translator.engine()
    engine.model = recorder
    searches = [translator.search(r, DecodeOptions(beam_size=beam)) for r in prepared]
    engine.admit(translator.model.encode(*translator.encode([r.ids for r in prepared])),
                 searches)
    for _ in range(steps):
        engine.step()
    vocab = recorder.last[-1]
    candidates = [translator.candidates_of(r.ids) for r in prepared]
    rebuild = partial(Vocabulary.build, vocab.ids, candidates, [beam] * len(candidates),
                      vocab.penalized)
    return recorder.last, rebuild


def profile(model: OnnxSeq2Seq, decoder: onnx.ModelProto, inputs: tuple[Any, ...],
            runs: int = 30) -> dict[str, dict[str, float]]:
    """Each step graph's share of kernel time by operator type (onnxruntime's profiler)."""
    prev, hidden, encoded, row_sentence, top_k, penalty, vocab = inputs
    feeds = OnnxSeq2Seq._feeds(prev, hidden, encoded, row_sentence, penalty, top_k)
    restricted = {**feeds, "vocab_ids": vocab.ids, "row_columns": vocab.columns,
                  "penalty_columns": vocab.penalty_columns_of(penalty.token_ids)}
    shares = {}
    for name, graph, graph_feeds in (("full step", decoder, feeds),
                                     ("shortlist step", restrict_output(decoder), restricted)):
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "step")
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(graph.SerializeToString(), so,
                                       providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(["top_log_probs", "top_ids", "next_hidden"], graph_feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
        per_op: Counter[str] = Counter()
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                per_op[e["args"]["op_name"]] += e["dur"]
        total = sum(per_op.values())
        shares[name] = {op: round(100 * t / total, 1) for op, t in per_op.most_common(8)}
    return shares


def projection_floor(decoder: onnx.ModelProto, E: int, columns: int) -> ort.InferenceSession:
    """The int8 output projection alone: uint8 (R, E) x int8 (E, ``columns``) -> float."""
    weight = next(t for t in decoder.graph.initializer
                  if list(t.dims) == [E, columns] and t.data_type == TensorProto.INT8)
    w = numpy_helper.to_array(weight)
    graph = helper.make_graph(
        [helper.make_node("MatMulIntegerToFloat", ["a", "w", "a_scale", "w_scale"], ["y"],
                          domain="com.microsoft")],
        "projection", [helper.make_tensor_value_info("a", TensorProto.UINT8, ["rows", E])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", columns])],
        [numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(np.array(0.01, np.float32), "a_scale"),
         numpy_helper.from_array(np.full(columns, 0.01, np.float32), "w_scale")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def restricted_at(rev: str, decoder: onnx.ModelProto) -> onnx.ModelProto:
    """The restricted step graph as ``service/shortlist.py`` of git revision ``rev`` builds
    it."""
    source = subprocess.run(["git", "show", f"{rev}:service/shortlist.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shortlist_at_rev.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location("shortlist_at_rev", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    graph: onnx.ModelProto = module.restrict_output(decoder)
    return graph


def restricted_by(model: OnnxSeq2Seq, session: ort.InferenceSession, call: Any) -> Any:
    """``call`` with ``session`` as the model's restricted step graph."""
    own, model.restricted = model.restricted, session
    try:
        return call()
    finally:
        model.restricted = own


def same_outputs(a: StepOutput, b: StepOutput) -> bool:
    return all(np.array_equal(x, y) for x, y in
               ((a.top_log_probs, b.top_log_probs), (a.top_ids, b.top_ids), (a.hidden, b.hidden)))


def timed(call: Any, repeats: int) -> list[float]:
    call()
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def encoder_runs(translator: Translator, texts: list[str], rounds: int, repeats: int
                 ) -> dict[str, Any]:
    """Median ms of encoding the first n texts in one padded batch, with the bundle's graph
    and the fused one, and as the service does (the fused graph over runs of similar lengths,
    :meth:`service.translator.Translator.encode_runs`), interleaved; and whether the graphs give the
    same numbers."""
    path = translator.bundle_dir / translator.manifest.variants[translator.model.variant][
        "encoder"]
    model = onnx.load(str(path))
    fused = fuse_bidirectional(model)
    if fused is None:
        return {}
    sessions = {name: OnnxSeq2Seq._session(m.SerializeToString(), SessionOptions())
                for name, m in (("bundle's graph", model), ("one bidirectional GRU", fused))}
    same = same_encoding(sessions["bundle's graph"], sessions["one bidirectional GRU"], model,
                         translator.special.pad)
    rows = {n: translator.prepare(texts[:n]) for n in SENTENCES}

    def one_batch(session: ort.InferenceSession, ids: list[list[int]]) -> None:
        src, lengths = translator.encode(ids)  # padded ids, as encode_runs builds them
        session.run(None, {"src_ids": src, "src_lengths": lengths})

    calls: dict[int, dict[str, Callable[[], object]]] = {
        n: {name: partial(one_batch, session, [r.ids for r in rows[n]])
            for name, session in sessions.items()} for n in SENTENCES}
    for n in SENTENCES:  # what the service runs: the fused graph, in runs of similar lengths
        calls[n]["the same in runs of similar lengths"] = partial(translator.encode_runs, rows[n])
    times: dict[int, dict[str, list[float]]] = {n: {k: [] for k in calls[n]} for n in SENTENCES}
    for _ in range(rounds):
        for n in SENTENCES:
            for name, call in calls[n].items():
                times[n][name] += timed(call, repeats)
    return {"same numbers": same, "nodes": [len(model.graph.node), len(fused.graph.node)],
            "sentences": {str(n): {k: round(statistics.median(t), 3) for k, t in by.items()}
                          for n, by in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.step")
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "en-de")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--against", metavar="REV",
                        help="also time the shortlist step with the restricted graph that "
                             "service/shortlist.py of this git revision builds (a graph "
                             "change measured side by side)")
    args = parser.parse_args()
    texts = [line.split("\t")[0] for line in (ROOT / "tests" / "data" / "ui-strings.tsv")
             .read_text(encoding="utf-8").splitlines()]
    texts = (texts * 4)[:64]
    translator = Translator(args.bundle, shortlist=True)
    model = translator.model
    decoder = onnx.load(str(args.bundle / translator.manifest.variants[model.variant]["decoder"]))
    V, E = translator.manifest.architecture.vocab_size, translator.manifest.architecture.emb_dim
    floor = projection_floor(decoder, E, V)
    other = None if args.against is None else OnnxSeq2Seq._session(
        restricted_at(args.against, decoder).SerializeToString(), SessionOptions())
    cases: dict[int, dict[str, Any]] = {}
    for rows in ROWS:
        inputs, rebuild = running_batch(translator, texts, rows)
        prev, hidden, encoded, row_sentence, top_k, penalty, vocab = inputs
        step = partial(model.step, prev, hidden, encoded, row_sentence, top_k, penalty)
        a = np.random.default_rng(0).integers(0, 255, (rows, E), np.uint8)
        cases[rows] = {
            "full step": partial(step, None, False),
            "shortlist step": partial(step, vocab, False),
            "full step + attention": partial(step, None, True),
            "projection alone (GEMM floor)": partial(floor.run, None, {"a": a}),
            "shortlist: step vocabulary rebuilt (numpy)": rebuild,
            "candidates": int(vocab.ids.size),
        }
        if other is not None:
            theirs = partial(restricted_by, model, other, partial(step, vocab, False))
            cases[rows][f"shortlist step, {args.against}'s graph"] = theirs
            cases[rows]["same outputs"] = same_outputs(step(vocab, False), theirs())
    times: dict[int, dict[str, list[float]]] = {
        r: {n: [] for n, c in cases[r].items() if callable(c)} for r in ROWS}
    for _ in range(args.rounds):
        for rows in ROWS:
            for name in times[rows]:
                times[rows][name] += timed(cases[rows][name], args.repeats)
    bundle = args.bundle.resolve()
    name = str(bundle.relative_to(ROOT)) if bundle.is_relative_to(ROOT) else str(bundle)
    result = {"bundle": name, "variant": model.variant, "vocabulary": V,
              "rows": {str(r): {"candidates": cases[r]["candidates"],
                                **({"same outputs": cases[r]["same outputs"]}
                                   if other is not None else {}),
                                **{n: round(statistics.median(t), 3)
                                   for n, t in times[r].items()}} for r in ROWS},
              "profile_256_rows": profile(model, decoder, running_batch(translator, texts,
                                                                        256)[0]),
              "encoder": encoder_runs(translator, texts, args.rounds, args.repeats)}
    (ROOT / "bench" / "step.json").write_text(json.dumps(result, indent=2) + "\n")
    (ROOT / "bench" / "step.md").write_text(report(result))
    print(report(result))


def report(r: dict[str, Any]) -> str:
    rows = r["rows"]
    names = [n for n in next(iter(rows.values())) if n not in ("candidates", "same outputs")]
    lines = [f"# One decoder step ({r['bundle']}, {r['variant']}, vocabulary {r['vocabulary']})",
             "", "Median ms per call (`python -m bench.step`); the shortlist step scores the "
             "union of the running sentences' candidates.", "",
             "| rows in a step | " + " | ".join(rows) + " |",
             "|---|" + "---|" * len(rows),
             "| shortlist candidates (union) | " + " | ".join(
                 str(v["candidates"]) for v in rows.values()) + " |"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{v[name]:.2f}" for v in rows.values())
                     + " |")
    lines.append("| full / shortlist | " + " | ".join(
        f"{v['full step'] / v['shortlist step']:.2f}×" for v in rows.values()) + " |")
    for name in names:
        if name.endswith("'s graph"):
            lines.append(f"| {name.removeprefix('shortlist step, ')} / this tree's | "
                         + " | ".join(f"{v[name] / v['shortlist step']:.2f}×"
                                      for v in rows.values()) + " |")
            lines.append("| the same outputs (top k, their log-probabilities, hidden) | "
                         + " | ".join("yes" if v["same outputs"] else "**no**"
                                      for v in rows.values()) + " |")
    lines += ["", "Share of kernel time by operator at 256 rows (onnxruntime's profiler, 30 "
              "steps; the eight largest):", ""]
    for name, shares in r["profile_256_rows"].items():
        lines.append(f"- {name}: " + ", ".join(f"{op} {share} %"
                                                for op, share in shares.items()))
    enc = r.get("encoder")
    if enc:
        by = enc["sentences"]
        lines += ["", f"Encoding n held-out strings (median ms; the bundle's graph has "
                  f"{enc['nodes'][0]} nodes, the fused one {enc['nodes'][1]}; the same numbers "
                  f"on every real position: {'yes' if enc['same numbers'] else '**no**'}):", "",
                  "| held-out strings | " + " | ".join(by) + " |",
                  "|---|" + "---|" * len(by)]
        for name in next(iter(by.values())):
            lines.append(f"| {name} | " + " | ".join(f"{v[name]:.2f}" for v in by.values())
                         + " |")
        file_graph, fused = "bundle's graph", "one bidirectional GRU"
        in_runs = "the same in runs of similar lengths"
        lines.append("| bundle's graph / fused | " + " | ".join(
            f"{v[file_graph] / v[fused]:.2f}×" for v in by.values()) + " |")
        lines.append("| bundle's graph / fused in runs | " + " | ".join(
            f"{v[file_graph] / v[in_runs]:.2f}×" for v in by.values()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
