"""Shared test fixtures. Tests build tiny models and few-frame clips; real data comes from
``../shared`` and skips with a reason when it is absent."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MAMAKIT_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"../shared/data is absent ({SHARED}); real-data tests need it")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared_dir) -> Path:
    return shared_dir / "data"


@pytest.fixture(scope="session")
def no_torch_path(tmp_path_factory) -> Path:
    """A folder to put first on PYTHONPATH so that `import torch` raises ImportError."""
    d = tmp_path_factory.mktemp("blocked")
    (d / "torch").mkdir()
    (d / "torch" / "__init__.py").write_text('raise ImportError("torch is blocked for this test")\n')
    return d


def run_cli(*args, env=None, cwd=None, timeout=600, block_torch: Path | None = None):
    """Run ``python -m mamakit ARGS`` in a subprocess; returns CompletedProcess (text)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    if block_torch is not None:
        e["PYTHONPATH"] = str(block_torch) + os.pathsep + e.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "mamakit", *map(str, args)],
        capture_output=True, text=True, env=e, cwd=cwd, timeout=timeout,
    )


def popen_interruptible(cmd, **kw) -> subprocess.Popen:
    """Popen for a child the test will stop with SIGINT (Ctrl-C). A process started with SIGINT
    ignored (any background job of a non-interactive shell, e.g. a CI script run with ``&``) passes
    that on to its children, and Python then installs no KeyboardInterrupt handler — the child would
    never see the test's Ctrl-C. An ignored signal stays ignored across exec, a handled one is reset to
    the default, so handle SIGINT in this (main) thread while the child starts (no ``preexec_fn``,
    which is unsafe with threads running)."""
    import signal

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(cmd, **kw)
    finally:
        signal.signal(signal.SIGINT, old)


def assert_one_line_error(proc, code: int = 2, contains: str | None = None):
    """The CLI contract for bad input: exit ``code``, one `error: ...` line on stderr, no traceback."""
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == code, f"exit {proc.returncode} != {code}\nstdout={proc.stdout}\nstderr={proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [l for l in err if l.startswith("error: ")]
    assert len(errors) == 1, f"expected one error line, got: {err}"
    if contains:
        assert contains.lower() in errors[0].lower(), errors[0]
    return errors[0]


@pytest.fixture
def one_torch_thread():
    """One torch thread: on a busy 2-core machine more threads spin-wait and run far slower (and one
    is as fast when the machine is idle). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
