"""Unit tests of C2Seg's parts on tiny hand-made tensors: the stage I loss (CaCL), the bidirectional attention
(BCAM), the KAN layer and the gates.

Each test has a control where one is needed: a loss compared with a direct computation is also shown to differ from
the nearest wrong one, a masking test also shows that the change it hides is seen when the mask lets it through.
"""

import math

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline
from torch.nn import functional as F

from custom_nets.blocks import BidirectionalCrossAttention, KANGate, KANLinear, SigmoidMLPGate
from custom_nets.losses import CaCLLoss, cacl_loss_from_similarity, cacl_soft_targets

TAU, RHO = 0.07, 0.8


def _batch(seed: int = 0, b: int = 5, d: int = 6):
    """Image, text and frozen-text embeddings of a batch whose sentences 0 and 1 are identical and sentences 2, 3
    and 4 close in the frozen space (a templated group; their different row means make Y asymmetric)."""
    g = torch.Generator().manual_seed(seed)
    image, text = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    frozen = torch.randn(b, d + 2, generator=g)
    text[1], frozen[1] = text[0], frozen[0]
    frozen[3] = frozen[2] + 0.3 * torch.randn(d + 2, generator=g)
    frozen[4] = frozen[2] + 0.8 * torch.randn(d + 2, generator=g)
    return image, text, frozen


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def _direct_cacl(image, text, frozen, tau=TAU, rho=RHO):
    """The poster's equations, element by element in float64 Python (no torch softmax or log_softmax)."""
    v, t, e = image.double().tolist(), text.double().tolist(), frozen.double().tolist()
    b = len(v)
    m = [[_cos(e[i], e[j]) for j in range(b)] for i in range(b)]
    mp = [[max(0.0, m[i][j] - sum(m[i]) / b) for j in range(b)] for i in range(b)]
    y_hat = [[math.exp(mp[i][j] / tau) / sum(math.exp(mp[i][k] / tau) for k in range(b)) for j in range(b)]
             for i in range(b)]
    y = [[rho * y_hat[i][j] + (1 - rho) * (i == j) for j in range(b)] for i in range(b)]
    s = [[_cos(v[i], t[j]) for j in range(b)] for i in range(b)]
    p_vl = [[math.exp(s[i][j] / tau) / sum(math.exp(s[i][k] / tau) for k in range(b)) for j in range(b)]
            for i in range(b)]
    p_lv = [[math.exp(s[i][j] / tau) / sum(math.exp(s[k][j] / tau) for k in range(b)) for j in range(b)]
            for i in range(b)]
    loss = -sum(y[i][j] * math.log(p_vl[i][j]) + y[j][i] * math.log(p_lv[i][j]) for i in range(b) for j in range(b)) / b
    return loss, torch.tensor(y, dtype=torch.float64)


# ---- CaCL (stage I) ----

def test_cacl_matches_the_posters_equations():
    image, text, frozen = _batch()
    expected, y = _direct_cacl(image, text, frozen)
    loss = CaCLLoss(temperature=TAU, rho=RHO)
    assert loss(image, text, frozen).item() == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(cacl_soft_targets(frozen, RHO, TAU).double(), y, atol=1e-6)
    assert (y - y.t()).abs().max() > 0.01  # Y is not symmetric here, so Y_ji vs Y_ij in the l->v term shows
    # control: M from the (different) trainable text embeddings instead of the frozen ones gives another value
    assert loss(image, text).item() != pytest.approx(expected, rel=1e-3)
    # and a loss that put the temperature into s as well (s = cos / tau, then softmax(s / tau)) would differ
    double_tau = cacl_loss_from_similarity(loss.similarity(image, text) / TAU, cacl_soft_targets(frozen), TAU)
    assert double_tau.item() != pytest.approx(expected, rel=1e-3)


