"""TAMISeg's switches between the paper's, the authors' code's and this bundle's choices: each changes what it
should and nothing else (hand-made tensors), each is a top-level config key passed where it belongs, and phase I's
perturbations as ``pretrain.json`` builds them."""

import pytest
import torch
import torchvision
from monai.bundle import ConfigParser
from torch.nn import functional as F

from conftest import ROOT
from custom_nets.backbones import FrozenViTTeacher
from custom_nets.losses import SemanticDistillationLoss
from custom_nets.nets import ConsistencyAwareEncoder, TAMISeg
from custom_nets.nets.tamiseg import PlainDecoder, ScaleBranch

CONFIGS = ROOT / "bundles" / "tamiseg" / "configs"
TINY_RESNET = {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]}
TINY_TEACHER = {"depth": 4, "embed_dim": 32, "num_heads": 2}
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def tiny_net(**kw):
    args = dict(in_channels=1, backbone_kwargs=TINY_RESNET, feature_width=32, decoder_width=16, text_hidden_size=24,
                num_heads=2)
    return TAMISeg(**{**args, **kw})


def _text(b=1, length=7, layers=2, width=24):
    torch.manual_seed(11)
    return torch.randn(b, layers, length, width), torch.ones(b, length, dtype=torch.long)


def _parser(*names, **overrides):
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / n) for n in names])
    for key, value in overrides.items():
        parser[key] = value
    return parser


# ---- distill_level_weighting ----

def _unit(index, width=4):
    return F.one_hot(torch.tensor(index), width).float()


def _level(vector, size):
    return vector.view(1, -1, 1, 1).expand(1, -1, size, size).clone()


def test_level_and_token_weighting_on_hand_made_features():
    # level 1: 4 x 4 tokens all aligned with the teacher (cos 1); level 2: 2 x 2 tokens all opposed (cos -1)
    student = [_level(_unit(0), 4), _level(_unit(0), 2)]
    teacher = [_level(_unit(0), 1), _level(-_unit(0), 1)]
    token, level = SemanticDistillationLoss("token"), SemanticDistillationLoss("level")
    assert token(student, teacher).item() == pytest.approx(1 - (16 - 4) / 20)  # every token once: 0.4
    assert level(student, teacher).item() == pytest.approx(1 - (1 - 1) / 2)  # every level once: 1.0
    assert SemanticDistillationLoss()(student, teacher) == token(student, teacher)  # default: Eq. 7 as written


def test_the_stride2_level_dominates_token_weighting_at_256():
    # TAMISeg's grids at 256 x 256 (strides 2, 4, 8, 16); only the stride-2 level aligned, the others orthogonal
    sizes = [128, 64, 32, 16]
    student = [_level(_unit(0), s) for s in sizes]
    teacher = [_level(_unit(0), 16)] + [_level(_unit(1), 16)] * 3
    share = 128 ** 2 / sum(s * s for s in sizes)
    assert share == pytest.approx(0.7529, abs=1e-4)  # 16384 of 21760 tokens
    assert SemanticDistillationLoss("token")(student, teacher).item() == pytest.approx(1 - share, abs=1e-6)
    assert SemanticDistillationLoss("level")(student, teacher).item() == pytest.approx(0.75, abs=1e-6)


def test_level_weighting_is_the_authors_mean_of_per_level_losses():
    """``TextDiff_code/train.py``: ``cosine_loss`` (mean over tokens, then batch) per level, the four averaged."""
    def cosine_loss(z, z_tilde):  # the authors' function, on (B, N, D) tokens
        return -(F.normalize(z, dim=-1) * F.normalize(z_tilde, dim=-1)).sum(-1).mean(-1).mean()

    torch.manual_seed(0)
    student = [torch.randn(2, 8, s, s) for s in (8, 4, 2, 1)]
    teacher = [torch.randn(2, 8, 2, 2) for _ in student]
    tokens = lambda x: x.flatten(2).transpose(1, 2)  # noqa: E731
    resized = [F.interpolate(t, size=s.shape[2:], mode="bilinear", align_corners=False)
               for s, t in zip(student, teacher)]
    expected = 1 + sum(cosine_loss(tokens(t), tokens(s)) for s, t in zip(student, resized)) / 4
    assert torch.allclose(SemanticDistillationLoss("level")(student, teacher), expected, atol=1e-6)
    assert not torch.allclose(SemanticDistillationLoss("token")(student, teacher), expected, atol=1e-3)
    with pytest.raises(ValueError, match="level_weighting must be one of"):
        SemanticDistillationLoss("pixel")


