"""HiMix's two decoder variants: ``authors_code`` (the decoder of the authors' public code, ``JaeyoonSSim/HiMix``) and
``paper`` (the network as it was before the variants existed, unchanged), and the bundle's options for them
(``variant``, ``checkpoint_metric``).

The ``paper`` references below were recorded from the network before ``variant`` was added (same seed, same
inputs): the state_dict's keys and shapes (hashed) and the outputs.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from monai.bundle import ConfigParser
from monai.losses import DiceCELoss
from monai.networks.blocks import SubpixelUpsample, UnetBasicBlock, UnetOutBlock

from conftest import ROOT
from custom_nets.blocks import (
    DynamicLayerFusion,
    GaussianSpectrumRefinement,
    NyquistGaussianFilter,
    PrePostNormAttentionLayer,
    StaticLayerFusion,
    TokenMixProjection,
    sinusoidal_1d,
)
from custom_nets.nets import HiMix
from custom_nets.nets.himix import HiMixCodeDecoderStage, HiMixDecoderStage

CONFIGS = ROOT / "bundles" / "himix" / "configs"
#: the tiny settings of tests/test_himix.py
TINY = dict(in_channels=1, backbone_kwargs={"depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128)},
            text_hidden_size=32, text_num_layers=4, max_text_tokens=32, num_heads=2)

# --- recorded from the network before the variants (HiMix(**TINY) then; seed 0, inputs of _inputs()) -------------
PAPER_TINY_KEYS = (186, "dd0dc4f60b520a25632e906f0ff7d9d54d8fead9bcb43dbbd31b42c6e430524b")
PAPER_TINY_PARAMETERS = 789_081
PAPER_TINY_OUTPUT_SUM = 1370.161376953125
PAPER_TINY_OUTPUT_ABS_SUM = 1384.9549560546875
PAPER_TINY_OUTPUT_SAMPLES = ([0.18091075122356415, 0.18091075122356415, 0.17923395335674286, 0.1758803427219391],
                             [0.2153257131576538, 0.22373655438423157, 0.23214738070964813, 0.2405581772327423])
PAPER_FULL_KEYS = (312, "54ae4051e460b6c3cbf81295ccd836b442e31daec97050818289fc0cdb738e12")
PAPER_FULL_TRAINABLE = 48_429_601


def _key_digest(net: torch.nn.Module) -> tuple[int, str]:
    state = net.state_dict()
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in state.items())
    return len(state), hashlib.sha256(text.encode()).hexdigest()


def _build(**kwargs) -> HiMix:
    torch.manual_seed(0)
    return HiMix(**{**TINY, **kwargs}).eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    image = torch.randn(2, 1, 64, 64, generator=g)
    hidden = torch.randn(2, 4, 9, 32, generator=g)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    return image, hidden, mask


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# --- both variants ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["authors_code", "paper"])
def test_both_variants_build_run_and_train(variant):
    net = _build(variant=variant).train()
    image, hidden, mask = _inputs()
    out = net(image, hidden, mask)
    assert out.shape == (2, 1, 64, 64)
    out.mean().backward()
    assert [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None] == []
    with torch.no_grad():
        assert net.eval()(image).shape == (2, 1, 64, 64)  # image only: the null text


def test_default_variant_and_unknown_variant():
    assert HiMix(**TINY).variant == "authors_code"
    with pytest.raises(ValueError, match="variant"):
        HiMix(**TINY, variant="supplement")
    with pytest.raises(ValueError, match="None"):
        HiMix(**TINY, variant="authors_code", projected_tokens=None)
    with pytest.raises(ValueError, match="stages"):
        HiMix(**TINY, projected_tokens=(24, 12))


# --- paper: unchanged ---------------------------------------------------------------------------------------------


def test_paper_variant_is_the_network_from_before():
    net = _build(variant="paper")
    assert _key_digest(net) == PAPER_TINY_KEYS
    assert sum(p.numel() for p in net.parameters()) == PAPER_TINY_PARAMETERS
    assert all(isinstance(s, HiMixDecoderStage) for s in net.stages)
    with torch.no_grad():
        out = net(*_inputs())
    assert out.sum().item() == pytest.approx(PAPER_TINY_OUTPUT_SUM, rel=1e-5, abs=1e-4)
    assert out.abs().sum().item() == pytest.approx(PAPER_TINY_OUTPUT_ABS_SUM, rel=1e-5)
    first, second = PAPER_TINY_OUTPUT_SAMPLES
    assert torch.allclose(out[0, 0, 0, :4], torch.tensor(first), atol=1e-5)
    assert torch.allclose(out[1, 0, 31, 30:34], torch.tensor(second), atol=1e-5)
    # "auto" is the old default of 24 tokens in every stage
    assert [s.text_projection.token_mix.out_channels for s in net.stages] == [24, 24, 24]
    explicit = _build(variant="paper", projected_tokens=24)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), explicit.state_dict().values()))


# --- authors_code: the structure of the authors' code ------------------------------------------------------------


def test_authors_code_structure():
    net = _build(variant="authors_code")
    assert isinstance(net.layer_fusion, StaticLayerFusion)
    assert torch.equal(net.layer_fusion.logits.detach(), torch.ones(4))
    assert all(isinstance(s, HiMixCodeDecoderStage) for s in net.stages)
    widths = [s.attention.cross_attn.embed_dim for s in net.stages]
    assert widths == [128, 64, 32]  # coarsest first
    for stage, width in zip(net.stages, widths):
        proj = stage.text_projection
        assert isinstance(proj, TokenMixProjection) and proj.token_mix.in_channels == 32  # max_text_tokens
        layer = stage.attention
        assert isinstance(layer, PrePostNormAttentionLayer)
        assert all(getattr(layer, b).item() == pytest.approx(1.421) for b in ("beta_ca", "beta_sa", "beta_mlp"))
        assert [m.__class__.__name__ for m in layer.mlp] == ["Linear", "ReLU", "Dropout", "Linear"]
        assert layer.mlp[0].out_features == width // 2 and layer.mlp[2].p == 0.1
        assert layer.cross_attn.dropout == 0.0 and layer.cross_attn.num_heads == 2
        assert isinstance(stage.asrm, NyquistGaussianFilter) and stage.asrm.sigma.item() == 5.0
        assert isinstance(stage.up.conv_block, UnetBasicBlock)  # UnetrUpBlock(res_block=False)
    assert [s.text_projection.token_mix.out_channels for s in net.stages] == [24, 12, 9]
    assert isinstance(net.head[0], SubpixelUpsample) and isinstance(net.head[1], UnetOutBlock)
    assert net.head[0].scale_factor == 4 and net.head[0].conv_block.out_channels == 4 * 16  # 16 -> 4 channels, x4


def test_authors_code_ablation_switches():
    net = _build(variant="authors_code", use_dlfm=False, use_asrm=False)
    assert net.layer_fusion is None and all(isinstance(s.asrm, torch.nn.Identity) for s in net.stages)
    paper = _build(variant="paper")
    assert isinstance(paper.layer_fusion, DynamicLayerFusion)
    assert all(isinstance(s.asrm, GaussianSpectrumRefinement) for s in paper.stages)


def test_authors_code_padding_and_text():
    net = _build(variant="authors_code")
    image, hidden, mask = _inputs()
    padded = torch.cat([hidden, torch.randn(2, 4, 5, 32)], dim=2)  # garbage at padding positions
    with torch.no_grad():
        a = net(image, hidden, mask)
        b = net(image, padded, torch.cat([mask, torch.zeros(2, 5, dtype=torch.long)], 1))
        c = net(image, torch.randn_like(hidden), mask)
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c)


# --- the blocks against the authors' code, written out here as it reads ---------------------------------------------


def _code_lfm(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``LFM.forward`` of the authors' utils/layers_himix.py (without its CPU round trip)."""
    b, c, h, w = x.shape
    x = x.float()
    y = torch.fft.fft2(x)
    yv, xv = torch.meshgrid([torch.arange(0, h), torch.arange(0, w)], indexing="ij")
    g = torch.exp(-((yv.float() - h // 2) ** 2 + (xv.float() - w // 2) ** 2) / (2 * sigma**2))[None, None]
    y = y * (1 - g)
    y = torch.complex(y.real, y.imag)
    y = torch.fft.ifft2(y, s=(h, w)).real
    return x + y


@pytest.mark.parametrize("size", [(7, 7), (8, 8), (14, 14)])
def test_asrm_is_the_codes_lfm(size):
    torch.manual_seed(0)
    lfm = NyquistGaussianFilter()
    x = torch.randn(2, 3, *size)
    assert torch.allclose(lfm(x), _code_lfm(x, lfm.sigma.detach()), atol=1e-5)
    keep = lfm.filter_map(56, 56, x.device)
    assert keep[0, 0] > 0.99 and keep[28, 28] == 0  # DC passes, the Nyquist index is removed: a low-pass
    assert lfm.filter_map(7, 7, x.device)[0, 0].item() == pytest.approx(1 - math.exp(-18 / 50))  # small maps: DC damped


def test_positions_are_the_codes_positional_encoding():
    d_model, length = 16, 10
    pe = torch.zeros(length, d_model)
    position = torch.arange(0, length).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2) * -(math.log(10000.0) / d_model))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    assert torch.allclose(sinusoidal_1d(length, d_model), pe)


def test_dlfm_is_the_codes_softmax_of_ones():
    fusion = StaticLayerFusion(num_layers=12, num_groups=3)
    with torch.no_grad():
        fusion.logits.copy_(torch.randn(12))
    hidden = torch.randn(2, 12, 24, 8)
    weights = torch.softmax(fusion.logits.detach().view(3, 4), dim=-1)  # the code's attention_weights (3, 4)
    expected = [torch.sum(hidden[:, 4 * g:4 * g + 4] * weights[g].view(1, 4, 1, 1), dim=1) for g in range(3)]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(fusion(hidden), expected))


