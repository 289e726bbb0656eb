"""C2Seg's stage I loss: Cluster-aware Contrastive Learning (CaCL), "Towards Text-Mask Consistency in Medical Image
Segmentation" (Gui, Tu, Sha, Du; ICLR 2026), Sec. "Stage I: CaCL reduces false negatives" of the poster.

Clinical sentences are templated: in a batch many pairs (image i, sentence j != i) describe the same finding, and
one-positive InfoNCE pushes them apart (false negatives). CaCL replaces the identity target by a soft target built
from how similar the batch's sentences are in the frozen language space. The poster's equations, as implemented:

    M_ij   = cos(e_i, e_j)                        e: frozen text-encoder sentence embeddings (no gradient)
    M'_ij  = max(0, M_ij - (1/B) sum_k M_ik)      "row-mean debiasing and non-negativity clipping"
    Y^_ij  = exp(M'_ij / tau) / sum_k exp(M'_ik / tau)
    Y_ij   = rho Y^_ij + (1 - rho) 1[j = i]
    P(v->l)_ij = softmax_j(s_ij / tau),   P(l->v)_ij = softmax_i(s_ij / tau)
    L_CaCL = -(1/B) sum_i sum_j [ Y_ij log P(v->l)_ij + Y_ji log P(l->v)_ij ]
    dL/ds_ij = (1/tau) (P(v->l)_ij - Y_ij + P(l->v)_ij - Y_ji)          (poster; see the constant below)

with s_ij = cos(v_i, t_j), v_i the pooled, projected image embedding and t_j the (projected) text embedding.
tau = 0.07 and rho = 0.8 are the poster's defaults (Table 4: the model is only weakly sensitive to both).

Why identical sentences are not pushed apart: two copies j, j' of one sentence have M_.j = M_.j' and so Y^_ij =
Y^_ij' for every i (and Y^ is uniform for a batch of one repeated sentence); their text embeddings are the same
function of the same input, so s_ij = s_ij' and P(v->l) cannot prefer either copy, and the gradient an image gets from
two identical columns is their sum, never a difference.

Where we filled in (the poster gives the equations but not these):
    - s_ij is the plain cosine, in [-1, 1], and the temperature is applied once, inside P: the poster writes
      P = softmax(s / tau) and dL/ds = (1/tau)(...), which only hold if s itself carries no 1/tau. (A CLIP-style
      "logit = cos / tau" already in s would divide twice.)
    - The gradient constant: L is averaged over the batch (the 1/B of the poster's L), and every row of Y sums to 1
      (a softmax row times rho plus (1 - rho) on the diagonal), so autograd gives
      dL/ds_ij = (1 / (B tau)) (P(v->l)_ij - Y_ij + P(l->v)_ij - Y_ji): the poster's closed form is that of the
      un-averaged sum (B L). ``tests/test_c2seg_blocks.py`` checks this factor.
    - L sums the two directions (the poster's bracket), so with rho = 0 it is CE(v->l) + CE(l->v), twice CLIP's
      loss, which averages them. We keep the poster's sum; it only rescales the learning rate.
    - M is computed from separate ``frozen_text_embeddings`` when given ("in frozen language space"): when the text
      side of s goes through a trainable projection, the targets must still come from the frozen encoder's space.
      Without them, M uses ``text_embeddings`` detached. Either way Y carries no gradient.
    - The row mean of the debiasing includes the diagonal (M_ii = 1), i.e. the plain mean of row i of M.
    - The same tau is used for the soft targets (Y^) and for P, as the poster writes both with tau;
      ``target_temperature`` can set the target's separately.
    - In-batch only: no cross-device gathering of embeddings (the poster's pre-training batch is 256; with several
      devices the negatives would be per device).
    - Everything is computed in float32 (under AMP, cos / 0.07 in half precision loses the target's small differences).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def cacl_soft_targets(frozen_text_embeddings: torch.Tensor, rho: float = 0.8,
                      temperature: float = 0.07) -> torch.Tensor:
    """The CaCL target matrix Y (B, B): ``rho softmax_j(M'_ij / tau) + (1 - rho) 1[j = i]``, with
    ``M' = max(0, M - rowmean(M))`` and M the cosine similarity of the frozen sentence embeddings.

    Args:
        frozen_text_embeddings: (B, D) sentence embeddings in the frozen language space (detached here).
        rho: weight of the similarity-based part (0: one-hot targets, plain InfoNCE).
        temperature: tau of the target softmax.

    Example:
        >>> e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # sentences 0 and 1 are identical
        >>> cacl_soft_targets(e, rho=1.0).round(decimals=3)
        tensor([[0.4980, 0.4980, 0.0040],
                [0.4980, 0.4980, 0.0040],
                [0.0000, 0.0000, 1.0000]])
    """
    if frozen_text_embeddings.ndim != 2:
        raise ValueError(f"frozen_text_embeddings must be (B, D), got {tuple(frozen_text_embeddings.shape)}")
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    e = F.normalize(frozen_text_embeddings.detach().float(), dim=1)
    m = e @ e.t()  # M, cosine in the frozen space
    m_prime = (m - m.mean(dim=1, keepdim=True)).clamp_min(0.0)  # M'
    y_hat = torch.softmax(m_prime / temperature, dim=1)
    eye = torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
    return rho * y_hat + (1.0 - rho) * eye


def cacl_loss_from_similarity(similarity: torch.Tensor, targets: torch.Tensor,
                              temperature: float = 0.07) -> torch.Tensor:
    """``-(1/B) sum_ij [Y_ij log softmax_j(s_ij / tau) + Y_ji log softmax_i(s_ij / tau)]``.

    Args:
        similarity: s (B, B), s_ij = cos(image i, text j) (no temperature in it).
        targets: Y (B, B), rows summing to 1 (:func:`cacl_soft_targets`).
        temperature: tau.

    Example:
        >>> s = torch.eye(2)  # matched pairs cos = 1, others 0
        >>> round(cacl_loss_from_similarity(s, torch.eye(2), temperature=1.0).item(), 4)  # 2 * CE([1, 0] -> 0)
        0.6265
    """
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be (B, B), got {tuple(similarity.shape)}")
    if targets.shape != similarity.shape:
        raise ValueError(f"targets must be {tuple(similarity.shape)}, got {tuple(targets.shape)}")
    logits = similarity.float() / temperature
    log_p_vl = torch.log_softmax(logits, dim=1)  # over texts j, for image i
    log_p_lv = torch.log_softmax(logits, dim=0)  # over images i, for text j
    targets = targets.to(logits.dtype)
    b = similarity.shape[0]
    return -((targets * log_p_vl).sum() + (targets.t() * log_p_lv).sum()) / b


class CaCLLoss(nn.Module):
    """Cluster-aware contrastive loss of C2Seg's stage I (see the module docstring for the equations and what we
    filled in).

    Args:
        temperature: tau, 0.07 in the paper (used in P and, unless ``target_temperature`` is set, in Y^).
        rho: weight of the soft, similarity-based target, 0.8 in the paper; 0 gives symmetric InfoNCE (summed).
        target_temperature: tau of the target softmax Y^ when it should differ from ``temperature``.

    Forward:
        image_embeddings: (B, D) pooled, projected image features v_i.
        text_embeddings: (B, D) text features t_j compared with the images (s_ij = cos(v_i, t_j)).
        frozen_text_embeddings: (B, D') sentence embeddings of the frozen text encoder used for M; default:
            ``text_embeddings`` detached.

    Example:
        >>> loss = CaCLLoss()
        >>> v, t = torch.randn(4, 8), torch.randn(4, 8)
        >>> bool(loss(v, t) > 0), loss(v, t, frozen_text_embeddings=torch.randn(4, 16)).shape
        (True, torch.Size([]))
    """

    def __init__(self, temperature: float = 0.07, rho: float = 0.8, target_temperature: float | None = None) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"rho must be in [0, 1], got {rho}")
        self.temperature = temperature
        self.rho = rho
        self.target_temperature = temperature if target_temperature is None else target_temperature

    def similarity(self, image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """s (B, B): cosine of image i and text j, in float32."""
        if image_embeddings.ndim != 2 or text_embeddings.ndim != 2:
            raise ValueError(f"embeddings must be (B, D), got {tuple(image_embeddings.shape)} and "
                             f"{tuple(text_embeddings.shape)}")
        if image_embeddings.shape != text_embeddings.shape:
            raise ValueError(f"image and text embeddings must have the same (B, D): {tuple(image_embeddings.shape)} "
                             f"vs {tuple(text_embeddings.shape)} (project both to a shared width first)")
        v = F.normalize(image_embeddings.float(), dim=1)
        t = F.normalize(text_embeddings.float(), dim=1)
        return v @ t.t()

    def forward(self, image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
                frozen_text_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        s = self.similarity(image_embeddings, text_embeddings)
        frozen = text_embeddings if frozen_text_embeddings is None else frozen_text_embeddings
        if frozen.shape[0] != s.shape[0]:
            raise ValueError(f"frozen_text_embeddings has {frozen.shape[0]} rows for a batch of {s.shape[0]}")
        y = cacl_soft_targets(frozen, self.rho, self.target_temperature)
        return cacl_loss_from_similarity(s, y, self.temperature)


class CaCLTrainingLoss(nn.Module):
    """:class:`CaCLLoss` as a MONAI trainer's ``loss_function``: ``loss(pred, target)``, with ``pred`` the stage I
    network's ``(image_embeddings, text_embeddings, frozen_text_embeddings)``
    (:class:`custom_nets.nets.C2SegContrastive`) and ``target`` unused (stage I learns from image-sentence pairs; the
    masks are not read).

    Args:
        temperature, rho, target_temperature: :class:`CaCLLoss`'s.

    Example:
        >>> loss = CaCLTrainingLoss(rho=0.0)
        >>> loss((torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 16)), None).shape
        torch.Size([])
    """

    def __init__(self, temperature: float = 0.07, rho: float = 0.8, target_temperature: float | None = None) -> None:
        super().__init__()
        self.cacl = CaCLLoss(temperature, rho, target_temperature)

    def forward(self, pred: tuple[torch.Tensor, torch.Tensor, torch.Tensor], target: object = None) -> torch.Tensor:
        if not isinstance(pred, (tuple, list)) or len(pred) != 3:
            raise ValueError("pred must be the stage I network's (image_embeddings, text_embeddings, "
                             f"frozen_text_embeddings), got {type(pred).__name__}")
        return self.cacl(*pred)
