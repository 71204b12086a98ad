"""The exception types the CLI turns into a clean one-line message and a non-zero exit status.

Exit statuses of ``nxfp-hw`` (README "Exit status"): 0 success; 1 the work ran and found a failure
(a verification mismatch, failed report configurations); 2 a usage error (:class:`UserError`: an
argument, a file, a format, a path); 3 an external tool failed or is missing (:class:`ToolError`:
yosys, OpenSTA, nextpnr, the simulator build); 4 an internal error (a bug: one line, the traceback with
``NXFP_DEBUG=1``); 130 interrupted (SIGINT); 143 terminated (SIGTERM).
"""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TOOL, EXIT_INTERNAL = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class UserError(Exception):
    """Bad input from the user (argument, file, format): the message says what and why."""


class ToolError(UserError):
    """An external tool is missing or failed (the message names the step and its log): exit status 3."""
