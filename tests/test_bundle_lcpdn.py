"""LCPDN's network (custom_nets/nets/lcpdn.py): Eq. 5 inside MONAI's diffusion UNet, the paper's decoder block
numbering, the shared fixed noise, the frozen denoiser, the prompt's effect on the mask, the Table 2 switches, and
phase I's checkpoint reaching phase II. The blocks' own equations are in tests/test_lcpdn_blocks.py; both phases
through ``python -m monai.bundle`` are in tests/test_bundles.py (tests/bundle_cases.py lists LCPDN)."""

import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding

from conftest import bundle_config_files
from custom_nets.backbones import load_encoder_weights
from custom_nets.nets import LCPDN, LCPDNDenoiser, PromptableDiffusionUNet
from custom_nets.nets.lcpdn import decoder_block, decoder_block_channels

TINY_UNET = dict(unet_channels=(8, 16), attention_levels=(False, True), num_res_blocks=1, num_head_channels=8,
                 norm_num_groups=8)
TINY_VIT = dict(image_encoder_kwargs=dict(depth=1, embed_dim=16, num_heads=2, img_size=32), image_encoder_input_size=32)


def tiny_lcpdn(**kwargs) -> LCPDN:
    """A tiny LCPDN whose UNet looks pretrained: MONAI zero-initialises the last convolution of every residual and
    attention branch, so an untrained UNet ignores its timestep embedding and context (and with them the prompt)."""
    torch.manual_seed(0)
    options = dict(TINY_UNET, **TINY_VIT, text_hidden_size=16, feature_blocks=(1, 2), fusion_width=8,
                   classifier_channels=(8,), num_heads=2)
    net = LCPDN(**{**options, **kwargs})
    with torch.no_grad():
        for p in net.unet.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def test_prompt_is_added_to_the_timestep_embedding_eq5():
    """P = M + TextProj(E): every residual block receives time_embed(t) + prompt."""
    torch.manual_seed(0)
    unet = PromptableDiffusionUNet(2, 1, channels=(8, 16), attention_levels=(False, True), num_res_blocks=1,
                                   num_head_channels=8, norm_num_groups=8, cross_attention_dim=4)
    x, t, prompt = torch.randn(2, 1, 16, 16), torch.tensor([50, 250]), torch.randn(2, unet.time_embed_dim)
    seen = []
    unet.down_blocks[0].resnets[0].time_emb_proj.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    unet(x, t, prompt=prompt)
    m = unet.time_embed(get_timestep_embedding(t, 8))
    assert torch.allclose(seen[0], torch.nn.functional.silu(m + prompt), atol=1e-6)  # the block applies SiLU first
    unet(x, t)  # no prompt (denoiser pretraining, CPRFL off): M alone
    assert torch.allclose(seen[1], torch.nn.functional.silu(m), atol=1e-6)


def test_decoder_blocks_follow_the_papers_numbering():
    """With ADM 256's level structure (six levels, two residual blocks, attention on the last three; widths scaled
    down 32x), the paper's blocks 4, 6, 8, 12 are 1024, 512, 512, 256 wide (here /32) at 16, 32, 64, 128 pixels."""
    torch.manual_seed(0)
    unet = PromptableDiffusionUNet(2, 1, channels=(8, 8, 16, 16, 32, 32), attention_levels=(False,) * 3 + (True,) * 3,
                                   num_res_blocks=2, num_head_channels=8, norm_num_groups=8)
    shapes = {}
    for j in (4, 6, 8, 12, 17):
        decoder_block(unet, j).register_forward_hook(lambda m, a, out, j=j: shapes.__setitem__(j, tuple(out.shape[1:])))
    with torch.no_grad():
        unet(torch.randn(1, 1, 256, 256), torch.tensor([50]))
    assert shapes == {4: (32, 16, 16), 6: (16, 32, 32), 8: (16, 64, 64), 12: (8, 128, 128), 17: (8, 256, 256)}
    assert {j: decoder_block_channels(unet, j) for j in shapes} == {j: shape[0] for j, shape in shapes.items()}
    with pytest.raises(ValueError, match="decoder block 18 does not exist: this UNet's decoder has blocks 0..17"):
        decoder_block(unet, 18)


def test_features_stop_after_the_last_block_and_stack_the_timesteps():
    net = tiny_lcpdn(feature_blocks=(1, 2), timesteps=(50, 150, 250)).eval()
    ran = []
    net.unet.out.register_forward_hook(lambda *a: ran.append("out"))
    net.unet.up_blocks[1].resnets[1].register_forward_hook(lambda *a: ran.append("block 3"))
    with torch.no_grad():
        features = net.unet_features(torch.randn(2, 1, 32, 32), None, None)
    assert ran == []  # the decoder's last block (3) and the output convolution never ran
    assert [tuple(f.shape) for f in features] == [(2, 3 * 16, 32, 32), (2, 3 * 8, 32, 32)]


