#!/bin/sh
# Regenerate tests/data/opennmt/: two tiny RNN models trained by the real OpenNMT-py 3.5.1 on a
# slice of the corpus, with onmt_translate's greedy and beam-4 outputs, for the import tests.
#
#   sh scripts/opennmt-fixtures.sh            # needs work/data (the corpus step of make model)
#   sh scripts/opennmt-fixtures.sh shared     # (re)make some models only, on the same data
#
# OpenNMT-py lives in its own virtual environment (work/onmt-venv), never in the project's:
# `pip install --no-deps OpenNMT-py==3.5.1` plus the modules it imports (its setup.py pins
# torch<2.3; torch 2.13.0 works for RNN training and translation). Two of its transforms
# import spacy and fasttext at module level and every onmt_* command imports all transforms,
# so those two imports are made optional in the installed copy. torch >= 2.6 loads
# checkpoints weights-only by default, which rejects OpenNMT-py's pickled options:
# TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$ROOT/work/onmt-venv
WORK=$ROOT/work/onmt-fixtures
OUT=$ROOT/tests/data/opennmt
PY=$ROOT/.venv/bin/python

if [ ! -x "$VENV/bin/onmt_train" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch==2.13.0
    "$VENV/bin/pip" install -q --no-deps OpenNMT-py==3.5.1
    "$VENV/bin/pip" install -q configargparse pyyaml flask waitress sentencepiece six \
        "pyonmttok>=1.37,<2" "ctranslate2>=4,<5" rapidfuzz pyahocorasick numpy regex sacrebleu
fi
# (Importing onmt would run the imports being patched: locate the package without it.)
SITE=$("$VENV/bin/python" -c "import importlib.util, os
print(os.path.dirname(importlib.util.find_spec('onmt').origin))")
sed -i 's/^import spacy$/try:\n    import spacy\nexcept ImportError:  # optional: terminology transform only\n    spacy = None/' \
    "$SITE/transforms/terminology.py"
sed -i 's/^import fasttext$/try:\n    import fasttext\nexcept ImportError:  # optional: language-id filter only\n    fasttext = None/' \
    "$SITE/transforms/clean.py"
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1

MODELS=${*:-gru lstm shared}
[ $# -eq 0 ] && rm -rf "$WORK"
mkdir -p "$WORK" "$OUT"
# Data: SentencePiece pieces, space-joined (OpenNMT-py's input format without transforms).
[ -f "$WORK/src-test.txt" ] || "$PY" - "$ROOT/work/data" "$WORK" <<'EOF'
import sys
from pathlib import Path

from model_export.corpus import load_split, sample
from model_export.data import mask_pair
from model_export.tokenizer import load_tokenizer, train_tokenizer

data, work = Path(sys.argv[1]), Path(sys.argv[2])
train = sample(load_split(data / "train-libreoffice-l10n-de.tsv"), 15000)
test = sample(load_split(data / "test-libreoffice-l10n-de.tsv"), 200)
train_tokenizer([t for pair in train for t in mask_pair(*pair)], work / "spm.model", 1000)
sp = load_tokenizer(work / "spm.model")
for name, pairs in (("train", train), ("test", test)):
    masked = [mask_pair(*p) for p in pairs]
    for side, index in (("src", 0), ("tgt", 1)):
        lines = [" ".join(sp.encode(m[index], out_type=str)) for m in masked]
        (work / f"{side}-{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (work / f"raw-{name}.tsv").write_text(
        "".join(f"{s}\t{t}\n" for s, t in masked), encoding="utf-8")
EOF

# common NAME [shared]: separate source and target vocabularies, or one shared.
common() {
    if [ "${2:-}" = shared ]; then
        printf 'src_vocab: %s\nshare_vocab: true\n' "$WORK/vocab.shared"
    else
        printf 'src_vocab: %s\ntgt_vocab: %s\nshare_vocab: false\n' "$WORK/vocab.src" \
            "$WORK/vocab.tgt"
    fi
    cat <<EOF
save_data: $WORK/$1
overwrite: true
data:
  corpus_1: {path_src: $WORK/src-train.txt, path_tgt: $WORK/tgt-train.txt}
src_vocab_size: 1200
tgt_vocab_size: 1200
world_size: 1
num_workers: 0
bucket_size: 2048
batch_size: 64
train_steps: 2000
save_checkpoint_steps: 2000
save_model: $WORK/$1
optim: adam
learning_rate: 0.002
dropout: [0.1]
seed: 1234
report_every: 500
hidden_size: 64
EOF
}
{ common gru; cat <<EOF
word_vec_size: 32
layers: 2
encoder_type: brnn
rnn_type: GRU
global_attention: mlp
input_feed: 1
bridge: true
EOF
} > "$WORK/gru.yaml"
{ common lstm; cat <<EOF
word_vec_size: 32
layers: 2
encoder_type: rnn
rnn_type: LSTM
global_attention: general
input_feed: 0
bridge: false
EOF
} > "$WORK/lstm.yaml"
# One vocabulary and one embedding table for both sides, tied to the generator (so the
# embeddings are as wide as the decoder); one bidirectional LSTM layer with its bridge (two
# Linears: h and c), dot attention.
{ common shared shared; cat <<EOF
word_vec_size: 64
layers: 1
encoder_type: brnn
rnn_type: LSTM
global_attention: dot
input_feed: 1
bridge: true
share_embeddings: true
share_decoder_embeddings: true
EOF
} > "$WORK/shared.yaml"

[ -f "$WORK/vocab.src" ] || "$VENV/bin/onmt_build_vocab" -config "$WORK/gru.yaml" -n_sample -1
[ -f "$WORK/vocab.shared" ] || "$VENV/bin/onmt_build_vocab" -config "$WORK/shared.yaml" \
    -n_sample -1
for model in $MODELS; do
    "$VENV/bin/onmt_train" -config "$WORK/$model.yaml"
    # Without the optimizer state (not needed to translate or convert): 1/3 of the size.
    "$VENV/bin/python" -c "import sys, torch
checkpoint = torch.load(sys.argv[1], map_location='cpu', weights_only=False)
checkpoint.pop('optim', None)
torch.save(checkpoint, sys.argv[2])" "$WORK/${model}_step_2000.pt" "$OUT/$model.pt"
    "$VENV/bin/onmt_translate" -model "$OUT/$model.pt" -src "$WORK/src-test.txt" \
        -output "$OUT/$model.beam4.txt" -beam_size 4 -batch_size 1 -gpu -1
    "$VENV/bin/onmt_translate" -model "$OUT/$model.pt" -src "$WORK/src-test.txt" \
        -output "$OUT/$model.greedy.txt" -beam_size 1 -batch_size 1 -gpu -1
done
cp "$WORK/spm.model" "$WORK/src-test.txt" "$WORK/raw-test.tsv" "$OUT/"
"$VENV/bin/pip" freeze > "$OUT/versions.txt"
ls -l "$OUT"
