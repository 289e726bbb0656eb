"""Unit tests of the blocks in ``custom_nets.blocks``, one block at a time, on tiny hand-made tensors.

Every masking test has a control: the same change at positions the mask keeps *does* change the output, so
a block that ignored its mask would fail the test.
"""

import pytest
import torch

from custom_nets.blocks import (
    DynamicLayerFusion,
    EfficientChannelAttention,
    GaussianSpectrumRefinement,
    SpatialAttention,
    TextCrossAttention,
    TextGuidedAttentionLayer,
    TextTokenProjection,
    fill_missing_text,
    sinusoidal_2d,
    split_layers,
)


def _mask(b: int, length: int, valid: int) -> torch.Tensor:
    """(b, length) long mask, the first ``valid`` tokens set."""
    mask = torch.zeros(b, length, dtype=torch.long)
    mask[:, :valid] = 1
    return mask


def _garbage_after(text: torch.Tensor, valid: int, dim: int = 1) -> torch.Tensor:
    """A copy of ``text`` with new random values at positions >= ``valid`` along ``dim`` (the padding)."""
    out = text.clone()
    index = [slice(None)] * text.ndim
    index[dim] = slice(valid, None)
    out[tuple(index)] = torch.randn_like(out[tuple(index)]) * 10
    return out


def _assert_all_parameters_get_gradients(module: torch.nn.Module, out: torch.Tensor) -> None:
    (out * torch.randn_like(out)).sum().backward()  # random weights: no symmetric cancellation
    missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


# ---- TextCrossAttention (TAMISeg Eq. 8) ----

def _cma(**kw) -> TextCrossAttention:
    torch.manual_seed(0)
    return TextCrossAttention(**{"hidden_size": 16, "context_input_size": 12, "num_heads": 2, **kw}).eval()


def test_cross_attention_widths_follow_monai_names():
    cma = _cma(dropout_rate=0.25)
    assert cma.attn.embed_dim == 16 and cma.attn.kdim == cma.attn.vdim == 12  # queries visual, keys/values text
    assert cma.attn.dropout == 0.25 and cma.norm.normalized_shape == (16,)
    out = cma(torch.randn(2, 16, 4, 6), torch.randn(2, 5, 12), torch.ones(2, 5))
    assert out.shape == (2, 16, 4, 6)


@pytest.mark.parametrize("mask_dtype", [torch.long, torch.float32, torch.bool])
def test_cross_attention_ignores_padded_tokens(mask_dtype):
    cma = _cma()
    feature, text = torch.randn(2, 16, 4, 4), torch.randn(2, 7, 12)
    mask = _mask(2, 7, valid=4).to(mask_dtype)
    garbage = _garbage_after(text, 4)
    with torch.no_grad():
        a, b = cma(feature, text, mask), cma(feature, garbage, mask)
        # control: the same change is seen when those tokens are not masked
        ones = torch.ones_like(mask)
        c, d = cma(feature, text, ones), cma(feature, garbage, ones)
        # and the padded sentence gives what the short sentence gives
        short = cma(feature, text[:, :4], torch.ones(2, 4, dtype=mask_dtype))
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(c, d, atol=1e-3)
    assert torch.allclose(a, short, atol=1e-5)


def test_cross_attention_text_changes_output_and_residual_keeps_feature():
    cma = _cma()
    feature = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        a = cma(feature, torch.randn(1, 5, 12), torch.ones(1, 5))
        b = cma(feature, torch.randn(1, 5, 12), torch.ones(1, 5))
        torch.nn.init.zeros_(cma.attn.out_proj.weight)
        torch.nn.init.zeros_(cma.attn.out_proj.bias)
        assert torch.equal(cma(feature, torch.randn(1, 5, 12), torch.ones(1, 5)), feature)  # ft = f + W_o Attn
    assert not torch.allclose(a, b, atol=1e-4)


def test_cross_attention_position_code_tells_positions_apart():
    feature = torch.randn(1, 16, 1, 1).expand(1, 16, 3, 3).contiguous()  # the same vector everywhere
    text, mask = torch.randn(1, 5, 12), torch.ones(1, 5)
    with torch.no_grad():
        with_pos = _cma()(feature, text, mask).flatten(2)
        without = _cma(positional=False)(feature, text, mask).flatten(2)
    assert torch.allclose(without, without[..., :1].expand_as(without), atol=1e-6)  # blind to place
    assert not torch.allclose(with_pos, with_pos[..., :1].expand_as(with_pos), atol=1e-4)


