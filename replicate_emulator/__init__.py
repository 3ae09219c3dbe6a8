"""A standalone local stand-in for the Replicate HTTP API.

Speaks the subset the service uses (create by model or version, get, list, cancel, files, the
webhook secret), validates inputs with the same pydantic schemas as `models_config`, renders real
images derived from the input, signs webhooks the Standard Webhooks way, removes data after a
retention period and injects faults on request. It counts every create so tests can prove that no
attempt paid twice. No Django imports here: it runs from `python -m replicate_emulator` too.
"""

from .emulator import Emulator
from .faults import E005, E6716, Faults

__all__ = ["E005", "E6716", "Emulator", "Faults"]