def test_noise_is_shared_seeded_and_the_mask_deterministic():
    net = tiny_lcpdn().eval()
    image = torch.randn(1, 1, 32, 32)
    pair = torch.cat([image, image + 1.0])
    noise = net.fixed_noise(pair)
    assert torch.equal(noise[0], noise[1]) and torch.equal(noise, net.fixed_noise(pair))  # every image, every call
    text, mask = torch.randn(2, 1, 5, 16), torch.ones(2, 5)
    with torch.no_grad():
        first, second = net(pair, text, mask), net(pair, text, mask)
    assert torch.equal(first, second)
    other = tiny_lcpdn(noise_seed=41).eval()
    assert not torch.equal(other.fixed_noise(pair), noise)


def test_a_different_sentence_changes_the_prompt_and_the_mask():
    net = tiny_lcpdn().eval()
    torch.nn.init.normal_(net.prompt.text_proj.weight)  # as after training (W_t starts at zero: P = M)
    image, mask = torch.randn(1, 1, 32, 32), torch.ones(1, 5)
    patches = net.image_encoder(image)[-1].flatten(2).transpose(1, 2)
    text_a, text_b = torch.randn(1, 1, 5, 16), torch.randn(1, 1, 5, 16)
    with torch.no_grad():
        assert not torch.allclose(net.prompt(text_a[:, -1], mask, patches), net.prompt(text_b[:, -1], mask, patches))
        assert not torch.allclose(net(image, text_a, mask), net(image, text_b, mask))


def test_the_denoiser_is_frozen_but_the_loss_reaches_the_prompt_through_it():
    net = tiny_lcpdn().train()
    torch.nn.init.normal_(net.prompt.text_proj.weight)
    assert not net.unet.training  # stays in eval mode
    net(torch.randn(2, 1, 32, 32), torch.randn(2, 1, 5, 16), torch.ones(2, 5)).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in net.unet.parameters())
    assert all(p.grad is None for p in net.image_encoder.parameters())
    assert net.prompt.query.weight.grad.abs().sum() > 0  # through Eq. 5 and the cross-attention of the frozen UNet
    trainable = {n.split(".")[0] for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"null_text", "prompt", "image_projections", "text_projections", "fusions", "classifier"}


@pytest.mark.parametrize("switches, absent", [
    (dict(use_prompt=False), ("prompt", "image_encoder")),  # Table 2: CPRFL removed
    (dict(fusion="cross_attention"), ()),  # Table 2: LTFR replaced by a standard cross-attention
])
def test_table2_switches_build_and_segment(switches, absent):
    net = tiny_lcpdn(**switches).eval()
    assert all(getattr(net, name) is None for name in absent)
    with torch.no_grad():
        out = net(torch.randn(2, 1, 32, 32), torch.randn(2, 1, 5, 16), torch.tensor([[1, 1, 1, 0, 0], [0] * 5]))
    assert out.shape == (2, 1, 32, 32) and torch.isfinite(out).all()
    if switches.get("fusion") == "cross_attention":
        assert type(net.fusions[0]).__name__ == "TextCrossAttention"
    with pytest.raises(ValueError, match="fusion must be one of"):
        tiny_lcpdn(fusion="concat")


@pytest.mark.parametrize("extra, block, positional", [
    ((), "TextVisionFusion", False),  # train.json: the paper's LTFR, no position code
    (("positional_cross_attention.json",), "TextCrossAttention", True),  # the shipped switch (card: Text sensitivity)
])
def test_shipped_configs_build_the_fusion_they_name(tiny_overrides, extra, block, positional):
    parser = ConfigParser()
    files = bundle_config_files("lcpdn", "train.json", tiny=tiny_overrides["lcpdn"])
    parser.read_config(files + bundle_config_files("lcpdn", *extra))
    net = parser.get_parsed_content("network_def")
    assert [(type(f).__name__, f.positional) for f in net.fusions] == [(block, positional)] * len(net.fusions)


def test_phase_one_denoiser_loads_into_phase_two(tmp_path):
    torch.manual_seed(1)
    denoiser = LCPDNDenoiser(in_channels=1, cross_attention_dim=16, **TINY_UNET)
    torch.save(denoiser.state_dict(), tmp_path / "model.pt")
    net = load_encoder_weights(tiny_lcpdn(), str(tmp_path / "model.pt"), module="unet")
    assert all(torch.equal(a, b) for a, b in zip(net.unet.state_dict().values(), denoiser.unet.state_dict().values()))
    wrong = LCPDNDenoiser(in_channels=1, cross_attention_dim=16, **{**TINY_UNET, "unet_channels": (8, 8)})
    torch.save(wrong.state_dict(), tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="the phase I unet in .*wrong.pt does not fit"):
        load_encoder_weights(tiny_lcpdn(), str(tmp_path / "wrong.pt"), module="unet")
    with pytest.raises(FileNotFoundError, match="phase I checkpoint not found"):
        load_encoder_weights(tiny_lcpdn(), str(tmp_path / "missing.pt"), module="unet")