def test_cross_attention_gradients():
    cma = _cma().train()
    feature = torch.randn(2, 16, 4, 4, requires_grad=True)
    text = torch.randn(2, 5, 12, requires_grad=True)
    _assert_all_parameters_get_gradients(cma, cma(feature, text, _mask(2, 5, 3)))
    assert feature.grad.abs().sum() > 0 and text.grad[:, :3].abs().sum() > 0
    assert torch.equal(text.grad[:, 3:], torch.zeros_like(text.grad[:, 3:]))  # nothing flows to padding


def test_cross_attention_bad_shapes():
    cma = _cma()
    feature, text, mask = torch.randn(2, 16, 4, 4), torch.randn(2, 5, 12), torch.ones(2, 5)
    with pytest.raises(ValueError, match=r"feature must be \(B, 16, H, W\)"):
        cma(torch.randn(2, 8, 4, 4), text, mask)
    with pytest.raises(ValueError, match=r"feature must be"):
        cma(torch.randn(16, 4, 4), text, mask)
    with pytest.raises(ValueError, match=r"text must be \(2, L, 12\)"):
        cma(feature, torch.randn(2, 5, 16), mask)
    with pytest.raises(ValueError, match=r"text must be"):
        cma(feature, torch.randn(3, 5, 12), torch.ones(3, 5))
    with pytest.raises(ValueError, match="text_mask must be"):
        cma(feature, text, torch.ones(2, 6))
    with pytest.raises(ValueError, match="hidden_size must be a multiple of 4"):  # refused when built
        TextCrossAttention(hidden_size=6, context_input_size=12, num_heads=2)
    plain = TextCrossAttention(hidden_size=6, context_input_size=12, num_heads=2, positional=False)
    assert plain(torch.randn(1, 6, 2, 2), text[:1], mask[:1]).shape == (1, 6, 2, 2)  # no code, any width


# ---- TextTokenProjection (HiMix Eq. 2) ----

def _projection(projected_tokens) -> TextTokenProjection:
    torch.manual_seed(0)
    return TextTokenProjection(hidden_size=16, context_input_size=12, max_tokens=10, projected_tokens=projected_tokens)


@pytest.mark.parametrize("projected_tokens", [4, None])
def test_token_projection_shapes(projected_tokens):
    proj = _projection(projected_tokens)
    assert (proj.linear.in_features, proj.linear.out_features) == (12, 16)  # W_t: D -> C
    tokens, mask = proj(torch.randn(2, 7, 12), _mask(2, 7, 5))
    assert tokens.shape == (2, projected_tokens or 7, 16) and mask.shape == tokens.shape[:2]
    if projected_tokens:
        assert torch.equal(mask, torch.ones_like(mask))  # L' mixed tokens, nothing left to mask
    else:
        assert torch.equal(mask, _mask(2, 7, 5))  # the caller's mask, passed on
    assert (tokens >= 0).all()  # ReLU


@pytest.mark.parametrize("projected_tokens", [4, None])
def test_token_projection_ignores_padded_tokens(projected_tokens):
    proj = _projection(projected_tokens)
    text, mask = torch.randn(2, 8, 12), _mask(2, 8, 5)
    garbage = _garbage_after(text, 5)
    with torch.no_grad():
        a, _ = proj(text, mask)
        b, _ = proj(garbage, mask)
        short, _ = proj(text[:, :5], torch.ones(2, 5))
        ones = torch.ones_like(mask)
        c, _ = proj(text, ones)
        d, _ = proj(garbage, ones)
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(c, d, atol=1e-3)  # control: unmasked, the same change shows
    if projected_tokens:
        assert torch.allclose(a, short, atol=1e-6)  # any padding length gives the same L' tokens
    else:
        assert torch.allclose(a[:, :5], short, atol=1e-6) and torch.equal(a[:, 5:], torch.zeros_like(a[:, 5:]))


