"""The DALL-E discrete VAE: OpenAI's ``dall_e.Encoder`` and ``dall_e.Decoder``.

A dVAE maps a 3-channel image to logits over ``vocab_size`` tokens on a grid
``factor`` times smaller (8 as published), and a grid of one-hot (or soft)
tokens back to an image: ``unmap_pixels(sigmoid(decoder(tokens)[:, :3]))``.

Sources:

- an embedded model (``shapes-dvae``) or a pixloom ``.safetensors`` with
  ``encoder.*`` / ``decoder.*`` keys and ``pixloom.config`` metadata;
- OpenAI's published ``encoder.pkl`` / ``decoder.pkl`` (registry name
  ``openai-dvae``, or paths): whole pickled modules. They are read with
  stand-ins for the module classes (nothing of the file runs) and rebuilt from
  their tensors; a file that needs more than that is unpickled only when trusted
  (see :mod:`pixloom.checkpoints`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import checkpoints
from .errors import CheckpointError
from .models import embedded_models, read_model, shared

FORMAT = "dvae"
GROUPS = 4  # fixed by the dall_e classes: three of the four pool (encoder) or upsample (decoder)
FACTORS = (2, 4, 8)  # 8: the classes as published; 4, 2: fewer of them resample
_PICKLE_STAND_INS = checkpoints.METADATA_GLOBALS + ("dall_e.", "torch.nn.modules.")


@dataclass
class DVAEConfig:
    vocab_size: int = 8192
    n_hid: int = 256
    n_blk_per_group: int = 2
    n_init: int = 128  # decoder only
    input_channels: int = 3
    output_channels: int = 3
    # pixels a token a side: 8 for the classes as published (OpenAI's dVAE); 4 or 2 keep
    # the same modules and weights' layout, without the pooling of the encoder's last
    # groups and the upsampling of the decoder's first, whose groups then run at the
    # token grid (a model whose tokens are finer for its scenes)
    factor: int = 8

    def __post_init__(self):
        if self.factor not in FACTORS:
            raise ValueError(f"factor must be one of {', '.join(map(str, FACTORS))} (got {self.factor})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "DVAEConfig":
        try:
            return cls(**{k: int(v) for k, v in dict(data).items() if k in cls.__dataclass_fields__})
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: not a dVAE config ({exc})") from exc


def _built(cls, **kwargs) -> nn.Module:
    # requires_grad=True fails in dall_e.utils.Conv2d on current torch (a non-leaf
    # Parameter): build frozen, then switch gradients on where needed.
    return cls(device=torch.device("cpu"), requires_grad=False, use_mixed_precision=False, **kwargs)


def one_hot_tokens(indices: torch.Tensor, vocab_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Token indices [N, H, W] -> one-hot tokens [N, vocab_size, H, W], as the decoder takes them."""
    return torch.nn.functional.one_hot(indices, vocab_size).permute(0, 3, 1, 2).to(dtype)


def _kept_resamplings(cfg: DVAEConfig) -> int:
    return cfg.factor.bit_length() - 1  # 8 -> 3


def make_encoder(cfg: DVAEConfig) -> nn.Module:
    from dall_e import Encoder

    encoder = _built(Encoder, n_hid=cfg.n_hid, n_blk_per_group=cfg.n_blk_per_group,
                     input_channels=cfg.input_channels, vocab_size=cfg.vocab_size)
    for group in range(_kept_resamplings(cfg) + 1, GROUPS):  # the last pools go (no weights)
        getattr(encoder.blocks, f"group_{group}").pool = nn.Identity()
    return encoder


def make_decoder(cfg: DVAEConfig) -> nn.Module:
    from dall_e import Decoder

    decoder = _built(Decoder, n_init=cfg.n_init, n_hid=cfg.n_hid, n_blk_per_group=cfg.n_blk_per_group,
                     output_channels=cfg.output_channels, vocab_size=cfg.vocab_size)
    for group in range(1, GROUPS - _kept_resamplings(cfg)):  # the first upsamplings go
        getattr(decoder.blocks, f"group_{group}").upsample = nn.Identity()
    return decoder


