"""vidssl: self-supervised video representation learning under one architecture.

Raw videos -> index (manifest) -> clip plan -> decode once -> batched augmentation
on the device -> method -> frozen-encoder evaluation protocols.
"""

__version__ = "0.1.0"