@pytest.mark.parametrize("projected_tokens", [4, None])
def test_token_projection_gradients(projected_tokens):
    proj = _projection(projected_tokens)
    tokens, _ = proj(torch.randn(2, 7, 12), _mask(2, 7, 5))
    _assert_all_parameters_get_gradients(proj, tokens)


def test_token_projection_bad_shapes():
    proj = _projection(4)
    with pytest.raises(ValueError, match="at most 10"):
        proj(torch.randn(1, 11, 12), torch.ones(1, 11))
    with pytest.raises(ValueError, match=r"text must be \(B, L, 12\)"):
        proj(torch.randn(1, 5, 16), torch.ones(1, 5))
    with pytest.raises(ValueError, match="mask must be"):
        proj(torch.randn(1, 5, 12), torch.ones(1, 4))


# ---- TextGuidedAttentionLayer (HiMix Eqs. 4-6) ----

def _layer(**kw) -> TextGuidedAttentionLayer:
    torch.manual_seed(0)
    return TextGuidedAttentionLayer(**{"hidden_size": 16, "num_heads": 2, **kw}).eval()


def test_guided_attention_shapes_and_dropout_rate():
    layer = _layer(mlp_ratio=2.0, dropout_rate=0.25)
    assert layer.cross_attn.embed_dim == layer.self_attn.embed_dim == 16
    assert layer.cross_attn.dropout == layer.self_attn.dropout == 0.25
    assert layer.mlp.linear1.out_features == 32 and layer.mlp.drop1.p == 0.25
    out = layer(torch.randn(2, 12, 16), torch.randn(2, 5, 16), torch.ones(2, 5), sinusoidal_2d(3, 4, 16))
    assert out.shape == (2, 12, 16)


def test_guided_attention_ignores_padded_tokens():
    layer = _layer()
    visual, text, pos = torch.randn(2, 12, 16), torch.randn(2, 7, 16), sinusoidal_2d(3, 4, 16)
    mask = _mask(2, 7, 3)
    garbage = _garbage_after(text, 3)
    with torch.no_grad():
        a, b = layer(visual, text, mask, pos), layer(visual, garbage, mask, pos)
        ones = torch.ones_like(mask)
        c, d = layer(visual, text, ones, pos), layer(visual, garbage, ones, pos)
        short = layer(visual, text[:, :3], torch.ones(2, 3), pos)
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(c, d, atol=1e-4)
    assert torch.allclose(a, short, atol=1e-5)


def test_guided_attention_residual_scales():
    layer = _layer()
    visual, text, pos = torch.randn(1, 12, 16), torch.randn(1, 5, 16), sinusoidal_2d(3, 4, 16)
    with torch.no_grad():
        assert not torch.allclose(layer(visual, text, torch.ones(1, 5), pos), visual, atol=1e-3)
        for beta in (layer.beta_ca, layer.beta_sa, layer.beta_mlp):
            beta.zero_()
        assert torch.equal(layer(visual, text, torch.ones(1, 5), pos), visual)  # every branch is scaled by its beta


def test_guided_attention_gradients():
    layer = _layer().train()
    out = layer(torch.randn(2, 12, 16), torch.randn(2, 5, 16), _mask(2, 5, 4), sinusoidal_2d(3, 4, 16))
    _assert_all_parameters_get_gradients(layer, out)


def test_guided_attention_bad_shapes():
    layer = _layer()
    visual, text, mask, pos = torch.randn(2, 12, 16), torch.randn(2, 5, 16), torch.ones(2, 5), sinusoidal_2d(3, 4, 16)
    with pytest.raises(ValueError, match=r"visual must be \(B, N, 16\)"):
        layer(torch.randn(2, 12, 8), text, mask, pos)
    with pytest.raises(ValueError, match="projected to the visual width"):
        layer(visual, torch.randn(2, 5, 12), mask, pos)  # unprojected text
    with pytest.raises(ValueError, match="text_mask must be"):
        layer(visual, text, torch.ones(2, 4), pos)
    with pytest.raises(ValueError, match=r"pos must be \(N, C\)"):
        layer(visual, text, mask, sinusoidal_2d(4, 4, 16))


# ---- fill_missing_text: the null-text path ----

