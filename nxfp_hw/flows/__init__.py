"""Flows over generated units: Verilog + manifest + FuseSoC core, external tool location, area/timing."""
