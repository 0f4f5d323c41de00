"""fedslim: federated fine-tuning of language-model adapters over thin networks."""

__version__ = "0.1.0"
