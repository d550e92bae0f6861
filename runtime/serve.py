"""``--serve PORT``: a local web page with the live composite (MJPEG) and the run's stats.

stdlib ``http.server`` in a daemon thread, bound to 127.0.0.1 only. Routes:
``/`` the page, ``/stream.mjpg`` the composite as multipart JPEG, ``/frame.jpg`` the newest
frame, ``/stats.json`` the current stats, ``POST /prompt`` a click (``{"x":…, "y":…}`` in
source pixels; shift-click = negative) forwarded to a prompt handler (SAM2-Matte guide).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from mamakit.errors import ConfigError

log = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>mamakit live preview</title>
<style>
 body{margin:0;background:#111;color:#ddd;font:14px system-ui,sans-serif}
 header{padding:8px 12px;background:#222}
 #wrap{display:flex;gap:12px;padding:12px;align-items:flex-start}
 #view{max-width:80vw;max-height:85vh;cursor:crosshair;background:#000}
 pre{margin:0;white-space:pre-wrap}
</style></head>
<body><header>mamakit live preview &middot; <span id="prov"></span></header>
<div id="wrap"><img id="view" src="/stream.mjpg" alt="live composite">
<pre id="stats">waiting for frames…</pre></div>
<script>
const img = document.getElementById('view');
img.addEventListener('click', ev => {
  const r = img.getBoundingClientRect();
  const x = (ev.clientX - r.left) * img.naturalWidth / r.width;
  const y = (ev.clientY - r.top) * img.naturalHeight / r.height;
  fetch('/prompt', {method: 'POST', headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({x: x, y: y, negative: ev.shiftKey})});
});
async function poll() {
  try {
    const s = await (await fetch('/stats.json', {cache: 'no-store'})).json();
    document.getElementById('prov').textContent = (s.provider || '') + ' ' + (s.fps || 0).toFixed(1) + ' FPS';
    document.getElementById('stats').textContent = JSON.stringify(s, null, 1);
  } catch (e) {}
  setTimeout(poll, 500);
}
poll();
</script></body></html>
"""


class PreviewServer:
    """Holds the newest JPEG and serves it; ``publish(rgb)`` from the sink thread."""

    def __init__(self, port: int, stats_fn=None, prompt_fn=None, max_fps: float = 15.0, quality: int = 80):
        if not 0 <= int(port) <= 65535:
            raise ConfigError(f"--serve port must be 0..65535, got {port}")
        self.stats_fn = stats_fn or (lambda: {})
        self.prompt_fn = prompt_fn
        self.min_dt = 1.0 / max_fps if max_fps > 0 else 0.0
        self.quality = int(quality)
        self._jpeg: bytes | None = None
        self._seq = 0
        self._cv = threading.Condition()
        self._t_last = 0.0
        self._closing = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # route http.server's chatter to debug logs
                log.debug("preview: " + fmt, *args)

            def _send(self, code, body: bytes, ctype: str):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802 - http.server API
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    self._send(200, PAGE.encode(), "text/html; charset=utf-8")
                elif path == "/stats.json":
                    self._send(200, json.dumps(server.stats_fn()).encode(), "application/json")
                elif path == "/frame.jpg":
                    jpg = server.wait_frame(0, timeout=5.0)[1]
                    if jpg is None:
                        self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no frame yet", "text/plain")
                    else:
                        self._send(200, jpg, "image/jpeg")
                elif path == "/stream.mjpg":
                    self._mjpeg()
                else:
                    self._send(404, b"not found", "text/plain")

            def _mjpeg(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                seq = 0
                try:
                    while not server._closing:
                        seq, jpg = server.wait_frame(seq, timeout=1.0)
                        if jpg is None:
                            continue
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def do_POST(self):  # noqa: N802
                if self.path != "/prompt":
                    self._send(404, b"not found", "text/plain")
                    return
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    d = json.loads(self.rfile.read(min(n, 10_000)) or b"{}")
                    x, y = float(d["x"]), float(d["y"])
                except (ValueError, KeyError, TypeError):
                    self._send(400, b"expected JSON {x, y}", "text/plain")
                    return
                if server.prompt_fn is None:
                    self._send(409, b"this run takes no prompt (use --guide SAM2MATTE_BUNDLE)", "text/plain")
                    return
                server.prompt_fn(x, y, bool(d.get("negative")))
                self._send(200, b"ok", "text/plain")

        try:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve the preview on 127.0.0.1:{port} ({exc.strerror}): choose another port") from exc
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="mamakit-preview", daemon=True)
        self._thread.start()

    def publish(self, rgb: np.ndarray, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._t_last < self.min_dt:
            return
        self._t_last = now
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        with self._cv:
            self._jpeg = buf.tobytes()
            self._seq += 1
            self._cv.notify_all()

    def wait_frame(self, after: int, timeout: float) -> tuple[int, bytes | None]:
        with self._cv:
            self._cv.wait_for(lambda: self._seq > after or self._closing, timeout)
            return self._seq, self._jpeg if self._seq > after or after == 0 else None

    def close(self) -> None:
        self._closing = True
        with self._cv:
            self._cv.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
