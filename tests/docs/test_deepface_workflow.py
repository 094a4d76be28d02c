"""docs/deepface.md, run as written: its shell blocks, in order, in one bash, at 72×72.

The page's blocks depend on each other (a weights file, a model, a server in the background), so
the generic docs test leaves them to this test, which runs them as a reader would paste them: one
``bash -euo pipefail`` in a fresh folder (with the checkout's ``scripts/``), ``ROWS=72 CLASSES=7``
(a DeepFace-shaped model: C1…F8, the same steps, ~0.2 s per lc2d step instead of minutes) and a
free port. The page's client checks that each face's nearest embedding is its own second photo;
here the printed results are checked as well. The whole process group is ended afterwards, so a
failing step leaves no server behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

from tests.docs.conftest import example_environment
from tests.docs.doc_blocks import shell_blocks
from tests.service.conftest import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "deepface.md"
TIMEOUT_S = 420


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_deepface_page_has_the_workflow_blocks_in_order():
    text = "".join(block.text for block in shell_blocks(PAGE))
    steps = ["deepface_weights.py", "lc2d import-legacy", "lc2d export", "--outputs F7", "lc2d serve",
             "embed_faces.py"]
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions)


def test_deepface_page_runs_from_weights_to_compared_embeddings(tmp_path: Path, tools: Path):
    script = "\n".join(block.text for block in shell_blocks(PAGE))
    (tmp_path / "scripts").symlink_to(REPO_ROOT / "scripts")
    env = example_environment(tools, ROWS="72", CLASSES="7", PORT=str(free_port()))
    process = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the server, if a step failed before `kill %1`
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0, output[-4000:]
    assert "embeddings (8, 4096)" in output and "nearest is the same face for 8/8" in output, output[-4000:]
    assert "batch 1: median" in output and "faces/s" in output
    assert '"name":"F7"' in output.replace(" ", "") and '"name":"F8"' not in output.replace(" ", "")
