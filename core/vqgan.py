"""VQGAN models assembled from taming-transformers' own modules.

``taming.models.vqgan`` imports taming's training script (torchvision, an old
Lightning), so pixloom builds the same model from the parts that import cleanly:
``Encoder``/``Decoder`` and ``VectorQuantizer2``/``GumbelQuantize``, under the
attribute names of taming's ``VQModel``. A published checkpoint's state dict
therefore loads as it is (its ``loss.*`` keys, the training-only VGG and
discriminator, are dropped; nothing of the loss is ever built or downloaded).

Three sources:

- an embedded model (``shapes-vqgan``) or any pixloom ``.safetensors`` whose
  ``pixloom.config`` metadata holds the model section below;
- a taming config ``.yaml`` with its Lightning ``.ckpt`` (``model.params``:
  ``ddconfig``, ``embed_dim``, ``n_embed``; ``lossconfig`` and ``data`` ignored);
- a registry name (``imagenet_f16_16384``...), fetched into the cache.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import checkpoints
from .errors import CheckpointError
from .models import embedded_models, read_model, shared

FORMAT = "vqgan"
_MODEL_PREFIXES = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
_DDCONFIG_KEYS = ("double_z", "z_channels", "resolution", "in_channels", "out_ch", "ch", "ch_mult",
                  "num_res_blocks", "attn_resolutions", "dropout", "resamp_with_conv", "give_pre_end")


@dataclass
class VQGANConfig:
    """The model section of a taming config (``model.params``), as pixloom needs it."""

    ddconfig: dict
    n_embed: int
    embed_dim: int
    quantizer: str = "vq"  # vq (VectorQuantizer2) | gumbel (GumbelQuantize)
    beta: float = 0.25
    kl_weight: float = 1e-8  # gumbel only
    norm_groups: int = 32  # taming's GroupNorm groups; pixloom's tiny models use fewer (see VQGAN)
    extra: dict = field(default_factory=dict)

    @property
    def factor(self) -> int:
        """Downsampling factor f: an H x W image has (H/f) x (W/f) tokens."""
        return 2 ** (len(self.ddconfig["ch_mult"]) - 1)

    @property
    def z_channels(self) -> int:
        return int(self.ddconfig["z_channels"])

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("extra")
        return out

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "VQGANConfig":
        try:
            dd = {k: _plain(v) for k, v in dict(data["ddconfig"]).items() if k in _DDCONFIG_KEYS}
            cfg = cls(ddconfig=dd, n_embed=int(data["n_embed"]), embed_dim=int(data["embed_dim"]),
                      quantizer=str(data.get("quantizer", "vq")), beta=float(data.get("beta", 0.25)),
                      kl_weight=float(data.get("kl_weight", 1e-8)),
                      norm_groups=int(data.get("norm_groups", 32)))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: not a VQGAN model config (missing or bad {exc})") from exc
        for key in ("ch", "ch_mult", "num_res_blocks", "z_channels", "resolution", "in_channels", "out_ch"):
            if key not in cfg.ddconfig:
                raise CheckpointError(f"{source}: ddconfig has no {key!r}")
        if cfg.quantizer not in ("vq", "gumbel"):
            raise CheckpointError(f"{source}: unknown quantizer {cfg.quantizer!r} (vq or gumbel)")
        if cfg.quantizer == "gumbel" and cfg.embed_dim != cfg.z_channels:
            raise CheckpointError(f"{source}: a Gumbel VQGAN needs embed_dim == z_channels")
        return cfg


def _plain(value):
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(value):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return list(value) if isinstance(value, tuple) else value


def read_taming_config(path) -> VQGANConfig:
    """A taming-transformers config .yaml -> VQGANConfig (loss and data sections ignored)."""
    import yaml

    path = checkpoints.check_file(path, "VQGAN config")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"VQGAN config {path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    model = (data or {}).get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("params"), dict):
        raise CheckpointError(f"VQGAN config {path}: no model.params section (is it a taming config?)")
    target = str(model.get("target", "taming.models.vqgan.VQModel"))
    params = dict(model["params"])
    if target.endswith("Net2NetTransformer"):
        raise CheckpointError(f"VQGAN config {path}: is a transformer config; give its first stage's config")
    if not (target.endswith("VQModel") or target.endswith("GumbelVQ") or target.endswith("VQNoDiscModel")):
        raise CheckpointError(f"VQGAN config {path}: model.target {target!r} is not a taming VQGAN")
    params["quantizer"] = "gumbel" if target.endswith("GumbelVQ") else "vq"
    return VQGANConfig.from_dict(params, f"VQGAN config {path}")


class VQGAN(nn.Module):
    """taming's VQModel without its loss and training code (same state-dict keys)."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        from taming.modules.diffusionmodules.model import Decoder, Encoder
        from taming.modules.vqvae.quantize import GumbelQuantize, VectorQuantizer2

        self.config = config
        dd = dict(config.ddconfig)
        with contextlib.redirect_stdout(io.StringIO()):  # taming prints the latent shape
            self.encoder = Encoder(**dd)
            self.decoder = Decoder(**dd)
        if config.quantizer == "gumbel":
            self.quantize = GumbelQuantize(config.z_channels, config.embed_dim, n_embed=config.n_embed,
                                           kl_weight=config.kl_weight, temp_init=1.0)
        else:
            self.quantize = VectorQuantizer2(config.n_embed, config.embed_dim, beta=config.beta)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)
        if config.norm_groups != 32:
            # taming hard-codes GroupNorm(32 groups); a 32-channel tiny model would then
            # normalise every channel alone and lose absolute colour. The group count is
            # not in the state dict, so the layout stays VQModel's.
            for m in self.modules():
                if isinstance(m, nn.GroupNorm):
                    if m.num_channels % config.norm_groups:
                        raise CheckpointError(f"norm_groups {config.norm_groups} does not divide "
                                              f"{m.num_channels} channels")
                    m.num_groups = config.norm_groups

    @property
    def codebook(self) -> torch.Tensor:
        """[n_embed, embed_dim]: the vectors a latent is snapped to."""
        q = self.quantize
        return q.embed.weight if self.config.quantizer == "gumbel" else q.embedding.weight

    @property
    def factor(self) -> int:
        return self.config.factor

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images in -1..1 [N, 3, H, W] -> continuous latents [N, embed_dim, H/f, W/f]."""
        return self.quant_conv(self.encoder(x))

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Quantized latents -> images in (about) -1..1."""
        return self.decoder(self.post_quant_conv(z_q))

    def forward(self, x: torch.Tensor):
        """Training pass (vq quantizer): reconstruction, codebook loss, token indices."""
        z = self.encode_latent(x)
        z_q, qloss, info = self.quantize(z)
        return self.decode(z_q), qloss, info[2]


