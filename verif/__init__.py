"""cocotb verification components (spec 9): manifest-driven DUT wrapper, stream driver/monitor,
backpressure, scoreboard, functional coverage, and the decode/dot testbenches."""
