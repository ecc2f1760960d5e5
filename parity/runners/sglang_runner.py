"""The port: SGLang's *native* pipeline (sglang.multimodal_gen), in-process, with taps.

SGLang resolves a local directory by hub id or name detectors; a directory that matches
nothing silently runs SGLang's Diffusers backend, i.e. Diffusers again. This runner asks
SGLang how it would resolve the directory (with the family's model id) and refuses anything
but the family's native pipeline, then builds with backend="sglang" so no fallback can happen.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from parity import images, stages
from parity.cases import Case
from parity.errors import ParityError
from parity.families.base import FamilyAdapter
from parity.inputs import pipeline_inputs
from parity.runners import RunInfo, RunOptions, port_ops, qualified_name
from parity.runners.cache import PipelineCache
from parity.runners.recorder import DenoisingRecorder
from parity.runners.req_contract import ReqContract
from parity.runners.req_fields import ReqFields
from parity.runners.stage_taps import tap_encoder_inputs, tap_tokenizer, tap_vae_decode, text_encoders
from parity.runners.teacher import Teacher
from parity.runners.weights import check_model_dir
from parity.taps import Taps
from parity.trace import Trace
from parity.vocab import Side

PRECISION = {"float32": "fp32", "bfloat16": "bf16"}
# Components that must be SGLang's own implementations, not transformers'/diffusers' classes
# that SGLang loads when its native one fails to build (a second silent-fallback trap).
# LTX-2's audio VAE, vocoder and text connectors are SGLang modules too.
NATIVE_COMPONENT_PREFIXES = (
    "transformer",
    "vae",
    "text_encoder",
    "image_encoder",
    "audio_vae",
    "vocoder",
    "connectors",
)

# ServerArgs' degrees as SGLang resolved them, recorded per run (K/V-gather aliases ulysses_degree).
SGLANG_DEGREES = ("tp_size", "sp_degree", "ulysses_degree", "ring_degree", "kv_gather_degree", "cfg_parallel_degree")

_distributed_ready = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init_distributed(server_args: Any) -> None:
    """SGLang's torch.distributed world and process groups, once per process, with the degrees the
    server args resolved (as SGLang's own GPU worker does). One rank: a world of one process on a free
    port. Several: this process is one rank of a world the launcher (parity.runners.sglang_ranks) set up
    through RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT."""
    global _distributed_ready
    if _distributed_ready:
        return
    from sglang.multimodal_gen.runtime.distributed.parallel_state import (
        maybe_init_distributed_environment_and_model_parallel,
    )

    if server_args.num_gpus == 1:
        # Always a fresh port: a MASTER_PORT inherited from a parent that ran SGLang in-process (a test
        # session, a notebook) names the port that parent's store still listens on (EADDRINUSE here).
        os.environ.update(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1"
        )
    maybe_init_distributed_environment_and_model_parallel(
        tp_size=server_args.tp_size,
        sp_size=server_args.sp_degree,
        cfg_degree=server_args.cfg_parallel_degree or 1,
        ulysses_degree=server_args.ulysses_degree,
        ring_degree=server_args.ring_degree,
        dp_size=1,
        distributed_init_method=f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
    )
    if server_args.tp_size > 1:
        # SGLang's tensor-parallel layers read the TP width from the SRT server args; its GPU worker
        # publishes them the same way.
        from sglang.srt.runtime_context import get_context, publish
        from sglang.srt.server_args import ServerArgs as SrtServerArgs

        if get_context()._server_args is None:
            publish(SrtServerArgs(model_path="dummy", tp_size=server_args.tp_size), role="diffusion_gpu_worker")
    _distributed_ready = True


def rank_tags() -> dict[str, int]:
    """This process's place in SGLang's process groups (after the pipeline is built)."""
    from sglang.multimodal_gen.runtime.distributed import parallel_state as ps

    return {
        "rank": ps.get_world_rank(),
        "tp": ps.get_tp_rank(),
        "sp": ps.get_sp_parallel_rank(),
        "ulysses": ps.get_ulysses_parallel_rank(),
        "ring": ps.get_ring_parallel_rank(),
        "cfg": ps.get_classifier_free_guidance_rank(),
    }


def port_model_path(model_dir: Path, adapter: FamilyAdapter) -> Path:
    """The path SGLang is given for the model directory: the directory itself, or, for a family that
    SGLang registers only by a name detector on the path (no hub id, so no model_id selects it:
    GLM-Image's `"glm-image" in path`), a symlink named `adapter.port.model_path_alias` to it, made
    once per directory under the temporary directory. This works around SGLang's registry; the
    resolution is still checked to be the native pipeline (check_native_resolution)."""
    alias = adapter.port.model_path_alias
    if alias is None:
        return model_dir
    target = Path(model_dir).resolve()
    digest = hashlib.sha256(str(target).encode()).hexdigest()[:16]
    link = Path(tempfile.gettempdir()) / "parity-sglang-paths" / digest / alias
    link.parent.mkdir(parents=True, exist_ok=True)
    if not (link.is_symlink() and link.resolve() == target):
        tmp = link.with_name(f".{alias}-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)
    return link


def check_native_resolution(model_dir: Path, adapter: FamilyAdapter) -> Any:
    """What SGLang would run for this directory; ParityError unless it is the native port."""
    from sglang.multimodal_gen.registry import get_model_info

    info = get_model_info(str(model_dir), backend="auto", model_id=adapter.port.model_id)
    if info is None:
        raise ParityError(f"SGLang cannot resolve a pipeline for {model_dir} (model_id={adapter.port.model_id!r})")
    resolved = info.pipeline_cls
    is_fallback = "diffusers" in resolved.__module__.rsplit(".", 1)[-1]
    if is_fallback or resolved.__name__ != adapter.port.pipeline:
        what = "its Diffusers backend" if is_fallback else "a different pipeline"
        raise ParityError(
            f"SGLang resolved {model_dir.name} to {qualified_name(resolved)} ({what}), not its native "
            f"{adapter.port.pipeline}: the port would not be under test "
            f"(family {adapter.name!r}, model_id={adapter.port.model_id!r})"
        )
    return info


def _server_args(model_dir: Path, case: Case, adapter: FamilyAdapter, info: Any, ops_mode: str) -> Any:
    from sglang.multimodal_gen.runtime.server_args import ServerArgs, set_global_server_args

    precision = PRECISION[case.dtype]
    encoders = len(info.pipeline_config_cls().text_encoder_configs)
    server_args = ServerArgs.from_kwargs(
        model_path=str(model_dir),
        model_id=adapter.port.model_id,
        backend="sglang",
        # The ranks' degrees, every one explicit (parity.parallel); one rank: all 1.
        **case.degrees.server_args(),
        dit_precision=precision,
        vae_precision=precision,
        vae_decode_precision=precision,
        text_encoder_precisions=(precision,) * encoders,
        # An image encoder (Wan I2V's CLIP) too: SGLang's default is fp32, Diffusers loads it at torch_dtype.
        image_encoder_precision=precision,
        # Family pipeline-config fields that hold a precision too (PortSpec.precision_fields).
        **dict.fromkeys(adapter.port.precision_fields, precision),
        # Inputs SGLang reads from its pipeline config (PortSpec.config_inputs); its configs hold lists.
        **{
            k: list(v) if isinstance(v, tuple) else v for k, v in adapter.call_inputs if k in adapter.port.config_inputs
        },
        # One request per process here, but never compare embeddings from an earlier request.
        disable_conditioning_cache=True,
        # Native ops mean SGLang's reference attention too (torch SDPA), not a fused backend.
        **({"attention_backend": "torch_sdpa"} if ops_mode == "native" else {}),
        log_level="warning",
    )
    set_global_server_args(server_args)
    return server_args


def _check_built(pipe: Any, adapter: FamilyAdapter) -> dict[str, str]:
    if type(pipe).__name__ != adapter.port.pipeline or not type(pipe).__module__.startswith(
        "sglang.multimodal_gen.runtime.pipelines."
    ):
        raise ParityError(f"SGLang built {qualified_name(pipe)}, not its native {adapter.port.pipeline}")
    components = {name: qualified_name(m) for name, m in pipe.modules.items() if m is not None}
    for name, cls in components.items():
        if name.startswith(NATIVE_COMPONENT_PREFIXES) and not cls.startswith("sglang."):
            raise ParityError(
                f"SGLang loaded {name} as {cls}, not its own implementation (native build failed "
                "and SGLang fell back): the port's component would not be under test"
            )
    return components


@dataclass
class Loaded:
    """A built native pipeline and what it was built with."""

    pipe: Any
    server_args: Any
    ops_mode: str
    components: dict[str, str]
    model_path: Path | None = None  # what SGLang was given for the model directory (port_model_path)


_PIPELINES: PipelineCache[Loaded] = PipelineCache()


def ops_mode_for(case: Case) -> str:
    if case.port_ops == "both":  # the harness runs the port once per mode
        raise ParityError("the SGLang runner runs one op mode at a time: kernels or native")
    return case.port_ops if case.port_ops != "auto" else port_ops.default_mode(case.device)


def _load(model_dir: Path, case: Case, adapter: FamilyAdapter, ops_mode: str) -> Loaded:
    # SGLang has no safetensors-only switch: its text encoders and generic components read `*.bin` /
    # `*.pt` when a folder has no safetensors (runtime/loader/weight_utils.py, checkpoint_weights_iterator
    # -> pt_weights_iterator -> torch.load); the DiT and VAE loaders read safetensors only. The scan
    # (parity.runners.weights) refuses such a directory before SGLang is imported.
    check_model_dir(model_dir)
    from sglang.multimodal_gen.runtime.pipelines_core import build_pipeline

    port_ops.check_mode_runs(ops_mode)
    model_dir = port_model_path(model_dir, adapter)
    info = check_native_resolution(model_dir, adapter)
    server_args = _server_args(model_dir, case, adapter, info, ops_mode)
    _init_distributed(server_args)
    with port_ops.native_custom_ops(ops_mode == "native"):
        try:
            pipe = build_pipeline(server_args)
        except Exception as exc:
            raise ParityError(f"SGLang cannot build {adapter.port.pipeline} from {model_dir}: {exc}") from exc
    return Loaded(pipe, server_args, ops_mode, _check_built(pipe, adapter), model_dir)


def request(loaded: Loaded, model_dir: Path, case: Case, adapter: FamilyAdapter) -> Any:
    """A fresh Req for the case, with every input set explicitly (SGLang's per-model defaults,
    e.g. a default negative prompt, must not differ silently from the reference's): the case's inputs
    (parity.inputs) with SGLang's own: the seed, the initial noise drawn from a CPU generator as the
    reference draws it, on any device; the negative prompt None when the case has none (SamplingParams'
    default is a long one); the input image as a file of the same pixels."""
    from sglang.multimodal_gen.configs.sample.sampling_params import SamplingParams
    from sglang.multimodal_gen.runtime.entrypoints.utils import prepare_request

    library = {"negative_prompt": None, "seed": case.seed, "generator_device": "cpu"}
    if loaded.ops_mode == "native":  # SGLang's reference path: no request-gated ("lossless") fast path
        library |= port_ops.NATIVE_REQUEST
    inputs = pipeline_inputs(case, adapter, Side.PORT, library, _image_path)
    for name in adapter.port.config_inputs:  # set in the pipeline config when it was built
        inputs.pop(name, None)
    params = SamplingParams.from_user_sampling_params_args(
        str(loaded.model_path or model_dir), loaded.server_args, **inputs
    )
    return prepare_request(loaded.server_args, params)


def _image_path(spec: str, size: int | None, mode: str) -> str:
    return str(images.as_file(spec, size, mode))


def forward(loaded: Loaded, req: Any) -> Any:
    native = loaded.ops_mode == "native"
    modules = loaded.pipe.modules.values()
    with (
        torch.no_grad(),
        port_ops.native_custom_ops(native),
        port_ops.native_kernel_functions(native, modules) as kernels,
    ):
        output = loaded.pipe.forward(req, loaded.server_args)
    return output, kernels


def _after_stage(stage: Any, fields: ReqFields, req_contract: ReqContract, taps: Taps) -> Any:
    """What runs when a stage's forward returns: its Req fields recorded (and teacher-forced), then the
    Req contract's note of the stage that drew the initial latents."""

    def on_call(args: tuple, kwargs: dict, out: Any) -> None:
        fields.after_stage(out, taps)
        req_contract.after_stage(stage, out)

    return on_call


def _is_standard(stage: Any) -> bool:
    """SGLang's standard DenoisingStage (or a subclass), or the router that hands the Req to one (Flux's
    ProgressiveDenoisingStageRouter calls its standard stage's forward, so only the router's own
    verification runs): the stage whose Req contract the skill states."""
    from sglang.multimodal_gen.runtime.pipelines_core.stages.denoising import DenoisingStage

    return isinstance(stage, DenoisingStage) or isinstance(getattr(stage, "standard_stage", None), DenoisingStage)


def _denoiser(pipe: Any) -> Any:
    """The stage the Req contract is observed at: the first standard DenoisingStage, else the first stage
    SGLang gives the denoiser role (a model-specific denoiser: Helios' chunked stage), else None."""
    standard = [stage for stage in pipe.stages if _is_standard(stage)]
    denoisers = [s for s in pipe.stages if getattr(getattr(s, "role_affinity", None), "name", None) == "DENOISER"]
    return (standard or denoisers or [None])[0]


class SGLangRunner:
    """The port side's Runner (see parity.runners.Runner)."""

    side = Side.PORT
    last_info: RunInfo | None = None

    def load(self, model_dir: Path, case: Case, adapter: FamilyAdapter) -> Loaded:
        """The native pipeline for this directory, dtype, device and op mode; built once per process
        and reused by reruns, the isolated run, the referee and benchmarks."""
        ops_mode = ops_mode_for(case)
        key = (str(model_dir), case.dtype, case.device, ops_mode, case.port_parallel)
        loaded = _PIPELINES.get(key, lambda: _load(model_dir, case, adapter, ops_mode))
        from sglang.multimodal_gen.runtime.server_args import set_global_server_args

        set_global_server_args(loaded.server_args)  # the last built pipeline's args are global in SGLang
        return loaded

    def bare(self, model_dir: Path, case: Case, adapter: FamilyAdapter) -> Any:
        """One request through the built pipeline with no taps (the benchmark's "SGLang alone")."""
        loaded = self.load(model_dir, case, adapter)
        return forward(loaded, request(loaded, model_dir, case, adapter))[0]

    def run(self, model_dir: Path, case: Case, adapter: FamilyAdapter, trace: Trace, options: RunOptions) -> RunInfo:
        loaded = self.load(model_dir, case, adapter)
        pipe, server_args = loaded.pipe, loaded.server_args
        run_info = RunInfo(pipeline=qualified_name(pipe), components=dict(loaded.components))
        run_info.parallel = {
            "sglang": {name: getattr(server_args, name, None) for name in SGLANG_DEGREES},
            "dit_parameters": sum(p.numel() for p in pipe.get_module("transformer").parameters()),
        }
        self.last_info = run_info
        if adapter.port.model_path_alias is not None:
            run_info.notes.append(
                f"SGLang was given {loaded.model_path}, a symlink named {adapter.port.model_path_alias!r} to the "
                f"model directory: SGLang registers {adapter.port.pipeline} only by a detector on the path"
            )
        for field in adapter.port.precision_fields:
            run_info.notes.append(
                f"SGLang's pipeline_config.{field} was set to {getattr(server_args.pipeline_config, field)!r} "
                "beside dit_precision (the port does not derive it from dit_precision)"
            )
        req = request(loaded, model_dir, case, adapter)

        loop = DenoisingRecorder(trace, case, adapter, Side.PORT, options)
        teacher = Teacher(options.teacher) if options.teacher is not None else None
        fields = ReqFields(trace, case, adapter, teacher, loop)
        encoders = sorted(name for name, m in pipe.modules.items() if name.startswith("text_encoder") and m is not None)
        req_contract = ReqContract(run_info.contract, encoders)
        denoiser = _denoiser(pipe)

        with Taps() as taps:
            for stage in pipe.stages:
                if adapter.encoder_input_ids:  # the text encoders' inputs are tapped instead (below)
                    tokenizers = []
                elif adapter.port.tokenizers:  # tokenizer i is the stage attribute the adapter names i-th
                    tokenizers = [getattr(stage, name, None) for name in adapter.port.tokenizers]
                else:
                    tokenizers = getattr(stage, "tokenizers", None) or []
                for index, tokenizer in enumerate(tokenizers):
                    if tokenizer is not None:
                        tap_tokenizer(taps, tokenizer, index, trace, case.prompt, teacher, adapter)
                # One tap per method (a second one on the same method would not run): the Req contract's
                # generator watch before the stage, its fields (recorded, teacher-forced) after it.
                after = _after_stage(stage, fields, req_contract, taps)
                taps.wrap_method(stage, "forward", after, before=req_contract.before_stage)
                fields.tap_noise(stage, taps)  # a stage that draws the initial noise itself (noise_in_denoising)
                req_contract.tap(stage, taps, denoiser=stage is denoiser, standard=_is_standard(stage))
            if adapter.encoder_input_ids:
                for index, encoder in enumerate(text_encoders(pipe.modules)):
                    tap_encoder_inputs(taps, encoder, index, trace, teacher)
            loop.tap_dit(taps, pipe.get_module("transformer"), adapter, Side.PORT)
            if options.replay_step is not None:  # a float64 replay: caches filled in the run dtype turned off
                for name, value in adapter.port.replay_dit_attributes:
                    taps.set_attribute(pipe.get_module("transformer"), name, value)
            if adapter.port.denoising_scheduler is not None:  # set up inside the denoising stage
                fields.tap_scheduler(pipe.get_module(adapter.port.denoising_scheduler), taps)
            tap_vae_decode(taps, pipe.get_module("vae"), trace, teacher)
            output, kernels = forward(loaded, req)
        run_info.port_ops = {
            "mode": loaded.ops_mode,
            "requested": case.port_ops,
            "attention_backend": server_args.attention_backend,
            "rerouted": port_ops.describe_custom_ops(pipe.modules.values()) + kernels
            if loaded.ops_mode == "native"
            else [],
        }
        if loaded.ops_mode == "native":  # every SGLang kernel that still ran, and the one-line verdict on it
            run_info.port_ops |= {"kernels_ran": kernels.ran, "summary": kernels.summary}
        frames = getattr(output, "output", None)
        if frames is None:
            error = getattr(output, "error", None)
            raise ParityError(f"SGLang produced no frames{': ' + str(error) if error else ''}")
        frames = torch.as_tensor(frames)
        if adapter.port.frames_layout == "bthwc":  # e.g. LTX-2's numpy frames from the video processor
            frames = frames.permute(0, 4, 1, 2, 3)
        trace.add("frames", stages.DECODING, frames.float(), layout="frames_bcthw")
        if adapter.audio_output and getattr(output, "audio", None) is not None:
            trace.add("audio", stages.DECODING, torch.as_tensor(output.audio).float())
        return run_info