def test_projection_and_attention_follow_the_codes_order():
    torch.manual_seed(0)
    proj = TokenMixProjection(hidden_size=16, context_input_size=8, max_tokens=24, projected_tokens=12)
    text = torch.randn(2, 24, 8)
    expected = proj.act(proj.linear(torch.nn.functional.gelu(proj.token_mix(text))))  # Conv1d, GELU, Linear, LeakyReLU
    assert torch.allclose(proj(text, torch.ones(2, 24)), expected)
    layer = PrePostNormAttentionLayer(hidden_size=16, num_heads=2).eval()
    x, t = torch.randn(2, 36, 16), torch.randn(2, 12, 16)
    pv, pt = sinusoidal_1d(36, 16), sinusoidal_1d(12, 16)
    with torch.no_grad():
        vis1 = layer.norm_ca_in(x)
        vis1 = x + layer.beta_ca * layer.norm_ca(layer.cross_attn(vis1 + pv, t + pt, t)[0])
        vis2 = layer.norm_sa_in(vis1)
        vis2 = vis1 + layer.beta_sa * layer.norm_sa(layer.self_attn(vis2 + pv, vis2 + pv, vis2)[0])
        expected = vis2 + layer.beta_mlp * layer.mlp(vis2)
        assert torch.allclose(layer(x, t), expected, atol=1e-5)


