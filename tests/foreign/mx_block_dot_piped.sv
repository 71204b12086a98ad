// Test fixture: examples/foreign/mx_block_dot.sv behind registers, with a valid strobe in and out,
// an active-low synchronous reset and packed (flat) element ports; LATENCY register stages.
`include "piped_cfg.svh"
module mx_block_dot_piped #(
  parameter int LATENCY = 2
) (
  input  logic                          clk,
  input  logic                          rst_n,
  input  logic                          in_valid,
  input  logic [7:0]                    scale_a,
  input  logic [7:0]                    scale_b,
  input  logic [255:0]                  a_flat,
  input  logic [255:0]                  b_flat,
  output logic                          out_valid,
  output logic signed [`PIPED_SUM_W-1:0] sum,
  output logic                          nan,
  output logic [3:0]                    spare
);
  logic [7:0] a [32];
  logic [7:0] b [32];
  for (genvar j = 0; j < 32; j++) begin : g_unflat
    assign a[j] = a_flat[j*8 +: 8];
    assign b[j] = b_flat[j*8 +: 8];
  end
  logic signed [42:0] dp;
  logic signed [9:0]  ex;
  logic               nn;
  mx_block_dot #(.K(32)) u_dot (.i_scale_a(scale_a), .i_scale_b(scale_b), .i_a(a), .i_b(b),
                                .o_dp(dp), .o_exp(ex), .o_nan(nn));
  logic [LATENCY-1:0]       v_q;
  logic signed [42:0]       dp_q [LATENCY];
  logic [LATENCY-1:0]       nan_q;
  always_ff @(posedge clk) begin
    if (!rst_n) begin
      v_q <= '0;
    end else begin
      v_q <= {v_q[LATENCY-2:0], in_valid};
    end
    dp_q[0] <= dp;
    nan_q[0] <= nn;
    for (int i = 1; i < LATENCY; i++) begin
      dp_q[i] <= dp_q[i-1];
      nan_q[i] <= nan_q[i-1];
    end
  end
  assign out_valid = v_q[LATENCY-1];
  assign sum = `PIPED_SUM_W'(dp_q[LATENCY-1]);
  assign nan = nan_q[LATENCY-1];
  assign spare = 4'd0;
endmodule
