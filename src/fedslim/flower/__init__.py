"""fedslim's compression for any Flower app: a strategy wrapper and its client mod.

    from fedslim.flower import CompressedStrategy, compression_mod

    strategy = CompressedStrategy(FedAvg(), uplink="q4|zstd:3", downlink="q8|zstd:3")
    app = ClientApp(mods=[compression_mod])

The ClientApp and the wrapped strategy stay as they are; see ``strategy.py`` and
``mod.py``.
"""

from .mod import compression_mod
from .strategy import CompressedStrategy

__all__ = ["CompressedStrategy", "compression_mod"]