class DVAE(nn.Module):
    """A dVAE: ``decoder`` always, ``encoder`` when it was loaded (init from an image)."""

    def __init__(self, config: DVAEConfig, with_encoder: bool = True):
        super().__init__()
        self.config = config
        self.decoder = make_decoder(config)
        self.encoder = make_encoder(config) if with_encoder else None

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def factor(self) -> int:
        return self.config.factor

    def encode_logits(self, image: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in 0..1 -> logits [N, vocab, H/f, W/f]."""
        from dall_e import map_pixels

        if self.encoder is None:
            raise CheckpointError("this dVAE was loaded without its encoder (give the encoder file)")
        return self.encoder(map_pixels(image.float())).float()

    def decode_stats(self, tokens: torch.Tensor) -> torch.Tensor:
        """One-hot or soft tokens [N, vocab, h, w] -> the decoder's 6 channels [N, 6, fh, fw]."""
        return self.decoder(tokens.float()).float()  # dall_e's convs run in fp16 on CUDA

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens -> image [N, 3, fh, fw] in 0..1."""
        from dall_e import unmap_pixels

        return unmap_pixels(torch.sigmoid(self.decode_stats(tokens)[:, :3]))

    def token_embeddings(self) -> torch.Tensor:
        """[vocab, n_init]: what the decoder's input convolution (1 x 1) makes of each
        one-hot token, its bias included: the decoder's codebook."""
        conv = self.decoder.blocks.input
        return conv.w[:, :, 0, 0].t().float() + conv.b.float()

    def decode_embedded(self, embedded: torch.Tensor) -> torch.Tensor:
        """The decoder after its input convolution: token embeddings [N, n_init, h, w]
        -> image [N, 3, fh, fw] in 0..1 (the embeddings of one-hot tokens give
        ``decode`` of those tokens)."""
        from dall_e import unmap_pixels

        out = self.decoder.blocks[1:](embedded.float()).float()
        return unmap_pixels(torch.sigmoid(out[:, :3]))


# --------------------------------------------------------------------------- loading


def _split(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _load_part(module: nn.Module, state: dict, source: str) -> None:
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
        raise CheckpointError(f"{source}: does not match its config ({(lines or [str(exc)])[0][:200]})") from exc
    if missing or unexpected:
        bad = (missing or unexpected)[:3]
        raise CheckpointError(f"{source}: does not match its config "
                              f"({'missing' if missing else 'unexpected'} {', '.join(bad)})")


def build_dvae(config: DVAEConfig, decoder_state: dict, encoder_state: Optional[dict], source: str) -> DVAE:
    model = DVAE(config, with_encoder=encoder_state is not None)
    _load_part(model.decoder, {k: v.float() for k, v in decoder_state.items()}, f"{source} (decoder)")
    if encoder_state is not None:
        _load_part(model.encoder, {k: v.float() for k, v in encoder_state.items()}, f"{source} (encoder)")
    return model.eval().requires_grad_(False)


def load_safetensors_dvae(path: Path) -> DVAE:
    loaded = read_model(path, FORMAT, "dVAE")
    meta = loaded.metadata
    config = DVAEConfig.from_dict(meta.get("config") or {}, str(path))
    dec = _split(loaded.state_dict, "decoder.")
    enc = _split(loaded.state_dict, "encoder.")
    if not dec:
        raise CheckpointError(f"{path}: no decoder.* weights")
    return build_dvae(config, dec, enc or None, str(path))


def read_pickled_part(path, role: str, *, trust: bool = False, sha256: Optional[str] = None):
    """A published ``encoder.pkl`` / ``decoder.pkl`` -> (config fields, state dict)."""
    what = f"dVAE {role}"
    obj = checkpoints.load_torch_file(path, what=what, trust=trust, sha256=sha256,
                                      allow_stand_ins=_PICKLE_STAND_INS)
    if checkpoints.stand_in_tree(obj):
        attrs = checkpoints.module_attrs(obj)
        state = checkpoints.module_state(obj)
    elif isinstance(obj, nn.Module):
        attrs = {k: getattr(obj, k) for k in DVAEConfig.__dataclass_fields__ if hasattr(obj, k)}
        state = obj.state_dict()
    elif isinstance(obj, dict) and all(torch.is_tensor(v) for v in obj.values()):
        attrs, state = {}, obj  # a plain state dict: infer the sizes below
    else:
        raise CheckpointError(f"{what} {path}: holds a {type(obj).__name__}, not a dall_e {role}")
    if not any(k.startswith("blocks.") for k in state):
        raise CheckpointError(f"{what} {path}: no dall_e {role} weights in it")
    attrs = {**_infer(state, role), **{k: v for k, v in attrs.items() if k in DVAEConfig.__dataclass_fields__}}
    return attrs, state


def _infer(state: dict, role: str) -> dict:
    """Sizes read off the weights (the pickled attributes win when present)."""
    out = {}
    blocks = {k.split(".")[2] for k in state if k.startswith("blocks.group_1.")}
    out["n_blk_per_group"] = len([b for b in blocks if b.startswith("block_")]) or 1
    if role == "encoder":
        w = state.get("blocks.input.w")
        if w is not None:
            out["n_hid"], out["input_channels"] = int(w.shape[0]), int(w.shape[1])
        w = state.get("blocks.output.conv.w")
        if w is not None:
            out["vocab_size"] = int(w.shape[0])
    else:
        w = state.get("blocks.input.w")
        if w is not None:
            out["n_init"], out["vocab_size"] = int(w.shape[0]), int(w.shape[1])
        w = state.get("blocks.output.conv.w")
        if w is not None:
            out["n_hid"], out["output_channels"] = int(w.shape[1]), int(w.shape[0]) // 2
    return out


def load_pickled_dvae(decoder_path, encoder_path=None, *, trust: bool = False) -> DVAE:
    dec_attrs, dec_state = read_pickled_part(decoder_path, "decoder", trust=trust)
    enc_state = None
    cfg = dict(dec_attrs)
    if encoder_path is not None:
        enc_attrs, enc_state = read_pickled_part(encoder_path, "encoder", trust=trust)
        for key in ("vocab_size", "n_hid", "n_blk_per_group"):
            if key in enc_attrs and key in dec_attrs and enc_attrs[key] != dec_attrs[key]:
                raise CheckpointError(f"dVAE encoder {encoder_path} and decoder {decoder_path} do not match "
                                      f"({key} {enc_attrs[key]} vs {dec_attrs[key]})")
        cfg.setdefault("input_channels", enc_attrs.get("input_channels", 3))
    return build_dvae(DVAEConfig.from_dict(cfg, str(decoder_path)), dec_state, enc_state, str(decoder_path))


@shared
def load_dvae(model: str, encoder: Optional[str] = None, *, trust: bool = False, need_encoder: bool = True,
              resolve=lambda p: Path(p).expanduser(), progress: bool = True) -> DVAE:
    """``model``: an embedded name, a .safetensors file, a decoder .pkl (``encoder``:
    its encoder .pkl, optional) or a registry name (``openai-dvae``)."""
    embedded = embedded_models()
    if model in embedded:
        return load_safetensors_dvae(embedded[model])
    path = resolve(model)
    if path.suffix.lower() == ".safetensors":
        return load_safetensors_dvae(checkpoints.check_file(path, "dVAE model"))
    if path.suffix.lower() in (".pkl", ".pt", ".pth"):
        enc = resolve(encoder) if encoder else None
        if enc is None and need_encoder:
            sibling = path.with_name("encoder.pkl")
            enc = sibling if sibling.is_file() and sibling != path else None
        return load_pickled_dvae(path, enc, trust=trust)
    known = checkpoints.find_model(model, "dvae")
    if known is not None:
        roles = ["decoder", "encoder"] if need_encoder else ["decoder"]
        paths = checkpoints.ensure_model(known, roles=roles, progress=progress)
        return load_pickled_dvae(paths["decoder"], paths.get("encoder"), trust=trust)
    choices = ", ".join([n for n in embedded] + [m.name for m in checkpoints.known_models("dvae")])
    raise CheckpointError(f"unknown dVAE model {model!r}: not an embedded or registry model ({choices}), "
                          f"and not a .safetensors or .pkl file")