def test_cacl_gradient_is_the_posters_closed_form_over_the_batch_size():
    g = torch.Generator().manual_seed(1)
    b = 5
    s = (torch.rand(b, b, generator=g) * 2 - 1).double().requires_grad_()  # cosines in [-1, 1]
    y = cacl_soft_targets(torch.randn(b, 7, generator=g), RHO, TAU).double()
    cacl_loss_from_similarity(s, y, TAU).backward()
    with torch.no_grad():
        p_vl, p_lv = torch.softmax(s / TAU, dim=1), torch.softmax(s / TAU, dim=0)
        posters = (p_vl - y + p_lv - y.t()) / TAU  # dL/ds_ij of the poster: the un-averaged sum
    assert torch.allclose(s.grad.double(), posters / b, atol=1e-5)  # L averages over the batch: 1 / (B tau)
    assert not torch.allclose(s.grad.double(), posters, atol=1e-3)  # control: the constant matters
    assert torch.allclose(y.sum(1), torch.ones(b, dtype=y.dtype))  # why the form is that simple: rows of Y sum to 1


def test_cacl_with_rho_zero_is_symmetric_infonce():
    image, text, frozen = _batch(seed=2)
    s = F.normalize(image, dim=1) @ F.normalize(text, dim=1).t()
    labels = torch.arange(len(s))
    infonce = F.cross_entropy(s / TAU, labels) + F.cross_entropy(s.t() / TAU, labels)  # both directions, summed
    assert CaCLLoss(rho=0.0)(image, text, frozen).item() == pytest.approx(infonce.item(), rel=1e-5)
    assert CaCLLoss(rho=RHO)(image, text, frozen).item() != pytest.approx(infonce.item(), rel=1e-3)  # control


def test_identical_sentences_give_uniform_soft_targets():
    b = 4
    same = torch.randn(1, 8).expand(b, 8)
    assert torch.allclose(cacl_soft_targets(same, rho=1.0), torch.full((b, b), 1 / b))
    expected = RHO / b + (1 - RHO) * torch.eye(b)  # the (1 - rho) identity part is kept
    assert torch.allclose(cacl_soft_targets(same, rho=RHO), expected)
    distinct = torch.eye(b, 8)  # control: orthogonal sentences give (near) one-hot targets, far from uniform
    assert cacl_soft_targets(distinct, rho=1.0).diagonal().min() > 0.9


def test_identical_sentences_are_not_pushed_apart():
    image, text, frozen = _batch(seed=3)  # sentences 0 and 1 identical
    y_hat = cacl_soft_targets(frozen, rho=1.0)
    assert torch.allclose(y_hat[:, 0], y_hat[:, 1]) and torch.allclose(y_hat[0], y_hat[1])  # same target, any row
    assert y_hat[0, 1] > 0.3  # a copy gets as much soft target as the matched pair (two copies: ~1/2 each)
    assert not torch.allclose(y_hat[:, 0], y_hat[:, 2])  # control: a different sentence does not
    # the image of pair 0 is pulled toward both copies alike: the gradient it gets from copy 1 equals that from copy 0
    loss = CaCLLoss()
    s = loss.similarity(image, text).detach().requires_grad_()
    cacl_loss_from_similarity(s, cacl_soft_targets(frozen), TAU).backward()
    assert s[0, 0].item() == pytest.approx(s[0, 1].item())
    hard = s.detach().clone().requires_grad_()  # control: InfoNCE pushes copy 1 away from image 0 and pulls copy 0
    cacl_loss_from_similarity(hard, torch.eye(len(s)), TAU).backward()
    assert hard.grad[0, 1] > 0 > hard.grad[0, 0]  # gradient descent lowers s_01, raises s_00
    assert s.grad[0, 1] < hard.grad[0, 1]  # CaCL pushes copy 1 away less (its soft target is ~rho / 2)


def test_cacl_rejects_mismatched_embeddings():
    with pytest.raises(ValueError, match="same"):
        CaCLLoss()(torch.randn(4, 8), torch.randn(4, 6))
    with pytest.raises(ValueError, match="rows"):
        CaCLLoss()(torch.randn(4, 8), torch.randn(4, 8), torch.randn(3, 8))


# ---- BCAM (stage II) ----

def _bcam(**kw) -> BidirectionalCrossAttention:
    torch.manual_seed(0)
    return BidirectionalCrossAttention(**{"hidden_size": 16, "context_input_size": 12, "num_heads": 2, **kw}).eval()


def _garbage_after(text: torch.Tensor, valid: int) -> torch.Tensor:
    out = text.clone()
    out[:, valid:] = torch.randn_like(out[:, valid:]) * 10
    return out