# --- full size: parameters ------------------------------------------------------------------------------------------


def _code_stage(c: int, c_out: int, tokens: int, text_len: int = 24, d: int = 768) -> int:
    """Trainable parameters of one ``Decoder`` of the authors' code, from reading it (used and unused modules)."""
    attention = 2 * (4 * c * c + 4 * c)  # two nn.MultiheadAttention(c, 8)
    norms = 5 * 2 * c  # self_attn_norm, cross_attn_norm, norm1, norm2, norm (the last one unused)
    text_project = (text_len * tokens + tokens) + (d * c + c)  # Conv1d(24, L', 1) + Linear(768, c)
    mlp = (c * (c // 2) + c // 2) + ((c // 2) * c + c)  # lin1, lin2
    scalars = 4  # sig, scale1..3
    up = 4 * c * c_out + 9 * 2 * c_out * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out  # UnetrUpBlock, res_block=False
    return attention + norms + text_project + mlp + scalars + up


def test_full_size_parameter_count_term_by_term():
    """Full size (ConvNeXt-Tiny, 768-wide 12-layer text, 224 x 224), random weights.

    The paper's 44.7 M is the authors' code's trainable count (what PyTorch Lightning reports): 44,730,262, of
    which 1,777,536 sit in modules that never reach the mask (the vision and text ``project_head`` s, the final
    LayerNorm of the Hugging Face ConvNeXt, used only for the pooled output, and ``DecoderLayer.norm``).
    ``authors_code`` builds what reaches the mask, plus a 768-wide null-text token: 42.95 M, 3.9 % under 44.7 M.
    """
    torch.manual_seed(0)
    net = HiMix(variant="authors_code")
    encoder = _trainable(net.encoder)
    stages = [_trainable(s) for s in net.stages]
    head = _trainable(net.head)
    assert encoder == 27_818_592  # timm convnext_tiny, features_only (the Hugging Face model adds a 1,536 LayerNorm)
    assert stages == [11_075_548, 2_920_432, 805_957]
    assert head == 332_160 + 25  # SubpixelUpsample(2, 96, 24, 4) + UnetOutBlock(2, 24, 1)
    assert _trainable(net.layer_fusion) == 12 and net.null_text.numel() == 768
    total = _trainable(net)
    assert total == encoder + sum(stages) + head + 12 + 768 == 42_953_494
    # the same count for the authors' code, from reading it
    code_stages = [_code_stage(768, 384, 24), _code_stage(384, 192, 12), _code_stage(192, 96, 9)]
    unused_norms = 2 * (768 + 384 + 192)
    assert [s - 2 * c for s, c in zip(code_stages, (768, 384, 192))] == stages  # the code's stages less DecoderLayer.norm
    code_total = (encoder + 1_536) + sum(code_stages) + head + 12 + (768 * 768 + 768) + (2 * (768 * 768 + 768) + 2 * 768)
    assert code_total == 44_730_262
    assert code_total - total == 1_536 + unused_norms + 590_592 + 1_182_720 - 768
    assert abs(code_total / 44.7e6 - 1) < 0.001  # the paper's figure is the code's count
    assert abs(total / 44.7e6 - 1) < 0.04  # what this network builds: -3.9 %


def test_full_size_paper_variant_is_the_network_from_before():
    torch.manual_seed(0)
    net = HiMix(variant="paper")
    assert _key_digest(net) == PAPER_FULL_KEYS
    assert _trainable(net) == PAPER_FULL_TRAINABLE


# --- the bundle: variant and checkpoint_metric ----------------------------------------------------------------------


def _parser(**overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "demo.json")])
    for key, value in overrides.items():
        parser[key] = value
    return parser


