"""`mamakit export trt`: TensorRT / TensorRT-RTX engines for a bundle's graphs, one code path.

``tensorrt`` (JetPack, datacenter) and ``tensorrt_rtx`` (RTX desktops) share the Python API used
here: ``Builder`` + ``OnnxParser`` + ``IBuilderConfig`` + optimisation profiles. Differences are
handled by feature checks, not version checks:

- precision comes from the graph (fp32 / fp16 ONNX / QDQ int8). Networks are built **strongly
  typed** where the flag exists (TensorRT-RTX and TensorRT 10+/11); precision builder flags are set
  only for ``--precision`` on a TensorRT that still has them (JetPack's TensorRT 8/10 weakly typed);
- TensorRT-RTX builds ahead of time **without a GPU** (portable across Ampere+ by default, or the
  ``--compute-capability`` given); classic TensorRT builds for the GPU it runs on;
- a persistent timing cache where the TensorRT has one (TensorRT-RTX tunes at run time instead:
  its timing-cache calls are no-ops, so the option is recorded as not used);
- optional DLA on Jetson (``--dla-core``) with GPU fallback.

The engine is written into the bundle folder atomically and listed in ``manifest["engines"]`` with
the TensorRT flavour and version, targets, profiles and its sha256 (the manifest is re-checksummed).
"""
from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path

from mamakit.bundle import Bundle, load_bundle, write_manifest
from mamakit.errors import ConfigError, DependencyError, WorkError
from mamakit.fsutil import atomic_path, sha256_file, write_bytes_atomic

log = logging.getLogger(__name__)

#: python module -> flavour name recorded in the manifest (read by mamakit.runtime)
BACKENDS = (("tensorrt_rtx", "tensorrt-rtx"), ("tensorrt", "tensorrt"))


def find_backend(prefer: str | None = None):
    """Return ``(module, flavour)`` of the installed TensorRT (RTX first unless ``prefer``)."""
    order = list(BACKENDS)
    if prefer:
        order = [b for b in BACKENDS if b[1] == prefer]
        if not order:
            raise ConfigError(f"--backend {prefer!r}: use tensorrt or tensorrt-rtx")
    errors = []
    for module, flavour in order:
        try:
            trt = importlib.import_module(module)
            trt.Builder  # placeholder wheels import but have no API
            return trt, flavour
        except (ImportError, AttributeError, OSError) as exc:
            errors.append(f"{module}: {exc}")
    raise DependencyError("no TensorRT is installed for `mamakit export trt`: install `pip install \"mamakit[rtx]\"` "
                          "(TensorRT-RTX, builds without a GPU) or use JetPack's TensorRT "
                          f"({'; '.join(errors)[:200]})")


def _gpu() -> dict | None:
    """Name and compute capability of CUDA device 0, or None (no GPU / no cuda-python)."""
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        err, n = cudart.cudaGetDeviceCount()
        if int(getattr(err, "value", err)) != 0 or not n:
            return None
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(getattr(err, "value", err)) != 0:
            return None
        name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
        return {"name": name, "compute_capability": f"{props.major}.{props.minor}"}
    except Exception:
        return None


def _cc_enum(trt, cc: str):
    name = "SM" + str(cc).replace(".", "")
    try:
        return getattr(trt.ComputeCapability, name)
    except AttributeError as exc:
        known = [m[2:3] + "." + m[3:] for m in trt.ComputeCapability.__members__ if m.startswith("SM")]
        raise ConfigError(f"--compute-capability {cc}: this TensorRT-RTX targets {', '.join(known)}") from exc


def _profile_for(net, bundle: Bundle, graph: str) -> dict:
    """min/opt/max per input: static inputs use their shape; symbolic dims use the manifest's
    processing-size shapes (state shapes recorded at export) for all three."""
    known = {}
    w, h = bundle.processing_size
    for spec in bundle.inputs(graph):
        known[spec.name] = spec.shape
    for st in bundle.state(graph):
        known[st.input] = st.shape
    prof = {}
    for i in range(net.num_inputs):
        t = net.get_input(i)
        shape = list(t.shape)
        if all(int(d) >= 0 for d in shape):
            s = [int(d) for d in shape]
        else:
            ref = known.get(t.name)
            if ref is None or len(ref) != len(shape):
                raise ConfigError(f"graph {graph}: input {t.name} has dynamic shape {shape} and the manifest gives no "
                                  "concrete shape for it; re-export a static bundle")
            s = []
            for axis, (d, r) in enumerate(zip(shape, ref)):
                if int(d) >= 0:
                    s.append(int(d))
                elif isinstance(r, int):
                    s.append(r)
                elif axis == 0:
                    s.append(1)
                elif t.name in ("src", "guide") and axis in (2, 3):
                    s.append(h if axis == 2 else w)
                else:
                    raise ConfigError(f"graph {graph}: cannot choose a size for {t.name} axis {axis}; re-export static")
        prof[t.name] = {"min": s, "opt": s, "max": s}
    return prof


