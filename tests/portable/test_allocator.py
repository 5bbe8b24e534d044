"""The allocator setting is a speed setting: on glibc it is applied once, never over the user's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = "from ardm.portable.allocator import keep_freed_memory as k; print(k(), k())"


def _run(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_keep_freed_memory_once_and_never_over_the_users_setting() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    plain = _run(env)
    assert plain in ("True True", "False False")  # False: a libc without mallopt (musl)
    assert _run({**env, "MALLOC_MMAP_THRESHOLD_": "65536"}) == "False False"
