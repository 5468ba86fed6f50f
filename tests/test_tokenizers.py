"""Both tokenizers lay texts out as clip.tokenize does, so CLIP's argmax pooling finds eot."""
import json

import pytest
import torch

from pixloom import world
from pixloom.tokenizers import BPETokenizer, WordTokenizer, tokenizer_from_config


@pytest.fixture(scope="module")
def word():
    return WordTokenizer(world.words(), context_length=20)


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer(context_length=77)


def test_word_layout(word):
    ids = word(["a red circle", "a small yellow star in the top left on a blue background"])
    assert ids.shape == (2, 20) and ids.dtype == torch.long
    assert ids[0, :5].tolist() == [word.sot_id, word.stoi["a"], word.stoi["red"], word.stoi["circle"], word.eot_id]
    assert bool((ids[0, 5:] == 0).all())                       # padding is 0
    assert word.eot_id == word.vocab_size - 1 == max(word.stoi.values())
    # CLIP pools at argmax: that must be the eot position
    assert ids.argmax(dim=-1).tolist() == [4, (ids[1] != 0).sum().item() - 1]
    assert word.decode(ids[0]) == "a red circle"


def test_word_covers_the_world(word):
    for text, _ in world.all_captions(world.Form(prefix="a drawing of", size=True, colour=True, shape=True,
                                                 position=True, background=True))[:500]:
        ids = word([text])[0]
        assert word.unk_id not in ids.tolist()
        assert word.decode(ids) == text


def test_word_normalises_and_maps_unknown_words(word):
    ids = word(["A RED, circle!", "a magenta blob"])
    assert word.decode(ids[0]) == "a red circle"
    assert ids[1, 2].item() == word.unk_id and ids[1, 3].item() == word.unk_id
    assert ids[1].argmax().item() == 4                         # still pooled at eot
    assert word([""])[0, :2].tolist() == [word.sot_id, word.eot_id]


def test_word_truncates_keeping_eot(word):
    ids = word([" ".join(["red"] * 50)])[0]
    assert ids[0].item() == word.sot_id and ids[-1].item() == word.eot_id
    assert ids.argmax().item() == 19 and (ids == word.eot_id).sum().item() == 1


def test_word_config_round_trip(word):
    cfg = word.to_config()
    assert cfg["type"] == "word" and cfg["context_length"] == 20
    again = tokenizer_from_config(json.loads(json.dumps(cfg)))
    texts = ["a large green ring at the bottom", "an image of a black cross"]
    assert torch.equal(again(texts), word(texts))
    assert again.itos == word.itos


def test_word_ids_stable_when_specials_are_in_vocab():
    tok = WordTokenizer(["<pad>", "red", "<eot>", "red", "Blue"], context_length=6)
    assert tok.itos == ["<pad>", "<unk>", "<sot>", "red", "blue", "<eot>"]


def test_bpe_layout(bpe):
    ids = bpe(["a red circle", "an image of a white cross"])
    assert ids.shape == (2, 77)
    assert ids[:, 0].tolist() == [49406, 49406]
    assert bpe.eot_id == 49407 == bpe.vocab_size - 1
    n = len(bpe.encode("a red circle"))
    assert ids[0, n + 1].item() == bpe.eot_id and bool((ids[0, n + 2:] == 0).all())
    assert ids.argmax(dim=-1)[0].item() == n + 1
    assert bpe.decode(ids[0]) == "a red circle"


def test_bpe_truncates_and_round_trips(bpe):
    ids = bpe(["red " * 200])[0]
    assert ids[-1].item() == bpe.eot_id and ids.argmax().item() == 76
    again = tokenizer_from_config(bpe.to_config())
    assert isinstance(again, BPETokenizer) and torch.equal(again(["a star"]), bpe(["a star"]))


def test_bad_config():
    with pytest.raises(ValueError):
        tokenizer_from_config({"type": "sentencepiece"})
    with pytest.raises(ValueError):
        tokenizer_from_config({"vocab": []})
