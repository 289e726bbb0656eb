import pytest
import torch

from custom_nets.blocks import DynamicLayerFusion, GaussianSpectrumRefinement, split_layers
from custom_nets.nets import HiMix
from custom_nets.nets.himix import HiMixDecoderStage

# the network of variant="paper" (the authors' code's decoder, the default, is tested in tests/test_himix_variants.py)
TINY = dict(in_channels=1, backbone_kwargs={"depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128)},
            text_hidden_size=32, text_num_layers=4, max_text_tokens=32, num_heads=2, variant="paper")


def _text(b=2, length=9, layers=4, width=32):
    return torch.randn(b, layers, length, width), torch.ones(b, length, dtype=torch.long)


def test_tiny_shapes_and_gradients():
    torch.manual_seed(0)
    net = HiMix(**TINY)
    hidden, mask = _text()
    out = net(torch.randn(2, 1, 64, 64), hidden, mask)
    assert out.shape == (2, 1, 64, 64)
    out.mean().backward()
    no_grad = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []


@pytest.mark.slow
def test_full_size_shapes_gradients_and_parameter_count():
    torch.manual_seed(0)
    net = HiMix(variant="paper")  # ConvNeXt-Tiny, 768-wide, 12-layer text
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert abs(trainable / 44.7e6 - 1) < 0.15, trainable  # the paper's 44.7 M
    hidden, mask = _text(b=1, length=24, layers=12, width=768)
    out = net(torch.randn(1, 3, 224, 224), hidden, mask)
    assert out.shape == (1, 1, 224, 224)
    out.mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("projected_tokens", [24, None])
def test_padding_does_not_change_output(projected_tokens):
    torch.manual_seed(0)
    net = HiMix(**{**TINY, "projected_tokens": projected_tokens}).eval()
    hidden, _ = _text(b=1, length=7)
    padded = torch.cat([hidden, torch.randn(1, 4, 5, 32)], dim=2)  # padding positions hold garbage on purpose
    mask_short = torch.ones(1, 7, dtype=torch.long)
    mask_long = torch.cat([mask_short, torch.zeros(1, 5, dtype=torch.long)], 1)
    image = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        a = net(image, hidden, mask_short)
        b = net(image, padded, mask_long)
    assert torch.allclose(a, b, atol=1e-5)


def test_text_changes_output_and_null_text_path():
    torch.manual_seed(0)
    net = HiMix(**TINY).eval()
    image = torch.randn(2, 1, 64, 64)
    h1, m1 = _text()
    h2 = torch.randn_like(h1)
    with torch.no_grad():
        assert not torch.allclose(net(image, h1, m1), net(image, h2, m1))
        no_text = net(image)
        dropped = net(image, h1, torch.zeros_like(m1))  # all-zero mask rows = no text
    assert no_text.shape == (2, 1, 64, 64)
    assert torch.allclose(no_text, dropped, atol=1e-5)


def test_ablation_switches_change_the_module_graph():
    full = HiMix(**TINY)
    no_dlfm = HiMix(**{**TINY, "use_dlfm": False})
    no_asrm = HiMix(**{**TINY, "use_asrm": False})
    neither = HiMix(**{**TINY, "use_dlfm": False, "use_asrm": False})
    assert isinstance(full.layer_fusion, DynamicLayerFusion) and no_dlfm.layer_fusion is None
    assert all(isinstance(s.asrm, GaussianSpectrumRefinement) for s in full.stages)
    assert all(isinstance(s.asrm, torch.nn.Identity) for s in no_asrm.stages)
    assert neither.layer_fusion is None and all(isinstance(s.asrm, torch.nn.Identity) for s in neither.stages)
    # without DLFM only the last text layer matters
    torch.manual_seed(0)
    net = HiMix(**{**TINY, "use_dlfm": False}).eval()
    h, m = _text(b=1)
    h2 = h.clone()
    h2[:, :-1] = torch.randn_like(h2[:, :-1])
    image = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(image, h, m), net(image, h2, m), atol=1e-6)


def test_dlfm_groups_and_weights():
    assert split_layers(12, 3) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert split_layers(6, 3) == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ValueError):
        split_layers(2, 3)
    dlfm = DynamicLayerFusion(num_layers=4, num_groups=2, context_input_size=8)
    hidden = torch.arange(4.0)[None, :, None, None].expand(1, 4, 3, 8)  # layer j holds the value j
    t1, t2 = dlfm(hidden, torch.ones(1, 3))
    assert torch.allclose(t1, torch.full_like(t1, 0.5)) and torch.allclose(t2, torch.full_like(t2, 2.5))  # equal weights at init


def test_asrm_matches_equation_3():
    asrm = GaussianSpectrumRefinement(init_sigma=0.1)
    x = torch.randn(1, 2, 8, 8)
    g = asrm.gaussian(8, 8, x.device)
    expected = torch.fft.ifft2(torch.fft.fft2(x) * g).real + x
    assert torch.allclose(asrm(x), expected, atol=1e-5)
    assert g[0, 0] == 1 and g.min() < 1  # the DC term passes unchanged, higher frequencies are damped


def test_paper_decoder_stage_refuses_a_width_its_position_code_cannot_fill():
    with pytest.raises(ValueError, match="in_channels must be a multiple of 4"):  # when built, not in forward
        HiMixDecoderStage(2, in_channels=6, skip_channels=4, context_input_size=8, max_text_tokens=5,
                          projected_tokens=None, num_heads=2, use_asrm=False, dropout_rate=0.0)
