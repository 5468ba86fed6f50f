"""How a preset extends its base: mappings merge, lists replace, and a plugin
entry that names another plugin starts from that plugin's defaults."""
from pixloom.preset import load_preset


def test_switching_the_generator_drops_the_base_generator_params(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("base: default\nrun: {steps: 7}\ngenerator: {name: pixel, params: {levels: 3, init: flat}}\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\ngenerator: {name: vqgan, params: {init: random}}\n")
    cfg = load_preset(str(child)).cfg
    assert cfg.generator.name == "vqgan"
    assert dict(cfg.generator.params) == {"init": "random"}  # no 'levels' from pixel
    assert cfg.run.steps == 7


def test_the_same_generator_merges_params_with_the_base(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("base: default\ngenerator: {name: pixel, params: {levels: 3, init: flat}}\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\ngenerator: {name: pixel, params: {init: noise}}\n")
    params = load_preset(str(child)).cfg.generator.params
    assert (params.levels, params.init) == (3, "noise")


def test_shipped_vqgan_and_dalle_presets_keep_only_their_generator_params():
    for name, generator in (("vqgan", "vqgan"), ("dalle", "dalle")):
        cfg = load_preset(name).cfg
        assert cfg.generator.name == generator
        assert "levels" not in cfg.generator.params
