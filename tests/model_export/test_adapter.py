"""Bundling one's own PyTorch model through the adapter: the worked example is the encoder
and attention decoder of PyTorch's "NLP From Scratch: Translation with a Sequence to Sequence
Network and Attention" tutorial, classes copied as published, with a SentencePiece tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model_export.adapter import BundleSpec, ContractViolation, bundle_module
from model_export.corpus import load_split
from model_export.step_module import StepModule
from service.bundle import DecodingDefaults, SpecialTokens
from service.translator import DecodeOptions, Translator

FIXTURES = Path(__file__).parents[1] / "data" / "opennmt"
PAIRS = load_split(FIXTURES / "raw-test.tsv")[:40]
PAD, UNK, BOS, EOS = 0, 1, 2, 3  # the fixture SentencePiece model's ids
HIDDEN, VOCAB = 48, 1000


# --- the tutorial's classes, unchanged ---------------------------------------------------
class EncoderRNN(nn.Module):
    def __init__(self, input_size, hidden_size, dropout_p=0.1):  # type: ignore[no-untyped-def]
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, input):  # type: ignore[no-untyped-def]
        embedded = self.dropout(self.embedding(input))
        output, hidden = self.gru(embedded)
        return output, hidden


class BahdanauAttention(nn.Module):
    def __init__(self, hidden_size):  # type: ignore[no-untyped-def]
        super().__init__()
        self.Wa = nn.Linear(hidden_size, hidden_size)
        self.Ua = nn.Linear(hidden_size, hidden_size)
        self.Va = nn.Linear(hidden_size, 1)

    def forward(self, query, keys):  # type: ignore[no-untyped-def]
        scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys)))
        scores = scores.squeeze(2).unsqueeze(1)
        weights = F.softmax(scores, dim=-1)
        context = torch.bmm(weights, keys)
        return context, weights


class AttnDecoderRNN(nn.Module):
    def __init__(self, hidden_size, output_size, dropout_p=0.1):  # type: ignore[no-untyped-def]
        super().__init__()
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attention = BahdanauAttention(hidden_size)
        self.gru = nn.GRU(2 * hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, output_size)
        self.dropout = nn.Dropout(dropout_p)

    def forward_step(self, input, hidden, encoder_outputs):  # type: ignore[no-untyped-def]
        embedded = self.dropout(self.embedding(input))
        query = hidden.permute(1, 0, 2)
        context, attn_weights = self.attention(query, encoder_outputs)
        input_gru = torch.cat((embedded, context), dim=2)
        output, hidden = self.gru(input_gru, hidden)
        output = self.out(output)
        return output, hidden, attn_weights
# -------------------------------------------------------------------------------------------


class TutorialAdapter(StepModule):
    """The wrapper a user writes: the tutorial runs one unpadded sentence at a time, the
    service runs padded batches, so the wrapper takes each sentence's state at its own last
    position and masks padding out of the attention; everything else calls the tutorial's
    own layers."""

    def __init__(self, encoder: EncoderRNN, decoder: AttnDecoderRNN) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.pad_id, self.bos_id, self.src_vocab_size = PAD, BOS, VOCAB

    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        embedded = self.encoder.embedding(src_ids)
        h0 = embedded.new_zeros(1, src_ids.size(0), HIDDEN)  # keeps the batch axis dynamic
        outputs, _ = self.encoder.gru(embedded, h0)  # padding is after every real position
        last = (src_lengths - 1).view(-1, 1, 1).expand(-1, 1, HIDDEN)
        return outputs, outputs.gather(1, last).squeeze(1), self.decoder.attention.Ua(outputs)

    def decode_step(self, prev_tokens: torch.Tensor, hidden: torch.Tensor,
                    encoder_outputs: torch.Tensor, keys: torch.Tensor, src_mask: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        attention = self.decoder.attention
        scores = attention.Va(torch.tanh(attention.Wa(hidden).unsqueeze(1) + keys)).squeeze(2)
        weights = torch.softmax(scores.masked_fill(~src_mask, float("-inf")), dim=1)
        context = torch.bmm(weights.unsqueeze(1), encoder_outputs)
        embedded = self.decoder.embedding(prev_tokens).unsqueeze(1)
        output, next_hidden = self.decoder.gru(torch.cat([embedded, context], dim=2),
                                               hidden.unsqueeze(0))
        log_probs = torch.log_softmax(self.decoder.out(output.squeeze(1)), dim=-1)
        return log_probs, next_hidden.squeeze(0), weights


@pytest.fixture(scope="module")
def tutorial() -> tuple[EncoderRNN, AttnDecoderRNN]:
    torch.manual_seed(7)
    return EncoderRNN(VOCAB, HIDDEN).eval(), AttnDecoderRNN(HIDDEN, VOCAB).eval()


@pytest.fixture(scope="module")
def bundle(tutorial: tuple[EncoderRNN, AttnDecoderRNN], tmp_path_factory: pytest.TempPathFactory
           ) -> Path:
    out = tmp_path_factory.mktemp("tutorial")
    bundle_module(TutorialAdapter(*tutorial), out, BundleSpec(
        model_id="en-de-tutorial", source_lang="en", target_lang="de",
        special=SpecialTokens(pad=PAD, unk=UNK, bos=BOS, eos=EOS),
        tokenizer=FIXTURES / "spm.model", decoding=DecodingDefaults(length_penalty=0.0)),
        calibration=[s for s, _ in PAIRS], evaluation=PAIRS)
    return out


def tutorial_greedy(encoder: EncoderRNN, decoder: AttnDecoderRNN, ids: list[int],
                    steps: int) -> list[int]:
    """The tutorial's own decoding loop (``AttnDecoderRNN.forward``), one sentence."""
    with torch.no_grad():
        encoder_outputs, hidden = encoder(torch.tensor([ids]))
        token, out = torch.tensor([[BOS]]), []
        for _ in range(steps):
            output, hidden, _ = decoder.forward_step(token, hidden, encoder_outputs)
            token = output.topk(1)[1].squeeze(-1).detach()
            if int(token) == EOS:
                break
            out.append(int(token))
    return out


