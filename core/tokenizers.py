"""Text tokenizers for CLIP-style text encoders, with one small API.

    tok = WordTokenizer(world.words(), context_length=20)
    tok(["a red circle"])          # LongTensor [1, 20]
    tokenizer_from_config(tok.to_config())   # the same tokenizer again

Both tokenizers lay a caption out as OpenAI's ``clip.tokenize`` does:
``[sot] tokens... [eot] 0 0 ...``. CLIP's text encoder pools the feature at
``text.argmax(dim=-1)``, so the end-of-text id is the largest id of the
vocabulary and padding is 0; an over-long text is truncated and keeps its eot
as the last token.

Why a word-level tokenizer for the embedded models: the shapes world speaks
a closed language of a few dozen words (``pixloom.world.words()``). One token
per word gives a vocabulary of ~37 ids instead of BPE's 49,408, so the token
embedding is 37 x width instead of 49,408 x width (6 MB of the weight file at
width 128 would be spent on rows never trained), every word is seen
thousands of times in training, and captions fit in 20 positions. Words
outside the vocabulary map to ``<unk>``, so any prompt is accepted.
:class:`BPETokenizer` is for OpenAI's released CLIP models.
"""
from __future__ import annotations

import re

import torch

PAD, UNK, SOT, EOT = "<pad>", "<unk>", "<sot>", "<eot>"

_PUNCT = re.compile(r"[^\w\s]")


class WordTokenizer:
    """Lower-cased, punctuation-free, whitespace-split words, one id each.

    Ids: ``<pad>`` = 0, ``<unk>`` = 1, ``<sot>`` = 2, the words in order, and
    ``<eot>`` last (the largest id).
    """

    def __init__(self, vocab: list[str], context_length: int = 20):
        if context_length < 2:
            raise ValueError("context_length must leave room for sot and eot")
        words = [w for w in dict.fromkeys(str(v).lower() for v in vocab) if w not in (PAD, UNK, SOT, EOT)]
        self.words = words
        self.context_length = int(context_length)
        self.itos = [PAD, UNK, SOT] + words + [EOT]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad_id, self.unk_id, self.sot_id, self.eot_id = 0, 1, 2, len(self.itos) - 1

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @staticmethod
    def split(text: str) -> list[str]:
        return _PUNCT.sub(" ", text.lower()).split()

    def encode(self, text: str) -> list[int]:
        """Word ids of one text, without sot/eot."""
        return [self.stoi.get(w, self.unk_id) for w in self.split(text)]

    def decode(self, ids) -> str:
        out = []
        for i in (int(x) for x in ids):
            if i in (self.pad_id, self.sot_id):
                continue
            if i == self.eot_id:
                break
            out.append(self.itos[i])
        return " ".join(out)

    def __call__(self, texts) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_id] + self.encode(text)[: self.context_length - 2] + [self.eot_id]
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def to_config(self) -> dict:
        return {"type": "word", "vocab": list(self.words), "context_length": self.context_length}


class BPETokenizer:
    """OpenAI's byte-pair tokenizer (49,408 ids), laid out as ``clip.tokenize``
    with ``truncate=True``: over-long texts are cut and end in eot."""

    def __init__(self, context_length: int = 77):
        from .clip_compat import simple_tokenizer

        self._bpe = simple_tokenizer().SimpleTokenizer()
        self.context_length = int(context_length)
        self.sot_id = self._bpe.encoder["<|startoftext|>"]
        self.eot_id = self._bpe.encoder["<|endoftext|>"]
        self.pad_id = 0

    @property
    def vocab_size(self) -> int:
        return len(self._bpe.encoder)

    def encode(self, text: str) -> list[int]:
        return self._bpe.encode(text)

    def decode(self, ids) -> str:
        keep = [int(i) for i in ids if int(i) not in (self.pad_id, self.sot_id, self.eot_id)]
        return self._bpe.decode(keep).strip()

    def __call__(self, texts) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_id] + self._bpe.encode(text) + [self.eot_id]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot_id
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def to_config(self) -> dict:
        return {"type": "bpe", "context_length": self.context_length}


def tokenizer_from_config(cfg: dict):
    """The tokenizer a ``to_config()`` dict describes (as stored in model metadata)."""
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ValueError(f"not a tokenizer config: {cfg!r}")
    kind = cfg["type"]
    if kind == "word":
        return WordTokenizer(list(cfg["vocab"]), int(cfg.get("context_length", 20)))
    if kind == "bpe":
        return BPETokenizer(int(cfg.get("context_length", 77)))
    raise ValueError(f"unknown tokenizer type {kind!r} (known: word, bpe)")
