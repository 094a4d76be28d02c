"""Every shell example of README.md and docs/*.md runs, against a server this test starts.

Each block (see tests/docs/doc_blocks.py) runs with ``bash -euo pipefail`` in a fresh folder
holding ``artifacts/models/digits/1/model.onnx`` and ``model.onnx`` (a small 8x8x1 -> 10 digits
classifier written with onnx.helper, no training), with ``HOST``, ``PORT`` and ``GRPC_PORT``
naming the test's server, which serves that repository, and ``lc2d``/``python``/``python3`` running this
checkout. A block fails when it exits non-zero or prints a JSON error body (``"error":``), so a
``curl`` answered 4xx fails too. Blocks marked ``<!-- not-tested: reason -->`` are not run (the
reason stays in the docs). The test id, and every failure message, is the block's ``file:line``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.conftest import example_environment
from tests.docs.doc_blocks import ShellBlock, documents, shell_blocks
from tests.service.conftest import REPO_ROOT, ServerProcess, write_classifier

BLOCKS = [block for path in documents(REPO_ROOT) for block in shell_blocks(path)]
TESTED = [block for block in BLOCKS if block.not_tested is None]  # the others say why in the docs
BLOCK_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the examples assume: the digits model in a repository and as ``model.onnx``."""
    root = tmp_path_factory.mktemp("docs_workspace")
    model = root / "artifacts" / "models" / "digits" / "1" / "model.onnx"
    write_classifier(model, name="digits")
    shutil.copy(model, root / "model.onnx")
    return root


@pytest.fixture(scope="module")
def server(workspace: Path) -> Iterator[ServerProcess]:
    process = ServerProcess("--model-repository", str(workspace / "artifacts" / "models"), "--threads", "1")
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def block_environment(server: ServerProcess, tools: Path) -> dict[str, str]:
    return example_environment(tools, HOST="127.0.0.1", PORT=str(server.port),
                               GRPC_PORT=str(server.grpc_port))


@pytest.mark.parametrize("block", TESTED, ids=[block.where(REPO_ROOT) for block in TESTED])
def test_doc_example_runs(block: ShellBlock, workspace: Path, server: ServerProcess, tools: Path,
                          tmp_path: Path) -> None:
    folder = tmp_path / "work"
    shutil.copytree(workspace, folder)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=folder,
                            env=block_environment(server, tools), capture_output=True, text=True,
                            timeout=BLOCK_TIMEOUT_S)
    where = block.where(REPO_ROOT)
    assert result.returncode == 0, (f"{where}: the example exited {result.returncode}\n{block.text}\n"
                                    f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-2000:]}")
    assert '"error":' not in result.stdout, f"{where}: the example printed an error answer:\n{result.stdout}"


def test_every_document_has_a_tested_example() -> None:
    tested = {block.path.name for block in TESTED}
    assert {"README.md", "serving.md", "scoring.md"} <= tested


def test_not_tested_marker_needs_a_reason(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- not-tested: starts a server -->\n\n```bash\nmake serve\n```\n"
                    "<!-- not-tested: -->\n```sh\necho hi\n```\n```python\nprint(1)\n```\n")
    first, second = shell_blocks(page)
    assert (first.line, first.not_tested, first.text) == (3, "starts a server", "make serve\n")
    assert second.not_tested is None  # an empty reason is no marker: the block runs
