"""``mamakit run``: matte a webcam, file, folder or stream with a bundle, into any set of outputs.

Order of checks (all before any work, exit 2, nothing written): arguments → bundle checksums
(before any provider line) → output paths and optional dependencies → source → masks/guide →
session (logs the ONE provider line) → outputs opened. Ctrl-C / SIGTERM: outputs finalised,
stats printed, exit 0. A camera or stream lost mid-run: the same, one line, exit 1.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_BUNDLE = Path(__file__).resolve().parent / "bundles" / "default"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run", help="matte a webcam, video, folder or stream live (torch-free runtime)",
        description="Run a bundle on a source and write/show any combination of outputs.")
    p.add_argument("--bundle", help="bundle folder (default: the student bundle shipped with mamakit, runtime/bundles/default)")
    p.add_argument("--source", required=True,
                   help="webcam index, video file, image folder, rtsp/http URL, or a GStreamer pipeline")
    p.add_argument("--masks", help="mask folder (one per frame) or a single first-frame mask file")
    g = p.add_argument_group("guidance when no masks are given")
    g.add_argument("--segmenter", help="person/salient segmenter for the guide: 'mediapipe' or MODEL.onnx "
                                       "(default without --masks: mediapipe when installed, see docs/runtime.md)")
    g.add_argument("--segment-every", type=int, default=1, metavar="N", help="run the segmenter every N frames")
    g.add_argument("--guide", metavar="SAM2MATTE", help="a SAM2-Matte bundle whose alpha guides the student "
                                                        "(two-stage); prompt it with --prompt or a click")
    g.add_argument("--prompt", help="point(s) 'X,Y[;X,Y]' ('-X,Y' negative) or 'box:X0,Y0,X1,Y1' in source pixels")
    g.add_argument("--prompt-frame", type=int, default=0, metavar="N", help="frame the prompt applies to (default 0)")
    o = p.add_argument_group("outputs (any combination)")
    o.add_argument("--alpha", metavar="OUT", help="alpha: a folder (PNG sequence) or a video (.mov/.webm/.mp4)")
    o.add_argument("--composite", metavar="OUT.mp4", help="composite over --background")
    o.add_argument("--foreground", metavar="OUT.mov|.webm", help="foreground colour + alpha (ProRes 4444 / VP9)")
    o.add_argument("--show", action="store_true", help="show the composite in a window (GUI OpenCV)")
    o.add_argument("--vcam", action="store_true", help="send the composite to a virtual camera (mamakit[camera])")
    o.add_argument("--serve", type=int, metavar="PORT", help="web preview on http://127.0.0.1:PORT/ (0 = any port)")
    o.add_argument("--stats", metavar="FILE", help="write the run's stats as JSON")
    c = p.add_argument_group("compositing")
    c.add_argument("--background", default="green",
                   help="colour name or #hex, green, blur[:strength], an image, or a video (looped)")
    c.add_argument("--fg", choices=("estimate", "student", "none"), default="estimate",
                   help="foreground colour: estimated from the frame (default), the student's fgr, or the raw frame")
    c.add_argument("--smooth", type=float, default=0.0, metavar="S", help="temporal alpha smoothing 0..1 (default 0)")
    r = p.add_argument_group("runtime")
    r.add_argument("--provider", default="auto",
                   help="auto, cpu, cuda, tensorrt, rtx, coreml, directml, openvino, trt-engine, rtx-engine")
    r.add_argument("--threads", type=int, help="inference threads (default: onnxruntime's choice)")
    r.add_argument("--mode", choices=("auto", "live", "offline"), default="auto",
                   help="live: newest frame, drop rather than lag; offline: every frame (default: by source)")
    r.add_argument("--fit", choices=("letterbox", "stretch"), default="letterbox",
                   help="how frames map to the processing size")
    r.add_argument("--scene-cut", type=float, default=0.25, metavar="T",
                   help="reset the state when thumbnails differ by more than T (0..1, 0 = never)")
    r.add_argument("--no-stabilize", dest="stabilize", action="store_false",
                   help="switch off the student's flow-carried stabiliser (bundles exported with --set stabilizer=W): "
                        "its state is zeroed every frame, which gives exactly the unstabilised student and skips the optical flow")
    r.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    r.add_argument("--loop", action="store_true", help="loop a file source until Ctrl-C (demos, preview)")
    r.add_argument("--fps", type=float, help="frame rate of image-folder sources (default 30)")
    p.set_defaults(func=run)
    return p


def _resolve_bundle(arg):
    from mamakit.bundle import load_bundle
    from mamakit.errors import BundleError

    if arg is None:
        if not (DEFAULT_BUNDLE / "bundle.json").is_file():
            raise BundleError(f"no --bundle given and no default bundle is installed ({DEFAULT_BUNDLE}): "
                              "pass --bundle BUNDLE (made by `mamakit export onnx`)")
        arg = DEFAULT_BUNDLE
    return load_bundle(arg)  # verifies every checksum before anything else


def _looped(src, spec, fps):
    from mamakit.io import Frame, open_source

    i = 0
    cur = src
    while True:
        start = i
        for fr in cur:
            yield Frame(i, f"{i:05d}", fr.image)
            i += 1
        if i == start:
            return
        if cur is not src:
            cur.close()
        cur = open_source(spec, fps=fps)


def run(args) -> int:
    import signal
    import threading

    import numpy as np

    from mamakit.errors import ConfigError, StreamError
    from mamakit.fsutil import check_writable_dir, write_json_atomic

    from . import sinks as S
    from .composite import Compositor, parse_background
    from .masks import FileMasks, PromptedMasks, SegmenterMasks, build_segmenter, default_segmenter, parse_prompt
    from .masks import check_prompt_inside
    from .matter import Matter
    from .pipeline import Stats
    from .providers import normalise
    from .sessions import session_class

    t0 = time.perf_counter()
    # -- 1. arguments ------------------------------------------------------------------------------
    provider = normalise(args.provider)
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if not 0.0 <= args.smooth < 1.0:
        raise ConfigError(f"--smooth must be in [0, 1), got {args.smooth}")
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {args.max_frames}")
    points, labels, box = parse_prompt(args.prompt)
    if args.prompt_frame < 0:
        raise ConfigError(f"--prompt-frame must be >= 0, got {args.prompt_frame}")
    if args.masks and args.segmenter:
        raise ConfigError("give either --masks or --segmenter, not both")
    # -- 2. bundles (checksums before any provider line) -------------------------------------------
    bundle = _resolve_bundle(args.bundle)
    main_prompted = session_class(bundle.kind).needs_prompt
    if (args.prompt or args.prompt_frame) and not (args.guide or main_prompted):
        raise ConfigError("--prompt/--prompt-frame need a promptable bundle: --guide SAM2MATTE_BUNDLE "
                          "(or --bundle SAM2MATTE_BUNDLE)")
    if main_prompted and args.guide:
        raise ConfigError(f"--bundle {bundle.root} is already a {bundle.kind} bundle; --guide needs a student --bundle")
    if main_prompted and not (args.prompt or args.masks):
        raise ConfigError(f"bundle {bundle.root} ({bundle.kind}) needs a prompt: pass --prompt X,Y or "
                          "--prompt box=X0,Y0,X1,Y1 (source pixels), or a first-frame --masks file")
    guide_bundle = None
    if args.guide:
        from mamakit.bundle import load_bundle

        guide_bundle = load_bundle(args.guide)
    # -- 3. outputs: paths and dependencies, nothing written ---------------------------------------
    stats = Stats()
    holder: dict = {}
    outputs: list[S.Sink] = []
    if args.alpha:
        outputs.append(S.AlphaSink(args.alpha))
    if args.composite:
        outputs.append(S.VideoSink(args.composite, "composite"))
    if args.foreground:
        outputs.append(S.VideoSink(args.foreground, "foreground"))
    if args.vcam:
        outputs.append(S.VcamSink())
    if args.show:
        outputs.append(S.ShowSink(prompt_fn=lambda *a: holder["click"](*a)))
    if args.stats:
        check_writable_dir(args.stats, "--stats")
    for s in outputs:
        s.check()
    background = parse_background(args.background) if any(s.needs_composite for s in outputs) or \
        args.serve is not None else None
    # -- 4. source ---------------------------------------------------------------------------------
    from mamakit.io import open_source
    from mamakit.io.sources import classify_spec

    source = open_source(args.source, fps=args.fps)
    is_camera = source.is_live and classify_spec(args.source) in ("camera", "gstreamer")
    live = source.is_live if args.mode == "auto" else args.mode == "live"
    fps = source.fps or args.fps or 30.0
    try:
        check_prompt_inside(points, box, tuple(source.size))
    except ConfigError:
        source.close()
        raise
    opened: list[S.Sink] = []
    masks = matter = compositor = None
    try:
        # -- 5. masks / guide ----------------------------------------------------------------------
        if main_prompted:
            masks = FileMasks(args.masks, getattr(source, "names", None)) if args.masks else None
        elif args.guide:
            init = FileMasks(args.masks, getattr(source, "names", None)) if args.masks else None
            masks = PromptedMasks(guide_bundle, points=points, labels=labels, box=box, prompt_frame=args.prompt_frame,
                                  provider=provider, threads=args.threads, init_mask=init)
        elif args.masks:
            masks = FileMasks(args.masks, frame_names=getattr(source, "names", None),
                              n_frames=None if args.loop else source.count)
        elif args.segmenter:
            masks = SegmenterMasks(build_segmenter(args.segmenter, provider, args.threads), every=args.segment_every)
        elif not bundle.manifest.get("guide_optional", False) and not main_prompted:
            seg = default_segmenter()
            if seg is not None:
                masks = SegmenterMasks(seg, every=args.segment_every)
            else:
                log.warning("no masks and no person segmenter (install `mamakit[segment]` for MediaPipe, or pass "
                            "--segmenter MODEL.onnx / --masks): the student guides itself from its previous alpha, "
                            "starting from an empty guide")
        if masks is not None:
            log.info("guide: %s", masks.description)
        if isinstance(masks, PromptedMasks):
            holder["click"] = masks.click
        elif main_prompted:
            holder["click"] = lambda x, y, neg: matter.click(x, y, neg)
        else:
            holder["click"] = lambda x, y, neg: log.warning("click ignored: prompting needs --guide SAM2MATTE_BUNDLE")
        # -- 6. session (the provider line) --------------------------------------------------------
        if args.fg == "student" and bundle.kind == "student" and "fgr" not in {o.name for o in bundle.outputs()}:
            raise ConfigError(f"--fg student: bundle {bundle.root} has no foreground output (exported with --no-fgr); "
                              "use --fg estimate (default) or a bundle exported with foreground")
        matter = Matter.load(bundle, provider=provider, threads=args.threads, fit=args.fit,
                             scene_cut=args.scene_cut, smooth=args.smooth, stabilize=args.stabilize)
        if main_prompted and (points is not None or box is not None):
            matter.set_prompt(points=points, labels=labels, box=box, frame=args.prompt_frame)
        stats.extra.update(provider=matter.provider, bundle=str(bundle.root), precision=bundle.precision,
                           processing_size=list(bundle.processing_size), source=str(args.source),
                           source_size=list(source.size), mode="live" if live else "offline")
        if args.serve is not None:
            srv = S.ServeSink(args.serve, stats_fn=lambda: stats.to_dict(),
                              prompt_fn=(lambda *a: holder["click"](*a)) if (isinstance(masks, PromptedMasks)
                                                                            or main_prompted) else None)
            srv.check()
            outputs.append(srv)
        # -- 7. outputs ----------------------------------------------------------------------------
        for s in outputs:
            s.open(tuple(source.size), fps)
            opened.append(s)
        want_fgr = args.fg == "student"
        if any(s.needs_composite for s in outputs):
            compositor = Compositor(background, estimate_fg=args.fg == "estimate")

            def post(res, _c=compositor):
                res.composite = _c(res.frame, res.alpha, res.index, res.fgr if args.fg == "student" else None)
        else:
            post = None
        frames = _looped(source, args.source, args.fps) if args.loop else source
        pipe = matter.pipeline(frames, masks, live=live, post=post, want_fgr=want_fgr, stats=stats)
        stats.startup_s = time.perf_counter() - t0
        stats.t_start = time.perf_counter()
        # -- 8. work -------------------------------------------------------------------------------
        interrupted = False
        lost: BaseException | None = None
        stopped_early = False
        old_term = None
        if threading.current_thread() is threading.main_thread():
            def on_term(signum, frame):
                raise KeyboardInterrupt
            old_term = signal.signal(signal.SIGTERM, on_term)
        n = 0
        try:
            for res in pipe:
                if not np.isfinite(res.alpha[::16, ::16]).all():
                    stats.extra["nan_frames"] = stats.extra.get("nan_frames", 0) + 1
                for s in outputs:
                    s.write(res)
                n += 1
                if args.max_frames and n >= args.max_frames:
                    stopped_early = True
                    break
        except KeyboardInterrupt:
            interrupted = True
        except StreamError as exc:
            lost = exc
        finally:
            pipe.close()
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
        if not interrupted and not stopped_early and lost is None and is_camera and not args.loop:
            lost = StreamError(f"source {args.source} stopped delivering frames (camera unplugged or stream lost); "
                               "the outputs were finalised")
    finally:
        errors = []
        for s in opened:
            try:
                s.close()
            except Exception as exc:  # finalise every output even if one fails
                errors.append(exc)
        for s in outputs:
            if s not in opened and isinstance(s, S.ServeSink):
                s.close()
        for obj in (compositor, masks, matter, source):
            if obj is not None:
                try:
                    obj.close()
                except Exception:
                    pass
    d = stats.to_dict()
    print(stats.summary() + f"\nprovider {matter.provider}; start-up {d.get('startup_s', 0):.2f} s"
          + (" (interrupted)" if interrupted else ""), flush=True)
    if args.stats:
        write_json_atomic(args.stats, d)
    if errors:
        raise errors[0]
    if lost is not None:
        if isinstance(lost, StreamError) and "finalised" not in str(lost):
            raise StreamError(f"{lost} (the outputs were finalised)") from lost
        raise lost
    return 0
