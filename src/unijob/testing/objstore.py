"""An S3 endpoint for tests: moto's server (``python -m moto.server``) as a child process on
127.0.0.1, stopped by its PID. Pods, jobs and this process reach it as they would reach S3, through
``AWS_ENDPOINT_URL`` (botocore's "service-specific endpoints" setting, read by boto3 and by s3fs's
aiobotocore; docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

from unijob.testing.jobs import stop_process

#: Credentials moto accepts (any); a test hands them to pods as a Kubernetes Secret would.
ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION = "testing", "testing", "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3(log: Optional[os.PathLike] = None, timeout: float = 60.0) -> Iterator[str]:
    """Run moto's server on a free port of 127.0.0.1 while the block runs; yields its URL.

    Args:
        log: where the server's output goes (one line per request); discarded when None.
        timeout: seconds to wait for it to answer.

    Raises:
        RuntimeError: the server exited or did not answer within ``timeout`` (its log included).
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                text = Path(log).read_text(errors="replace")[-2000:] if log else ""
                raise RuntimeError(f"moto's server did not start on {url} (exit {proc.poll()}): {text}")
            try:
                with urllib.request.urlopen(url + "/moto-api/", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        yield url
    finally:
        stop_process(proc, 10)
        if log:
            out.close()  # type: ignore[union-attr]
