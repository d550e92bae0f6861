"""`mamakit demo --quick`: the whole pipeline, and its report opened in real headless Chromium."""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli

CHROMIUM = Path(os.environ.get("MAMAKIT_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = run_cli("demo", "--quick", "--out", out, "--max-train-seconds", 12, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.xdist_group("demo")
def test_demo_quick_writes_report_and_bundles(demo_out):
    for b in ("student-fp32", "student-int8"):
        assert (demo_out / "bundles" / b / "bundle.json").is_file()
    summary = json.loads((demo_out / "report.json").read_text())
    rows = summary["metrics"]
    assert {"mask as-is", "teacher (closed-form)", "student fp32", "student int8"} <= set(rows)
    for name, m in rows.items():
        assert all(math.isfinite(m[k]) for k in ("mad", "grad", "dtssd")), (name, m)
    assert rows["student fp32"]["ms_per_frame"] > 0
    assert summary["training_curve_points"] > 0
    html = (demo_out / "report.html").read_text()
    srcs = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert len(srcs) >= 4
    for s in srcs:  # relative paths that resolve inside the output folder
        assert not s.startswith(("/", "http")) and (demo_out / s).is_file(), s


@pytest.mark.xdist_group("demo")
def test_demo_report_opens_in_headless_chromium(demo_out):
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must install Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.goto((demo_out / "report.html").resolve().as_uri())
            page.wait_for_load_state("load")
            images = page.evaluate(
                "() => Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
            assert len(images) >= 4
            broken = [src for src, complete, width in images if not complete or width == 0]
            assert not broken, f"images that did not decode: {broken}"
            assert "mamakit demo" in page.title()
            assert page.locator("table").count() >= 1
        finally:
            browser.close()


def test_demo_refuses_a_file_as_output(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert_one_line_error(run_cli("demo", "--quick", "--out", f), 2, "is a file")
