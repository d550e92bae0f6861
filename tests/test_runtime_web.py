"""`mamakit run --serve`: the live preview page in a real headless Chromium (Playwright)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import popen_interruptible
from test_runtime_api import build_probe_bundle

# one xdist worker for the runtime tests: the exported bundles are built once and shared
pytestmark = pytest.mark.xdist_group("runtime")

CHROMIUM = Path(os.environ.get("MAMAKIT_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must install Debian's chromium for the preview test")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return CHROMIUM


def test_runtime_web_preview_shows_composite_in_headless_chromium(chromium, tmp_path_factory, tmp_path):
    from playwright.sync_api import sync_playwright

    from mamakit.io import VideoWriter

    root = tmp_path_factory.getbasetemp() / "runtime_bundles"
    root.mkdir(exist_ok=True)
    bundle = build_probe_bundle(root)
    # a grey clip with a bright square; the square's first-frame mask keeps it (probe: pha = guide)
    clip, mask = tmp_path / "clip.mp4", tmp_path / "mask.png"
    with VideoWriter(clip, 25, (320, 180)) as w:
        for _ in range(10):
            f = np.full((180, 320, 3), 128, np.uint8)
            f[40:140, 100:220] = (250, 250, 250)
            w.write(f)
    import cv2

    m = np.zeros((180, 320), np.uint8)
    m[40:140, 100:220] = 255
    cv2.imwrite(str(mask), m)
    cmd = [sys.executable, "-m", "mamakit", "run", "--bundle", str(bundle), "--source", str(clip), "--masks",
           str(mask), "--loop", "--scene-cut", "0", "--serve", "0", "--background", "#ff00ff"]
    proc = popen_interruptible(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.time() + 60
        lines = []
        while time.time() < deadline and url is None:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            mo = re.search(r"preview: (http://127\.0\.0\.1:\d+/)", line)
            if mo:
                url = mo.group(1)
        assert url, "".join(lines)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(chromium), args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 900, "height": 500})
            page.goto(url)
            page.wait_for_function("document.getElementById('view').naturalWidth > 0", timeout=30000)
            page.wait_for_function("document.getElementById('stats').textContent.includes('frames')", timeout=30000)
            box = page.locator("#view").bounding_box()
            shot = tmp_path / "preview.png"
            page.locator("#view").screenshot(path=str(shot))
            stats = json.loads(page.evaluate("fetch('/stats.json').then(r => r.text())"))
            # a click on the picture posts a prompt; without a promptable bundle the server says so
            with page.expect_response(lambda r: r.url.endswith("/prompt")) as resp:
                page.locator("#view").click(position={"x": 20, "y": 20})
            assert resp.value.status == 409
            browser.close()
        img = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        assert box["width"] > 100 and abs(w / h - 320 / 180) < 0.05, (w, h)
        corner = img[: h // 8, : w // 8].reshape(-1, 3).mean(0)  # background: replaced by magenta
        centre = img[h // 2 - h // 10: h // 2 + h // 10, w // 2 - w // 10: w // 2 + w // 10].reshape(-1, 3).mean(0)
        assert corner[0] > 200 and corner[1] < 60 and corner[2] > 200, corner
        assert (centre > 220).all(), centre  # the subject (white square) kept
        assert stats["frames"] > 0 and stats["provider"] == "cpu"
        # the server answers on loopback only
        with urllib.request.urlopen(url + "frame.jpg", timeout=10) as r:
            assert r.headers["Content-Type"] == "image/jpeg" and len(r.read()) > 1000
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
