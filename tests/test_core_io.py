"""mamakit.io: image/video/mask readers and writers, on generated files and the real ../shared data."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mamakit.errors import ConfigError, StreamError, VideoIOError
from mamakit import io


def _rand_rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- still images
@pytest.mark.parametrize("ext", [".png", ".tiff", ".webp"])
def test_core_io_read_image_lossless_formats(tmp_path, ext):
    rgb = _rand_rgb(37, 53)
    p = tmp_path / f"a{ext}"
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []
    assert cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    out = io.read_image(p)
    assert out.dtype == np.uint8 and out.shape == (37, 53, 3)
    np.testing.assert_array_equal(out, rgb)


def test_core_io_16bit_rgba_png(tmp_path):
    rng = np.random.default_rng(1)
    rgba16 = rng.integers(0, 65536, (21, 19, 4), dtype=np.uint16)
    p = tmp_path / "x.png"
    cv2.imwrite(str(p), rgba16)  # OpenCV order: BGRA
    img = io.read_image(p)
    expect = np.round(rgba16[..., [2, 1, 0]].astype(np.float64) / 257.0).astype(np.uint8)
    assert img.dtype == np.uint8 and img.shape == (21, 19, 3)
    assert np.abs(img.astype(int) - expect.astype(int)).max() <= 1
    a = io.read_alpha(p)  # varying alpha channel -> used as alpha
    np.testing.assert_allclose(a, rgba16[..., 3] / 65535.0, atol=1e-6)


def test_core_io_gray_jpg_and_odd_size(tmp_path):
    g = np.tile(np.linspace(0, 255, 641).astype(np.uint8), (359, 1))
    p = tmp_path / "g.jpg"
    cv2.imwrite(str(p), g, [cv2.IMWRITE_JPEG_QUALITY, 100])
    img = io.read_image(p)
    assert img.shape == (359, 641, 3)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
    assert np.abs(img[..., 0].astype(int) - g).max() <= 3
    with io.open_source(tmp_path) as src:
        assert src.size == (641, 359) and src.count == 1 and src.names == ["g"]


def test_core_io_alpha_png_roundtrip_8_and_16(tmp_path):
    a = np.random.default_rng(2).random((33, 47)).astype(np.float32)
    io.write_alpha_png(tmp_path / "a8.png", a, bits=8)
    io.write_alpha_png(tmp_path / "a16.png", a, bits=16)
    r8, r16 = io.read_alpha(tmp_path / "a8.png"), io.read_alpha(tmp_path / "a16.png")
    assert np.abs(r8 - a).max() <= 0.5 / 255 + 1e-6
    assert np.abs(r16 - a).max() <= 0.5 / 65535 + 1e-6
    assert cv2.imread(str(tmp_path / "a16.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    with pytest.raises(ConfigError):
        io.write_alpha_png(tmp_path / "bad.png", a, bits=12)


def test_core_io_png_writer_names_and_atomic(tmp_path):
    out = tmp_path / "seq"
    a = np.full((8, 10), 0.5, np.float32)
    with io.open_alpha_sink(out, bits=16) as sink:
        assert isinstance(sink, io.AlphaPngWriter)
        sink.write(a, name="frame_a")
        sink.write(a)
    assert sorted(p.name for p in out.iterdir()) == ["00001.png", "frame_a.png"]
    with pytest.raises(ConfigError):
        io.AlphaPngWriter(out).write(a, name="../escape")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        io.AlphaPngWriter(tmp_path / "file")


def test_core_io_bad_images(tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), _rand_rgb(40, 40))
    data = good.read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "garbage.png").write_bytes(b"not an image at all" * 10)
    for name, needle in (("trunc.png", "truncated"), ("empty.png", "empty"), ("garbage.png", "decoded"),
                         ("missing.png", "does not exist")):
        with pytest.raises(VideoIOError, match=needle):
            io.read_image(tmp_path / name)
    with pytest.raises(VideoIOError, match="folder"):
        io.read_image(tmp_path)


# ---------------------------------------------------------------- sources
def test_core_io_image_folder_mixed_formats(tmp_path):
    rgb = _rand_rgb(24, 32, 3)
    cv2.imwrite(str(tmp_path / "f2.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "f10.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    cv2.imwrite(str(tmp_path / "f1.tiff"), (cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257))
    (tmp_path / "notes.txt").write_text("ignored")
    with io.open_source(str(tmp_path)) as src:
        assert src.names == ["f1", "f2", "f10"]  # natural order
        frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2]
    np.testing.assert_array_equal(frames[0].image, rgb)
    np.testing.assert_array_equal(frames[1].image, rgb)
    assert frames[2].image.shape == (24, 32, 3)


def test_core_io_folder_errors(tmp_path):
    with pytest.raises(VideoIOError, match="no images"):
        io.open_source(tmp_path)
    (tmp_path / "x.xyz").write_text("?")
    with pytest.raises(VideoIOError, match="unknown extension"):
        io.open_source(tmp_path / "x.xyz")
    with pytest.raises(VideoIOError, match="does not exist"):
        io.open_source(tmp_path / "nope.mp4")
    cv2.imwrite(str(tmp_path / "a.png"), _rand_rgb(10, 10))
    cv2.imwrite(str(tmp_path / "b.png"), _rand_rgb(12, 10))
    with io.open_source(tmp_path) as src:
        it = iter(src)
        next(it)
        with pytest.raises(StreamError, match="first frame"):
            next(it)


def test_core_io_spec_classification():
    assert io.sources.classify_spec(0) == "camera"
    assert io.sources.classify_spec("1") == "camera"
    assert io.sources.classify_spec("rtsp://cam/stream") == "url"
    assert io.sources.classify_spec("videotestsrc ! videoconvert ! appsink") == "gstreamer"
    assert io.sources.classify_spec("clip.mp4") == "path"


def test_core_io_missing_camera_and_dead_url_fail_fast():
    with pytest.raises(VideoIOError, match="camera 57"):
        io.open_source(57)
    t = time.perf_counter()
    with pytest.raises(VideoIOError, match="cannot be opened"):
        io.open_source("http://127.0.0.1:9/none.mp4", open_timeout=2)
    assert time.perf_counter() - t < 5
    if not io.gstreamer_available():
        with pytest.raises(VideoIOError, match="GStreamer"):
            io.open_source("videotestsrc ! appsink")


# ---------------------------------------------------------------- masks
def test_core_io_masks_binary_nearest_soft_bilinear(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    binary = np.zeros((4, 4), np.uint8)
    binary[:2, :2] = 255
    cv2.imwrite(str(d / "0000.png"), binary)
    soft = np.array([[0, 255], [255, 0]], np.uint8)
    soft = np.where(soft > 0, 128, 0).astype(np.uint8)
    soft[0, 0] = 64
    cv2.imwrite(str(d / "0001.png"), soft)
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[1, 1] = (0, 0, 200)  # red object (BGR) on black
    cv2.imwrite(str(d / "0002.png"), colour)
    ms = io.open_masks(d, frame_names=["0000", "0001", "0002"])
    assert ms.aligned_by == "stem" and ms.mismatch(3) is None
    m0 = ms.get(0, "0000", (8, 8))
    assert set(np.unique(m0)) == {0.0, 1.0} and m0[:4, :4].all() and not m0[4:, :].any()
    m1 = ms.get(1, "0001", (8, 8))
    assert len(np.unique(m1)) > 3  # bilinear keeps soft values
    m2 = ms.get(2, "0002", None)
    assert m2[1, 1] == 1.0 and m2.sum() == 1.0
    assert ms.get(3, "0003", (8, 8)) is None
    msg = io.open_masks(d, frame_names=["0000", "0001", "0002", "0003"]).mismatch(4)
    assert msg and "'0003'" in msg
    by_order = io.open_masks(d)
    assert by_order.aligned_by == "order" and "3 masks" in by_order.mismatch(5)


def test_core_io_first_frame_mask(tmp_path):
    p = tmp_path / "first.png"
    cv2.imwrite(str(p), np.full((5, 6), 255, np.uint8))
    ms = io.open_masks(p)
    assert ms.first_frame_only and ms.mismatch(100) is None
    assert ms.get(0, "x", (12, 10)).shape == (10, 12)
    assert ms.get(1, "y", (12, 10)) is None
    with pytest.raises(VideoIOError, match="does not exist"):
        io.open_masks(tmp_path / "nope")


# ---------------------------------------------------------------- real data
def test_core_io_videomama_frames_and_smaller_masks(shared_data):
    root = shared_data / "videomama_example"
    with io.open_source(root / "image" / "0000") as src:
        assert src.size == (1920, 1088) and src.count == 24
        masks = io.open_masks(root / "mask" / "0000", frame_names=src.names)
        assert masks.size == (1024, 576) and masks.mismatch(src.count) is None
        for f in src:
            if f.index == 2:
                break
        m = masks.get(f.index, f.name, src.size)
    assert f.image.shape == (1088, 1920, 3) and f.image.dtype == np.uint8
    assert m.shape == (1088, 1920) and m.dtype == np.float32
    assert 0.02 < m.mean() < 0.98


def test_core_io_matanyone_jpgs(shared_data):
    with io.open_source(shared_data / "matanyone_sample0" / "frames") as src:
        assert src.size == (960, 540) and src.count == 72
        f = next(iter(src))
        assert f.name == "0000" and f.image.shape == (540, 960, 3)
    m = io.open_masks(shared_data / "matanyone_sample0" / "masks" / "0000_person1.png")
    assert m.first_frame_only and m.get(0, "0000", (960, 540)).max() == 1.0


@pytest.mark.parametrize("name,size,fps,count", [
    ("matanyone_sample1.mp4", (1280, 720), 30.0, 79),
    ("matanyone_sample2.mp4", (1920, 1088), 24.0, 108),
    ("megamind.avi", (720, 528), 23.976, 270),
])
def test_core_io_real_videos(shared_data, name, size, fps, count):
    with io.open_source(shared_data / "videos" / name) as src:
        assert src.size == size and src.count == count and abs(src.fps - fps) < 0.01
        assert not src.is_live
        n = 0
        for f in src:
            assert f.image.shape == (size[1], size[0], 3) and f.name == f"{f.index:05d}"
            n += 1
            if n == 12:
                break
        # a second pass restarts at frame 0
        first = next(iter(src))
        assert first.index == 0
    if name == "megamind.avi":
        with io.open_source(shared_data / "videos" / name) as src:
            assert sum(1 for _ in src) == count


def test_core_io_corrupt_and_zero_frame_videos(tmp_path, shared_data):
    data = (shared_data / "videos" / "matanyone_sample1.mp4").read_bytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00" * 64 + data[5000:20000])
    with pytest.raises(VideoIOError, match="corrupt.mp4"):
        io.open_source(bad)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoIOError, match="empty"):
        io.open_source(empty)
    zero = tmp_path / "zero.mp4"
    import av
    with av.open(str(zero), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()  # header only, zero frames
    assert zero.stat().st_size > 0
    with pytest.raises(VideoIOError, match="no decodable frames|cannot be opened|no video"):
        io.open_source(zero)


# ---------------------------------------------------------------- video writers
def _ramp_alpha(h, w, shift=0):
    return np.roll(np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1)), shift, axis=1)


def test_core_io_encoders_available():
    import av
    for codec in ("libx264", "prores_ks", "libvpx-vp9"):
        assert codec in av.codecs_available, codec


def test_core_io_mov_width_not_multiple_of_16_is_exact(tmp_path):
    """prores_ks corrupts frames whose width is not a multiple of 16: those go to PNG-in-MOV."""
    import av
    rng = np.random.default_rng(0)
    for w, codec in ((40, "png"), (48, "prores")):
        alpha = (rng.random((30, w)) * 255).round().astype(np.uint8)
        flat = np.full((30, w, 3), 200, np.uint8)
        path = tmp_path / f"w{w}.mov"
        with io.VideoWriter(path, 10, (w, 30)) as vw:
            for _ in range(3):
                vw.write(flat, alpha)
        with av.open(str(path)) as c:
            assert c.streams.video[0].codec_context.name == codec
        for fr in io.read_video_rgba(path):
            err = np.abs(fr.astype(int) - np.dstack([flat, alpha]).astype(int))
            assert err[..., :3].max() <= 2 and err[..., 3].mean() < 1.5, (w, err.max())


@pytest.mark.parametrize("ext,size,tol", [(".mov", (63, 47), 2), (".mov", (64, 48), 2), (".webm", (64, 48), 8), (".webm", (63, 47), 8)])
def test_core_io_alpha_video_roundtrip(tmp_path, ext, size, tol):
    w, h = size
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    path = tmp_path / f"out{ext}"
    with io.VideoWriter(path, 25, (w, h)) as vw:
        assert vw.has_alpha
        for t in range(4):
            vw.write(base, _ramp_alpha(h, w, 5 * t))
        assert not path.exists()  # only the hidden temp name exists before close
    assert path.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    got = list(io.read_video_rgba(path))
    assert len(got) == 4 and got[0].shape == (h, w, 4)
    for t, fr in enumerate(got):
        a = np.round(_ramp_alpha(h, w, 5 * t) * 255)
        assert np.abs(fr[..., 3].astype(float) - a).mean() < tol / 2 and np.abs(fr[..., 3] - a).max() <= 4 * tol
        assert np.abs(fr[..., :3].astype(float) - base).mean() < tol
    with io.open_source(path) as src:  # and it is a normal video for the readers
        assert src.count in (4, None) and src.size == (w, h) and sum(1 for _ in src) == 4


def test_core_io_mp4_composite_roundtrip_odd_size(tmp_path):
    w, h = 641, 359
    rng = np.random.default_rng(1)
    frames = [cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 4) for _ in range(3)]
    path = tmp_path / "comp.mp4"
    with io.VideoWriter(path, 30, (w, h)) as vw:
        assert not vw.has_alpha
        for f in frames:
            vw.write(f)
        with pytest.raises(ConfigError, match="no alpha"):
            vw.write(frames[0], np.zeros((h, w), np.float32))
    with io.open_source(path) as src:
        assert src.size == (642, 360) and src.count == 3 and abs(src.fps - 30) < 1e-6
        for f, ref in zip(src, frames):
            assert np.abs(f.image[:h, :w].astype(float) - ref).mean() < 4


def test_core_io_video_writer_atomic_on_crash_and_abort(tmp_path):
    final = tmp_path / "crash.mov"
    code = f"""
