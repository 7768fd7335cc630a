import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
# Two cores: keep intra-op threads fixed so timings and numerics are stable.
torch.set_num_threads(min(2, os.cpu_count() or 1))