def test_fill_missing_text_without_text():
    null = torch.randn(8)
    hidden, mask = fill_missing_text(null, 3, None, None, num_layers=2)
    assert hidden.shape == (3, 2, 1, 8) and torch.equal(mask, torch.ones(3, 1, dtype=torch.long))
    assert torch.equal(hidden, null.expand(3, 2, 1, 8))


def test_fill_missing_text_replaces_only_empty_rows():
    null = torch.randn(8)
    text = torch.randn(3, 2, 5, 8)
    mask = _mask(3, 5, 4)
    mask[1] = 0  # sample 1 has no sentence
    hidden, filled = fill_missing_text(null, 3, text, mask, num_layers=2)
    assert torch.equal(hidden[[0, 2]], text[[0, 2]]) and torch.equal(filled[[0, 2]], mask[[0, 2]])
    assert torch.equal(filled[1], torch.tensor([1, 0, 0, 0, 0]))
    assert torch.equal(hidden[1, :, 0], null.expand(2, 8)) and torch.equal(hidden[1, :, 1:], torch.zeros(2, 4, 8))
    # no mask: every token is valid, nothing replaced
    hidden, filled = fill_missing_text(null, 3, text, None, num_layers=2)
    assert torch.equal(hidden, text) and torch.equal(filled, torch.ones(3, 5, dtype=torch.long))


def test_null_text_token_gets_gradients():
    null = torch.nn.Parameter(torch.randn(12))
    hidden, mask = fill_missing_text(null, 2, None, None, num_layers=1)
    _cma().train()(torch.randn(2, 16, 2, 2), hidden[:, -1], mask).pow(2).sum().backward()
    assert null.grad is not None and null.grad.abs().sum() > 0


def test_sinusoidal_2d():
    code = sinusoidal_2d(3, 4, 8)
    assert code.shape == (12, 8)
    assert torch.unique(code, dim=0).shape[0] == 12  # every position has its own code
    grid = code.reshape(3, 4, 8)
    assert torch.equal(grid[:, :1, :4].expand(3, 4, 4), grid[..., :4])  # first half: the row only
    assert torch.equal(grid[:1, :, 4:].expand(3, 4, 4), grid[..., 4:])  # second half: the column only
    with pytest.raises(ValueError, match="multiple of 4"):
        sinusoidal_2d(2, 2, 6)


# ---- DynamicLayerFusion (HiMix Eq. 1) ----

def _dlfm() -> DynamicLayerFusion:
    torch.manual_seed(0)
    dlfm = DynamicLayerFusion(num_layers=6, num_groups=3, context_input_size=8)
    torch.nn.init.normal_(dlfm.gate.weight)  # a non-zero gate, so the weights depend on the sentence
    return dlfm


def test_layer_fusion_shapes_and_softmax_weights():
    dlfm = _dlfm()
    hidden, mask = torch.randn(2, 6, 5, 8), _mask(2, 5, 4)
    out = dlfm(hidden, mask)
    assert [t.shape for t in out] == [(2, 5, 8)] * 3
    logits = dlfm.layer_logits(hidden, mask)
    for group, t in zip(split_layers(6, 3), out):
        w = torch.softmax(logits[:, group], 1)
        assert torch.allclose(t, (w[:, :, None, None] * hidden[:, group]).sum(1), atol=1e-6)


def test_layer_fusion_ignores_padded_tokens():
    dlfm = _dlfm()
    hidden, mask = torch.randn(2, 6, 7, 8), _mask(2, 7, 4)
    garbage = _garbage_after(hidden, 4, dim=2)
    with torch.no_grad():
        a, b = dlfm(hidden, mask), dlfm(garbage, mask)
        ones = torch.ones_like(mask)
        c, d = dlfm(hidden, ones), dlfm(garbage, ones)
    # the valid tokens' embeddings do not depend on the padding (padded positions stay padding downstream)
    assert all(torch.allclose(x[:, :4], y[:, :4], atol=1e-6) for x, y in zip(a, b))
    assert not all(torch.allclose(x[:, :4], y[:, :4], atol=1e-4) for x, y in zip(c, d))


