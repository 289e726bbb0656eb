"""TAMISeg's network, losses and distillation wrapper on hand-made tensors (no bundle, no data)."""

import pytest
import torch
from monai.losses import DiceCELoss
from torch.nn import functional as F

from custom_nets.backbones import FrozenViTTeacher
from custom_nets.blocks import EfficientChannelAttention, SpatialAttention
from custom_nets.engines import DistillationTrainer
from custom_nets.losses import ConsistencyAwareLoss, SemanticDistillationLoss, consistency_loss
from custom_nets.backbones import initialize_encoder, load_encoder_weights
from custom_nets.nets import ConsistencyAwareEncoder, TAMISeg

TINY_RESNET = {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]}
TINY_TEACHER = {"depth": 4, "embed_dim": 32, "num_heads": 2}


def tiny_net(**kw):
    args = dict(in_channels=1, backbone_kwargs=TINY_RESNET, feature_width=32, decoder_width=16, text_hidden_size=24,
                num_heads=2)
    return TAMISeg(**{**args, **kw})


def _text(b=2, length=7, layers=3, width=24):
    return torch.randn(b, layers, length, width), torch.ones(b, length, dtype=torch.long)


# ---- phase I loss (Eqs. 1-6) ----

def _bce(target, p):  # Eq. 2 on probabilities
    return -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()


def _dice(target, p):  # Eq. 3, per image, averaged (as MONAI's DiceLoss)
    dims = (1, 2, 3)
    return (1 - 2 * (p * target).sum(dims) / (p.sum(dims) + target.sum(dims))).mean()


def test_consistency_loss_matches_equation_5():
    torch.manual_seed(0)
    la, lb = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    pa, pb = torch.sigmoid(la), torch.sigmoid(lb)
    expected = 0.5 * (_bce((pb >= 0.5).float(), pa) + _bce((pa >= 0.5).float(), pb))
    assert torch.allclose(consistency_loss(la, lb, 0.5), expected, atol=1e-6)
    # another threshold changes the binarised targets
    expected_07 = 0.5 * (_bce((pb >= 0.7).float(), pa) + _bce((pa >= 0.7).float(), pb))
    assert torch.allclose(consistency_loss(la, lb, 0.7), expected_07, atol=1e-6)
    assert not torch.allclose(expected, expected_07)


def test_identical_binary_predictions_give_zero_consistency_and_soft_ones_do_not():
    binary = (torch.rand(2, 1, 8, 8) > 0.5).float() * 60 - 30  # saturated logits: P in {0, 1}
    assert consistency_loss(binary, binary.clone()) < 1e-6
    soft = torch.full((2, 1, 8, 8), torch.logit(torch.tensor(0.6)).item())  # P = 0.6 for both: Eq. 5 is -log 0.6, not 0
    assert torch.allclose(consistency_loss(soft, soft.clone()), -torch.log(torch.tensor(0.6)), atol=1e-6)


def test_pretrain_loss_matches_equation_6():
    torch.manual_seed(1)
    logits = torch.randn(4, 1, 8, 8)  # 2 clean + 2 perturbed
    g = (torch.rand(2, 1, 8, 8) > 0.6).float()
    g[:, :, 0, 0] = 1  # no empty mask (Eq. 3 is undefined on two empty maps)
    target = torch.cat([g, g])
    pa, pb = torch.sigmoid(logits[:2]), torch.sigmoid(logits[2:])
    l_mask = lambda p: _bce(g, p) + _dice(g, p)  # noqa: E731, Eq. 1
    l_cons = 0.5 * (_bce((pb >= 0.5).float(), pa) + _bce((pa >= 0.5).float(), pb))
    expected = l_mask(pa) + l_mask(pb) + l_cons
    assert torch.allclose(ConsistencyAwareLoss()(logits, target), expected, atol=1e-4)
    assert torch.allclose(ConsistencyAwareLoss(consistency_weight=0)(logits, target), l_mask(pa) + l_mask(pb), atol=1e-4)
    with pytest.raises(ValueError, match="2B"):
        ConsistencyAwareLoss()(logits[:3], target[:3])


