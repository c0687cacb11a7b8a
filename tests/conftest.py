"""Test-wide settings: one torch thread (small tensors; on a shared 2-core machine extra threads
cost far more than they save) and a headless matplotlib."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
