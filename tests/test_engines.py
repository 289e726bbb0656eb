from pathlib import Path

import pytest
import torch
from monai.engines import SupervisedTrainer

from custom_nets.engines import PrepareBatchWithText
from custom_nets.handlers import StagedOutputDir
from custom_nets.utils import refuse_overwrite


class RecordingNet(torch.nn.Module):
    """Records the keyword arguments it was called with."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1)
        self.calls = []

    def forward(self, image, text_hidden=None, text_mask=None):
        self.calls.append((text_hidden, text_mask))
        return self.conv(image)


def _batch(n=2):
    return {
        "image": torch.rand(n, 1, 8, 8),
        "label": (torch.rand(n, 1, 8, 8) > 0.5).float(),
        "text": ["Unilateral pulmonary infection, one infected area, upper left lung."] * n,
    }


def test_prepare_batch_encodes_text(tiny_text_encoder):
    image, label, args, kwargs = PrepareBatchWithText(tiny_text_encoder)(_batch(), device="cpu")
    assert image.shape == (2, 1, 8, 8) and label.shape == (2, 1, 8, 8) and args == ()
    assert kwargs["text_hidden"].shape[:2] == (2, 4) and kwargs["text_mask"].shape == kwargs["text_hidden"].shape[::2][:2]


def test_prepare_batch_without_encoder_is_image_only():
    out = PrepareBatchWithText(None)(_batch())
    assert len(out) == 2


def test_text_dropout_zeroes_mask_rows(tiny_text_encoder):
    pb = PrepareBatchWithText(tiny_text_encoder, text_dropout=1.0)
    assert pb(_batch())[3]["text_mask"].sum() == 0
    pb = PrepareBatchWithText(tiny_text_encoder, text_dropout=0.5, seed=0)
    rows = torch.cat([pb(_batch(8))[3]["text_mask"].sum(1) == 0 for _ in range(10)])
    assert 0 < rows.sum() < len(rows)


def test_missing_text_key_is_named(tiny_text_encoder):
    batch = _batch()
    del batch["text"]
    with pytest.raises(KeyError, match="'text'"):
        PrepareBatchWithText(tiny_text_encoder)(batch)


def test_trainer_calls_network_with_text_tensors(tiny_text_encoder):
    net = RecordingNet()
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[_batch(), _batch()], network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=torch.nn.BCEWithLogitsLoss(),
        prepare_batch=PrepareBatchWithText(tiny_text_encoder),
    )
    trainer.run()
    assert len(net.calls) == 2
    hidden, mask = net.calls[0]
    assert hidden.ndim == 4 and mask.ndim == 2 and mask.dtype == torch.long


def test_staged_output_commit_and_clash(tmp_path):
    out = tmp_path / "out"
    staged = StagedOutputDir(out)
    assert not (tmp_path / staged.staging_dir).exists()  # created by the first writer, not before
    assert staged.commit() == [] and not out.exists()
    Path(staged.staging_dir).mkdir()
    (tmp_path / staged.staging_dir / "a.txt").write_text("new")
    assert [p.name for p in staged.commit()] == ["a.txt"] and (out / "a.txt").read_text() == "new"
    assert not (tmp_path / staged.staging_dir).exists()
    again = StagedOutputDir(out)
    Path(again.staging_dir).mkdir()
    (tmp_path / again.staging_dir / "a.txt").write_text("newer")
    with pytest.raises(FileExistsError, match="a.txt"):
        again.commit()
    assert (out / "a.txt").read_text() == "new"  # not replaced; the new result is kept in staging
    StagedOutputDir(out, overwrite=True)  # a fresh one may replace
    again.overwrite = True
    again.commit()
    assert (out / "a.txt").read_text() == "newer"


def test_staged_output_discard_leaves_nothing(tmp_path):
    staged = StagedOutputDir(tmp_path / "out")
    Path(staged.staging_dir).mkdir()
    (tmp_path / staged.staging_dir / "half.png").write_text("x")
    with pytest.raises(RuntimeError):
        staged.discard(None, RuntimeError("boom"))
    assert list(tmp_path.iterdir()) == []


def test_refuse_overwrite(tmp_path):
    f = tmp_path / "model.pt"
    refuse_overwrite(str(f))
    f.write_text("x")
    with pytest.raises(FileExistsError, match="model.pt"):
        refuse_overwrite(str(f))
    refuse_overwrite(str(f), overwrite=True)


def test_prepare_batch_with_sentences_passes_text_through():
    from custom_nets.engines import PrepareBatchWithSentences

    batch = {"image": torch.zeros(2, 1, 4, 4), "text": ["a", "b"]}
    image, label, args, kwargs = PrepareBatchWithSentences()(batch, device="cpu")
    assert image.shape == (2, 1, 4, 4) and label is None and args == () and kwargs == {"text": ["a", "b"]}
    assert PrepareBatchWithSentences()({"image": torch.zeros(1, 1, 4, 4)})[3] == {"text": None}  # then the prompt is used
    with pytest.raises(ValueError, match="'image'"):
        PrepareBatchWithSentences()({"img": torch.zeros(1)})