# ---- teacher_normalization ----

def _full_range_image(seed=0):
    """A 0..255 image whose every channel spans 0..255 (where the code's x / 255 and a min-max rescale agree)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (2, 3, 32, 32), generator=g).float()
    x[:, :, 0, 0], x[:, :, 0, 1] = 0, 255
    return x


def test_imagenet_normalization_gives_the_authors_teacher_input():
    teacher = FrozenViTTeacher("vit_small_patch16_dinov3", model_kwargs=TINY_TEACHER, normalization="imagenet")
    raw = _full_range_image()
    expected = (raw / 255 - IMAGENET_MEAN) / IMAGENET_STD  # TextDiff_code/train.py, lines 293-294 and 347
    assert torch.allclose(teacher.prepare(raw), expected, atol=1e-5)
    # the student's input (z-scored per image and channel, as NormalizeIntensityd(channel_wise=True)) gives the same
    zscored = (raw - raw.mean((2, 3), keepdim=True)) / raw.std((2, 3), keepdim=True)
    assert torch.allclose(teacher.prepare(zscored), expected, atol=1e-5)
    outputs = teacher(zscored), teacher(raw)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(*outputs))
    # one channel: repeated, then each copy normalised with its own channel's statistics
    grey = raw[:, :1]
    assert torch.allclose(teacher.prepare(grey), (grey / 255 - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5)
    assert "mean" not in teacher.state_dict() and "std" not in teacher.state_dict()  # nothing new to save or load


def test_student_normalization_passes_the_image_through_and_is_the_default():
    teacher = FrozenViTTeacher("vit_small_patch16_dinov3", model_kwargs=TINY_TEACHER)
    assert teacher.normalization == "student"
    image = torch.randn(2, 3, 32, 32)
    assert torch.equal(teacher.prepare(image), image)
    assert torch.equal(teacher.prepare(image[:, :1]), image[:, :1].expand(-1, 3, -1, -1))
    imagenet = FrozenViTTeacher("vit_small_patch16_dinov3", model_kwargs=TINY_TEACHER, normalization="imagenet")
    imagenet.load_state_dict(teacher.state_dict())  # same weights, only the input differs
    assert not torch.allclose(teacher(image)[-1], imagenet(image)[-1])
    with pytest.raises(ValueError, match="normalization must be one of"):
        FrozenViTTeacher("vit_small_patch16_dinov3", model_kwargs=TINY_TEACHER, normalization="dinov3")


# ---- query_positions ----

def test_query_positions_off_by_default_and_no_parameters_change():
    torch.manual_seed(0)
    off, on = tiny_net(), tiny_net(query_positions=True)
    assert not off.query_positions and not any(cma.positional for cma in off.alignment)
    assert all(cma.positional for cma in on.alignment)
    assert off.state_dict().keys() == on.state_dict().keys()
    on.load_state_dict(off.state_dict())  # strict: a checkpoint of either loads into the other
    image, (hidden, mask) = torch.randn(1, 1, 64, 64), _text()
    with torch.no_grad():
        assert not torch.allclose(off.eval()(image, hidden, mask), on.eval()(image, hidden, mask))


def test_without_positions_a_query_does_not_know_where_it_is():
    """Off: moving the visual tokens around moves the attention's output with them (permutation-equivariant);
    on: the output also depends on where a token is."""
    torch.manual_seed(1)
    feature, (hidden, mask) = torch.randn(1, 32, 6, 6), _text()
    text = hidden[:, -1]
    perm = torch.randperm(36)

    def shuffle(x):
        return x.flatten(2)[:, :, perm].view_as(x)

    for positions, equivariant in ((False, True), (True, False)):
        cma = tiny_net(query_positions=positions).alignment[0].eval()
        with torch.no_grad():
            moved_then_attended = cma(shuffle(feature), text, mask)
            attended_then_moved = shuffle(cma(feature, text, mask))
        assert torch.allclose(moved_then_attended, attended_then_moved, atol=1e-5) == equivariant


# ---- decoder ----

def test_plain_decoder_builds_runs_and_has_no_scale_branch():
    torch.manual_seed(2)
    net = tiny_net(decoder="plain")
    assert not any(isinstance(m, ScaleBranch) for m in net.modules())
    assert isinstance(net.plain_decoder, PlainDecoder) and net.branches is None and net.head is None
    keys = net.state_dict().keys()
    assert any(k.startswith("plain_decoder.") for k in keys)
    assert not any(k.startswith(("branches.", "head.")) for k in keys)
    # the encoder, projections and alignment are the default's: only the decoder's parameters differ
    default = tiny_net()
    same = {k for k in default.state_dict() if not k.startswith(("branches.", "head."))}
    assert same == {k for k in keys if not k.startswith("plain_decoder.")}
    image, (hidden, mask) = torch.randn(2, 1, 64, 96, requires_grad=True), _text(2)
    logits, features = net(image, hidden, mask, return_features=True)
    assert logits.shape == (2, 1, 64, 96) and len(features) == 4
    logits.mean().backward()
    assert all(p.grad is not None for n, p in net.named_parameters() if n != "null_text")
    with pytest.raises(ValueError, match="decoder must be one of"):
        tiny_net(decoder="unet")


def test_plain_decoder_is_phase1_head_on_the_aligned_features():
    """fuse(cat(up(r_i(ft_i)))) at the input size: the authors' ``adjust`` head, as phase I's."""
    torch.manual_seed(3)
    head = PlainDecoder(in_channels=8, out_channels=1, width=4).eval()
    features = [torch.randn(1, 8, s, s) for s in (16, 8, 4, 2)]
    full = torch.cat([F.interpolate(r(f), size=(32, 32), mode="bilinear", align_corners=False)
                      for r, f in zip(head.reduce, features)], 1)
    assert torch.allclose(head(features, (32, 32)), head.fuse(full), atol=1e-5)
    # phase I's network computes the same way (the refactor kept its keys and output)
    pre = ConsistencyAwareEncoder(in_channels=1, backbone_kwargs=TINY_RESNET).eval()
    image = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        maps = pre.encoder(image)
        full = torch.cat([F.interpolate(r(f), size=(64, 64), mode="bilinear", align_corners=False)
                          for r, f in zip(pre.reduce, maps)], 1)
        assert torch.allclose(pre(image), pre.fuse(full), atol=1e-5)
    assert {k.split(".")[0] for k in pre.state_dict()} == {"encoder", "reduce", "fuse"}


def test_default_network_keeps_todays_parameter_names():
    prefixes = {k.split(".")[0] for k in tiny_net().state_dict()}
    assert prefixes == {"encoder", "projections", "null_text", "alignment", "branches", "head"}


# ---- the switches in the configs ----

def test_switch_defaults_in_the_configs():
    train = _parser("train.json")
    assert train["query_positions"] is False and train["decoder"] == "scale_adaptive"
    assert train["teacher_normalization"] == "student" and train["distill_level_weighting"] == "token"
    assert train["distill_weight"] == 1.0 and train["teacher_name"] == "vit_small_patch16_dinov3.lvd1689m"
    assert train["network_def"]["query_positions"] == "@query_positions"
    assert train["network_def"]["decoder"] == "@decoder"
    assert train["teacher"]["normalization"] == "@teacher_normalization"
    assert train["train"]["trainer"]["distill_loss"] == "@distill_loss"
    inference = _parser("inference.json")
    for key in ("query_positions", "decoder"):  # the network inference builds is the one training built
        assert inference[key] == train[key] and inference["network_def"][key] == train["network_def"][key]


@pytest.mark.parametrize("config", ["train.json", "inference.json"])
def test_switches_reach_the_network(config):
    net = _parser(config, "demo.json", query_positions=True, decoder="plain", device="cpu").get_parsed_content(
        "network_def")
    assert net.query_positions and all(cma.positional for cma in net.alignment)
    assert isinstance(net.plain_decoder, PlainDecoder)


def test_switches_reach_the_teacher_and_the_distillation_loss():
    parser = _parser("train.json", "demo.json", teacher_normalization="imagenet", distill_level_weighting="level",
                     device="cpu")
    assert parser.get_parsed_content("teacher").normalization == "imagenet"
    assert parser.get_parsed_content("distill_loss").level_weighting == "level"


# ---- phase I perturbations of pretrain.json ----

def _perturbations(**entry_overrides):
    """pretrain.json's ``perturbation`` list (on train.json), with some entries' arguments replaced."""
    parser = _parser("train.json", "pretrain.json")
    for index, values in entry_overrides.items():
        for key, value in values.items():
            parser[f"perturbation#{index}#{key}"] = value
    return parser.get_parsed_content("perturbation")


def _apply(transforms, image, seed):
    """Each transform after reseeding torch (torchvision draws from it): two lists that differ in one entry draw
    the same numbers in every other entry."""
    data = {"image": image.clone()}
    for i, t in enumerate(transforms):
        torch.manual_seed(seed * 100 + i)
        data = t(data)
    return torch.as_tensor(data["image_perturbed"])


def test_phase1_perturbations_are_the_authors_values():
    """Stage1_CAE/utils/run_engine_stage1.py, lines 135-138."""
    parser = _parser("train.json", "pretrain.json")
    names = [e.get("name", e["_target_"]) for e in parser["perturbation"]]
    assert names == ["ScaleIntensityd", "CopyItemsd", "ColorJitter", "RandomGrayscale", "GaussianBlur",
                     "NormalizeIntensityd", "EnsureTyped"]
    jitter, grey, blur = (t.trans.trans for t in parser.get_parsed_content("perturbation")[2:5])
    assert jitter.brightness == jitter.contrast == jitter.saturation == pytest.approx((0.7, 1.3))
    assert jitter.hue == pytest.approx((-0.1, 0.1))
    assert grey.p == 0.5
    assert tuple(blur.kernel_size) == (1, 7) and tuple(blur.sigma) == pytest.approx((0.1, 3.0))
    # kernel (1, 7) is (width, height): the blur runs along the rows' direction only (vertically)
    dot = torch.zeros(1, 15, 15)
    dot[0, 7, 7] = 1
    torch.manual_seed(0)
    blurred = blur(dot)
    assert blurred[0, :, 7].count_nonzero() > 1 and blurred[0, :, :7].abs().sum() == 0 == blurred[0, :, 8:].abs().sum()


def test_hue_and_saturation_act_on_rgb_and_not_on_one_channel():
    """The config's own list, against the same list with saturation and hue off (every other draw the same)."""
    as_configured = _perturbations()
    no_colour = _perturbations(**{"2": {"saturation": 0.0, "hue": 0.0}})
    torch.manual_seed(5)
    rgb = torch.rand(3, 32, 32)
    grey = rgb[:1].clone()
    seeds = range(8)
    rgb_changed = [not torch.allclose(_apply(as_configured, rgb, s), _apply(no_colour, rgb, s), atol=1e-5)
                   for s in seeds]
    grey_changed = [not torch.allclose(_apply(as_configured, grey, s), _apply(no_colour, grey, s), atol=1e-6)
                    for s in seeds]
    assert any(rgb_changed)  # RGB: hue and saturation change the perturbed view (unless grey scale struck)
    assert not any(grey_changed)  # one channel: they do nothing
    out = _apply(as_configured, rgb, 0)
    assert out.shape == rgb.shape and out.dtype == torch.float32
