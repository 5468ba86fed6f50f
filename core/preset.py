"""Presets: YAML files (omegaconf) that pick and tune the plugins.

Loading a preset means: read the YAML, follow ``base:`` (a shipped preset name or
a file path), apply overrides, check everything against the schema below, then
check each plugin's ``params`` against that plugin's own ``Params`` dataclass.
Every failure is a :class:`PresetError` with one line naming the preset file,
the key path and, where there are some, the valid choices.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import PresetError

MAX_SIDE = 8192


@dataclass
class ScheduleConfig:
    name: str = "constant"  # constant | step | cosine
    milestones: List[float] = field(default_factory=list)  # step: fractions (<1) or step numbers
    gamma: float = 0.5  # step: the factor at each milestone
    warmup: int = 0  # steps of linear warm-up
    min_lr: float = 0.0  # cosine: the floor


@dataclass
class RunConfig:
    steps: int = 300
    seed: int = 0
    device: str = "auto"
    size: List[int] = field(default_factory=lambda: [256, 256])
    lr: float = 0.1
    optimizer: str = "adam"
    optimizer_params: Any = field(default_factory=dict)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    progress: bool = True
    on_nan: str = "stop"  # stop (at the last good image) | recover (halve the learning rate, go on)
    crop_batch: Any = "auto"  # crops a perceptor pass: auto (fit memory_budget) | N (chunks of N)
    memory_budget: Optional[str] = None  # e.g. 2GiB; default: $PIXLOOM_MEMORY_BUDGET, else free memory
    precision: str = "auto"  # auto (TF32 on CUDA, fp32 elsewhere) | fp32 | tf32 | fp16 (CUDA autocast)
    compile: bool = False  # torch.compile the perceptors' image towers (slow to start; see BENCHMARKS.md)
    # best of several starts: seeds seed..seed+candidates-1 each run candidate_steps steps, and
    # the one whose select_by losses (their labels; empty: the total) are lowest is finished
    candidates: int = 1
    candidate_steps: int = 40
    select_by: List[str] = field(default_factory=list)


@dataclass
class PluginSpec:
    name: str = "???"
    params: Any = field(default_factory=dict)
    label: Optional[str] = None


@dataclass
class LossSpec:
    name: str = "???"
    weight: float = 1.0
    params: Any = field(default_factory=dict)
    label: Optional[str] = None


@dataclass
class OutputConfig:
    dir: str = "outputs"
    save_every: int = 0
    name: Optional[str] = None  # file stem; default: from the first prompt
    plugins: List[Any] = field(default_factory=lambda: ["png"])


@dataclass
class PresetSchema:
    base: Optional[str] = None
    description: str = ""
    run: RunConfig = field(default_factory=RunConfig)
    generator: PluginSpec = field(default_factory=lambda: PluginSpec(name="pixel"))
    perceptors: List[PluginSpec] = field(default_factory=lambda: [PluginSpec(name="clip")])
    augment: PluginSpec = field(default_factory=lambda: PluginSpec(name="cutouts"))
    losses: List[LossSpec] = field(default_factory=list)
    output: OutputConfig = field(default_factory=OutputConfig)
    animation: Any = None  # filled in by the animation feature


def presets_dir() -> Path:
    import pixloom.presets as _p

    return Path(_p.__file__).resolve().parent


def shipped_presets() -> dict:
    """Shipped preset names (paths under presets/ without .yaml) -> files."""
    root = presets_dir()
    return {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*.yaml"))}


def find_preset(ref: str, relative_to: Path | None = None, label: str | None = None) -> Path:
    """A preset reference (a file path or a shipped preset name) as an existing file;
    ``label`` is what an error calls it (default ``preset REF``)."""
    label = label or f"preset {ref}"
    path = Path(ref).expanduser()
    candidates = [path]
    if relative_to is not None and not path.is_absolute():
        candidates.insert(0, relative_to / path)
    for c in candidates:
        if c.is_dir():
            raise PresetError(f"{label}: is a directory, not a YAML file")
        if c.is_file():
            return c
    shipped = shipped_presets()
    name = ref[:-5] if ref.endswith(".yaml") else ref
    if name in shipped:
        return shipped[name]
    if name.startswith("presets/") and name[len("presets/"):] in shipped:
        return shipped[name[len("presets/"):]]
    raise PresetError(f"{label}: no such file, and not a shipped preset "
                      f"(shipped: {', '.join(shipped)})")


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError(f"preset {path}: cannot read it ({exc.strerror if isinstance(exc, OSError) else exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PresetError(f"preset {path}: malformed YAML{where}: {problem}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PresetError(f"preset {path}: the top level must be a mapping of keys, not {type(data).__name__}")
    return data


def _load_chain(path: Path, seen: tuple) -> dict:
    """Read a preset and merge it over its ``base`` chain (plain dicts, lists replaced)."""
    real = path.resolve()
    if real in seen:
        chain = " -> ".join(str(p) for p in (*seen, real))
        raise PresetError(f"preset {path}: 'base' chain extends itself ({chain})")
    data = _read_yaml(path)
    base_ref = data.get("base")
    if base_ref is None:
        return data
    if not isinstance(base_ref, str):
        raise PresetError(f"preset {path}: base: must be a preset name or a file path")
    base_path = find_preset(base_ref, relative_to=path.parent, label=f"preset {path}: base: {base_ref}")
    merged = _deep_merge(_load_chain(base_path, (*seen, real)), data)
    merged.pop("base", None)
    return merged


def _deep_merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``; a plugin entry (a mapping with ``name``) that
    names another plugin replaces the base's entry: another plugin's params mean
    nothing to it."""
    out = dict(base)
    for k, v in over.items():
        other_plugin = (isinstance(v, dict) and isinstance(out.get(k), dict) and "name" in v
                        and v["name"] != out[k].get("name"))
        if isinstance(v, dict) and isinstance(out.get(k), dict) and not other_plugin:
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _omega_message(exc: OmegaConfBaseException) -> tuple:
    key = getattr(exc, "full_key", None) or ""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return key, msg


