"""Shared by the signal tests: send a signal to a real process once it says it has started."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

SignalAfter = Callable[[subprocess.Popen[str], Path, int, str], tuple[str, str]]


def _signal_after_handshake(proc: subprocess.Popen[str], flag: Path, sig: int, what: str) -> tuple[str, str]:
    """Wait for ``flag`` (written by the process at the moment to hit), send ``sig``, return (stdout, stderr).

    A handshake rather than a sleep makes the window certain; the process is killed if it outlives
    the test.
    """
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{what} never started"
            time.sleep(0.02)
        proc.send_signal(sig)
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def signal_after_handshake() -> SignalAfter:
    return _signal_after_handshake
