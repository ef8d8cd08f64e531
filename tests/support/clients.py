"""Real registry clients for tests."""

from __future__ import annotations

import subprocess


def skopeo(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def skopeo_copy_all(source: str, dest: str) -> str:
    """`skopeo copy --all` from a plain-HTTP registry (no retries: a failure is a finding)."""
    return skopeo(
        "--insecure-policy",
        "copy",
        "--quiet",
        "--all",
        "--retry-times",
        "0",
        "--src-tls-verify=false",
        source,
        dest,
    )
