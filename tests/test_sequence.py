"""Attention, Transformer layers and the sequence models: what the papers say they compute.

The shared layers are checked against PyTorch's own implementations of the same equations
(given the same weights); the models for the properties their papers rest on: GPT's
causality, BERT's masked positions, the Transformer's teacher forcing being its own
step-by-step decoding, and the text configurations' outputs.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import esszoo
from esszoo.errors import ModelError
from esszoo.layers.attention import AdditiveAttention, MultiHeadAttention, sinusoidal_positions
from esszoo.layers.transformer import TransformerDecoderLayer, TransformerEncoderLayer

WIDTH, HEADS = 16, 4


def torch_attention(ours: MultiHeadAttention) -> nn.MultiheadAttention:
    reference = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(
            torch.cat([ours.query.weight, ours.key.weight, ours.value.weight])
        )
        reference.in_proj_bias.copy_(torch.cat([ours.query.bias, ours.key.bias, ours.value.bias]))
        reference.out_proj.load_state_dict(ours.out.state_dict())
    return reference


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_is_torchs_given_the_same_weights(causal):
    torch.manual_seed(0)
    ours = MultiHeadAttention(WIDTH, HEADS).eval()
    x = torch.randn(2, 7, WIDTH)
    mask = torch.ones(7, 7, dtype=torch.bool).triu(1) if causal else None  # True: hidden
    expected, _ = torch_attention(ours)(x, x, x, attn_mask=mask, need_weights=False)
    torch.testing.assert_close(ours(x, causal=causal), expected)


def test_attention_ignores_padded_keys_and_attends_across_sequences():
    torch.manual_seed(0)
    ours = MultiHeadAttention(WIDTH, HEADS).eval()
    query, memory = torch.randn(2, 3, WIDTH), torch.randn(2, 5, WIDTH)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    expected, _ = torch_attention(ours)(
        query, memory, memory, key_padding_mask=padding, need_weights=False
    )
    got = ours(query, memory, memory, padding=padding)
    torch.testing.assert_close(got, expected)
    changed = memory.clone()
    changed[1, 3:] += 10.0  # what a padded key holds does not matter
    torch.testing.assert_close(ours(query, changed, changed, padding=padding)[1], got[1])


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_and_decoder_layers_are_torchs_given_the_same_weights(norm_first):
    torch.manual_seed(0)
    encoder = TransformerEncoderLayer(WIDTH, HEADS, 32, dropout=0.0, norm_first=norm_first)
    decoder = TransformerDecoderLayer(WIDTH, HEADS, 32, dropout=0.0, norm_first=norm_first)
    kwargs = dict(dropout=0.0, batch_first=True, norm_first=norm_first)
    torch_encoder = nn.TransformerEncoderLayer(WIDTH, HEADS, 32, **kwargs)
    torch_decoder = nn.TransformerDecoderLayer(WIDTH, HEADS, 32, **kwargs)
    torch_encoder.self_attn = torch_attention(encoder.attention)
    torch_decoder.self_attn = torch_attention(decoder.attention)
    torch_decoder.multihead_attn = torch_attention(decoder.cross_attention)
    for ours, theirs in ((encoder, torch_encoder), (decoder, torch_decoder)):
        theirs.linear1.load_state_dict(ours.feedforward.expand.state_dict())
        theirs.linear2.load_state_dict(ours.feedforward.contract.state_dict())
        theirs.norm1.load_state_dict(ours.attention_norm.state_dict())
    torch_encoder.norm2.load_state_dict(encoder.feedforward_norm.state_dict())
    torch_decoder.norm2.load_state_dict(decoder.cross_attention_norm.state_dict())
    torch_decoder.norm3.load_state_dict(decoder.feedforward_norm.state_dict())
    x, memory = torch.randn(2, 6, WIDTH), torch.randn(2, 9, WIDTH)
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval()(x), torch_encoder.eval()(x))
        torch.testing.assert_close(
            decoder.eval()(x, memory, causal=True),
            torch_decoder.eval()(x, memory, tgt_mask=causal),
        )


def test_decoding_one_step_at_a_time_from_cached_keys_is_the_whole_causal_pass():
    torch.manual_seed(0)
    layer = TransformerDecoderLayer(16, 4, 32, dropout=0.0).eval()
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    cache: dict = {}
    steps = [layer(x[:, t : t + 1], memory, cache=cache) for t in range(5)]
    torch.testing.assert_close(torch.cat(steps, 1), layer(x, memory))
    assert cache["self"]["key"].shape[2] == 5 and cache["memory"]["key"].shape[2] == 7


def test_additive_attention_weights_are_a_distribution_over_the_encoder_states():
    torch.manual_seed(0)
    attention = AdditiveAttention(query_width=5, key_width=7, width=9)
    query, keys = torch.randn(3, 5), torch.randn(3, 11, 7)
    context, weights = attention(query, keys)
    assert weights.shape == (3, 11) and (weights > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    torch.testing.assert_close(context, torch.einsum("bt,btk->bk", weights, keys))
    # e_ij = v_a^T tanh(W_a s + U_a h_j), written out
    energy = attention.score(torch.tanh(attention.query(query)[:, None] + attention.key(keys)))
    torch.testing.assert_close(weights, energy.squeeze(-1).softmax(-1))


def test_sinusoidal_positions_follow_section_3_5():
    encoding = sinusoidal_positions(50, 8)
    for position, i in [(0, 0), (7, 1), (49, 3)]:
        angle = position / 10000 ** (2 * i / 8)
        assert encoding[position, 2 * i] == pytest.approx(math.sin(angle), abs=1e-6)
        assert encoding[position, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-6)


def small(name: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return esszoo.create_model(name, **(esszoo.model_card(name).small | overrides)).eval()


def test_gpt_forecasts_from_each_position_see_only_the_past():
    gpt = small("gpt")
    x = torch.randn(2, 8, 3)
    later = x.clone()
    later[:, 5:] += 1.0  # change the last three steps
    with torch.no_grad():
        before, after = gpt(x, every_position=True), gpt(later, every_position=True)
        assert before.shape == (2, 8, 4, 2)
        torch.testing.assert_close(after[:, :5], before[:, :5])  # positions 0-4: unchanged
        assert not torch.allclose(after[:, 5:], before[:, 5:])
        torch.testing.assert_close(gpt(x), before[:, -1])  # the forecast: the last position


def test_bert_fills_masked_steps_from_both_sides():
    bert = small("bert")
    x = torch.randn(2, 8, 3)
    hidden = torch.zeros(2, 8, dtype=torch.bool)
    hidden[:, 2:4] = True  # a masked span
    changed = x.clone()
    changed[:, 2:4] += 5.0  # what is masked is not seen
    with torch.no_grad():
        every = bert(x, hidden=hidden, every_position=True)
        assert every.shape == (2, 8 + 4, 2)
        torch.testing.assert_close(bert(changed, hidden=hidden, every_position=True), every)
        later = x.clone()
        later[:, 6:] += 1.0  # a later step informs the masked span (bidirectional)
        assert not torch.allclose(
            bert(later, hidden=hidden, every_position=True)[:, 2:4], every[:, 2:4]
        )
        torch.testing.assert_close(bert(x, hidden=hidden), every[:, 8:])


@pytest.mark.parametrize("name", ["transformer", "seq2seq", "seq2seq_attention"])
def test_teacher_forcing_on_its_own_forecast_reproduces_it(name):
    """Teacher forcing reads the truth shifted right; fed the model's own forecast, it must
    give that forecast back, which holds only if no step sees the steps after it."""
    model = small(name)
    x = torch.randn(2, 8, 3)
    with torch.no_grad():
        forecast = model(x)
        assert forecast.shape == (2, 4, 2)
        torch.testing.assert_close(model(x, teacher=forecast), forecast)
        other = forecast.clone()
        other[:, 2:] += 1.0  # a later truth changes nothing before it
        torch.testing.assert_close(model(x, teacher=other)[:, :3], forecast[:, :3])


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "seq2seq", "seq2seq_attention"])
def test_recurrent_models_take_a_past_of_any_length(name):
    model = small(name)
    with torch.no_grad():
        for length in (1, 8, 50):
            assert model(torch.randn(2, length, 3)).shape == (2, 4, 2)


def test_the_text_configurations_give_logits_and_a_pooled_state():
    tokens = torch.randint(0, 50, (2, 6))
    gpt = small("gpt", in_channels=None, out_channels=None, vocab_size=50)
    bert = small("bert", in_channels=None, out_channels=None, vocab_size=50)
    transformer = small("transformer", in_channels=None, out_channels=None, vocab_size=50)
    seq2seq = small(
        "seq2seq", in_channels=None, out_channels=None, source_vocab=50, target_vocab=30
    )
    attention = small("seq2seq_attention", in_channels=None, out_channels=None, vocab_size=50)
    with torch.no_grad():
        assert gpt(tokens).shape == (2, 6, 50)
        states, pooled = bert(tokens)
        assert states.shape == (2, 6, 16) and pooled.shape == (2, 16)
        assert pooled.abs().max() <= 1  # tanh
        assert transformer(tokens, teacher=tokens[:, :4]).shape == (2, 4, 50)
        assert seq2seq(tokens, teacher=tokens[:, :4] % 30).shape == (2, 4, 30)
        assert attention(tokens, teacher=tokens[:, :4]).shape == (2, 4, 50)
    # the output layer is the token embedding (tied): one matrix, counted once
    assert gpt.embed.weight.numel() == 50 * 16 and not any(
        p.shape == (50, 16) for n, p in gpt.named_parameters() if n != "embed.weight"
    )


def test_a_window_longer_than_the_context_or_of_another_rank_is_one_clear_error():
    with pytest.raises(ModelError, match="at most 16 steps"):
        small("gpt")(torch.randn(1, 17, 3))
    with pytest.raises(ModelError, match="at most 12 steps"):  # 16 positions, 4 to forecast
        small("bert")(torch.randn(1, 13, 3))
    with pytest.raises(ModelError, match=r"takes series \(batch, time, channels\)"):
        small("transformer")(torch.randn(4, 3))
    with pytest.raises(ModelError, match="in_channels and out_channels"):
        esszoo.create_model("gpt", horizon=2)


def test_a_convlstm_cell_on_one_point_with_a_1x1_kernel_is_an_lstm_cell():
    from esszoo.models.sequence.convlstm import ConvLSTMCell

    torch.manual_seed(0)
    cell, lstm = ConvLSTMCell(3, 5, kernel=1), nn.LSTMCell(3, 5)
    with torch.no_grad():  # gates in PyTorch's order (i, f, g, o); no peepholes
        cell.gates.weight.copy_(torch.cat([lstm.weight_ih, lstm.weight_hh], 1)[..., None, None])
        cell.gates.bias.copy_(lstm.bias_ih + lstm.bias_hh)
    x, h, c = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 5)
    expected = lstm(x, (h, c))
    got = cell(x[..., None, None], (h[..., None, None], c[..., None, None]))
    for ours, theirs in zip(got, expected, strict=True):
        torch.testing.assert_close(ours[..., 0, 0], theirs)


def test_convlstm_forecasts_its_horizon_on_any_grid_from_its_states():
    model = small("convlstm", horizon=3)
    x = torch.randn(1, 2, 5, 11, 23)  # a patch of 2 does not divide 11 x 23: padded, cropped
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 2, 3, 11, 23)
        earlier = x.clone()
        earlier[:, :, 0] += 1.0  # the first frame read still shapes the forecast (the states)
        assert not torch.allclose(model(earlier), out)
