"""The model registry, the cache, downloads (against a local HTTP server) and
loading published checkpoint formats without running code from them."""
from __future__ import annotations

import hashlib
import http.server
import os
import pickle
import threading
from pathlib import Path

import pytest
import torch

from pixloom import checkpoints
from pixloom.checkpoints import KnownFile, KnownModel
from pixloom.download import download_known
from pixloom.errors import CheckpointError
from tiny_token_models import save_lightning_checkpoint


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "pixloom-home"
    monkeypatch.setenv(checkpoints.HOME_ENV, str(home))
    monkeypatch.delenv(checkpoints.TRUST_ENV, raising=False)
    monkeypatch.delenv(checkpoints.OFFLINE_ENV, raising=False)
    return home


def cache_files(home: Path) -> list:
    return sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file()) if home.exists() else []


# ------------------------------------------------------------------ registry and cache

def test_registry_covers_the_published_models():
    names = {m.name for m in checkpoints.REGISTRY}
    assert {"RN50", "RN101", "RN50x4", "ViT-B/32", "ViT-B/16", "ViT-L/14"} <= names
    assert {"imagenet_f16_1024", "imagenet_f16_16384", "gumbel_f8_8192", "wikiart_f16_16384"} <= names
    assert "openai-dvae" in names
    assert len(names) == len(checkpoints.REGISTRY)
    for m in checkpoints.REGISTRY:
        for role, known in m.files.items():
            assert known.urls and all(u.startswith(("https://", "http://")) for u in known.urls), (m.name, role)
            if known.sha256 is not None:
                assert len(known.sha256) == 64 and int(known.sha256, 16) >= 0


def test_clip_hashes_are_the_ones_in_openais_urls_and_no_hash_is_invented():
    for m in checkpoints.known_models("clip"):
        known = m.files["weights"]
        assert all(u.split("/")[-2] == known.sha256 for u in known.urls), m.name
    for m in checkpoints.known_models("vqgan") + checkpoints.known_models("dvae"):
        assert all(f.sha256 is None for f in m.files.values()), f"{m.name}: no published hash exists"


def test_aliases_and_unknown_names():
    assert checkpoints.find_model("ViT-B-32").name == "ViT-B/32"
    assert checkpoints.find_model("vit-b/32").name == "ViT-B/32"
    assert checkpoints.find_model("vqgan_imagenet_f16_16384", "vqgan").name == "imagenet_f16_16384"
    assert checkpoints.find_model("ViT-B/32", "vqgan") is None
    with pytest.raises(CheckpointError, match="unknown model 'nope'.*ViT-B/32"):
        checkpoints.get_model("nope")


