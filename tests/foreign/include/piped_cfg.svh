// Configuration of mx_block_dot_piped (an include file, to exercise include_dirs and defines).
`ifndef PIPED_CFG_SVH
`define PIPED_CFG_SVH
`define PIPED_SUM_W 43
`endif
