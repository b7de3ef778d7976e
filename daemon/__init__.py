"""asrbox: a private, offline speech-to-text appliance."""

__version__ = "0.1.0"