@pytest.mark.parametrize("variant, stage", [("authors_code", HiMixCodeDecoderStage), ("paper", HiMixDecoderStage)])
def test_config_builds_both_variants(variant, stage):
    parser = _parser(variant=variant)
    net = parser.get_parsed_content("network_def")
    assert net.variant == variant and all(isinstance(s, stage) for s in net.stages)
    tokens = [s.text_projection.token_mix.out_channels for s in net.stages]
    assert tokens == ([24, 12, 9] if variant == "authors_code" else [24, 24, 24])
    with torch.no_grad():
        out = net.eval()(torch.randn(1, 1, 128, 128), torch.randn(1, 6, 10, 384), torch.ones(1, 10))
    assert out.shape == (1, 1, 128, 128)


def test_config_defaults():
    """The full config builds the authors' decoder; the CPU demo keeps the paper reading (its cost, see the card)."""
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    assert parser["variant"] == "authors_code" and parser["checkpoint_metric"] == "val_mean_dice"
    assert _parser()["variant"] == "paper"
    infer = ConfigParser()
    infer.read_config(str(CONFIGS / "inference.json"))
    assert infer["variant"] == "authors_code" and infer["network_def"]["variant"] == "@variant"


@pytest.mark.parametrize("metric, values, best", [("val_mean_dice", [0.5, 0.7], 1), ("val_loss", [0.5, 0.7], 0)])
def test_checkpoint_metric_direction(tmp_path, metric, values, best):
    parser = _parser(checkpoint_metric=metric, ckpt_dir=str(tmp_path))
    saver = parser.get_parsed_content("validate#handlers#2")
    assert saver.__class__.__name__ == "CheckpointSaver"
    stop = parser.get_parsed_content("validate#early_stop")
    scores = [saver._key_metric_checkpoint.score_function(SimpleNamespace(state=SimpleNamespace(metrics={metric: v})))
              for v in values]
    assert max(range(2), key=lambda i: scores[i]) == best  # the checkpoint keeps the higher Dice, the lower loss
    stops = [stop.score_function(SimpleNamespace(state=SimpleNamespace(metrics={metric: v}))) for v in values]
    assert max(range(2), key=lambda i: stops[i]) == best


def test_validation_loss_metric_is_the_training_loss_on_logits():
    parser = _parser()
    handler = parser.get_parsed_content("validate#additional_metrics")["val_loss"]
    torch.manual_seed(0)
    logits = [torch.randn(1, 16, 16) for _ in range(3)]
    labels = [(torch.rand(1, 16, 16) > 0.5).float() for _ in range(3)]
    handler.reset()
    handler.update((logits[:2], labels[:2]))
    handler.update((logits[2:], labels[2:]))
    loss = DiceCELoss(sigmoid=True)
    expected = sum(loss(p[None], y[None]) for p, y in zip(logits, labels)) / 3
    assert handler.compute() == pytest.approx(expected.item(), rel=1e-5)
    post = parser.get_parsed_content("validate#postprocessing")
    item = post({"pred": torch.randn(1, 8, 8), "label": torch.zeros(1, 8, 8)})
    assert set(torch.unique(item["pred"]).tolist()) <= {0.0, 1.0} and not torch.equal(item["logits"], item["pred"])


@pytest.mark.slow
def test_training_selects_on_validation_loss(tiny_demo, tiny_overrides, tmp_path):
    """Two tiny epochs with ``checkpoint_metric: val_loss``: the loss is computed each validation and the model saved."""
    root, datalist = tiny_demo
    configs = "[" + ",".join(f"'{p}'" for p in (CONFIGS / "train.json", CONFIGS / "demo.json",
                                                 tiny_overrides["himix"])) + "]"
    r = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", configs,
                        "--bundle_root", str(tmp_path), "--data_root", str(root), "--datalist", str(datalist),
                        "--epochs", "2", "--checkpoint_metric", "val_loss"],
                       cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout[-3000:]
    assert "val_loss" in r.stdout
    assert (tmp_path / "models" / "model.pt").is_file()