# ---- distillation (Eq. 7) ----

def test_distillation_loss_zero_when_aligned_and_matches_equation_7():
    torch.manual_seed(2)
    student = [torch.randn(2, 8, 4, 4), torch.randn(2, 8, 2, 2)]
    teacher = [s.clone() * 3.0 for s in student]  # same direction: cosine 1
    assert SemanticDistillationLoss()(student, teacher).abs() < 1e-6
    # a 2x2 teacher grid is resized to each level; the mean runs over all N = 16 + 4 tokens per image
    t = torch.randn(2, 8, 2, 2)
    loss = SemanticDistillationLoss()(student, [t, t])
    cos = [F.cosine_similarity(s, F.interpolate(t, size=s.shape[2:], mode="bilinear", align_corners=False), dim=1)
           for s in student]
    expected = 1 - torch.cat([c.flatten() for c in cos]).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    with pytest.raises(ValueError, match="feature_width"):
        SemanticDistillationLoss()([torch.randn(1, 4, 2, 2)], [torch.randn(1, 8, 2, 2)])


def _one_step(net, teacher, weight, loss_function=None):
    """One DistillationTrainer iteration on a fixed batch; returns the engine's output and the batch."""
    torch.manual_seed(4)
    image, label = torch.randn(2, 1, 64, 64), (torch.rand(2, 1, 64, 64) > 0.7).float()
    hidden, mask = _text()

    def prepare_batch(batch, device=None, non_blocking=False, **_):
        return batch["image"], batch["label"], (), {"text_hidden": hidden, "text_mask": mask}

    trainer = DistillationTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[{"image": image, "label": label}], network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.0), loss_function=loss_function or DiceCELoss(sigmoid=True),
        prepare_batch=prepare_batch, decollate=False, teacher=teacher, distill_weight=weight)
    trainer.run()
    return trainer, image, label, hidden, mask


def test_distillation_trainer_adds_eq14_and_the_gradient_reaches_the_student_only():
    torch.manual_seed(3)
    net = tiny_net()
    teacher = FrozenViTTeacher("vit_small_patch16_dinov3", model_kwargs=TINY_TEACHER)
    trainer, image, label, hidden, mask = _one_step(net, teacher, 0.5)
    out = trainer.state.output
    # Eq. 14, recomputed outside the trainer: Lpred + lambda * Ldistill, the features the student gave
    logits, features = net.train()(image, hidden, mask, return_features=True)
    distill = SemanticDistillationLoss()(features, teacher(image))
    assert torch.allclose(out["distill_loss"], distill) and "student_features" not in out
    assert torch.allclose(out["loss"], DiceCELoss(sigmoid=True)(logits, label) + 0.5 * distill)
    assert all(p.grad is not None for p in net.projections.parameters())
    assert all(p.grad is None for p in teacher.parameters()) and not teacher.training
    # the distillation term alone moves phi_i: with a prediction loss of 0, phi_i's gradient is not 0
    net.zero_grad()
    _one_step(net, teacher, 0.5, loss_function=lambda pred, target: (pred * 0).sum())
    assert net.projections[0][0].weight.grad.abs().sum() > 0
    # weight 0 or no teacher (ablation "distillation off", phase I): SupervisedTrainer, the teacher never runs
    for args in ((teacher, 0.0), (None, 1.0)):
        trainer = _one_step(net, *args)[0]
        assert trainer.teacher is None and "distill_loss" not in trainer.state.output
        assert torch.allclose(trainer.state.output["loss"], DiceCELoss(sigmoid=True)(net(image, hidden, mask), label))
    with pytest.raises(ValueError, match="has 2 blocks"):
        FrozenViTTeacher("vit_small_patch16_dinov3", model_kwargs={**TINY_TEACHER, "depth": 2})


# ---- network ----

def test_tiny_shapes_gradients_and_features():
    net = tiny_net()
    image = torch.randn(2, 1, 64, 96, requires_grad=True)
    logits, features = net(image, *_text(), return_features=True)
    assert logits.shape == (2, 1, 64, 96)
    assert [f.shape[2:] for f in features] == [(32, 48), (16, 24), (8, 12), (4, 6)]  # strides 2, 4, 8, 16
    assert all(f.shape[1] == 32 for f in features)
    logits.mean().backward()
    assert image.grad is not None
    assert all(p.grad is not None for n, p in net.named_parameters() if n != "null_text")


