import os
import sys

import pytest
import torch

# Keep the 2-core CI machine responsive when tests spawn worker processes.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
