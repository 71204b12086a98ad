"""nxfp-hw: RTL generator and verification framework for block-scaled low-bit formats (MX, NxFP)."""

__version__ = "0.1.0"
