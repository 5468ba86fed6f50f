"""pixloom: a plugin-based CLIP-guided generative art pipeline.

The source tree keeps the host in core/ and the built-in plugins in plugins/;
this file maps them onto one installed package, ``pixloom``, so nothing named
``core`` or ``plugins`` lands in site-packages.
"""
import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "core" / "__init__.py").read_text()).group(1)

# torch is pinned to one exact release: an open range lets pip pull a CUDA build
# with several GB of dependencies on a machine that has no torch yet.
# clip-anytorch, taming-transformers-rom1504 and dall-e declare torchvision,
# which pixloom does not need; they are installed with --no-deps by the
# README's commands (see requirements.txt), and their real needs are listed here.
INSTALL_REQUIRES = [
    "torch==2.13.0",
    "pluggy>=1.3",
    "kornia>=0.7",
    "imageio>=2.31",
    "imageio-ffmpeg>=0.4.9",
    "omegaconf>=2.3",
    "safetensors>=0.4",
    "numpy>=1.24",
    "pillow>=9.5",
    "tqdm>=4.64",
    "ftfy>=6.1",
    "regex>=2023.0",
    "einops>=0.6",
    "attrs>=22.0",
    "requests>=2.28",
    "matplotlib>=3.7",
]

setup(
    name="pixloom",
    version=VERSION,
    description="Plugin-based CLIP-guided generative art: VQGAN, pixel and dVAE generators driven by pluggy hooks",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    package_dir={
        "pixloom": "core",
        "pixloom.plugins": "plugins",
        "pixloom.presets": "presets",
    },
    packages=[
        "pixloom",
        "pixloom.training",
        "pixloom.plugins",
        "pixloom.presets",
    ],
    package_data={
        "pixloom.plugins": ["weights/*.safetensors", "weights/*.json"],
        "pixloom.presets": ["*.yaml", "*/*.yaml"],
    },
    include_package_data=False,
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=7"]},
    entry_points={"console_scripts": ["pixloom = pixloom.cli:main"]},
)
