"""``python -m model_export``: corpus -> train -> bundle -> evaluate.

    python -m model_export all --lang de --out models/en-de      # reproduce the default model
    python -m model_export corpus --lang de --data work/data
    python -m model_export train --data work/data --run work/run
    python -m model_export bundle --data work/data --run work/run --out work/bundle-full
    python -m model_export ship --bundle work/bundle-full --variants int8 --out models/en-de
    python -m model_export evaluate --bundle models/en-de --beam 4
    python -m model_export import-opennmt model_step_N.pt --tokenizer spm.model --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import fields
from pathlib import Path

from model_export.corpus import PACKAGE_LISTS
from model_export.model import ModelConfig
from model_export.model.attention import ATTENTIONS
from model_export.train import TrainConfig

log = logging.getLogger("model_export")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    model = ModelConfig()
    train = {f.name: f.default for f in fields(TrainConfig)}
    p.add_argument("--attention", choices=ATTENTIONS, default=model.attention)
    for name in ("vocab_size", "emb_dim", "enc_hidden", "dec_hidden", "attn_dim"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(model, name))
    p.add_argument("--dropout", type=float, default=model.dropout)
    p.add_argument("--epochs", type=int, default=train["max_epochs"])
    p.add_argument("--time-budget-min", type=float, default=train["time_budget_min"],
                   help="stop at the evaluation that crosses this much training time (0: none)")
    p.add_argument("--eval-every", type=int, default=train["eval_every"],
                   help="validate and checkpoint every N updates too (0: at epoch ends only)")
    p.add_argument("--batch-tokens", type=int, default=train["batch_tokens"])
    p.add_argument("--lr", type=float, default=train["lr"])
    p.add_argument("--label-smoothing", type=float, default=train["label_smoothing"])
    p.add_argument("--seed", type=int, default=train["seed"])
    p.add_argument("--max-steps", type=int, default=0, help="stop after N updates (smoke tests)")
    p.add_argument("--dev-limit", type=int, default=0, help="evaluate on the first N dev pairs")
    p.add_argument("--restart-lr", type=float, default=0.0,
                   help="when resuming: warm restart at this learning rate, patience reset")
    p.add_argument("--init-from", type=Path, metavar="RUN",
                   help="fine-tune: start from this run's final weights and tokenizer")
    p.add_argument("--oversample", action="append", default=[], metavar="FILE.tsv:N",
                   help="add the pairs of this file in the data dir N extra times (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="FILE.tsv",
                   help="ablation: train without the pairs of this file in the data dir "
                   "(repeatable)")
    p.add_argument("--no-resume", action="store_true",
                   help="start over even if a checkpoint exists")


def _add_corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lang", default="de", help="the catalogs' target language")
    p.add_argument("--packages", type=Path, default=PACKAGE_LISTS / "train.txt",
                        help="Debian packages to read (one per line)")
    p.add_argument("--heldout", type=Path, default=PACKAGE_LISTS / "heldout.txt",
                        help="whole applications kept out of training (out-of-domain test)")
    p.add_argument("--games", type=Path, default=PACKAGE_LISTS / "games.txt",
                   help="games and educational packages read after --packages")
    p.add_argument("--no-games", action="store_true", help="leave out the --games packages")
    p.add_argument("--no-dictionary", action="store_true",
                   help="leave out the language's FreeDict dictionary")
    p.add_argument("--debs", type=Path, default=Path("work/debs"), help="download cache")
    p.add_argument("--input", type=Path, help="use this .tsv/.po/.mo (or dir) instead")
    p.add_argument("--debian-package", help="read only this package's catalogs instead "
                        "(e.g. libgtk-3-common: independent evaluation data)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    corpus = sub.add_parser("corpus", help="build train/dev/test TSV files")
    _add_corpus_args(corpus)
    corpus.add_argument("--data", type=Path, default=Path("work/data"))

    train = sub.add_parser("train", help="train a model (resumes from the run's checkpoint)")
    train.add_argument("--data", type=Path, default=Path("work/data"))
    train.add_argument("--run", type=Path, default=Path("work/run"))
    _add_model_args(train)

    bundle = sub.add_parser("bundle", help="export, check parity, quantize, evaluate, write")
    bundle.add_argument("--data", type=Path, default=Path("work/data"))
    bundle.add_argument("--run", type=Path, default=Path("work/run"))
    bundle.add_argument("--out", type=Path, required=True)
    bundle.add_argument("--source-lang", default="en")
    bundle.add_argument("--target-lang", default="de")
    bundle.add_argument("--model-id", help="default: <source>-<target>-gru-<attention>")
    bundle.add_argument("--no-int8", action="store_true")
    bundle.add_argument("--eval-limit", type=int, default=0, help="score the first N test pairs")
    bundle.add_argument("--average", type=int, default=5,
                        help="try averaging the last N epoch snapshots; keep it if dev BLEU "
                        "improves (0: use the best checkpoint)")

    ship = sub.add_parser("ship", help="copy a bundle keeping only some variants (size budget)")
    ship.add_argument("--bundle", type=Path, required=True)
    ship.add_argument("--out", type=Path, required=True)
    ship.add_argument("--variants", default="int8", help="comma-separated, e.g. int8")

    shortlist = sub.add_parser("shortlist", help="add a vocabulary shortlist to a bundle "
                               "(from the corpus' train.tsv) and score it against the full "
                               "vocabulary on the test sets")
    shortlist.add_argument("--bundle", type=Path, required=True)
    shortlist.add_argument("--data", type=Path, default=Path("work/data"))
    shortlist.add_argument("--top", type=int, default=100,
                           help="target pieces kept per source piece")
    shortlist.add_argument("--frequent", type=int, default=500,
                           help="most frequent target pieces every sentence may produce")
    shortlist.add_argument("--eval-limit", type=int, default=0,
                           help="score at most N pairs of each set")

    previous = sub.add_parser("compare", help="score the bundle this one replaces (as served) "
                              "on this one's evaluation sets; keep both in manifest and card")
    previous.add_argument("--bundle", type=Path, required=True)
    previous.add_argument("--previous", type=Path, required=True)
    previous.add_argument("--data", type=Path, default=Path("work/data"))
    previous.add_argument("--eval-limit", type=int, default=0)

    ablation = sub.add_parser("ablation", help="what one corpus source adds: score the bundle "
                              "and the same schedule trained without that source side by side "
                              "as served; keep both in the bundle's manifest and card")
    ablation.add_argument("--bundle", type=Path, required=True)
    ablation.add_argument("--ablation", type=Path, required=True,
                          help="the bundle trained with `train --exclude`")
    ablation.add_argument("--without", required=True, help="the source left out, e.g. games")
    ablation.add_argument("--data", type=Path, default=Path("work/data"))
    ablation.add_argument("--eval-limit", type=int, default=0)

    terms = sub.add_parser("terminology", help="term use, chrF, alignment and speed with and "
                           "without a glossary, on the held-out applications' own terms")
    terms.add_argument("--bundle", type=Path, required=True)
    terms.add_argument("--data", type=Path, default=Path("work/data"))
    terms.add_argument("--json", type=Path, help="write the result here")
    terms.add_argument("--rounds", type=int, default=3,
                       help="interleaved timing rounds (the speed ratio is their median)")
    terms.add_argument("--record", action="store_true",
                       help="keep the result in the bundle's manifest and model card")

    evaluate = sub.add_parser("evaluate", help="score a bundle on a split with ONNX Runtime")
    evaluate.add_argument("--bundle", type=Path, required=True)
    evaluate.add_argument("--data", type=Path, default=Path("work/data"))
    evaluate.add_argument("--split", default="test",
                          help="SPLIT.tsv in --data (train, dev, test, heldout, "
                          "test-libreoffice-l10n-de...) or all (train + dev + test)")
    evaluate.add_argument("--variant", default="auto", help="fp32, int8 or auto")
    evaluate.add_argument("--beam", type=int, default=4)
    evaluate.add_argument("--length-penalty", type=float, help="default: the bundle's")
    evaluate.add_argument("--examples", type=int, default=5, help="print N examples")
    evaluate.add_argument("--limit", type=int, default=0)
    evaluate.add_argument("--json", type=Path, help="write the scores and every output here")

    onmt = sub.add_parser("import-opennmt", help="bundle an OpenNMT-py 3.x or 2.x RNN checkpoint")
    onmt.add_argument("checkpoint", type=Path)
    onmt.add_argument("--tokenizer", type=Path, required=True,
                      help="the SentencePiece model the source was tokenized with")
    onmt.add_argument("--target-tokenizer", type=Path,
                      help="the target side's SentencePiece model, if it has its own")
    onmt.add_argument("--out", type=Path, required=True)
    onmt.add_argument("--source-lang", default="und", help="language code (default: und)")
    onmt.add_argument("--target-lang", default="und")
    onmt.add_argument("--model-id", help="default: <source>-<target>-opennmt-<file name>")
    onmt.add_argument("--calibration", type=Path, metavar="TEXT",
                      help="source sentences, one per line (raw text, a few hundred): "
                      "calibrates the int8 variant; without it the bundle is fp32 only")
    onmt.add_argument("--eval", type=Path, metavar="TSV",
                      help="source<TAB>reference lines: scored into the card, and the "
                      "served greedy outputs compared with PyTorch's")
    onmt.add_argument("--placeholders", action="store_true",
                      help="the model was trained on text masked as this project masks it "
                      "(<ph0>, <ph1>... sentinels): mask and restore placeholders")

    every = sub.add_parser("all", help="corpus + train + bundle in one go")
    _add_corpus_args(every)
    every.add_argument("--work", type=Path, default=Path("work"))
    every.add_argument("--out", type=Path, required=True)
    _add_model_args(every)
    return parser


def _train(args: argparse.Namespace, data: Path, run: Path) -> None:
    from model_export.train import train

    model_fields = {f.name for f in fields(ModelConfig)}
    model = ModelConfig(**{k: v for k, v in vars(args).items() if k in model_fields})
    train(TrainConfig(data_dir=data, run_dir=run, model=model, max_epochs=args.epochs,
                      time_budget_min=args.time_budget_min, batch_tokens=args.batch_tokens,
                      eval_every=args.eval_every, label_smoothing=args.label_smoothing,
                      lr=args.lr, seed=args.seed, max_steps=args.max_steps,
                      dev_limit=args.dev_limit, restart_lr=args.restart_lr,
                      init_from=args.init_from, oversample=_oversample(args.oversample),
                      exclude=args.exclude),
          resume=not args.no_resume)


def _oversample(specs: list[str]) -> dict[str, int]:
    weights = {}
    for spec in specs:
        name, _, times = spec.rpartition(":")
        if not name or not times.isdigit():
            raise SystemExit(f"--oversample {spec!r}: expected FILE.tsv:N")
        weights[name] = int(times)
    return weights


def _corpus(args: argparse.Namespace, data: Path) -> None:
    from model_export.corpus import build, build_from_packages, read_packages, read_source

    if args.input or args.debian_package:
        pairs, origin = read_source(args.input, args.lang, args.debian_package, args.debs)
        build(pairs, data, origin)
    else:
        build_from_packages(read_packages(args.packages, args.lang),
                            read_packages(args.heldout, args.lang), args.lang, data, args.debs,
                            games_packages=[] if args.no_games
                            else read_packages(args.games, args.lang),
                            dictionary=not args.no_dictionary)


def _bundle(run: Path, data: Path, out: Path, source: str, target: str, model_id: str | None,
            int8: bool = True, eval_limit: int = 0, average: int = 5) -> None:
    from model_export.package import build_bundle
    from model_export.train import choose_final, load_model

    if average:
        choose_final(run, data, average)

    attention = load_model(run)[0].config.attention
    manifest = build_bundle(run, data, out, model_id or f"{source}-{target}-gru-{attention}",
                            source, target, int8=int8, eval_limit=eval_limit)
    print(json.dumps(manifest.metrics, indent=2))


def _evaluate(args: argparse.Namespace) -> None:
    from model_export.corpus import load_split
    from model_export.metrics import score
    from service.translator import DecodeOptions, Translator, translate_corpus

    splits = ("train", "dev", "test") if args.split == "all" else (args.split,)
    pairs = [p for split in splits for p in load_split(args.data / f"{split}.tsv")]
    if args.limit:
        pairs = pairs[: args.limit]
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    translator = Translator(args.bundle, args.variant)
    options = DecodeOptions(beam_size=args.beam, length_penalty=args.length_penalty)
    outputs = translate_corpus(translator, sources, options)
    scores = score(sources, outputs, references).as_dict()
    print(json.dumps(scores, indent=2))
    for s, r, o in list(zip(sources, references, outputs, strict=True))[: args.examples]:
        print(f"SRC {s!r}\nREF {r!r}\nOUT {o!r}\n")
    if args.json:
        args.json.write_text(json.dumps({
            "bundle": str(args.bundle), "variant": translator.variant, "beam": args.beam,
            "scores": scores, "outputs": [
                {"source": s, "reference": r, "output": o}
                for s, r, o in zip(sources, references, outputs, strict=True)]},
            ensure_ascii=False, indent=1), encoding="utf-8")


def _import_opennmt(args: argparse.Namespace) -> None:
    from model_export.corpus import load_split
    from model_export.opennmt import UnsupportedCheckpoint, import_opennmt

    calibration = []
    if args.calibration:
        calibration = [line for line in args.calibration.read_text("utf-8").splitlines()
                       if line.strip()]
    evaluation = load_split(args.eval) if args.eval else []
    try:
        manifest = import_opennmt(
            args.checkpoint, args.tokenizer, args.out, target_tokenizer=args.target_tokenizer,
            source_lang=args.source_lang, target_lang=args.target_lang,
            model_id=args.model_id, calibration=calibration, evaluation=evaluation,
            placeholders=args.placeholders)
    except UnsupportedCheckpoint as exc:
        raise SystemExit(f"cannot import {args.checkpoint}: {exc}") from exc
    print(json.dumps({"bundle": str(args.out), "variants": sorted(manifest.variants),
                      "parity": manifest.parity, "metrics": manifest.metrics}, indent=2))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = _parser().parse_args(argv)
    if args.command == "corpus":
        _corpus(args, args.data)
    elif args.command == "train":
        _train(args, args.data, args.run)
    elif args.command == "bundle":
        _bundle(args.run, args.data, args.out, args.source_lang, args.target_lang,
                args.model_id, not args.no_int8, args.eval_limit, args.average)
    elif args.command == "shortlist":
        from model_export.package import evaluation_sets
        from model_export.shortlist import add_shortlist

        manifest = add_shortlist(args.bundle, args.data,
                                 evaluation_sets(args.data, args.eval_limit), args.top,
                                 args.frequent)
        print(json.dumps(manifest.shortlist.quality if manifest.shortlist else {}, indent=2))
    elif args.command == "ship":
        from model_export.package import ship

        try:
            ship(args.bundle, args.out, args.variants.split(","))
        except ValueError as exc:  # a variant the bundle does not have: one line, exit 1
            raise SystemExit(str(exc)) from exc
    elif args.command == "compare":
        from model_export.package import record_previous

        manifest = record_previous(args.bundle, args.previous, args.data, args.eval_limit)
        print(json.dumps(manifest.metrics["previous"]["scores"], indent=2))
    elif args.command == "ablation":
        from model_export.package import record_ablation

        manifest = record_ablation(args.bundle, args.ablation, args.without, args.data,
                                   args.eval_limit)
        print(json.dumps(manifest.metrics["ablations"][args.without], indent=2))
    elif args.command == "terminology":
        from model_export.terminology import evaluate

        result = evaluate(args.bundle, args.data, rounds=args.rounds)
        if args.record:
            from model_export.package import record_terminology

            record_terminology(args.bundle, result)
        if args.json:
            args.json.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n",
                                 encoding="utf-8")
        print(json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=2))
    elif args.command == "evaluate":
        _evaluate(args)
    elif args.command == "import-opennmt":
        _import_opennmt(args)
    else:
        data, run = args.work / "data", args.work / f"run-en-{args.lang}"
        _corpus(args, data)
        _train(args, data, run)
        _bundle(run, data, args.out, "en", args.lang, None)


if __name__ == "__main__":
    main()