def test_one_call_exports_checks_and_bundles_both_variants(bundle: Path) -> None:
    translator = Translator(bundle, "fp32")
    m = translator.manifest
    assert sorted(m.variants) == ["fp32", "int8"]
    assert m.architecture.family == "custom" and m.architecture.dec_hidden == HIDDEN
    assert max(m.parity[k] for k in ("encoder", "log_probs", "attention", "hidden")) < 1e-4
    assert m.parity["greedy_test_mismatches"] == 0
    assert m.parity["greedy_test_sentences"] == len(PAIRS)
    assert "fp32_greedy" in m.metrics and "int8_beam4" in m.metrics


def test_served_greedy_equals_the_tutorials_own_decoding(
        bundle: Path, tutorial: tuple[EncoderRNN, AttnDecoderRNN]) -> None:
    translator = Translator(bundle, "fp32")
    rows = translator.prepare([s for s, _ in PAIRS])
    options = DecodeOptions(beam_size=1)
    served = translator.translate_running(rows, options)
    for row, t in zip(rows, served, strict=True):
        steps = translator.search(row, options).max_len
        assert t.best.token_ids == tutorial_greedy(*tutorial, row.ids, steps)


@pytest.mark.parametrize("flaw", ["batch statistics", "padding"])
def test_a_module_breaking_the_contract_is_refused_saying_how(
        tutorial: tuple[EncoderRNN, AttnDecoderRNN], tmp_path: Path, flaw: str) -> None:
    class BatchDependent(TutorialAdapter):  # each row normalized by the batch's mean
        def decode_step(self, *args: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            log_probs, hidden, weights = super().decode_step(*args)
            return log_probs - log_probs.mean(), hidden, weights

    class SeesPadding(TutorialAdapter):  # the tutorial's final state: after the padding
        def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            outputs, _, keys = super().encode(src_ids, src_lengths)
            return outputs, outputs[:, -1], keys

    broken = (BatchDependent if flaw == "batch statistics" else SeesPadding)(*tutorial)
    with pytest.raises(ContractViolation, match="alone" if flaw == "batch statistics"
                       else "padding"):
        bundle_module(broken, tmp_path, BundleSpec(
            model_id="broken", source_lang="en", target_lang="de",
            special=SpecialTokens(pad=PAD, unk=UNK, bos=BOS, eos=EOS),
            tokenizer=FIXTURES / "spm.model"))