def test_cache_home_from_env_and_default(monkeypatch, tmp_path, cache_home):
    model = checkpoints.get_model("imagenet_f16_16384")
    assert checkpoints.cache_path(model, "checkpoint") == cache_home / "models" / "vqgan" / "imagenet_f16_16384.ckpt"
    monkeypatch.delenv(checkpoints.HOME_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert checkpoints.home() == tmp_path / "xdg" / "pixloom"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert checkpoints.home() == Path.home() / ".cache" / "pixloom"


# ------------------------------------------------------------------ downloads

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Server:
    """A threaded HTTP server on 127.0.0.1 serving PAYLOAD (or ``body``), with
    switches for range support and cutting responses short."""

    def __init__(self):
        self.body = PAYLOAD
        self.ranges = True
        self.cut_after = None  # send only this many bytes of every response
        self.cut_first_only = False
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                if self.path.startswith("/missing"):
                    self.send_error(404)
                    return
                body, start = outer.body, 0
                rng = self.headers.get("Range")
                if rng and outer.ranges:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                cut = outer.cut_after
                if cut is not None and (not outer.cut_first_only or len(outer.requests) == 1):
                    chunk = chunk[:cut]
                self.wfile.write(chunk)
                self.wfile.flush()
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def url(self, path="/file.bin") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def fake_model(sha256=None, name="testmodel") -> KnownModel:
    return KnownModel(name, "clip", "test", "a test file",
                      {"weights": KnownFile("file.bin", ("http://127.0.0.1:1/unused",), sha256)})


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_and_renames(server, cache_home):
    model = fake_model(SHA)
    path = download_known(model, "weights", progress=False, urls=[server.url()])
    assert path.read_bytes() == PAYLOAD
    assert cache_files(cache_home) == ["models/test/file.bin"]


def test_download_resumes_a_part_file(server, cache_home):
    model = fake_model(SHA)
    part = checkpoints.cache_path(model, "weights").with_name("file.bin.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:300_000])
    path = download_known(model, "weights", progress=False, urls=[server.url()])
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/file.bin", "bytes=300000-")]
    assert cache_files(cache_home) == ["models/test/file.bin"]


def test_a_transfer_cut_short_is_resumed_at_once(server, cache_home):
    server.cut_after, server.cut_first_only = 200_000, True
    path = download_known(fake_model(SHA), "weights", progress=False, urls=[server.url()])
    assert path.read_bytes() == PAYLOAD
    assert [r[1] for r in server.requests] == [None, "bytes=200000-"]


def test_a_server_ignoring_ranges_restarts_the_file(server, cache_home):
    server.ranges = False
    model = fake_model(SHA)
    part = checkpoints.cache_path(model, "weights").with_name("file.bin.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)
    assert download_known(model, "weights", progress=False, urls=[server.url()]).read_bytes() == PAYLOAD


def test_truncated_transfers_are_rejected_and_nothing_is_left(server, cache_home):
    server.cut_after = 0  # every response ends before its Content-Length
    with pytest.raises(CheckpointError) as info:
        download_known(fake_model(SHA), "weights", progress=False, urls=[server.url()])
    assert "cut short" in str(info.value) and "\n" not in str(info.value)
    assert cache_files(cache_home) == []


def test_truncated_transfer_without_a_hash_is_rejected_too(server, cache_home):
    server.cut_after, server.ranges = 100_000, False
    with pytest.raises(CheckpointError, match="cut short"):
        download_known(fake_model(None), "weights", progress=False, urls=[server.url()])
    assert cache_files(cache_home) == []


def test_wrong_hash_is_rejected_and_nothing_is_left(server, cache_home):
    with pytest.raises(CheckpointError) as info:
        download_known(fake_model("0" * 64), "weights", progress=False, urls=[server.url()])
    assert "sha256" in str(info.value)
    assert cache_files(cache_home) == []


def test_a_bad_mirror_falls_through_to_the_next(server, cache_home):
    path = download_known(fake_model(SHA), "weights", progress=False,
                          urls=[server.url("/missing"), server.url()])
    assert path.read_bytes() == PAYLOAD


def test_no_network_says_which_file_to_put_where(cache_home):
    model = fake_model(SHA)
    with pytest.raises(CheckpointError) as info:
        download_known(model, "weights", progress=False, urls=["http://127.0.0.1:1/file.bin"])
    message = str(info.value)
    assert "\n" not in message
    assert str(checkpoints.cache_path(model, "weights")) in message and SHA in message
    assert cache_files(cache_home) == []


def test_offline_env_refuses_to_download(monkeypatch, cache_home):
    monkeypatch.setenv(checkpoints.OFFLINE_ENV, "1")
    with pytest.raises(CheckpointError, match="PIXLOOM_OFFLINE"):
        checkpoints.ensure_model(checkpoints.get_model("RN50"))


def test_cli_fetch_offline_exits_2_with_one_line(run_cli_subprocess, cache_home):
    result = run_cli_subprocess("models", "fetch", "ViT-B/32", "--quiet",
                                env={checkpoints.HOME_ENV: str(cache_home), checkpoints.OFFLINE_ENV: "1"})
    assert result.code == 2
    line = result.error_line()
    assert "ViT-B-32.pt" in line and str(cache_home / "models" / "clip" / "ViT-B-32.pt") in line


def test_cli_list_path_and_verify(run_cli, cache_home):
    result = run_cli("models", "list")
    assert result.code == 0
    assert "ViT-B/32" in result.out and "imagenet_f16_16384" in result.out and "missing" in result.out
    result = run_cli("models", "path", "imagenet_f16_16384")
    assert result.out.split() == [str(cache_home / "models" / "vqgan" / f"imagenet_f16_16384.{s}")
                                  for s in ("yaml", "ckpt")]
    target = cache_home / "models" / "clip" / "RN50.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the real file")
    result = run_cli("models", "verify", "RN50")
    assert result.code == 2 and "MISMATCH" in result.out
    assert "cached" in run_cli("models", "list").out


# ------------------------------------------------------------------ safe loading



class Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.ckpt"
    obj = {"state_dict": {"w": torch.zeros(2)}, "evil": Payload(marker)}
    if how == "torch.save":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(CheckpointError) as info:
        checkpoints.load_torch_file(path)
    message = str(info.value)
    assert "refused" in message and "system" in message and "trust" in message and "\n" not in message
    assert not marker.exists()


def test_full_unpickling_needs_trust_or_the_published_hash(tmp_path, monkeypatch):
    from fractions import Fraction  # a harmless class weights_only does not allow

    path = tmp_path / "fraction.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "stats": Fraction(1, 3)}, path)
    with pytest.raises(CheckpointError, match="no published sha256"):
        checkpoints.load_torch_file(path)
    with pytest.raises(CheckpointError, match="is not the published"):
        checkpoints.load_torch_file(path, sha256="1" * 64)
    digest = checkpoints.sha256_file(path)
    assert checkpoints.load_torch_file(path, sha256=digest)["stats"] == Fraction(1, 3)
    assert checkpoints.load_torch_file(path, trust=True)["stats"] == Fraction(1, 3)
    monkeypatch.setenv(checkpoints.TRUST_ENV, "1")
    assert checkpoints.load_torch_file(path)["stats"] == Fraction(1, 3)


def test_lightning_checkpoint_loads_without_trust(tmp_path):
    path = save_lightning_checkpoint(tmp_path / "last.ckpt", {"encoder.w": torch.ones(3), "loss.d": torch.ones(1)})
    obj = checkpoints.load_torch_file(path)
    assert torch.equal(obj["state_dict"]["encoder.w"], torch.ones(3))
    (key,) = obj["callbacks"]
    assert issubclass(key, checkpoints.Opaque)  # a stand-in: nothing of Lightning was imported


@pytest.mark.parametrize("damage", ["half", "empty", "garbage", "legacy-half"])
def test_truncated_or_corrupt_checkpoints_are_clear_errors(tmp_path, damage):
    path = tmp_path / "model.ckpt"
    state = {"state_dict": {"w": torch.randn(64, 64)}}
    torch.save(state, path, _use_new_zipfile_serialization=not damage.startswith("legacy"))
    data = path.read_bytes()
    path.write_bytes({"half": data[: len(data) // 2], "legacy-half": data[: len(data) // 2], "empty": b"",
                      "garbage": b"this is not a checkpoint at all"}[damage])
    with pytest.raises(CheckpointError) as info:
        checkpoints.load_torch_file(path, what="VQGAN checkpoint")
    message = str(info.value)
    assert message.startswith(f"VQGAN checkpoint {path}") and "\n" not in message
    assert ("truncated or corrupt" in message) or ("empty" in message)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoints.load_torch_file(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="is a directory"):
        checkpoints.load_torch_file(tmp_path)


# ------------------------------------------------------------------ OpenAI CLIP .pt

VIT_B_32 = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
                context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
                transformer_layers=12)


def _shell(state: dict) -> torch.nn.Module:
    """Modules nested by the dotted keys, each tensor a parameter: scriptable, so
    torch.jit.save writes a TorchScript archive with exactly these state-dict keys."""
    root = torch.nn.Module()
    for key, tensor in state.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if part not in module._modules:
                module.add_module(part, torch.nn.Module())
            module = module._modules[part]
        module.register_parameter(leaf, torch.nn.Parameter(tensor, requires_grad=False))
    return root


@pytest.fixture(scope="module")
def vit_b_32_pt(tmp_path_factory) -> Path:
    """A ViT-B/32-shaped CLIP with random fp16 weights, as a TorchScript archive like OpenAI's."""
    from pixloom.clip_compat import clip_model

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in clip_model().CLIP(**VIT_B_32).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(s, generator=g) * 0.02).half() for k, s in shapes.items()}
    path = tmp_path_factory.mktemp("clip") / "ViT-B-32.pt"
    torch.jit.save(torch.jit.script(_shell(state)), str(path))
    return path