def test_full_size_shapes_gradients_and_parameter_count():
    net = TAMISeg()
    params = sum(p.numel() for p in net.parameters())
    assert 15.5e6 < params < 16.2e6  # see the model card: 15.86 M against the paper's 48.75 M, term by term
    assert sum(p.numel() for p in net.encoder.parameters()) == pytest.approx(8.54e6, rel=0.01)  # ResNet-50 to layer3
    logits = net(torch.randn(1, 3, 256, 256), torch.randn(1, 12, 24, 768), torch.ones(1, 24))
    assert logits.shape == (1, 1, 256, 256)
    logits.mean().backward()
    assert net.encoder.conv1.weight.grad is not None


def test_text_changes_output_null_text_and_text_off():
    torch.manual_seed(4)
    net = tiny_net().eval()
    image = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        a, b = net(image, *_text(1)), net(image, *_text(1))
        none = net(image)
        zero_mask = net(image, _text(1)[0], torch.zeros(1, 7, dtype=torch.long))
    assert not torch.allclose(a, b)
    assert torch.allclose(none, zero_mask, atol=1e-6)  # no text and an empty sentence: the same null text
    off = tiny_net(use_text=False).eval()
    assert off.alignment is None and off.null_text is None
    assert not any("alignment" in n for n, _ in off.named_parameters())
    with torch.no_grad():
        assert torch.equal(off(image, *_text(1)), off(image))  # text ignored


def test_frozen_encoder_keeps_weights_and_statistics():
    net = tiny_net(freeze_encoder=True).train()
    assert not net.encoder.training and net.projections.training
    assert not any(p.requires_grad for p in net.encoder.parameters())
    before = {k: v.clone() for k, v in net.encoder.state_dict().items()}
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    net(torch.randn(2, 1, 64, 64), *_text()).mean().backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in net.encoder.state_dict().items())  # incl. BN running stats


def test_attention_blocks():
    x = torch.randn(2, 16, 8, 8)
    eca = EfficientChannelAttention(16)
    assert eca.conv.kernel_size == (3,)  # |log2(16)/2 + 1/2| = 2 -> odd 3
    w = torch.sigmoid(eca.conv(x.mean((2, 3))[:, None]))[:, 0]
    assert torch.allclose(eca(x), x * w[:, :, None, None])
    sa = SpatialAttention()
    maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
    assert torch.allclose(sa(x), x * torch.sigmoid(sa.convs[0](maps)))


# ---- phase I -> phase II ----

def test_phase1_encoder_loads_into_phase2(tmp_path):
    torch.manual_seed(5)
    pre = ConsistencyAwareEncoder(in_channels=1, backbone_kwargs=TINY_RESNET)
    assert pre(torch.randn(2, 1, 64, 64)).shape == (2, 1, 64, 64)
    path = tmp_path / "model.pt"
    torch.save(pre.state_dict(), path)
    net = tiny_net()
    assert not torch.equal(net.encoder.conv1.weight, pre.encoder.conv1.weight)
    initialize_encoder(net, "phase1", str(path))
    assert all(torch.equal(v, pre.encoder.state_dict()[k]) for k, v in net.encoder.state_dict().items())
    with pytest.raises(FileNotFoundError, match="phase I checkpoint not found: .*missing.pt"):
        initialize_encoder(net, "phase1", str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="encoder_init must be one of"):
        initialize_encoder(net, "imagenet1k", str(path))
    other = TAMISeg(in_channels=1, backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [8, 16, 16, 64]},
                    feature_width=32, decoder_width=16, text_hidden_size=24, num_heads=2)
    with pytest.raises(ValueError, match="does not fit"):
        load_encoder_weights(other, str(path))
    torch.save({"something": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="no 'encoder"):
        load_encoder_weights(net, str(tmp_path / "bad.pt"))