def codebook_range(codebook: torch.Tensor) -> tuple:
    """Per-channel (min, max) of codebook [n, D], each shaped [1, D, 1, 1] for clamping a latent."""
    return codebook.min(0).values.view(1, -1, 1, 1), codebook.max(0).values.view(1, -1, 1, 1)


def random_codes(codebook: torch.Tensor, grid: tuple, rng: torch.Generator) -> torch.Tensor:
    """A latent [1, D, h, w] whose cells are codebook entries drawn uniformly with ``rng``."""
    idx = torch.randint(codebook.shape[0], (grid[0] * grid[1],), generator=rng)
    return codebook[idx].t().reshape(1, -1, *grid).clone()


def snap(z: torch.Tensor, codebook: torch.Tensor):
    """Nearest codebook entry for every cell of z [1, D, h, w], with a straight-through
    gradient (forward: the entry; backward: as if the identity). Returns (z_q, indices)."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(1)[None]
    idx = dist.argmin(1)
    z_q = codebook[idx].view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    return z + (z_q - z).detach(), idx.view(z.shape[0], z.shape[2], z.shape[3])


# --------------------------------------------------------------------------- loading


def _model_state(state: dict, source: str) -> dict:
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a Lightning checkpoint
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: holds a {type(state).__name__}, not a checkpoint dict")
    kept = {k: v for k, v in state.items() if k.startswith(_MODEL_PREFIXES) and torch.is_tensor(v)}
    if not kept:
        raise CheckpointError(f"{source}: no VQGAN weights in it (no encoder./decoder./quantize. keys)")
    return kept


def build_vqgan(config: VQGANConfig, state: dict, source: str) -> VQGAN:
    model = VQGAN(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in _model_state(state, source).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{', ...' if len(unexpected) > 3 else ''}")
        raise CheckpointError(f"{source}: does not match its config ({'; '.join(parts)})")
    return model.eval().requires_grad_(False)


def _load_mismatch_safe(config: VQGANConfig, state, source: str) -> VQGAN:
    try:
        return build_vqgan(config, state, source)
    except RuntimeError as exc:  # size mismatch
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "size mismatch" in line), first[0] if first else "")
        raise CheckpointError(f"{source}: does not match its config ({detail[:200]})") from exc


def load_safetensors_vqgan(path: Path) -> VQGAN:
    loaded = read_model(path, FORMAT, "VQGAN")
    meta = loaded.metadata
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path}: no pixloom.config metadata (the VQGAN's model config)")
    config = VQGANConfig.from_dict(meta["config"], str(path))
    return _load_mismatch_safe(config, loaded.state_dict, str(path))


def load_taming_pair(config_path, ckpt_path, *, trust: bool = False, sha256: Optional[str] = None) -> VQGAN:
    """A taming config .yaml and its Lightning .ckpt (or a plain state dict)."""
    config = read_taming_config(config_path)
    obj = checkpoints.load_torch_file(ckpt_path, what="VQGAN checkpoint", trust=trust, sha256=sha256)
    return _load_mismatch_safe(config, obj, f"VQGAN checkpoint {ckpt_path}")


def _beside(path: Path, suffixes) -> Optional[Path]:
    for suffix in suffixes:
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


@shared
def load_vqgan(model: str, checkpoint: Optional[str] = None, *, trust: bool = False,
               resolve=lambda p: Path(p).expanduser(), progress: bool = True) -> VQGAN:
    """``model``: an embedded name, a .safetensors file, a taming config .yaml (with
    ``checkpoint``, default: the .ckpt of the same name beside it), a .ckpt (with its
    .yaml beside it) or a registry name (downloaded into the cache when missing)."""
    embedded = embedded_models()
    if model in embedded:
        return load_safetensors_vqgan(embedded[model])
    path = resolve(model)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return load_safetensors_vqgan(checkpoints.check_file(path, "VQGAN model"))
    if suffix in (".yaml", ".yml"):
        ckpt = resolve(checkpoint) if checkpoint else _beside(path, (".ckpt", ".pt", ".pth"))
        if ckpt is None:
            raise CheckpointError(f"VQGAN config {path}: give its checkpoint (checkpoint: path/to/model.ckpt)")
        return load_taming_pair(path, ckpt, trust=trust)
    if suffix in (".ckpt", ".pt", ".pth"):
        config = resolve(checkpoint) if checkpoint and str(checkpoint).endswith((".yaml", ".yml")) else \
            _beside(path, (".yaml", ".yml"))
        if config is None:
            raise CheckpointError(f"VQGAN checkpoint {path}: give its taming config (model: config.yaml, "
                                  f"checkpoint: {path.name})")
        return load_taming_pair(config, path, trust=trust)
    known = checkpoints.find_model(model, "vqgan")
    if known is not None:
        paths = checkpoints.ensure_model(known, progress=progress)
        return load_taming_pair(paths["config"], paths["checkpoint"], trust=trust)
    choices = ", ".join(list(embedded_vqgans()) + [m.name for m in checkpoints.known_models("vqgan")])
    raise CheckpointError(f"unknown VQGAN model {model!r}: not an embedded or registry model ({choices}), "
                          f"and not a .safetensors, .yaml or .ckpt file")


def embedded_vqgans() -> list:
    """Embedded model names whose metadata says they are VQGANs."""
    out = []
    for name, path in embedded_models().items():
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                if (f.metadata() or {}).get("pixloom.format", "").strip('"') == FORMAT:
                    out.append(name)
        except Exception:
            continue
    return out