import os, numpy as np
from mamakit.io import VideoWriter
vw = VideoWriter({str(final)!r}, 25, (32, 32))
for _ in range(3):
    vw.write(np.zeros((32, 32, 3), np.uint8), np.ones((32, 32), np.float32))
os._exit(3)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert not final.exists()
    assert [p.name.startswith(".tmp-") for p in tmp_path.iterdir()] == [True]
    # an exception inside the with-block finalises the frames written so far
    ok = tmp_path / "partial.webm"
    with pytest.raises(RuntimeError):
        with io.VideoWriter(ok, 25, (32, 32)) as vw:
            vw.write(np.zeros((32, 32, 3), np.uint8))
            vw.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("failure during work")
    assert len(list(io.read_video_rgba(ok))) == 2
    gone = tmp_path / "gone.mp4"
    vw = io.VideoWriter(gone, 25, (32, 32))
    vw.write(np.zeros((32, 32, 3), np.uint8))
    vw.abort()
    assert not gone.exists() and not list(tmp_path.glob(".tmp-*gone*"))
    with pytest.raises(ConfigError, match="extension"):
        io.VideoWriter(tmp_path / "x.avi2", 25, (32, 32))
    with pytest.raises(ConfigError, match="is a folder"):
        io.VideoWriter(_mkdir(tmp_path / "d.mp4"), 25, (32, 32))


