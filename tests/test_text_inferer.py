import torch
from monai.inferers import SimpleInferer, SliceInferer, SlidingWindowInferer

from custom_nets.inferers import TextInferer

A = "Unilateral pulmonary infection, one infected area, upper left lung."
B = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."


class Recorder(torch.nn.Module):
    """Returns the first text feature of each window as its output, so the test sees which text each got."""

    def forward(self, image, text_hidden=None, text_mask=None):
        if text_hidden is None:
            return torch.full_like(image[:, :1], -1.0)
        assert text_hidden.shape[0] == image.shape[0] == text_mask.shape[0]
        return text_hidden[:, -1, 1, 0].reshape(-1, 1, *([1] * (image.ndim - 2))).expand(-1, 1, *image.shape[2:]).clone()


def test_sliding_window_gives_each_image_its_sentence(tiny_text_encoder):
    inferer = TextInferer(tiny_text_encoder, SlidingWindowInferer(roi_size=(16, 16), sw_batch_size=4, overlap=0.25))
    out = inferer(torch.rand(2, 1, 40, 40), Recorder(), text=[A, B])
    expected = [tiny_text_encoder([s])[0][0, -1, 1, 0] for s in (A, B)]
    assert torch.allclose(out[0], expected[0]) and torch.allclose(out[1], expected[1])
    assert not torch.allclose(expected[0], expected[1])


def test_prompt_from_config_and_missing_text(tiny_text_encoder):
    net = Recorder()
    with_prompt = TextInferer(tiny_text_encoder, SimpleInferer(), prompt=A)(torch.rand(1, 1, 8, 8), net)
    assert torch.allclose(with_prompt, tiny_text_encoder([A])[0][0, -1, 1, 0])
    for prompt in (None, "", "   "):  # no sentence: the network's null-text path
        out = TextInferer(tiny_text_encoder, SimpleInferer(), prompt=prompt)(torch.rand(1, 1, 8, 8), net)
        assert torch.all(out == -1)


def test_slice_inferer_shares_the_study_sentence(tiny_text_encoder):
    calls = tiny_text_encoder.model_calls
    inferer = TextInferer(tiny_text_encoder, SliceInferer(roi_size=(16, 16), spatial_dim=2, sw_batch_size=3))
    out = inferer(torch.rand(1, 1, 16, 16, 5), Recorder(), text="Lesion in the lower right lung.")
    assert out.shape == (1, 1, 16, 16, 5) and torch.unique(out).numel() == 1
    assert tiny_text_encoder.model_calls <= calls + 1  # the sentence is encoded once for all slices
