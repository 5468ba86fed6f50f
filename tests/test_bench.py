"""``pixloom bench --quick`` on a tiny preset: every section runs and its report
names the machine and the command."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

FIXTURE_YAML = Path("/work/shared/fixtures/vqgan_imagenet_f16_16384.yaml")


def test_bench_quick_smoke(run_cli, tiny_preset_file, tmp_path):
    out = tmp_path / "bench"
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        r = run_cli("bench", "--quick", "--presets", tiny_preset_file, "--out", out, "--threads", "1",
                    "--only", "presets,ttr,scaling,options", "--ttr-prompts", "1", "--check-every", "10")
        # --threads holds for the benchmark only: the caller's process is left as it was
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert r.code == 0, r.err
    report = json.loads((out / "bench.json").read_text())
    assert report["command"].startswith("pixloom bench --quick --presets ")
    assert report["machine"]["threads"] == 1 and report["machine"]["torch"]
    (row,) = report["presets"]
    assert row["crops"] == 4 and row["steps_per_s"] > 0 and row["peak_rss_mib"] > 0
    assert row["overhead_ratio"] > 0 and row["bare_s_per_step"] > 0
    parts = row["breakdown_ms"]
    assert {"generator", "augmentation", "perceptors", "optimizer"} <= set(parts)
    assert any(k.startswith("loss ") for k in parts) and all(v > 0 for v in parts.values())
    ttr = report["ttr"]
    assert ttr["prompts"] == 1 and len(ttr["results"]) == 1
    assert [r["size"] for r in report["scaling"]["size"]] == [64, 128]
    assert [r["crops"] for r in report["scaling"]["crops"]] == [8, 16]
    assert any("channels_last" in o["option"] for o in report["options"])
    text = (out / "bench.md").read_text()
    assert "Machine: " in text and "Command: `pixloom bench --quick" in text and "overhead ratio" in text
    assert "Where a step's time goes" in text
    assert (out / "scaling.png").stat().st_size > 1000


@pytest.mark.skipif(not FIXTURE_YAML.exists(), reason="the shared fixtures are not beside this checkout")
def test_the_real_size_vqgan_has_the_published_imagenet_f16_16384_shape():
    from pixloom.bench_models import IMAGENET_F16_16384

    params = yaml.safe_load(FIXTURE_YAML.read_text())["model"]["params"]
    assert IMAGENET_F16_16384["ddconfig"] == params["ddconfig"]
    assert (IMAGENET_F16_16384["embed_dim"], IMAGENET_F16_16384["n_embed"]) == (params["embed_dim"], params["n_embed"])
