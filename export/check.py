"""`mamakit export check`: verify a bundle anywhere, without torch or the checkpoint.

1. the manifest parses and its format version is one this mamakit reads;
2. every listed file matches its sha256 (a mismatch raises :class:`BundleError` naming the file);
3. each ONNX graph's inputs/outputs match the manifest (names, shapes, dtypes);
4. the reference sample (``sample.npz``) runs through ONNX Runtime and the outputs listed in
   ``manifest["sample"]["compare"]`` match the recorded PyTorch outputs within
   ``atol + rtol × max|recorded|`` (``rtol`` optional, default 0).

Imports: numpy, onnxruntime (inside functions) and the core only — never torch.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mamakit.bundle import FORMAT_VERSION, Bundle, load_bundle
from mamakit.errors import BundleError, DependencyError, require

log = logging.getLogger(__name__)

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
               "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(int8)": "int8",
               "tensor(bool)": "bool", "tensor(double)": "float64"}
_KEY = re.compile(r"^(\d{3})/([^/]+)/(in|out)/(.+)$")


@dataclass
class CheckRow:
    item: str
    detail: str
    ok: bool


@dataclass
class CheckReport:
    bundle: Path
    rows: list[CheckRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def add(self, item: str, detail: str, ok: bool) -> None:
        self.rows.append(CheckRow(item, detail, bool(ok)))

    def table(self) -> str:
        w = max(len(r.item) for r in self.rows) if self.rows else 10
        d = max(len(r.detail) for r in self.rows) if self.rows else 10
        lines = [f"{'check':<{w}}  {'detail':<{d}}  result", f"{'-' * w}  {'-' * d}  ------"]
        lines += [f"{r.item:<{w}}  {r.detail:<{d}}  {'ok' if r.ok else 'FAIL'}" for r in self.rows]
        lines.append(f"bundle {self.bundle}: {'OK' if self.ok else 'FAILED'}")
        return "\n".join(lines)

    def failures(self) -> list[CheckRow]:
        return [r for r in self.rows if not r.ok]


def load_sample(path: Path) -> list[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Read ``sample.npz`` into ordered calls ``[(graph, inputs, outputs), ...]``."""
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise BundleError(f"bundle sample {path} cannot be read ({exc}); re-export the bundle") from exc
    calls: dict[int, tuple[str, dict, dict]] = {}
    with data:
        for key in data.files:
            m = _KEY.match(key)
            if not m:
                raise BundleError(f"bundle sample {path} has an unexpected key {key!r}; re-export the bundle")
            k, graph, io, name = int(m.group(1)), m.group(2), m.group(3), m.group(4)
            g, ins, outs = calls.setdefault(k, (graph, {}, {}))
            if g != graph:
                raise BundleError(f"bundle sample {path}: call {k} names two graphs ({g}, {graph}); re-export the bundle")
            (ins if io == "in" else outs)[name] = data[key]
    return [calls[k] for k in sorted(calls)]


def _dims_match(expected: list, actual: list) -> bool:
    if len(expected) != len(actual):
        return False
    for e, a in zip(expected, actual):
        if isinstance(e, int) and isinstance(a, int) and e != a:
            return False
    return True