def test_layer_fusion_gradients():
    dlfm = DynamicLayerFusion(num_layers=6, num_groups=3, context_input_size=8)  # zero gate, as initialised
    out = torch.stack(dlfm(torch.randn(2, 6, 5, 8), _mask(2, 5, 4)))
    _assert_all_parameters_get_gradients(dlfm, out)


def test_layer_fusion_bad_shapes():
    dlfm = _dlfm()
    with pytest.raises(ValueError, match=r"text_hidden must be \(B, 6, L, 8\)"):
        dlfm(torch.randn(2, 4, 5, 8), torch.ones(2, 5))  # 4 layers, not 6
    with pytest.raises(ValueError, match=r"text_hidden must be"):
        dlfm(torch.randn(2, 6, 5, 12), torch.ones(2, 5))
    with pytest.raises(ValueError, match="text_mask must be"):
        dlfm(torch.randn(2, 6, 5, 8), torch.ones(2, 4))
    with pytest.raises(ValueError, match="cannot split"):
        DynamicLayerFusion(num_layers=2, num_groups=3, context_input_size=8)


# ---- GaussianSpectrumRefinement (HiMix Eq. 3) ----

def test_spectrum_refinement_on_known_frequencies():
    asrm = GaussianSpectrumRefinement(init_sigma=0.25)
    constant = torch.full((1, 2, 6, 6), 3.0)
    assert torch.allclose(asrm(constant), 2 * constant, atol=1e-5)  # DC passes whole, plus the residual
    checker = (torch.arange(6)[:, None] + torch.arange(6)[None, :]) % 2 * 2.0 - 1  # frequency (0.5, 0.5)
    checker = checker.expand(1, 2, 6, 6)
    gain = 1 + torch.exp(torch.tensor(-0.5 / (2 * 0.25**2)))  # g = exp(-(u^2 + v^2) / (2 sigma^2)) = e^-4
    assert torch.allclose(asrm(checker), gain * checker, atol=1e-5)


def test_spectrum_refinement_shapes_dtype_gradients():
    asrm = GaussianSpectrumRefinement()
    assert asrm(torch.randn(2, 3, 5, 7, dtype=torch.float64)).dtype == torch.float64
    out = asrm(torch.randn(2, 3, 5, 7))
    assert out.shape == (2, 3, 5, 7)
    _assert_all_parameters_get_gradients(asrm, out)
    with pytest.raises(ValueError, match="init_sigma must be > 0"):
        GaussianSpectrumRefinement(init_sigma=0)


# ---- EfficientChannelAttention and SpatialAttention (TAMISeg Eq. 11) ----

@pytest.mark.parametrize("in_channels,kernel", [(16, 3), (64, 3), (256, 5)])
def test_eca_kernel_rule_and_channel_weighting(in_channels, kernel):
    torch.manual_seed(0)
    eca = EfficientChannelAttention(in_channels=in_channels)
    assert eca.conv.kernel_size == (kernel,)  # |log2(C) / 2 + 1 / 2|, made odd
    x = torch.rand(2, in_channels, 3, 3) + 0.5
    out = eca(x)
    assert out.shape == x.shape
    w = out / x  # one weight per channel, the same at every position, in (0, 1)
    assert torch.allclose(w, w[..., :1, :1].expand_as(w), atol=1e-6) and ((w > 0) & (w < 1)).all()
    _assert_all_parameters_get_gradients(eca, out)


def test_spatial_attention_position_weighting():
    torch.manual_seed(0)
    sa = SpatialAttention(kernel_sizes=(3, 7))
    assert [c.kernel_size for c in sa.convs] == [(3, 3), (7, 7)]
    x = torch.rand(2, 4, 6, 6) + 0.5
    out = sa(x)
    maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
    assert torch.allclose(out, x * torch.sigmoid(sa.convs[0](maps) + sa.convs[1](maps)), atol=1e-6)
    w = out / x  # one weight per position, the same in every channel
    assert torch.allclose(w, w[:, :1].expand_as(w), atol=1e-6)
    _assert_all_parameters_get_gradients(sa, out)
    for bad in ((), (4,), (3, 6)):
        with pytest.raises(ValueError, match="odd and non-empty"):
            SpatialAttention(kernel_sizes=bad)