def parse_override(item: str) -> tuple:
    """'a.b.0.c=value' -> ('a.b.0.c', parsed value); the value is read as YAML."""
    if "=" not in item:
        raise PresetError(f"override {item!r}: expected KEY=VALUE (e.g. run.steps=50)")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key:
        raise PresetError(f"override {item!r}: empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key, parsed


def apply_overrides(data: dict, overrides, source: str) -> dict:
    """Apply dotted overrides to a plain preset dict (list indices allowed)."""
    cfg = OmegaConf.create(data)
    for item in overrides or ():
        key, value = item if isinstance(item, tuple) else parse_override(item)
        try:
            OmegaConf.update(cfg, key, value, merge=True, force_add=True)
        except (OmegaConfBaseException, IndexError, KeyError, ValueError, TypeError) as exc:
            raise PresetError(f"{source}: override {key}={value!r}: {_first(exc)}") from exc
    return OmegaConf.to_container(cfg)


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass
class LoadedPreset:
    """A preset checked against the schema (plugin params not yet checked)."""

    cfg: DictConfig
    source: str  # what error messages call it (the file path)
    directory: Path | None


def apply_prompts(data: dict, prompts) -> dict:
    """Replace the text prompts of the first ``clip`` loss (adding one if there is none)."""
    losses = data.setdefault("losses", []) or []
    data["losses"] = losses
    for loss in losses:
        if isinstance(loss, dict) and loss.get("name") == "clip":
            params = loss.setdefault("params", {}) or {}
            loss["params"] = params
            params["prompts"] = list(prompts)
            return data
    losses.insert(0, {"name": "clip", "weight": 1.0, "params": {"prompts": list(prompts)}})
    return data


def load_preset(ref, overrides=(), source: str | None = None, prompts=None) -> LoadedPreset:
    """Load a preset from a path, a shipped name or a dict, apply overrides
    (and ``prompts``, which replace the first clip loss's), check the schema."""
    directory = None
    if isinstance(ref, (dict, DictConfig)):
        data = OmegaConf.to_container(ref) if isinstance(ref, DictConfig) else dict(ref)
        if data.get("base"):
            base_path = find_preset(data["base"], label=f"{source or '<preset>'}: base: {data['base']}")
            data = _deep_merge(_load_chain(base_path, ()), data)
            data.pop("base", None)
        source = source or "<preset>"
    else:
        path = find_preset(str(ref))
        data = _load_chain(path, ())
        source = source or str(ref)
        directory = path.resolve().parent
    data.pop("base", None)
    data = apply_overrides(data, overrides, source)
    if prompts:
        data = apply_prompts(data, prompts)
    cfg = _check_schema(data, source)
    _check_values(cfg, source)
    return LoadedPreset(cfg, source, directory)


def _check_schema(data: dict, source: str) -> DictConfig:
    schema = OmegaConf.structured(PresetSchema)
    unknown = [k for k in data if k not in schema]
    if unknown:
        raise PresetError(f"{source}: {unknown[0]}: unknown key (valid: {', '.join(schema.keys())})")
    for section in ("run", "output"):
        if isinstance(data.get(section), dict):
            valid = list(schema[section].keys())
            for k in data[section]:
                if k not in valid:
                    raise PresetError(f"{source}: {section}.{k}: unknown key (valid: {', '.join(valid)})")
    for where, entry, valid in _plugin_entries(data):
        _check_entry(entry, where, valid, source)
    optimizer_params = data.get("run", {}).get("optimizer_params") if isinstance(data.get("run"), dict) else None
    if optimizer_params is not None and not isinstance(optimizer_params, dict):
        raise PresetError(f"{source}: run.optimizer_params: must be a mapping of keyword arguments "
                          f"for the optimizer, not {type(optimizer_params).__name__}")
    try:
        cfg = OmegaConf.merge(schema, data)
        OmegaConf.to_container(cfg, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        key, msg = _omega_message(exc)
        raise PresetError(f"{source}: {key or 'preset'}: {msg}") from exc
    except (TypeError, ValueError) as exc:  # e.g. a list merged onto a mapping
        raise PresetError(f"{source}: preset: {_first(exc)}") from exc
    return cfg


_PLUGIN_KEYS = [f.name for f in dataclasses.fields(PluginSpec)]
_LOSS_KEYS = [f.name for f in dataclasses.fields(LossSpec)]
_OUTPUT_KEYS = ["name", "params"]


def _plugin_entries(data: dict):
    """(key path, entry, valid keys) of every plugin entry in a preset dict."""
    for section in ("generator", "augment"):
        if section in data:
            yield section, data[section], _PLUGIN_KEYS
    for section, valid in (("perceptors", _PLUGIN_KEYS), ("losses", _LOSS_KEYS)):
        if isinstance(data.get(section), list):
            for i, entry in enumerate(data[section]):
                yield f"{section}.{i}", entry, valid
    output = data.get("output")
    if isinstance(output, dict) and isinstance(output.get("plugins"), list):
        for i, entry in enumerate(output["plugins"]):
            if not isinstance(entry, str):
                yield f"output.plugins.{i}", entry, _OUTPUT_KEYS


def _check_entry(entry, where: str, valid: list, source: str) -> None:
    """Unknown keys and a non-mapping ``params`` of one plugin entry, with the full key path."""
    if not isinstance(entry, dict):
        return  # the schema merge names what is wrong with it
    for key in entry:
        if key not in valid:
            raise PresetError(f"{source}: {where}.{key}: unknown key (valid: {', '.join(valid)})")
    params = entry.get("params")
    if params is not None and not isinstance(params, dict):
        plugin = f" of {entry['name']!r}" if isinstance(entry.get("name"), str) else ""
        raise PresetError(f"{source}: {where}.params: must be a mapping of parameters{plugin}, "
                          f"not {type(params).__name__}")


def _check_values(cfg: DictConfig, source: str) -> None:
    run = cfg.run

    def bad(key, why):
        raise PresetError(f"{source}: {key}: {why}")

    if run.steps < 1:
        bad("run.steps", f"must be at least 1 (got {run.steps})")
    if len(run.size) != 2:
        bad("run.size", f"must be [width, height] (got {list(run.size)})")
    for i, side in enumerate(run.size):
        if side < 8 or side > MAX_SIDE:
            bad(f"run.size.{i}", f"must be between 8 and {MAX_SIDE} pixels (got {side})")
    if not math.isfinite(run.lr) or run.lr <= 0:
        bad("run.lr", f"must be a positive finite number (got {run.lr})")
    if run.on_nan not in ("stop", "recover"):
        bad("run.on_nan", f"unknown {run.on_nan!r} (valid: stop, recover)")
    if run.candidates < 1:
        bad("run.candidates", f"must be at least 1 (got {run.candidates})")
    if run.candidate_steps < 1:
        bad("run.candidate_steps", f"must be at least 1 (got {run.candidate_steps})")
    from .loop import loss_labels

    labels = loss_labels(cfg)
    for label in run.select_by:
        if label not in labels:
            bad("run.select_by", f"no loss labelled {label!r} (the losses: {', '.join(labels)})")
    from .perf import check_run_settings

    check_run_settings(run, source)
    if run.schedule.name not in ("constant", "step", "cosine"):
        bad("run.schedule.name", f"unknown schedule {run.schedule.name!r} (valid: constant, step, cosine)")
    if cfg.output.save_every < 0:
        bad("output.save_every", f"must be 0 (off) or a positive step count (got {cfg.output.save_every})")
    if not cfg.losses:
        bad("losses", "no losses: a render needs at least one (e.g. {name: clip, params: {prompts: [...]}})")
    for i, loss in enumerate(cfg.losses):
        if not math.isfinite(loss.weight):
            bad(f"losses.{i}.weight", f"must be a finite number (got {loss.weight})")
    if all(loss.weight == 0 for loss in cfg.losses):
        bad("losses", "every loss has weight 0, so there is nothing to optimise "
                      "(give at least one a non-zero weight)")
    from .optim import optimizer_class

    optimizer_class(run.optimizer, f"{source}: run.optimizer")
    if not cfg.perceptors and any(l.name == "clip" for l in cfg.losses):
        bad("perceptors", "the clip loss needs at least one perceptor")


def validate_params(params_cls, params, where: str, plugin: str):
    """Check a plugin's ``params`` against its dataclass; return the dataclass instance."""
    if params is None:
        params = {}
    if isinstance(params, (DictConfig, ListConfig)):
        params = OmegaConf.to_container(params)
    if not isinstance(params, dict):
        raise PresetError(f"{where}: must be a mapping of parameters for {plugin}, not {type(params).__name__}")
    fields = [f.name for f in dataclasses.fields(params_cls)]
    for key in params:
        if key not in fields:
            valid = ", ".join(fields) if fields else "it takes none"
            raise PresetError(f"{where}.{key}: unknown parameter of {plugin} (valid: {valid})")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(params_cls), params)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key, msg = _omega_message(exc)
        cause = exc.__cause__
        if isinstance(cause, (ValueError, TypeError)) and not key:
            msg = _first(cause)
        raise PresetError(f"{where}{'.' + key if key else ''}: {msg} ({plugin})") from exc
    except (ValueError, TypeError) as exc:
        raise PresetError(f"{where}: {_first(exc)} ({plugin})") from exc
    return obj


def params_to_dict(obj) -> dict:
    """A validated Params instance as a plain dict (for the resolved preset)."""
    return OmegaConf.to_container(OmegaConf.structured(obj))
