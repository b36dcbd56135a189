"""Shared test fixtures.

Third-party data lives beside the project in ``../shared/data`` (never in this repository);
tests that need it skip with a reason when it is absent, as on a user's machine.
"""

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``, or skip the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"third-party data not found at {SHARED_DATA} (it is never shipped with the project)")
    return SHARED_DATA