@pytest.mark.parametrize("gate", ["kan", "mlp", "none"])
def test_bcam_paths_live_on_the_pixel_grid(gate):
    bcam = _bcam(gate=gate)
    x, text, mask = torch.randn(2, 16, 4, 6), torch.randn(2, 5, 12), torch.ones(2, 5)
    with torch.no_grad():
        vision, language = bcam.paths(x, text, mask)
        out = bcam(x, text, mask)
    assert vision.shape == language.shape == out.shape == (2, 16, 4, 6)
    if gate == "none":
        assert torch.allclose(out, x + vision + language, atol=1e-6)
    else:  # the gate's output weighs each path, per pixel and channel, in [0, 1]
        g_v, g_l = bcam.gate(torch.cat([vision, language], 1)).chunk(2, 1)
        assert torch.allclose(out, x + g_v * vision + g_l * language, atol=1e-6)
        assert not torch.allclose(out, x + vision + language, atol=1e-3)


def test_bcam_ignores_padded_tokens_in_both_paths():
    bcam = _bcam()
    x, text = torch.randn(2, 16, 4, 4), torch.randn(2, 7, 12)
    mask = torch.zeros(2, 7, dtype=torch.long)
    mask[:, :4] = 1
    garbage = _garbage_after(text, 4)
    ones = torch.ones_like(mask)
    with torch.no_grad():
        a, b = bcam.paths(x, text, mask), bcam.paths(x, garbage, mask)
        c, d = bcam.paths(x, text, ones), bcam.paths(x, garbage, ones)  # control: the same change, unmasked
        short = bcam.paths(x, text[:, :4], torch.ones(2, 4))
        fused_a, fused_b = bcam(x, text, mask), bcam(x, garbage, mask)
    for path in (0, 1):  # 0: vision-dominant, 1: language-dominant
        assert torch.allclose(a[path], b[path], atol=1e-6)
        assert not torch.allclose(c[path], d[path], atol=1e-3)
        assert torch.allclose(a[path], short[path], atol=1e-5)  # padding = the short sentence
    assert torch.allclose(fused_a, fused_b, atol=1e-6)


def test_bcam_language_map_follows_the_sentence():
    bcam = _bcam()
    x, mask = torch.randn(1, 16, 6, 6), torch.ones(1, 5)
    g = torch.Generator().manual_seed(4)
    text, other = torch.randn(1, 5, 12, generator=g), torch.randn(1, 5, 12, generator=g)
    with torch.no_grad():
        _, lang = bcam.paths(x, text, mask)
        _, lang_other = bcam.paths(x, other, mask)
        _, lang_again = bcam.paths(x, text, mask)
    assert torch.equal(lang, lang_again)
    assert (lang - lang_other).abs().mean() > 0.1 * lang.abs().mean()  # another sentence, another map
    assert lang.flatten(2).std(dim=2).mean() > 1e-3  # a map, not a constant: it varies over the grid


def test_bcam_every_parameter_gets_a_gradient():
    bcam = _bcam().train()
    out = bcam(torch.randn(2, 16, 4, 4), torch.randn(2, 5, 12), torch.ones(2, 5))
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in bcam.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_bcam_rejects_a_sample_without_tokens():
    mask = torch.ones(2, 5)
    mask[1] = 0
    with pytest.raises(ValueError, match="valid token"):
        _bcam()(torch.randn(2, 16, 4, 4), torch.randn(2, 5, 12), mask)


# ---- KAN layer and gates ----

def test_kan_layer_matches_a_direct_b_spline_evaluation():
    torch.manual_seed(5)
    kan = KANLinear(2, 3, grid_size=5, spline_order=3, grid_range=(-1.0, 1.0)).double()
    with torch.no_grad():
        kan.spline_weight.normal_()  # coefficients of order 1, not the small initial ones
    x = torch.tensor([[-0.95, 0.3], [0.0, -0.41], [0.77, 0.99], [-1.2, 1.3], [2.9, -3.5]], dtype=torch.float64)
    knots = kan.grid[0].numpy()  # G + 2k + 1 = 12 knots, 3 beyond the range on each side
    expected = np.zeros((len(x), 3))
    for o in range(3):
        for i in range(2):
            xi = x[:, i].numpy()
            for c in range(8):  # basis c lives on knots[c : c + k + 2]; 0 (scipy: nan) outside
                basis = BSpline.basis_element(knots[c:c + 5], extrapolate=False)
                expected[:, o] += kan.spline_weight[o, i, c].item() * np.nan_to_num(basis(xi))
            expected[:, o] += kan.base_weight[o, i].item() * (xi / (1 + np.exp(-xi)))  # SiLU branch
    with torch.no_grad():
        assert np.allclose(kan(x).numpy(), expected, atol=1e-10)
        bases = kan.b_splines(x[:3])  # inside the grid range the G + k bases sum to 1
    assert torch.allclose(bases.sum(-1), torch.ones(3, 2, dtype=torch.float64))
    assert bases.shape == (3, 2, 8)


