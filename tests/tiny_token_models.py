"""Tiny random VQGAN and dVAE files for tests: the real classes, the real formats."""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Optional

import torch

from pixloom.dvae import DVAE, DVAEConfig
from pixloom.models import write_safetensors
from pixloom.vqgan import VQGAN, VQGANConfig

TINY_VQGAN = {
    "ddconfig": {"double_z": False, "z_channels": 32, "resolution": 32, "in_channels": 3, "out_ch": 3,
                 "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0},
    "n_embed": 64,
    "embed_dim": 8,
}
# the smallest dVAE the dall_e classes accept (n_hid >= 64, vocab >= 512)
TINY_DVAE = {"vocab_size": 512, "n_hid": 64, "n_blk_per_group": 1, "n_init": 32}


def tiny_vqgan(seed: int = 0, quantizer: str = "vq") -> VQGAN:
    torch.manual_seed(seed)
    config = dict(TINY_VQGAN, quantizer=quantizer)
    if quantizer == "gumbel":
        config["embed_dim"] = config["ddconfig"]["z_channels"]
    model = VQGAN(VQGANConfig.from_dict(config))
    with torch.no_grad():  # spread the codebook (taming initialises it near zero)
        model.codebook.normal_()
    return model.eval()


def save_tiny_vqgan(path: Path, seed: int = 0) -> Path:
    model = tiny_vqgan(seed)
    write_safetensors(Path(path), model.state_dict(), {
        "format": "vqgan", "config": model.config.to_dict(), "description": "tiny random VQGAN for tests"})
    return Path(path)


def tiny_dvae(seed: int = 0, config: Optional[DVAEConfig] = None) -> DVAE:
    torch.manual_seed(seed)
    return DVAE(config or DVAEConfig(**TINY_DVAE)).eval()


def save_tiny_dvae(path: Path, seed: int = 0, config: Optional[DVAEConfig] = None) -> Path:
    model = tiny_dvae(seed, config)
    write_safetensors(Path(path), model.state_dict(), {
        "format": "dvae", "config": model.config.to_dict(), "description": "tiny random dVAE for tests"})
    return Path(path)


def _fake_lightning_class():
    """A class importable as pytorch_lightning's ModelCheckpoint while saving."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    cls = type("ModelCheckpoint", (), {"__module__": names[-1]})
    for n in names:
        sys.modules[n] = types.ModuleType(n)
    sys.modules[names[-1]].ModelCheckpoint = cls
    return cls, names


def save_lightning_checkpoint(path: Path, state_dict: dict) -> Path:
    """A checkpoint shaped like taming's published .ckpt files (Lightning 1.x)."""
    cls, names = _fake_lightning_class()
    try:
        torch.save({"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.0.8",
                    "callbacks": {cls: {"best_model_score": torch.tensor(0.1), "best_model_path": "x"}},
                    "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-6}]}],
                    "lr_schedulers": [], "state_dict": state_dict}, path)
    finally:
        for n in names:
            sys.modules.pop(n, None)
    return path


def registering_dir(tmp_path: Path, module: str) -> Path:
    """A --plugins-dir that registers a built-in generator module (whether or not
    it is in DEFAULT_PLUGINS yet: the same class twice is no clash)."""
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / f"use_{module}.py").write_text(
        f"from pixloom.plugins import {module} as _m\n\npixloom_register_generators = _m.pixloom_register_generators\n")
    return folder
