"""Trainer tests run on one CPU thread: results are then reproducible and cheap on 2 cores."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