def build_engines(bundle_path: str | os.PathLike, *, precision: str | None = None, workspace_mb: int = 1024,
                  timing_cache: str | os.PathLike | None = None, compute_capability: str | None = None,
                  dla_core: int | None = None, backend: str | None = None, graphs: list[str] | None = None) -> list[dict]:
    """Build one engine per ONNX graph of the bundle and record them in its manifest."""
    bundle = load_bundle(bundle_path, verify=True)
    root = Path(bundle_path)
    if workspace_mb <= 0:
        raise ConfigError(f"--workspace {workspace_mb}: give a positive size in MB")
    if not os.access(root, os.W_OK):
        raise ConfigError(f"bundle {root} is not writable: copy it somewhere you can write to")
    if precision and precision not in ("fp32", "fp16", "int8"):
        raise ConfigError(f"--precision {precision!r}: use fp16 or int8 (or leave it out)")
    trt, flavour = find_backend(backend)
    logger = trt.Logger(trt.Logger.WARNING)
    flags_available = hasattr(trt.BuilderFlag, "FP16")
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    use_flags = False
    if precision and precision != bundle.precision:
        if flags_available and precision in ("fp16", "int8") and bundle.precision == "fp32":
            use_flags, strongly_typed = True, False
            if precision == "int8":
                raise ConfigError("--precision int8 with builder flags needs a calibrator, which mamakit does not use: "
                                  "export an int8 (QDQ) bundle with `mamakit export onnx --precision int8 --calib DATASET`")
        else:
            raise ConfigError(
                f"bundle {root} is {bundle.precision} and {flavour} {trt.__version__} builds strongly typed networks "
                f"(precision comes from the graph): export a {precision} bundle with "
                f"`mamakit export onnx --precision {precision}` and build that"
            )
    scheme = (bundle.manifest.get("export", {}).get("conversion") or {}).get("scheme")
    if bundle.precision == "int8" and scheme == "cpu":
        raise ConfigError(f"bundle {root} is int8 in the ONNX-Runtime-only `cpu` scheme (uint8 zero-points, int32 biases), "
                          "which TensorRT cannot build: re-export with `--precision int8 --int8-scheme trt`")
    todo = [g for g in bundle.graphs if graphs is None or g in graphs]
    gpu = _gpu()
    if flavour == "tensorrt" and gpu is None:
        raise DependencyError("TensorRT (non-RTX) builds engines only on a machine with a CUDA GPU; none is usable "
                              "here: build on the target device, or install tensorrt-rtx for ahead-of-time builds")
    cache_bytes = b""
    cache_path = Path(timing_cache) if timing_cache else None
    cache_supported = flavour != "tensorrt-rtx" and hasattr(trt.IBuilderConfig, "create_timing_cache")
    if cache_path is not None:
        if cache_path.is_dir():
            raise ConfigError(f"--timing-cache {cache_path} is a folder; give a file path")
        if not cache_path.parent.exists():
            raise ConfigError(f"--timing-cache {cache_path}: folder {cache_path.parent} does not exist")
        if cache_path.is_file():
            cache_bytes = cache_path.read_bytes()
    entries = []
    for gname in todo:
        gpath = bundle.graph_path(gname)
        if gpath.suffix != ".onnx":
            continue
        t0 = time.perf_counter()
        builder = trt.Builder(logger)
        flag = 0
        if strongly_typed:
            flag |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT 8
            flag |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        net = builder.create_network(flag)
        parser = trt.OnnxParser(net, logger)
        if not parser.parse_from_file(str(gpath)):
            errs = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
            raise WorkError(f"{flavour} cannot parse {gpath.name}: {errs[:300]}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        if use_flags:
            config.set_flag(trt.BuilderFlag.FP16)
        elif not strongly_typed and flags_available:
            # weakly typed TensorRT (8.x): an fp16 graph still needs the FP16 flag to run in fp16, and a
            # QDQ graph needs INT8 for its explicit quantisation to be honoured
            if bundle.precision == "fp16":
                config.set_flag(trt.BuilderFlag.FP16)
            elif bundle.precision == "int8":
                config.set_flag(trt.BuilderFlag.INT8)
        targets: list[str]
        if flavour == "tensorrt-rtx":
            if compute_capability:
                config.num_compute_capabilities = 1
                config.set_compute_capability(_cc_enum(trt, compute_capability), 0)
                targets = [str(compute_capability)]
            else:
                targets = ["portable (TensorRT-RTX default: Ampere and later, no Turing)"]
        else:
            if compute_capability and compute_capability != gpu["compute_capability"]:
                raise ConfigError(f"--compute-capability {compute_capability}: TensorRT builds for this GPU "
                                  f"({gpu['name']}, {gpu['compute_capability']}) only")
            targets = [gpu["compute_capability"]]
        cache_obj = None
        if cache_supported:
            cache_obj = config.create_timing_cache(cache_bytes)
            config.set_timing_cache(cache_obj, False)
        if dla_core is not None:
            if getattr(builder, "num_DLA_cores", 0) <= dla_core:
                raise ConfigError(f"--dla-core {dla_core}: this device has {getattr(builder, 'num_DLA_cores', 0)} DLA "
                                  "cores (DLA exists on Jetson AGX/NX only)")
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = int(dla_core)
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        profile_desc = _profile_for(net, bundle, gname)
        profile = builder.create_optimization_profile()
        for name, p in profile_desc.items():
            profile.set_shape(name, p["min"], p["opt"], p["max"])
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(net, config)
        if serialized is None:
            raise WorkError(f"{flavour} failed to build an engine for {gpath.name} (see the TensorRT log above)")
        data = bytes(memoryview(serialized))
        tag = "rtx" if flavour == "tensorrt-rtx" else "trt"
        rel = f"{gname}.{tag}.engine"
        write_bytes_atomic(root / rel, data)
        if cache_supported and cache_path is not None:
            write_bytes_atomic(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
        secs = time.perf_counter() - t0
        log.info("built %s engine for %s in %.1f s (%d KiB)", flavour, gpath.name, secs, len(data) // 1024)
        entry = {
            "graph": gname, "file": rel, "sha256": sha256_file(root / rel), "backend": flavour,
            "trt_version": trt.__version__,
            "onnx_parser_version": _parser_version(trt),
            "compute_capability": targets[0] if (flavour == "tensorrt" or compute_capability) else None,
            "targets": targets,
            "gpu": gpu if flavour == "tensorrt" else None,
            "built_with_gpu": gpu is not None,
            "precision": precision if use_flags else bundle.precision,
            "precision_source": "builder flags" if use_flags else "graph (strongly typed)" if strongly_typed else "graph",
            "strongly_typed": bool(strongly_typed),
            "profiles": [profile_desc],
            "workspace_mb": int(workspace_mb),
            "timing_cache": ({"file": str(cache_path), "used": True} if cache_supported and cache_path else
                             {"used": False, "reason": "TensorRT-RTX has no build-time timing cache (it tunes at run "
                              "time with a runtime cache)"} if flavour == "tensorrt-rtx" else {"used": False}),
            "dla_core": dla_core,
            "build_seconds": round(secs, 2),
            "size_bytes": len(data),
        }
        entries.append(entry)
    if not entries:
        raise ConfigError(f"bundle {root} has no ONNX graphs to build")
    manifest = dict(bundle.manifest)
    keep = [e for e in manifest.get("engines", []) if not any(
        e.get("graph") == n["graph"] and e.get("backend") == n["backend"] for n in entries)]
    manifest["engines"] = keep + entries
    listed = sorted(set(manifest["files"]) | {e["file"] for e in entries})
    write_manifest(root, manifest, files=listed)
    return entries


def _parser_version(trt) -> str | None:
    try:
        return str(trt.get_nv_onnx_parser_version())
    except Exception:
        return None
