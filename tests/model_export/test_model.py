import torch

from model_export.model import ModelConfig, Seq2Seq
from model_export.model.encoder import reverse_padded

TINY = ModelConfig(vocab_size=40, emb_dim=8, enc_hidden=6, dec_hidden=10, attn_dim=5, dropout=0.0)


def test_reverse_padded_reverses_within_length_and_is_an_involution() -> None:
    x = torch.arange(8, dtype=torch.float).view(2, 4, 1)
    lengths = torch.tensor([4, 2])
    rev = reverse_padded(x, lengths)
    assert rev[0, :, 0].tolist() == [3, 2, 1, 0]
    assert rev[1, :, 0].tolist() == [5, 4, 6, 7]  # padding positions stay put
    torch.testing.assert_close(reverse_padded(rev, lengths), x)


def test_encoder_ignores_padding() -> None:
    torch.manual_seed(0)
    model = Seq2Seq(TINY).eval()
    ids = torch.tensor([[5, 6, 7]])
    padded = torch.tensor([[5, 6, 7, 0, 0]])
    out, init, keys = model.encode(ids, torch.tensor([3]))
    out_p, init_p, _ = model.encode(padded, torch.tensor([3]))
    assert out.shape == (1, 3, 12) and init.shape == (1, 10) and keys.shape == (1, 3, 5)
    torch.testing.assert_close(out_p[:, :3], out)
    torch.testing.assert_close(init_p, init)


def test_decode_step_shapes_and_attention_mask() -> None:
    torch.manual_seed(0)
    model = Seq2Seq(TINY).eval()
    ids = torch.tensor([[5, 6, 7, 8], [9, 3, 0, 0]])
    lengths = torch.tensor([4, 2])
    out, hidden, keys = model.encode(ids, lengths)
    log_probs, hidden, attention = model.decode_step(torch.tensor([2, 2]), hidden, out, keys,
                                                     ids != 0)
    assert log_probs.shape == (2, 40) and hidden.shape == (2, 10) and attention.shape == (2, 4)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2))
    assert (attention[1, 2:] == 0).all()


def test_teacher_forcing_matches_stepwise_decoding() -> None:
    torch.manual_seed(0)
    model = Seq2Seq(TINY).eval()
    ids, lengths = torch.tensor([[5, 6, 7, 3]]), torch.tensor([4])
    tgt = torch.tensor([[2, 11, 12]])
    forced = model(ids, lengths, tgt)
    out, hidden, keys = model.encode(ids, lengths)
    for t in range(3):
        log_probs, hidden, _ = model.decode_step(tgt[:, t], hidden, out, keys, ids != 0)
        torch.testing.assert_close(forced[:, t], log_probs)