def check_bundle(path: str | Path, *, threads: int | None = 2) -> CheckReport:
    """Verify ``path``; raises :class:`BundleError` for a malformed/tampered bundle (naming the
    file), returns a report (``report.ok``) for the graph and sample checks."""
    bundle: Bundle = load_bundle(path, verify=True)  # format version + every checksum
    report = CheckReport(Path(path))
    m = bundle.manifest
    report.add("format version", f"{m['format_version']} (reader {FORMAT_VERSION}), kind {bundle.kind}", True)
    report.add("checksums", f"{len(m['files'])} files sha256 match", True)
    try:
        ort = require("onnxruntime", "cpu", "checking a bundle")
    except DependencyError:
        raise
    ort.set_default_logger_severity(3)
    sessions = {}
    for name, g in bundle.graphs.items():
        gpath = bundle.graph_path(name)
        if gpath.suffix != ".onnx":
            report.add(f"graph {name}", f"{gpath.name}: not an ONNX graph, not run here", True)
            continue
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = int(threads)
        so.log_severity_level = 3
        try:
            sess = ort.InferenceSession(str(gpath), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            report.add(f"graph {name}", f"{gpath.name}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:80]})", False)
            continue
        sessions[name] = sess
        problems = []
        for kind, actual, specs in (("input", sess.get_inputs(), g.get("inputs", [])),
                                    ("output", sess.get_outputs(), g.get("outputs", []))):
            got = {a.name: a for a in actual}
            want = {s["name"]: s for s in specs}
            if set(got) != set(want):
                problems.append(f"{kind}s {sorted(got)} != manifest {sorted(want)}")
                continue
            for n, s in want.items():
                a = got[n]
                if _ORT_DTYPES.get(a.type, a.type) != s.get("dtype", "float32"):
                    problems.append(f"{n} dtype {_ORT_DTYPES.get(a.type, a.type)} != {s.get('dtype')}")
                if not _dims_match(list(s["shape"]), list(a.shape)):
                    problems.append(f"{n} shape {list(a.shape)} != {s['shape']}")
        report.add(f"graph {name}", f"{gpath.name}: " + ("; ".join(problems) if problems else
                                                         f"{len(g.get('inputs', []))} inputs, {len(g.get('outputs', []))} outputs as declared"),
                   not problems)
    for eng in bundle.engines:
        report.add(f"engine {eng.get('graph', '?')}",
                   f"{eng.get('file')}: sha256 ok; built with {eng.get('backend', '?')} {eng.get('trt_version', '?')} "
                   "(running engines needs a GPU, not done here)", True)
    sample = m.get("sample")
    if not sample:
        report.add("sample", "the manifest lists no reference sample", False)
        return report
    spath = bundle.path(sample.get("file", "sample.npz"))
    calls = load_sample(spath)
    if len(calls) != int(sample.get("calls", len(calls))):
        report.add("sample", f"{spath.name} holds {len(calls)} calls, manifest says {sample.get('calls')}", False)
    atol = float(sample.get("atol", 1e-4))
    # optional relative part (as numpy.allclose, scaled by the output's largest recorded magnitude):
    # float32 rounding grows with the values, so large feature maps need more than a fixed atol
    rtol = float(sample.get("rtol", 0.0))
    compare = sample.get("compare")
    worst: dict[str, float] = {}
    scale: dict[str, float] = {}
    for k, (graph, ins, outs) in enumerate(calls):
        sess = sessions.get(graph)
        if sess is None:
            report.add(f"sample {k:03d}", f"graph {graph!r} is not a loadable ONNX graph of this bundle", False)
            continue
        names = [o.name for o in sess.get_outputs()]
        try:
            res = dict(zip(names, sess.run(None, ins)))
        except Exception as exc:
            report.add(f"sample {k:03d} {graph}", f"ONNX Runtime failed: {str(exc).splitlines()[0][:100]}", False)
            continue
        for name in (compare or list(outs)):
            if name not in outs or name not in res:
                report.add(f"sample {k:03d} {graph}/{name}", "output missing from the sample or the graph", False)
                continue
            ref = outs[name]
            got = res[name]
            if ref.shape != got.shape:
                report.add(f"sample {k:03d} {graph}/{name}", f"shape {got.shape} != recorded {ref.shape}", False)
                continue
            d = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
            key = f"{graph}/{name}"
            worst[key] = max(worst.get(key, 0.0), d if np.isfinite(d) else np.inf)
            scale[key] = max(scale.get(key, 0.0), float(np.max(np.abs(ref))) if ref.size else 0.0)
    for key, d in worst.items():
        tol = atol + rtol * scale[key]
        how = f"atol {atol:.1e}" if not rtol else f"atol {atol:.1e} + rtol {rtol:.0e} x max|ref| {scale[key]:.3g}"
        report.add(f"sample {key}", f"max|Δ| {d:.2e} <= {tol:.1e} ({how}) over {len(calls)} calls", d <= tol)
    return report
