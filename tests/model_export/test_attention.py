import pytest
import torch

from model_export.model.attention import ATTENTIONS, build_attention


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_weights_are_a_distribution_over_real_tokens(kind: str) -> None:
    torch.manual_seed(0)
    attention = build_attention(kind, query_dim=12, value_dim=12, attn_dim=6)
    values = torch.randn(3, 5, 12)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    keys = attention.project_keys(values)
    context, weights = attention(torch.randn(3, 12), keys, values, mask)

    assert weights.shape == (3, 5) and context.shape == (3, 12)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    assert (weights[~mask] == 0).all()
    assert weights[2, 0] == 1.0  # a single real token takes all the weight
    torch.testing.assert_close(context[2], values[2, 0])


def test_luong_dot_requires_matching_sizes() -> None:
    with pytest.raises(ValueError, match="luong-dot needs decoder hidden"):
        build_attention("luong-dot", query_dim=8, value_dim=12, attn_dim=4)


def test_unknown_attention_lists_valid_options() -> None:
    with pytest.raises(ValueError, match="valid are bahdanau, luong-general, luong-dot"):
        build_attention("foo", 8, 8, 8)