def _mkdir(p):
    p.mkdir()
    return p


def test_core_io_alpha_sinks(tmp_path):
    a = _ramp_alpha(40, 48)
    frame = np.full((40, 48, 3), 90, np.uint8)
    for name in ("m.mov", "m.webm", "m.mp4"):
        with io.open_alpha_sink(tmp_path / name, fps=10, size=(48, 40)) as sink:
            for _ in range(2):
                sink.write(a, frame=frame)
        got = list(io.read_video_rgba(tmp_path / name))
        assert len(got) == 2
        chan = got[0][..., 3] if name != "m.mp4" else got[0][..., 0]  # mp4: gray matte video
        assert np.abs(chan.astype(float) - a * 255).mean() < 6, name
    with pytest.raises(ConfigError, match="unknown alpha output"):
        io.open_alpha_sink(tmp_path / "x.gif", fps=10, size=(48, 40))


def test_core_io_http_stream(tmp_path):
    """A real HTTP stream (MPEG-TS served on 127.0.0.1) through PyAV; a 404 is a VideoIOError."""
    import functools
    import http.server
    import threading

    import av
    with av.open(str(tmp_path / "clip.ts"), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(6):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        with io.open_source(f"{url}/clip.ts") as src:
            assert src.size == (64, 48) and abs(src.fps - 25) < 1e-6
            values = [int(f.image.mean()) for f in src]
        assert len(values) == 6 and all(abs(v - 40 * i) <= 3 for i, v in enumerate(values))
        with pytest.raises(VideoIOError, match="404"):
            io.open_source(f"{url}/missing.ts")
    finally:
        srv.shutdown()