def _check_vit_b_32(loaded):
    model = loaded.model
    assert model.visual.input_resolution == 224 and model.context_length == 77
    assert model.text_projection.shape == (512, 512) and model.visual.proj.shape == (768, 512)
    assert next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        image = model.encode_image(torch.rand(1, 3, 224, 224))
        text = model.encode_text(loaded.tokenizer(["a red circle"]))
    assert image.shape == (1, 512) and text.shape == (1, 512)


def test_openai_torchscript_clip_through_the_registry(vit_b_32_pt, cache_home, monkeypatch):
    """A .pt at the registry's place in the cache whose sha256 matches loads by name."""
    from pixloom.clip_loading import load_clip

    digest = checkpoints.sha256_file(vit_b_32_pt)
    entry = KnownModel("ViT-B/32", "clip", "clip", "test", {
        "weights": KnownFile("ViT-B-32.pt", ("http://127.0.0.1:1/ViT-B-32.pt",), digest)})
    monkeypatch.setattr(checkpoints, "REGISTRY", (entry,))
    target = checkpoints.cache_path(entry, "weights")
    target.parent.mkdir(parents=True)
    os.link(vit_b_32_pt, target)
    _check_vit_b_32(load_clip("ViT-B/32"))


def test_openai_torchscript_clip_elsewhere_needs_trust(vit_b_32_pt, cache_home):
    from pixloom.clip_loading import load_clip

    with pytest.raises(CheckpointError, match="TorchScript archive runs its own code.*trust"):
        load_clip(str(vit_b_32_pt))
    _check_vit_b_32(load_clip(str(vit_b_32_pt), trust=True))


def test_openai_torchscript_clip_with_a_wrong_hash_is_refused(vit_b_32_pt, cache_home):
    target = cache_home / "models" / "clip" / "ViT-B-32.pt"
    target.parent.mkdir(parents=True)
    os.link(vit_b_32_pt, target)
    from pixloom.clip_loading import load_clip

    with pytest.raises(CheckpointError, match="is not the published"):
        load_clip("ViT-B/32")


def test_plain_fp16_clip_state_dict_loads_without_trust(tmp_path):
    from pixloom.clip_loading import load_clip
    from tiny_models import tiny_clip

    path = tmp_path / "clip.pt"
    torch.save({k: v.half() for k, v in tiny_clip().state_dict().items()}, path)
    loaded = load_clip(str(path))
    assert next(loaded.model.parameters()).dtype == torch.float32


def test_truncated_torchscript_is_a_clear_error(vit_b_32_pt, tmp_path):
    path = tmp_path / "ViT-B-32.pt"
    data = vit_b_32_pt.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    from pixloom.clip_loading import load_clip

    with pytest.raises(CheckpointError) as info:
        load_clip(str(path), trust=True)
    assert "\n" not in str(info.value)
