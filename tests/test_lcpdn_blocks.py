"""LCPDN's text-vision blocks on hand-made tensors: the prompt of CPRFL (Eqs. 1-4) and LTFR at one scale (Eqs. 7-10),
each against a direct computation of the paper's equation. (Eq. 5, the prompt added to the diffusion UNet's
timestep embedding, belongs to the network.)"""

import math

import pytest
import torch

from custom_nets.blocks import TextVisionFusion, TextVisionPrompt, align_tokens


def _prompt(d=4, time_dim=6) -> TextVisionPrompt:
    torch.manual_seed(0)
    prompt = TextVisionPrompt(hidden_size=d, time_embed_dim=time_dim)
    torch.nn.init.normal_(prompt.text_proj.weight)  # zero at start; give Eq. 4 something to compute
    torch.nn.init.normal_(prompt.text_proj.bias)
    return prompt


def test_prompt_eqs_1_to_4_on_one_sample():
    prompt = _prompt()
    q, k = torch.randn(3, 4), torch.randn(5, 4)  # N = 3 tokens, M = 5 patches
    wq, wk, wv = prompt.query.weight.t(), prompt.key.weight.t(), prompt.value.weight.t()
    a = torch.softmax((q @ wq) @ (k @ wk).t() / math.sqrt(4), dim=-1)  # Eq. 1
    z = a @ (k @ wv)
    q_star = torch.tanh(z) * (q @ wq)  # Eq. 2
    e = q_star.mean(dim=0)  # Eq. 3
    text_proj = e @ prompt.text_proj.weight.t() + prompt.text_proj.bias  # Eq. 4
    with torch.no_grad():
        assert torch.allclose(prompt.fused_tokens(q[None], k[None])[0], q_star, atol=1e-6)
        assert torch.allclose(prompt(q[None], torch.ones(1, 3), k[None])[0], text_proj, atol=1e-6)


def test_prompt_mean_leaves_padding_out_and_starts_at_zero():
    prompt = _prompt()
    q, k = torch.randn(1, 5, 4), torch.randn(1, 7, 4)
    with torch.no_grad():
        padded = prompt(q, torch.tensor([[1, 1, 0, 0, 0]]), k)
        short = prompt(q[:, :2], torch.ones(1, 2), k)
    assert torch.allclose(padded, short, atol=1e-6)
    fresh = TextVisionPrompt(hidden_size=4, time_embed_dim=6)
    assert torch.count_nonzero(fresh(q, torch.ones(1, 5), k)) == 0  # P = M before training
    with pytest.raises(ValueError, match="no valid text token"):
        prompt(q, torch.zeros(1, 5), k)


def test_prompt_changes_with_the_sentence_and_the_image():
    prompt = _prompt()
    q, k = torch.randn(1, 3, 4), torch.randn(1, 5, 4)
    with torch.no_grad():
        base = prompt(q, torch.ones(1, 3), k)
        assert not torch.allclose(base, prompt(torch.randn(1, 3, 4), torch.ones(1, 3), k))
        assert not torch.allclose(base, prompt(q, torch.ones(1, 3), torch.randn(1, 5, 4)))


def test_align_tokens_replicates_or_truncates():
    text = torch.arange(4.0).view(1, 4, 1)
    assert align_tokens(text, torch.ones(1, 4), 2).flatten().tolist() == [0.0, 1.0]  # truncated
    assert align_tokens(text, torch.ones(1, 4), 6).flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 0.0, 1.0]  # replicated


def test_fusion_eqs_7_to_10_on_hand_made_tensors():
    torch.manual_seed(0)
    fusion = TextVisionFusion(hidden_size=3)
    image, text = torch.randn(1, 3, 2, 2), torch.randn(1, 3, 3)  # M = 4 positions, N = 3 tokens
    f_img = image.flatten(2).transpose(1, 2)[0]  # (4, 3)
    f_text = torch.cat([text[0], text[0, :1]])  # replicated to M = 4
    f_cat = torch.cat([f_img, f_text], dim=-1)  # Eq. 7
    f_fuse = fusion.mlp(f_cat)  # Eq. 8
    lam = torch.sigmoid(fusion.weight(f_cat))
    assert lam.shape == (4, 1)  # one weight per position
    h = (lam * f_fuse + (1 - lam) * f_img) * f_img  # Eqs. 9-10
    with torch.no_grad():
        out = fusion(image, text, torch.ones(1, 3))
    assert torch.allclose(out[0].flatten(1).t(), h.detach(), atol=1e-6)


def test_fusion_is_differentiable_and_reads_the_text():
    torch.manual_seed(0)
    fusion = TextVisionFusion(hidden_size=4)
    image, text = torch.randn(2, 4, 3, 3, requires_grad=True), torch.randn(2, 5, 4)
    out = fusion(image, text, torch.ones(2, 5))
    out.sum().backward()
    assert image.grad is not None and all(p.grad is not None for p in fusion.parameters())
    with torch.no_grad():
        assert not torch.allclose(out, fusion(image, torch.randn(2, 5, 4), torch.ones(2, 5)))


def test_positional_fusion_tells_mirrored_positions_apart():
    """An image symmetric left to right and a one-token sentence: without positions, mirrored pixels get the same fused
    feature (nothing in Eqs. 7-10 knows where a pixel is); with ``positional=True`` they differ, while Eqs. 9-10 still
    use the plain image feature (a zero image still gives zero, Eq. 10's product)."""
    torch.manual_seed(0)
    half = torch.randn(1, 4, 3, 2)
    image = torch.cat([half, half.flip(-1)], dim=-1)  # (1, 4, 3, 4), mirror-symmetric
    text, mask = torch.randn(1, 1, 4), torch.ones(1, 1)
    plain, placed = TextVisionFusion(hidden_size=4), TextVisionFusion(hidden_size=4, positional=True)
    placed.load_state_dict(plain.state_dict())
    with torch.no_grad():
        out_plain, out_placed = plain(image, text, mask), placed(image, text, mask)
        assert torch.allclose(out_plain, out_plain.flip(-1), atol=1e-6)
        assert not torch.allclose(out_placed, out_placed.flip(-1), atol=1e-3)
        assert torch.count_nonzero(placed(torch.zeros_like(image), text, mask)) == 0
    with pytest.raises(ValueError, match="multiple of 4"):
        TextVisionFusion(hidden_size=6, positional=True)