def test_kan_layer_checkpointed_bases_give_the_same_values_and_gradients():
    torch.manual_seed(6)
    kan = KANLinear(4, 3)
    x = torch.randn(10, 4, requires_grad=True)
    out = kan(x)  # grad enabled: the bases are recomputed in backward
    out.pow(2).sum().backward()
    grad_x, grad_c = x.grad.clone(), kan.spline_weight.grad.clone()
    x.grad, kan.spline_weight.grad, kan.base_weight.grad = None, None, None
    plain = F.linear(F.silu(x), kan.base_weight) + F.linear(kan.b_splines(x).flatten(1), kan.spline_weight.flatten(1))
    plain.pow(2).sum().backward()
    assert torch.allclose(out, plain, atol=1e-6)
    assert torch.allclose(grad_x, x.grad, atol=1e-5) and torch.allclose(grad_c, kan.spline_weight.grad, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(kan(x), out, atol=1e-6)


@pytest.mark.parametrize("gate_cls", [KANGate, SigmoidMLPGate])
def test_gates_are_bounded_and_differentiable(gate_cls):
    torch.manual_seed(7)
    gate = gate_cls(in_channels=6, out_channels=4)
    x = (torch.randn(2, 6, 5, 5) * 1000).requires_grad_()  # far outside any spline grid
    g = gate(x)
    assert g.shape == (2, 4, 5, 5)
    assert g.min() >= 0 and g.max() <= 1 and g.std() > 0.01
    (g * torch.randn_like(g)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    missing = [n for n, p in gate.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    if gate_cls is KANGate:  # the spline coefficients get gradients, and the bound comes from the sigmoid
        assert gate.layers[0].spline_weight.grad.abs().sum() > 0
        with torch.no_grad():
            raw = gate.layers(gate.norm(x.movedim(1, -1)))
        assert raw.min() < 0 or raw.max() > 1  # control: without the sigmoid the range is not [0, 1]


def test_kan_gate_with_a_hidden_layer():
    gate = KANGate(in_channels=6, out_channels=4, hidden_channels=5)
    assert [(layer.in_features, layer.out_features) for layer in gate.layers] == [(6, 5), (5, 4)]
    assert gate(torch.randn(1, 6, 3, 3)).shape == (1, 4, 3, 3)


@pytest.mark.parametrize("path", ["vision", "language"])
def test_bcam_one_path_alone_builds_only_that_path(path):
    """Table 3's ablation "each BCAM path alone": the other path has no layers, the gate is C -> C on the one kept."""
    bcam = _bcam(paths=path)
    both = _bcam()
    assert sum(p.numel() for p in bcam.parameters()) < sum(p.numel() for p in both.parameters())
    x, text, mask = torch.randn(2, 16, 4, 4), torch.randn(2, 5, 12), torch.ones(2, 5)
    with torch.no_grad():
        vision, language = bcam.paths(x, text, mask)
        out = bcam(x, text, mask)
    kept = vision if path == "vision" else language
    assert (vision is None) == (path == "language") and (language is None) == (path == "vision")
    assert torch.allclose(out, x + bcam.gate(kept) * kept, atol=1e-6)
    with pytest.raises(ValueError, match="paths must be one of"):
        _bcam(paths="neither")


def test_bcam_refuses_a_width_its_position_code_cannot_fill():
    with pytest.raises(ValueError, match="hidden_size must be a multiple of 4"):  # when built, not on the first pass
        _bcam(hidden_size=6, num_heads=2)
    assert _bcam(hidden_size=6, num_heads=2, positional=False)(torch.randn(1, 6, 2, 2), torch.randn(1, 3, 12),
                                                               torch.ones(1, 3)).shape == (1, 6, 2, 2)
